//! What change capture finds or makes in the source database before it reads: the
//! table and its key, the publication, the slot, and a snapshot held open to read from.

use anyhow::{bail, Context, Result};
use tokio_postgres::{Client, SimpleQueryMessage};

use super::cdc::CdcSource;
use super::pg_replication::{format_lsn, parse_lsn, Replication};
use super::pgoutput::Column;

/// The table whose changes are read.
pub(super) struct Table {
    pub(super) oid: u32,
    /// `"schema"."name"`, quoted for SQL.
    pub(super) sql: String,
    /// `schema.name`, for people.
    pub(super) shown: String,
    pub(super) columns: Vec<Column>,
    /// The single-column integer primary key, by which the snapshot is read and resumed.
    pub(super) key: Option<String>,
}

/// The slot as `pg_replication_slots` shows it.
pub(super) struct SlotState {
    pub(super) confirmed: u64,
    /// `lost`: invalidated, its WAL gone (`max_slot_wal_keep_size`).
    pub(super) lost: bool,
}

/// A double-quoted identifier.
pub(super) fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A session on the source database that reads times in UTC and floats exactly, so that
/// rows convert the same on every connection.
pub(super) async fn connect(url: &str) -> Result<Client> {
    let client = crate::sink::connect_postgres(url).await.context("connecting to the source database")?;
    client.batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3").await?;
    Ok(client)
}

/// Refuses a server that does not log logical changes.
pub(super) async fn logical(client: &Client) -> Result<()> {
    let level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    if level != "logical" {
        bail!(
            "the source server runs with wal_level = {level}; change capture needs wal_level = logical \
             (ALTER SYSTEM SET wal_level = logical, then restart the server), or use mode = \"poll\""
        );
    }
    Ok(())
}

/// Finds `name` (`[SCHEMA.]NAME`), its columns and its key.
pub(super) async fn table(client: &Client, name: &str) -> Result<Table> {
    let found = client
        .query_opt(
            "SELECT c.oid::int8, n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
            &[&name],
        )
        .await?;
    let Some(row) = found else { bail!("source.table {name:?}: no such table in the source database") };
    let (oid, schema, relname): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
    let columns = client
        .query(
            "SELECT attname::text, atttypid::int8 FROM pg_attribute WHERE attrelid = $1::int8::oid AND attnum > 0 \
             AND NOT attisdropped ORDER BY attnum",
            &[&oid],
        )
        .await?
        .iter()
        .map(|r| Column { name: r.get(0), type_oid: r.get::<_, i64>(1) as u32 })
        .collect();
    let keys = client
        .query(
            "SELECT a.attname::text, a.atttypid::int8 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
             AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::int8::oid AND i.indisprimary",
            &[&oid],
        )
        .await?;
    let key = match keys.as_slice() {
        [k] if matches!(k.get::<_, i64>(1), 20 | 21 | 23) => Some(k.get(0)),
        _ => None,
    };
    Ok(Table {
        oid: oid as u32,
        sql: format!("{}.{}", ident(&schema), ident(&relname)),
        shown: format!("{schema}.{relname}"),
        columns,
        key,
    })
}

/// Creates `publication` for the table unless it exists; an existing one must publish it.
pub(super) async fn publication(client: &Client, publication: &str, table: &Table) -> Result<()> {
    let exists = client.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&publication]).await?;
    if exists.is_none() {
        let create = format!("CREATE PUBLICATION {} FOR TABLE {}", ident(publication), table.sql);
        return client.batch_execute(&create).await.with_context(|| format!("creating publication {publication}"));
    }
    let (schema, name) = table.shown.split_once('.').expect("schema.name");
    let publishes = client
        .query_opt(
            "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
            &[&publication, &schema, &name],
        )
        .await?;
    if publishes.is_none() {
        bail!(
            "publication {publication} does not publish {}: ALTER PUBLICATION {} ADD TABLE {}",
            table.shown,
            ident(publication),
            table.sql
        );
    }
    Ok(())
}

/// The slot `name` of this database, if there is one; one of another plugin or database is refused.
pub(super) async fn slot(client: &Client, name: &str) -> Result<Option<SlotState>> {
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text = current_database(), confirmed_flush_lsn::text, \
             coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = $1",
            &[&name],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let (plugin, here): (Option<String>, Option<bool>) = (row.get(0), row.get(1));
    if plugin.as_deref() != Some("pgoutput") || here != Some(true) {
        return Err(anyhow::Error::new(super::cdc::Permanent(format!(
            "replication slot {name} is not a pgoutput slot of this database; name another with source.slot"
        ))));
    }
    let confirmed: Option<String> = row.get(2);
    let lost = row.get::<_, String>(3) == "lost";
    Ok(Some(SlotState { confirmed: confirmed.map(|l| parse_lsn(&l)).transpose()?.unwrap_or(0), lost }))
}

/// A snapshot imported into a read-only transaction, its rows from `from_key` on
/// behind a cursor in key order.
pub(super) struct Snapshot {
    pub(super) client: Client,
    /// When it was taken, in ms: its rows' `_commit_time`.
    pub(super) taken_ms: i64,
}

/// Opens a new connection on snapshot `name` (exported through `_exporter`, which must stay
/// open until this returns) and declares the cursor.
pub(super) async fn snapshot(
    url: &str,
    name: &str,
    _exporter: &Replication,
    table: &Table,
    from_key: i64,
) -> Result<Snapshot> {
    let client = connect(url).await?;
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
            name.replace('\'', "")
        ))
        .await
        .context("importing the slot's snapshot")?;
    let taken_ms: i64 = client.query_one("SELECT (extract(epoch FROM now()) * 1000)::int8", &[]).await?.get(0);
    let key = ident(table.key.as_deref().context("a snapshot needs the table's key")?);
    client
        .batch_execute(&format!(
            "DECLARE weir_snapshot NO SCROLL CURSOR FOR SELECT * FROM {} WHERE {key} >= {from_key} ORDER BY {key}",
            table.sql
        ))
        .await?;
    Ok(Snapshot { client, taken_ms })
}

/// Up to `max` rows of the snapshot, as text.
pub(super) async fn fetch(snapshot: &Snapshot, max: usize) -> Result<Vec<Vec<Option<String>>>> {
    let messages = snapshot.client.simple_query(&format!("FETCH FORWARD {max} FROM weir_snapshot")).await?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some((0..row.len()).map(|i| row.get(i).map(str::to_string)).collect()),
            _ => None,
        })
        .collect())
}

impl CdcSource {
    /// What `weir validate` reports, changing nothing: the table, its key, the publication
    /// and the slot, each found or to be created.
    pub fn check(url: &str, table: &str, slot: &str, publication: &str, snapshot: bool) -> Result<String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async {
            let client = connect(url).await?;
            logical(&client).await?;
            let table = self::table(&client, table).await?;
            let snapshot = match (&table.key, snapshot) {
                (_, false) => "no snapshot".to_string(),
                (Some(key), true) => format!("a snapshot by key {key} first"),
                (None, true) => bail!(
                    "source.snapshot: table {} has no single-column integer primary key; set snapshot = false",
                    table.shown
                ),
            };
            let published =
                client.query_opt("SELECT 1 FROM pg_publication WHERE pubname = $1", &[&publication]).await?;
            if published.is_some() {
                self::publication(&client, publication, &table).await?;
            }
            let slot_state = match self::slot(&client, slot).await? {
                None => "to be created".to_string(),
                Some(s) if s.lost => "invalidated (its WAL is gone): drop it, or name another".to_string(),
                Some(s) => format!("confirmed at {}", format_lsn(s.confirmed)),
            };
            Ok(format!(
                "postgres table {} ({} columns), {snapshot}; publication {publication} {}; slot {slot} {slot_state}",
                table.shown,
                table.columns.len(),
                if published.is_some() { "found" } else { "to be created" }
            ))
        })
    }
}
