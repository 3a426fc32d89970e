//! The registry's tables in the sink's database: `weir_schemas` (every version of every
//! subject) and `weir_schema_config` (compatibility levels; the empty subject is the
//! registry's own). One SQL text serves both databases: SQLite numbers `$1` parameters
//! by their first appearance, as PostgreSQL does.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::{Registered, SchemaType};

const POSTGRES_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS weir_schemas (
    subject text NOT NULL,
    version bigint NOT NULL,
    id bigint NOT NULL,
    type text NOT NULL,
    text text NOT NULL,
    fingerprint bigint NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS weir_schemas_id ON weir_schemas (id);
CREATE TABLE IF NOT EXISTS weir_schema_config (subject text PRIMARY KEY, level text NOT NULL);
"#;

const SQLITE_TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS weir_schemas (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    id INTEGER NOT NULL,
    type TEXT NOT NULL,
    text TEXT NOT NULL,
    fingerprint INTEGER NOT NULL,
    registered_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS weir_schemas_id ON weir_schemas (id);
CREATE TABLE IF NOT EXISTS weir_schema_config (subject TEXT PRIMARY KEY, level TEXT NOT NULL);
"#;

/// Serialises registrations of several hosts (and their id assignment) in PostgreSQL.
const REGISTER_LOCK: i64 = 0x7765_6972_5f73_6368; // "weir_sch"

/// A statement's parameter or a result's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    I(i64),
    S(String),
    Null,
}

impl Val {
    pub fn int(&self) -> i64 {
        match self {
            Val::I(i) => *i,
            _ => 0,
        }
    }

    pub fn text(&self) -> String {
        match self {
            Val::S(s) => s.clone(),
            _ => String::new(),
        }
    }
}

/// Statements inside one transaction.
pub trait Tx {
    fn rows(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>>;
    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<()>;
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres { runtime: tokio::runtime::Runtime, client: Option<tokio_postgres::Client>, url: String },
}

/// A connection to the sink's database for the registry, apart from the sink's own.
pub struct SchemaDb {
    conn: Mutex<Conn>,
    postgres: bool,
}

/// The columns `registered` reads, in its order.
pub fn columns(postgres: bool) -> &'static str {
    if postgres {
        "id, subject, version, type, text, fingerprint, \
         to_char(registered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    } else {
        "id, subject, version, type, text, fingerprint, registered_at"
    }
}

/// A row of `columns` as a version.
pub fn registered(row: &[Val]) -> Registered {
    Registered {
        id: row[0].int() as u32,
        subject: row[1].text(),
        version: row[2].int() as u32,
        ty: SchemaType::parse(Some(&row[3].text())).unwrap_or(SchemaType::Avro),
        text: row[4].text(),
        fingerprint: row[5].int() as u64,
        registered_at: row[6].text(),
    }
}

impl SchemaDb {
    /// Opens the registry's tables in the database `sink.url` names, creating them.
    pub fn open(url: &str, base: &Path) -> Result<Self> {
        let conn = match url.strip_prefix("sqlite://") {
            Some(path) => {
                let path = base.join(path);
                let conn = rusqlite::Connection::open(&path)
                    .with_context(|| format!("opening SQLite database {} for the schema registry", path.display()))?;
                conn.busy_timeout(std::time::Duration::from_secs(10))?;
                conn.execute_batch(SQLITE_TABLES).context("creating the schema registry's tables")?;
                Conn::Sqlite(conn)
            }
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let client = runtime.block_on(crate::sink::connect_postgres(url))?;
                runtime
                    .block_on(async {
                        client.batch_execute(&format!("SELECT pg_advisory_lock({REGISTER_LOCK})")).await?;
                        let made = client.batch_execute(POSTGRES_TABLES).await;
                        client.batch_execute(&format!("SELECT pg_advisory_unlock({REGISTER_LOCK})")).await?;
                        made
                    })
                    .context("creating the schema registry's tables")?;
                Conn::Postgres { runtime, client: Some(client), url: url.to_string() }
            }
        };
        let postgres = matches!(conn, Conn::Postgres { .. });
        Ok(SchemaDb { conn: Mutex::new(conn), postgres })
    }

    /// Opens the registry's tables to look at, creating nothing: `None` if the database
    /// or the tables do not exist yet (`weir validate`).
    pub fn inspect(url: &str, base: &Path) -> Result<Option<Self>> {
        let conn = match url.strip_prefix("sqlite://") {
            Some(path) => {
                let path = base.join(path);
                if !path.exists() {
                    return Ok(None);
                }
                let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
                let conn = rusqlite::Connection::open_with_flags(&path, flags)?;
                let found: i64 = conn.query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'weir_schemas'",
                    [],
                    |r| r.get(0),
                )?;
                if found == 0 {
                    return Ok(None);
                }
                Conn::Sqlite(conn)
            }
            None => {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                let client = runtime.block_on(crate::sink::connect_postgres(url))?;
                let found =
                    runtime.block_on(client.query_one("SELECT to_regclass('weir_schemas') IS NOT NULL", &[]))?;
                if !found.get::<_, bool>(0) {
                    return Ok(None);
                }
                Conn::Postgres { runtime, client: Some(client), url: url.to_string() }
            }
        };
        let postgres = matches!(conn, Conn::Postgres { .. });
        Ok(Some(SchemaDb { conn: Mutex::new(conn), postgres }))
    }

    /// Whether the database is PostgreSQL.
    pub fn postgres(&self) -> bool {
        self.postgres
    }

    /// Runs `f` in one transaction that holds the registry's lock, so concurrent
    /// registrations (from several hosts) assign versions and ids one at a time.
    pub fn locked<R>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R>) -> Result<R> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *conn {
            Conn::Sqlite(conn) => {
                let behavior = match conn.is_readonly(rusqlite::MAIN_DB)? {
                    true => rusqlite::TransactionBehavior::Deferred,
                    false => rusqlite::TransactionBehavior::Immediate,
                };
                let tx = conn.transaction_with_behavior(behavior)?;
                let mut lite = Lite(&tx);
                let out = f(&mut lite)?;
                tx.commit()?;
                Ok(out)
            }
            Conn::Postgres { runtime, client, url } => {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    *client = None;
                    *client = Some(runtime.block_on(crate::sink::connect_postgres(url))?);
                }
                let client = client.as_mut().expect("connected above");
                let result = runtime.block_on(async {
                    let tx = client.transaction().await?;
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REGISTER_LOCK]).await?;
                    Ok::<_, anyhow::Error>(tx)
                });
                let tx = result?;
                let mut pg = Pg { runtime, tx: Some(tx) };
                let out = f(&mut pg)?;
                let tx = pg.tx.take().expect("the transaction");
                runtime.block_on(tx.commit())?;
                Ok(out)
            }
        }
    }
}

struct Lite<'a>(&'a rusqlite::Transaction<'a>);

fn lite_params(params: &[Val]) -> Vec<rusqlite::types::Value> {
    params
        .iter()
        .map(|p| match p {
            Val::I(i) => rusqlite::types::Value::Integer(*i),
            Val::S(s) => rusqlite::types::Value::Text(s.clone()),
            Val::Null => rusqlite::types::Value::Null,
        })
        .collect()
}

impl Tx for Lite<'_> {
    fn rows(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>> {
        let mut statement = self.0.prepare_cached(sql)?;
        let width = statement.column_count();
        let rows = statement.query_map(rusqlite::params_from_iter(lite_params(params)), |row| {
            (0..width)
                .map(|i| {
                    Ok(match row.get::<_, rusqlite::types::Value>(i)? {
                        rusqlite::types::Value::Integer(v) => Val::I(v),
                        rusqlite::types::Value::Text(s) => Val::S(s),
                        _ => Val::Null,
                    })
                })
                .collect::<rusqlite::Result<Vec<Val>>>()
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<()> {
        self.0.execute(sql, rusqlite::params_from_iter(lite_params(params)))?;
        Ok(())
    }
}

struct Pg<'a> {
    runtime: &'a tokio::runtime::Runtime,
    tx: Option<tokio_postgres::Transaction<'a>>,
}

fn pg_params(params: &[Val]) -> Vec<Box<dyn tokio_postgres::types::ToSql + Sync + Send>> {
    params
        .iter()
        .map(|p| -> Box<dyn tokio_postgres::types::ToSql + Sync + Send> {
            match p {
                Val::I(i) => Box::new(*i),
                Val::S(s) => Box::new(s.clone()),
                Val::Null => Box::new(None::<String>),
            }
        })
        .collect()
}

impl Tx for Pg<'_> {
    fn rows(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Vec<Val>>> {
        let tx = self.tx.as_ref().expect("the transaction");
        let boxed = pg_params(params);
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = boxed.iter().map(|b| &**b as _).collect();
        let rows = self.runtime.block_on(tx.query(sql, &refs))?;
        Ok(rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| match row.columns()[i].type_() {
                        &tokio_postgres::types::Type::INT8 => row.get::<_, Option<i64>>(i).map_or(Val::Null, Val::I),
                        &tokio_postgres::types::Type::INT4 => {
                            row.get::<_, Option<i32>>(i).map_or(Val::Null, |v| Val::I(v.into()))
                        }
                        _ => row.get::<_, Option<String>>(i).map_or(Val::Null, Val::S),
                    })
                    .collect()
            })
            .collect())
    }

    fn exec(&mut self, sql: &str, params: &[Val]) -> Result<()> {
        let tx = self.tx.as_ref().expect("the transaction");
        let boxed = pg_params(params);
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = boxed.iter().map(|b| &**b as _).collect();
        self.runtime.block_on(tx.execute(sql, &refs))?;
        Ok(())
    }
}
