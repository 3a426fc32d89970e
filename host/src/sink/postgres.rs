//! The PostgreSQL sink. One checkpoint is one transaction of a few set-based statements:
//! each table gets one `INSERT … SELECT FROM unnest($1, $2, …)` with every row of the
//! checkpoint as parallel arrays, so a checkpoint costs a handful of round trips however
//! many windows changed. Upserts write absolute values (`SET n = EXCLUDED.n`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;
use weir_sdk::{ColumnDef, ColumnType};

use super::partials::{self, Merger};
use super::schema::{self, quote, Dialect, Existing, Upsert};
use super::{Cell, Checkpoint, Deployment, Restored, Sink, StoredPartition, TableSchema, WindowRow, WindowState};
use crate::window::Window;

const BOOKKEEPING: &str = r#"
CREATE TABLE IF NOT EXISTS weir_checkpoints (
    pipeline text NOT NULL,
    source_partition integer NOT NULL,
    source text NOT NULL,
    next_offset bigint NOT NULL,
    max_event_ms bigint,
    last_active_ms bigint,
    watermark bigint,
    plugins text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (pipeline, source_partition)
);
CREATE TABLE IF NOT EXISTS weir_window_state (
    pipeline text NOT NULL,
    window_start bigint NOT NULL,
    window_end bigint NOT NULL,
    key text NOT NULL,
    source_partition integer NOT NULL,
    state bytea NOT NULL,
    revision bigint NOT NULL,
    is_final boolean NOT NULL,
    PRIMARY KEY (pipeline, window_start, window_end, key, source_partition)
);
-- Before partial states, a window and key had one state whatever its partition.
DO $$ DECLARE pk text; BEGIN
    SELECT conname INTO pk FROM pg_constraint WHERE conrelid = 'weir_window_state'::regclass AND contype = 'p'
        AND pg_get_constraintdef(oid) NOT LIKE '%source_partition%';
    IF pk IS NOT NULL THEN
        EXECUTE format('ALTER TABLE weir_window_state DROP CONSTRAINT %I, ADD PRIMARY KEY (pipeline, window_start, window_end, key, source_partition)', pk);
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS weir_window_state_by_key ON weir_window_state (pipeline, key, window_start);
CREATE TABLE IF NOT EXISTS weir_partitions (
    pipeline text NOT NULL,
    source_partition integer NOT NULL,
    label text NOT NULL,
    PRIMARY KEY (pipeline, source_partition)
);
CREATE TABLE IF NOT EXISTS weir_hosts (
    pipeline text NOT NULL,
    holder text NOT NULL,
    role text NOT NULL,
    admin text,
    heartbeat_ms bigint NOT NULL,
    version text NOT NULL,
    consumer_group text,
    plugins text NOT NULL,
    partitions text NOT NULL,
    records bigint NOT NULL,
    lag bigint,
    events_per_s double precision NOT NULL,
    proposal text,
    verdict text,
    PRIMARY KEY (pipeline, holder)
);
CREATE TABLE IF NOT EXISTS weir_dead_letters (
    id bigserial PRIMARY KEY,
    pipeline text NOT NULL,
    kind text NOT NULL,
    reason text NOT NULL,
    plugin text NOT NULL,
    digest text NOT NULL,
    source_partition integer NOT NULL,
    source_offset bigint NOT NULL,
    raw bytea NOT NULL,
    created_at timestamptz NOT NULL,
    UNIQUE (pipeline, source_partition, source_offset, plugin)
);
CREATE TABLE IF NOT EXISTS weir_late_events (
    id bigserial PRIMARY KEY,
    pipeline text NOT NULL,
    source_partition integer NOT NULL,
    source_offset bigint NOT NULL,
    event_time timestamptz NOT NULL,
    window_start timestamptz NOT NULL,
    window_end timestamptz NOT NULL,
    raw bytea NOT NULL,
    created_at timestamptz NOT NULL,
    UNIQUE (pipeline, source_partition, source_offset, window_start)
);
CREATE TABLE IF NOT EXISTS weir_components (
    digest text PRIMARY KEY,
    name text NOT NULL,
    bytes bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS weir_deployments (
    id bigserial PRIMARY KEY,
    pipeline text NOT NULL,
    stage text NOT NULL,
    plugin text NOT NULL,
    digest text NOT NULL REFERENCES weir_components (digest),
    how text NOT NULL,
    state_version bigint,
    configured_digest text NOT NULL,
    from_offsets text NOT NULL,
    deployed_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS weir_checkpoint_log (
    id bigserial PRIMARY KEY,
    pipeline text NOT NULL,
    plugins text NOT NULL,
    offsets text NOT NULL,
    committed_at timestamptz NOT NULL
);
ALTER TABLE weir_checkpoint_log ADD COLUMN IF NOT EXISTS lookups text;
ALTER TABLE weir_deployments ADD COLUMN IF NOT EXISTS reason text;
CREATE TABLE IF NOT EXISTS weir_lookups (
    pipeline text NOT NULL,
    name text NOT NULL,
    version text NOT NULL,
    rows bigint NOT NULL,
    content text NOT NULL,
    loaded_at timestamptz NOT NULL,
    PRIMARY KEY (pipeline, name, version)
);
"#;

/// weir's own tables: its bookkeeping and the quality tables.
fn bookkeeping() -> String {
    BOOKKEEPING.to_string()
        + &super::quality::tables("timestamptz", "bigint", "double precision")
        + &super::outbox::tables("bigint")
}

/// Serialises concurrent `prepare`s of several hosts: `CREATE TABLE IF NOT EXISTS` races.
const PREPARE_LOCK: i64 = 0x7765_6972; // "weir"

fn pg_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 => "bigint",
        ColumnType::Float64 => "double precision",
        ColumnType::Boolean => "boolean",
        ColumnType::Text => "text",
        ColumnType::TimestampMs => "timestamp with time zone",
    }
}

pub(super) const DIALECT: Dialect = Dialect {
    type_of: pg_type,
    window: "timestamp with time zone",
    boolean: "boolean",
    integer: "bigint",
    timestamp: "timestamp with time zone",
};

pub(super) fn time(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// One column of a statement's rows, as a typed array parameter.
pub(super) enum Array {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Time(Vec<Option<SystemTime>>),
}

impl Array {
    pub(super) fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Int64 => Array::Int(Vec::new()),
            ColumnType::Float64 => Array::Float(Vec::new()),
            ColumnType::Boolean => Array::Bool(Vec::new()),
            ColumnType::Text => Array::Text(Vec::new()),
            ColumnType::TimestampMs => Array::Time(Vec::new()),
        }
    }

    pub(super) fn push(&mut self, cell: &Cell) {
        match (self, cell) {
            (Array::Int(v), Cell::Int(x)) => v.push(Some(*x)),
            (Array::Float(v), Cell::Float(x)) => v.push(Some(*x)),
            (Array::Float(v), Cell::Int(x)) => v.push(Some(*x as f64)),
            (Array::Bool(v), Cell::Bool(x)) => v.push(Some(*x)),
            // PostgreSQL text cannot hold a NUL; an aggregator's output may (keys never do).
            (Array::Text(v), Cell::Text(x)) => v.push(Some(super::storable(x).into_owned())),
            (Array::Time(v), Cell::Timestamp(x)) => v.push(Some(time(*x))),
            (Array::Int(v), _) => v.push(None),
            (Array::Float(v), _) => v.push(None),
            (Array::Bool(v), _) => v.push(None),
            (Array::Text(v), _) => v.push(None),
            (Array::Time(v), _) => v.push(None),
        }
    }

    pub(super) fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Array::Int(v) => v,
            Array::Float(v) => v,
            Array::Bool(v) => v,
            Array::Text(v) => v,
            Array::Time(v) => v,
        }
    }
}

pub(super) fn array_cast(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 => "bigint[]",
        ColumnType::Float64 => "double precision[]",
        ColumnType::Boolean => "boolean[]",
        ColumnType::Text => "text[]",
        ColumnType::TimestampMs => "timestamptz[]",
    }
}

/// `$first::type[], $first+1::type[], …` for an `unnest(…)`.
pub(super) fn unnest_args(first: usize, casts: &[&str]) -> String {
    casts.iter().enumerate().map(|(i, c)| format!("${}::{c}", first + i)).collect::<Vec<_>>().join(", ")
}

/// A PostgreSQL database, connected lazily and reconnected after a transient failure.
pub struct PostgresSink {
    url: String,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    table: Option<TableSchema>,
    merger: Option<Box<dyn Merger>>,
    pub(super) merged: Vec<WindowRow>,
    pub(super) fence: super::fence::Fence,
}

impl PostgresSink {
    /// A sink for `url` (`postgres://user:password@host:port/db`, or `key=value` form).
    /// It connects at once, so a wrong URL is reported before anything runs.
    pub fn open(url: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the PostgreSQL client runtime")?;
        let mut sink = PostgresSink {
            url: url.to_string(),
            runtime,
            client: None,
            table: None,
            merger: None,
            merged: Vec::new(),
            fence: Default::default(),
        };
        sink.connect()?;
        Ok(sink)
    }

    /// The runtime and a live connection, reconnecting if the last one was lost. Only
    /// `Runtime::block_on` drives a current-thread runtime's I/O, hence the pair.
    pub(super) fn session(&mut self) -> Result<(&tokio::runtime::Runtime, &mut Client)> {
        self.connect()?;
        let client = self.client.as_mut().context("no PostgreSQL connection")?;
        Ok((&self.runtime, client))
    }

    fn connect(&mut self) -> Result<()> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.runtime.block_on(super::postgres_connect::connect(&self.url))?);
        }
        Ok(())
    }

    pub(super) fn table(&self) -> Result<TableSchema> {
        self.table.clone().context("the sink was not prepared")
    }

    /// The upsert of `table`; `merged` rows (see `partials.rs`) keep their revision and
    /// finality in the table.
    fn upsert_sql(table: &TableSchema, merged: bool) -> String {
        let Upsert { columns, conflict, mut updates } = Upsert::of(table);
        if merged {
            updates = partials::merged_updates(table, &quote(&table.name));
        }
        let mut casts = vec!["timestamptz[]", "timestamptz[]"];
        casts.extend(table.keys.iter().chain(&table.values).map(|c| array_cast(c.ty)));
        casts.extend(["boolean[]", "bigint[]"]);
        format!(
            "INSERT INTO {} ({}, updated_at) SELECT u.*, $1 FROM unnest({}) AS u ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
            quote(&table.name),
            columns.join(", "),
            unnest_args(2, &casts)
        )
    }

    /// Deletes the rows of windows `r` (window, key) from `table`: sessions merged into others.
    pub(super) async fn delete_rows(
        tx: &tokio_postgres::Transaction<'_>,
        table: &TableSchema,
        r: &[(Window, Vec<Cell>)],
    ) -> Result<()> {
        if r.is_empty() {
            return Ok(());
        }
        let starts: Vec<SystemTime> = r.iter().map(|(w, _)| time(w.start)).collect();
        let ends: Vec<SystemTime> = r.iter().map(|(w, _)| time(w.end)).collect();
        let mut keys: Vec<Array> = table.keys.iter().map(|c| Array::new(c.ty)).collect();
        for (_, key) in r {
            for (column, cell) in keys.iter_mut().zip(key) {
                column.push(cell);
            }
        }
        let mut casts = vec!["timestamptz[]", "timestamptz[]"];
        casts.extend(table.keys.iter().map(|c| array_cast(c.ty)));
        let names: Vec<String> = (0..casts.len()).map(|i| format!("r{i}")).collect();
        let mut matches = vec!["t.window_start = r.r0".to_string(), "t.window_end = r.r1".to_string()];
        matches.extend(table.keys.iter().enumerate().map(|(i, c)| format!("t.{} = r.r{}", quote(&c.name), i + 2)));
        let sql = format!(
            "DELETE FROM {} AS t USING unnest({}) AS r({}) WHERE {}",
            quote(&table.name),
            unnest_args(1, &casts),
            names.join(", "),
            matches.join(" AND ")
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&starts, &ends];
        params.extend(keys.iter().map(Array::param));
        tx.execute(&sql, &params).await.context("deleting the rows of merged sessions")?;
        Ok(())
    }

    /// Upserts `rows` into `table` in one statement.
    pub(super) async fn upsert(
        tx: &tokio_postgres::Transaction<'_>,
        table: &TableSchema,
        rows: &[WindowRow],
        now: SystemTime,
        merged: bool,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        // One row per window and key: ON CONFLICT cannot touch a row twice in a statement.
        let mut last = std::collections::HashMap::new();
        for (i, row) in rows.iter().enumerate() {
            last.insert((row.window.start, row.window.end, super::key_json(&row.key)), i);
        }
        let mut keep: Vec<usize> = last.into_values().collect();
        keep.sort_unstable();
        let defs: Vec<&ColumnDef> = table.keys.iter().chain(&table.values).collect();
        let mut starts = Vec::new();
        let mut ends = Vec::new();
        let mut columns: Vec<Array> = defs.iter().map(|c| Array::new(c.ty)).collect();
        let mut finals = Vec::new();
        let mut revisions = Vec::new();
        for &i in &keep {
            let row = &rows[i];
            starts.push(time(row.window.start));
            ends.push(time(row.window.end));
            for (column, cell) in columns.iter_mut().zip(row.key.iter().chain(&row.values)) {
                column.push(cell);
            }
            finals.push(row.is_final);
            revisions.push(row.revision);
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&now, &starts, &ends];
        params.extend(columns.iter().map(Array::param));
        params.push(&finals);
        params.push(&revisions);
        tx.execute(&Self::upsert_sql(table, merged), &params)
            .await
            .with_context(|| format!("upserting into {}", table.name))?;
        Ok(())
    }
}

const WINDOW_STATES: &str = "SELECT window_start, window_end, key, source_partition, state, revision, is_final \
     FROM weir_window_state WHERE pipeline = $1";

fn window_states(rows: &[tokio_postgres::Row], table: &TableSchema) -> Result<Vec<WindowState>> {
    rows.iter()
        .map(|r| {
            Ok(WindowState {
                window: Window { start: r.get(0), end: r.get(1) },
                key: super::key_from_json(r.get(2), &table.keys)?,
                partition: r.get(3),
                state: r.get(4),
                revision: r.get(5),
                is_final: r.get(6),
            })
        })
        .collect()
}

/// The columns of table `name` (quoted), from the catalog; none if it does not exist.
pub(super) async fn existing<C: tokio_postgres::GenericClient>(client: &C, name: &str) -> Result<Vec<Existing>> {
    let rows = client
        .query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), \
             EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY(i.indkey)) \
             FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&name],
        )
        .await?;
    Ok(rows.iter().map(|r| Existing { name: r.get(0), ty: r.get(1), primary_key: r.get(2) }).collect())
}

impl Sink for PostgresSink {
    fn plan(&mut self, table: &TableSchema) -> Result<Vec<String>> {
        let (runtime, client) = self.session()?;
        runtime.block_on(async {
            let table = super::postgres_versions::resolve(&*client, table).await?;
            let existing = existing(&*client, &quote(&table.name)).await?;
            schema::plan(&table, &existing, &DIALECT)
        })
    }

    fn prepare_bookkeeping(&mut self) -> Result<()> {
        let (runtime, client) = self.session()?;
        runtime.block_on(async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PREPARE_LOCK]).await?;
            tx.batch_execute(&bookkeeping()).await.context("creating weir's bookkeeping tables")?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn prepare(&mut self, table: &TableSchema) -> Result<()> {
        let (runtime, client) = self.session()?;
        let table = runtime.block_on(async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PREPARE_LOCK]).await?;
            tx.batch_execute(&bookkeeping()).await.context("creating weir's bookkeeping tables")?;
            // A versioned table's name is a view: the pipeline writes its latest version.
            let table = super::postgres_versions::resolve(&tx, table).await?;
            let existing = existing(&tx, &quote(&table.name)).await?;
            for sql in schema::plan(&table, &existing, &DIALECT)? {
                tx.batch_execute(&sql).await.with_context(|| format!("preparing table {}: {sql}", table.name))?;
            }
            tx.commit().await?;
            Ok::<_, anyhow::Error>(table)
        })?;
        self.table = Some(table);
        Ok(())
    }

    fn restore(&mut self, pipeline: &str, partitions: &[i32]) -> Result<Option<Restored>> {
        let table = self.table()?;
        let (runtime, client) = self.session()?;
        let partitions = partitions.to_vec();
        let (stored, rows) = runtime.block_on(async {
            let stored = client
                .query(
                    "SELECT source_partition, next_offset, max_event_ms, last_active_ms, watermark, source FROM weir_checkpoints \
                     WHERE pipeline = $1 AND source_partition = ANY($2) ORDER BY source_partition",
                    &[&pipeline, &partitions],
                )
                .await?;
            let states = client
                .query(
                    &format!("{WINDOW_STATES} AND NOT is_final AND source_partition = ANY($2) ORDER BY window_start, key"),
                    &[&pipeline, &partitions],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>((stored, states))
        })?;
        self.fence.restored(&partitions, stored.iter().map(|r| (r.get(0), r.get(1))));
        if stored.is_empty() {
            return Ok(None);
        }
        let stored = stored
            .iter()
            .map(|r| StoredPartition {
                partition: r.get(0),
                next_offset: r.get(1),
                max_event_ms: r.get(2),
                last_active_ms: r.get(3),
                watermark: r.get(4),
                source: r.get(5),
            })
            .collect();
        let states = window_states(&rows, &table)?;
        Ok(Some(Restored::from_partitions(stored, states)))
    }

    fn next_offsets(&mut self, pipeline: &str) -> Result<Vec<(i32, i64)>> {
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(
            "SELECT source_partition, next_offset FROM weir_checkpoints WHERE pipeline = $1 ORDER BY 1",
            &[&pipeline],
        ))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn take_merged(&mut self) -> Vec<WindowRow> {
        std::mem::take(&mut self.merged)
    }

    fn latest_rows(&mut self) -> Result<(Vec<WindowRow>, i64)> {
        let table = self.table()?;
        let (runtime, client) = self.session()?;
        runtime.block_on(super::latest::postgres(client, &table))
    }

    fn set_merger(&mut self, merger: Box<dyn Merger>) -> Result<()> {
        self.merger = Some(merger);
        let table = self.table()?;
        let (runtime, client) = self.session()?;
        // Each checkpoint looks for the rows that became final: only the open ones are indexed.
        runtime.block_on(client.batch_execute(&partials::open_rows_index(&table)))?;
        Ok(())
    }

    fn all_windows(&mut self, pipeline: &str) -> Result<Vec<WindowState>> {
        let table = self.table()?;
        let (runtime, client) = self.session()?;
        let rows =
            runtime.block_on(client.query(&format!("{WINDOW_STATES} ORDER BY window_start, key"), &[&pipeline]))?;
        window_states(&rows, &table)
    }

    fn windows_overlapping(&mut self, pipeline: &str, wanted: &[(Vec<Cell>, Window)]) -> Result<Vec<WindowState>> {
        let table = self.table()?;
        let keys: Vec<String> = wanted.iter().map(|(k, _)| super::key_json(k)).collect();
        let starts: Vec<i64> = wanted.iter().map(|(_, w)| w.start).collect();
        let ends: Vec<i64> = wanted.iter().map(|(_, w)| w.end).collect();
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(
            &format!(
                "{WINDOW_STATES} AND EXISTS (SELECT 1 FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS w(key, s, e) \
                 WHERE w.key = weir_window_state.key AND weir_window_state.window_start < w.e AND weir_window_state.window_end > w.s)"
            ),
            &[&pipeline, &keys, &starts, &ends],
        ))?;
        window_states(&rows, &table)
    }

    fn last_deployment(&mut self, pipeline: &str) -> Result<Option<i64>> {
        let (runtime, client) = self.session()?;
        let row = runtime
            .block_on(client.query_one("SELECT max(id) FROM weir_deployments WHERE pipeline = $1", &[&pipeline]))?;
        Ok(row.get(0))
    }

    fn deployments(&mut self, pipeline: &str) -> Result<Vec<Deployment>> {
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(
            "SELECT d.stage, d.plugin, d.digest, d.how, d.state_version, d.configured_digest, d.from_offsets, d.deployed_ms, c.bytes, d.reason \
             FROM weir_deployments d JOIN weir_components c USING (digest) WHERE d.pipeline = $1 ORDER BY d.id",
            &[&pipeline],
        ))?;
        rows.iter()
            .map(|r| {
                Ok(Deployment {
                    stage: r.get(0),
                    plugin: r.get(1),
                    digest: r.get(2),
                    how: r.get(3),
                    state_version: r.get::<_, Option<i64>>(4).map(|v| v as u32),
                    configured_digest: r.get(5),
                    from_offsets: Deployment::offsets_from_json(r.get(6))?,
                    at_ms: r.get(7),
                    bytes: std::sync::Arc::new(r.get(8)),
                    reason: r.get(9),
                })
            })
            .collect()
    }

    fn commit(&mut self, pipeline: &str, checkpoint: &Checkpoint) -> Result<()> {
        let current = self.table()?;
        let table = match &checkpoint.table {
            // A new version of a versioned table, or the table gaining columns.
            Some(table) if checkpoint.new_table_version => super::versions::next(table, &current.name),
            Some(table) => TableSchema { name: current.name.clone(), ..table.clone() },
            None => current,
        };
        let mut merger = self.merger.take();
        let outcome = self.commit_with(pipeline, &table, checkpoint, merger.as_deref_mut());
        self.merger = merger;
        if outcome.is_ok() {
            self.table = Some(table);
        }
        outcome
    }

    fn deliver(&mut self, pipeline: &str, outputs: &mut [Box<dyn super::Output>]) -> Result<u64> {
        self.deliver_outbox(pipeline, outputs)
    }

    fn is_transient(&self, error: &anyhow::Error) -> bool {
        error.chain().any(|cause| {
            let Some(e) = cause.downcast_ref::<tokio_postgres::Error>() else {
                return cause.downcast_ref::<std::io::Error>().is_some();
            };
            if e.is_closed() {
                return true;
            }
            match e.code() {
                Some(code) => passes(code.code()),
                // No SQL state: the connection or the socket failed.
                None => true,
            }
        })
    }
}

/// Whether an error with SQLSTATE `code` passes by itself, so that a checkpoint is retried
/// rather than the run ended: connection exceptions (08), a server shutting down or
/// restarting (57P), insufficient resources such as a full connection table (53, e.g.
/// 53300 "too many clients"), a statement or lock timeout (57014, 55P03), a transaction
/// the server ended after it idled (25P03: the host froze or was cut off mid-commit, see
/// `postgres_connect.rs`; the retry meets the fence), serialization failures and deadlocks
/// (40001, 40P01). Anything else (a missing permission, a schema that contradicts the
/// pipeline) needs a person, and ends the run with its message.
fn passes(code: &str) -> bool {
    ["08", "57P", "53"].iter().any(|class| code.starts_with(class))
        || ["57014", "55P03", "25P03", "40001", "40P01"].contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passing_faults_are_retried_and_lasting_ones_are_not() {
        for code in ["08006", "57P01", "57P03", "53300", "53100", "57014", "55P03", "25P03", "40001", "40P01"] {
            assert!(passes(code), "{code}");
        }
        for code in ["28P01", "42501", "42P01", "23505", "22021"] {
            assert!(!passes(code), "{code}");
        }
    }
}
