//! The embedded sink: SQLite with the same transactional semantics as PostgreSQL. One
//! checkpoint is one `BEGIN IMMEDIATE … COMMIT`; upserts write absolute values.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::types::Value;
use rusqlite::{params, Connection, Transaction};
use weir_sdk::ColumnType;

use super::partials::{self, Merger};
use super::schema::{self, quote, Dialect, Existing, Upsert};
use super::{Cell, Checkpoint, Deployment, Restored, Sink, StoredPartition, TableSchema, WindowRow, WindowState};
use crate::window::Window;

const BOOKKEEPING: &str = r#"
CREATE TABLE IF NOT EXISTS weir_checkpoints (
    pipeline TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source TEXT NOT NULL,
    next_offset INTEGER NOT NULL,
    max_event_ms INTEGER,
    last_active_ms INTEGER,
    watermark INTEGER,
    plugins TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, source_partition)
);
CREATE TABLE IF NOT EXISTS weir_window_state (
    pipeline TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end INTEGER NOT NULL,
    key TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    state BLOB NOT NULL,
    revision INTEGER NOT NULL,
    is_final INTEGER NOT NULL,
    PRIMARY KEY (pipeline, window_start, window_end, key, source_partition)
);
CREATE INDEX IF NOT EXISTS weir_window_state_by_key ON weir_window_state (pipeline, key, window_start);
CREATE TABLE IF NOT EXISTS weir_partitions (
    pipeline TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    label TEXT NOT NULL,
    PRIMARY KEY (pipeline, source_partition)
);
CREATE TABLE IF NOT EXISTS weir_hosts (
    pipeline TEXT NOT NULL,
    holder TEXT NOT NULL,
    role TEXT NOT NULL,
    admin TEXT,
    heartbeat_ms INTEGER NOT NULL,
    version TEXT NOT NULL,
    consumer_group TEXT,
    plugins TEXT NOT NULL,
    partitions TEXT NOT NULL,
    records INTEGER NOT NULL,
    lag INTEGER,
    events_per_s REAL NOT NULL,
    proposal TEXT,
    verdict TEXT,
    PRIMARY KEY (pipeline, holder)
);
CREATE TABLE IF NOT EXISTS weir_dead_letters (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    plugin TEXT NOT NULL,
    digest TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset INTEGER NOT NULL,
    raw BLOB NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (pipeline, source_partition, source_offset, plugin)
);
CREATE TABLE IF NOT EXISTS weir_late_events (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset INTEGER NOT NULL,
    event_time TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    raw BLOB NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (pipeline, source_partition, source_offset, window_start)
);
CREATE TABLE IF NOT EXISTS weir_components (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS weir_deployments (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    stage TEXT NOT NULL,
    plugin TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES weir_components (digest),
    how TEXT NOT NULL,
    state_version INTEGER,
    configured_digest TEXT NOT NULL,
    from_offsets TEXT NOT NULL,
    deployed_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS weir_checkpoint_log (
    id INTEGER PRIMARY KEY,
    pipeline TEXT NOT NULL,
    plugins TEXT NOT NULL,
    offsets TEXT NOT NULL,
    committed_at TEXT NOT NULL,
    lookups TEXT
);
CREATE TABLE IF NOT EXISTS weir_lookups (
    pipeline TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    rows INTEGER NOT NULL,
    content TEXT NOT NULL,
    loaded_at TEXT NOT NULL,
    PRIMARY KEY (pipeline, name, version)
);
"#;

/// A SQLite database file.
pub struct SqliteSink {
    pub(super) conn: Connection,
    table: Option<TableSchema>,
    merger: Option<Box<dyn Merger>>,
    merged: Vec<WindowRow>,
    fence: super::fence::Fence,
}

/// Before partial states, a window and key had one state whatever its partition; SQLite
/// changes a primary key only by copying the table.
/// A checkpoint log from before lookups gains their column, deployments from before
/// automatic rollbacks their reason.
fn migrate_checkpoint_log(conn: &Connection) -> Result<()> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('weir_checkpoint_log') WHERE name = 'lookups'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE weir_checkpoint_log ADD COLUMN lookups TEXT")
            .context("giving weir_checkpoint_log its lookups column")?;
    }
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('weir_deployments') WHERE name = 'reason'",
        [],
        |r| r.get(0),
    )?;
    if !has {
        conn.execute_batch("ALTER TABLE weir_deployments ADD COLUMN reason TEXT")
            .context("giving weir_deployments its reason column")?;
    }
    Ok(())
}

fn migrate_window_state(conn: &Connection) -> Result<()> {
    let keyed_by_partition: bool = conn.query_row(
        "SELECT pk > 0 FROM pragma_table_info('weir_window_state') WHERE name = 'source_partition'",
        [],
        |r| r.get(0),
    )?;
    if !keyed_by_partition {
        conn.execute_batch(
            "BEGIN IMMEDIATE; ALTER TABLE weir_window_state RENAME TO weir_window_state_before; DROP INDEX weir_window_state_by_key;",
        )?;
        conn.execute_batch(BOOKKEEPING)?;
        conn.execute_batch(
            "INSERT INTO weir_window_state SELECT * FROM weir_window_state_before; DROP TABLE weir_window_state_before; COMMIT;",
        )
        .context("giving weir_window_state a partial state per partition")?;
    }
    Ok(())
}

pub(super) fn columns_of(conn: &Connection, name: &str) -> Result<Vec<Existing>> {
    Ok(conn
        .prepare(&format!("PRAGMA table_info({})", quote(name)))?
        .query_map([], |r| Ok(Existing { name: r.get(1)?, ty: r.get(2)?, primary_key: r.get::<_, i64>(5)? > 0 }))?
        .collect::<Result<_, _>>()?)
}

/// What it takes to make `table` fit, read through `conn` (a transaction, too).
pub(super) fn plan_on(conn: &Connection, table: &TableSchema) -> Result<Vec<String>> {
    schema::plan(table, &columns_of(conn, &table.name)?, &DIALECT)
}

pub(super) fn iso(ms: i64) -> String {
    weir_sdk::time::format_iso8601(ms)
}

pub(super) fn now_iso() -> String {
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    iso(ms)
}

/// The SQL type a column maps to.
fn sqlite_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Int64 | ColumnType::Boolean => "INTEGER",
        ColumnType::Float64 => "REAL",
        ColumnType::Text | ColumnType::TimestampMs => "TEXT",
    }
}

const DIALECT: Dialect =
    Dialect { type_of: sqlite_type, window: "TEXT", boolean: "INTEGER", integer: "INTEGER", timestamp: "TEXT" };

pub(super) fn to_sql(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Int(v) => Value::Integer(*v),
        Cell::Float(v) => Value::Real(*v),
        Cell::Bool(v) => Value::Integer(i64::from(*v)),
        // As PostgreSQL stores it: both sinks hold the same (keys with a NUL never get here).
        Cell::Text(v) => Value::Text(super::storable(v).into_owned()),
        Cell::Timestamp(v) => Value::Text(iso(*v)),
    }
}

impl SqliteSink {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening SQLite database {}", path.display()))?;
        // WAL survives a killed process with every committed transaction intact.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(BOOKKEEPING).context("creating weir's bookkeeping tables")?;
        conn.execute_batch(&super::quality::tables("TEXT", "INTEGER", "REAL"))
            .context("creating weir's quality tables")?;
        conn.execute_batch(&super::outbox::tables("INTEGER")).context("creating weir's outbox")?;
        migrate_window_state(&conn)?;
        migrate_checkpoint_log(&conn)?;
        Ok(SqliteSink { conn, table: None, merger: None, merged: Vec::new(), fence: Default::default() })
    }

    /// Opens the database at `path` read-only, to check it without changing it (`weir
    /// validate`): `None` if it does not exist yet.
    pub fn inspect(path: &Path) -> Result<Option<Self>> {
        if !path.exists() {
            return Ok(None);
        }
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("opening SQLite database {} read-only", path.display()))?;
        Ok(Some(SqliteSink { conn, table: None, merger: None, merged: Vec::new(), fence: Default::default() }))
    }

    /// The connection, for tests and `weir replay`.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn table(&self) -> Result<&TableSchema> {
        self.table.as_ref().context("the sink was not prepared")
    }

    /// The upsert of `table`; `merged` rows (see `partials.rs`) keep their revision and
    /// finality in the table.
    fn upsert_sql(table: &TableSchema, merged: bool) -> String {
        let Upsert { columns, conflict, mut updates } = Upsert::of(table);
        if merged {
            updates = partials::merged_updates(table, &quote(&table.name));
        }
        let placeholders = vec!["?"; columns.len() + 1].join(", ");
        format!(
            "INSERT INTO {} ({}, updated_at) VALUES ({placeholders}) ON CONFLICT ({conflict}) DO UPDATE SET {updates}",
            quote(&table.name),
            columns.join(", ")
        )
    }

    /// Deletes the rows of windows `r` (window, key) from `table`: sessions merged into others.
    pub(super) fn delete_rows(tx: &Transaction, table: &TableSchema, r: &[(Window, Vec<Cell>)]) -> Result<()> {
        let keys: Vec<String> = table.keys.iter().map(|c| format!("{} = ?", quote(&c.name))).collect();
        let mut delete = tx.prepare_cached(&format!(
            "DELETE FROM {} WHERE window_start = ? AND window_end = ? AND {}",
            quote(&table.name),
            keys.join(" AND ")
        ))?;
        for (window, key) in r {
            let mut values = vec![Value::Text(iso(window.start)), Value::Text(iso(window.end))];
            values.extend(key.iter().map(to_sql));
            delete.execute(rusqlite::params_from_iter(values)).context("deleting the rows of a merged session")?;
        }
        Ok(())
    }

    pub(super) fn upsert(
        tx: &Transaction,
        table: &TableSchema,
        rows: &[WindowRow],
        now: &str,
        merged: bool,
    ) -> Result<()> {
        let mut upsert = tx.prepare_cached(&Self::upsert_sql(table, merged))?;
        for row in rows {
            let mut values = vec![Value::Text(iso(row.window.start)), Value::Text(iso(row.window.end))];
            values.extend(row.key.iter().map(to_sql));
            values.extend(row.values.iter().map(to_sql));
            values.extend([
                Value::Integer(i64::from(row.is_final)),
                Value::Integer(row.revision),
                Value::Text(now.to_string()),
            ]);
            upsert
                .execute(rusqlite::params_from_iter(values))
                .with_context(|| format!("upserting into {}", table.name))?;
        }
        Ok(())
    }
}

impl SqliteSink {
    /// Window states of the pipeline bound to `?1` matching `filter`.
    fn window_states(
        &self,
        filter: &str,
        params: impl rusqlite::Params,
        table: &TableSchema,
    ) -> Result<Vec<WindowState>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT window_start, window_end, key, source_partition, state, revision, is_final FROM weir_window_state \
             WHERE pipeline = ?1 {filter} ORDER BY window_start, key"
        ))?;
        let rows = stmt.query_map(params, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i32>(3)?,
                r.get::<_, Vec<u8>>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, bool>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (start, end, key, partition, state, revision, is_final) = row?;
            Ok(WindowState {
                window: Window { start, end },
                key: super::key_from_json(&key, &table.keys)?,
                partition,
                state,
                revision,
                is_final,
            })
        })
        .collect()
    }
}

impl Sink for SqliteSink {
    fn next_offsets(&mut self, pipeline: &str) -> Result<Vec<(i32, i64)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT source_partition, next_offset FROM weir_checkpoints WHERE pipeline = ? ORDER BY 1")?;
        let offsets = stmt.query_map([pipeline], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        Ok(offsets)
    }

    fn take_merged(&mut self) -> Vec<WindowRow> {
        std::mem::take(&mut self.merged)
    }

    fn latest_rows(&mut self) -> Result<(Vec<WindowRow>, i64)> {
        super::latest::sqlite(&self.conn, self.table()?)
    }

    fn set_merger(&mut self, merger: Box<dyn Merger>) -> Result<()> {
        self.merger = Some(merger);
        // Each checkpoint looks for the rows that became final: only the open ones are indexed.
        self.conn.execute_batch(&partials::open_rows_index(self.table()?))?;
        Ok(())
    }

    fn all_windows(&mut self, pipeline: &str) -> Result<Vec<WindowState>> {
        let table = self.table()?.clone();
        self.window_states("", params![pipeline], &table)
    }

    fn windows_overlapping(&mut self, pipeline: &str, wanted: &[(Vec<Cell>, Window)]) -> Result<Vec<WindowState>> {
        let table = self.table()?.clone();
        let mut found = Vec::new();
        for (key, w) in wanted {
            let filter = "AND key = ?2 AND window_start < ?3 AND window_end > ?4";
            found.extend(self.window_states(
                filter,
                params![pipeline, super::key_json(key), w.end, w.start],
                &table,
            )?);
        }
        Ok(found)
    }

    fn plan(&mut self, table: &TableSchema) -> Result<Vec<String>> {
        plan_on(&self.conn, &super::sqlite_versions::resolve(&self.conn, table)?)
    }

    fn prepare_bookkeeping(&mut self) -> Result<()> {
        // Made when the database is opened.
        Ok(())
    }

    fn prepare(&mut self, table: &TableSchema) -> Result<()> {
        // A versioned table's name is a view: the pipeline writes its latest version.
        let table = super::sqlite_versions::resolve(&self.conn, table)?;
        for sql in plan_on(&self.conn, &table)? {
            self.conn.execute_batch(&sql).with_context(|| format!("preparing table {}: {sql}", table.name))?;
        }
        self.table = Some(table);
        Ok(())
    }

    fn restore(&mut self, pipeline: &str, partitions: &[i32]) -> Result<Option<Restored>> {
        let table = self.table()?.clone();
        let wanted = serde_json::to_string(partitions)?;
        let mut stmt = self.conn.prepare(
            "SELECT source_partition, next_offset, max_event_ms, last_active_ms, watermark, source FROM weir_checkpoints \
             WHERE pipeline = ? AND source_partition IN (SELECT value FROM json_each(?)) ORDER BY source_partition",
        )?;
        let stored = stmt
            .query_map(params![pipeline, wanted], |r| {
                Ok(StoredPartition {
                    partition: r.get(0)?,
                    next_offset: r.get(1)?,
                    max_event_ms: r.get(2)?,
                    last_active_ms: r.get(3)?,
                    watermark: r.get(4)?,
                    source: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        self.fence.restored(partitions, stored.iter().map(|s| (s.partition, s.next_offset)));
        if stored.is_empty() {
            return Ok(None);
        }
        let states = self.window_states(
            "AND NOT is_final AND source_partition IN (SELECT value FROM json_each(?2))",
            params![pipeline, wanted],
            &table,
        )?;
        Ok(Some(Restored::from_partitions(stored, states)))
    }

    fn last_deployment(&mut self, pipeline: &str) -> Result<Option<i64>> {
        Ok(self.conn.query_row("SELECT max(id) FROM weir_deployments WHERE pipeline = ?", [pipeline], |r| r.get(0))?)
    }

    fn deployments(&mut self, pipeline: &str) -> Result<Vec<Deployment>> {
        let mut stmt = self.conn.prepare(
            "SELECT d.stage, d.plugin, d.digest, d.how, d.state_version, d.configured_digest, d.from_offsets, d.deployed_ms, c.bytes, d.reason \
             FROM weir_deployments d JOIN weir_components c USING (digest) WHERE d.pipeline = ? ORDER BY d.id",
        )?;
        let rows = stmt.query_map([pipeline], |r| {
            Ok((
                Deployment {
                    stage: r.get(0)?,
                    plugin: r.get(1)?,
                    digest: r.get(2)?,
                    how: r.get(3)?,
                    state_version: r.get(4)?,
                    configured_digest: r.get(5)?,
                    from_offsets: Vec::new(),
                    at_ms: r.get(7)?,
                    bytes: std::sync::Arc::new(r.get(8)?),
                    reason: r.get(9)?,
                },
                r.get::<_, String>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (mut d, offsets) = row?;
            d.from_offsets = Deployment::offsets_from_json(&offsets)?;
            Ok(d)
        })
        .collect()
    }

    fn commit(&mut self, pipeline: &str, checkpoint: &Checkpoint) -> Result<()> {
        let current = self.table()?.clone();
        let table = match &checkpoint.table {
            // A new version of a versioned table, or the table gaining columns.
            Some(table) if checkpoint.new_table_version => super::versions::next(table, &current.name),
            Some(table) => TableSchema { name: current.name.clone(), ..table.clone() },
            None => current,
        };
        let merger = match (checkpoint.partials, self.merger.as_deref_mut()) {
            (false, _) => None,
            (true, Some(merger)) => Some(merger),
            (true, None) => anyhow::bail!("a checkpoint of partial states came without an aggregator to merge them"),
        };
        // IMMEDIATE: the group's checkpoints one at a time, each merging what the others committed.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let watched = serde_json::to_string(&self.fence.watched(checkpoint))?;
        let held = tx
            .prepare(
                "SELECT source_partition, next_offset FROM weir_checkpoints \
                 WHERE pipeline = ? AND source_partition IN (SELECT value FROM json_each(?))",
            )?
            .query_map(params![pipeline, watched], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<Vec<(i32, i64)>, _>>()?;
        self.fence.check(checkpoint, &held)?;
        Self::write(&tx, pipeline, &table, checkpoint)?;
        let (merged, finalized) = match merger {
            Some(merger) => super::sqlite_partials::merge(&tx, pipeline, &table, checkpoint, merger)?,
            None => Default::default(),
        };
        Self::write_quality(&tx, pipeline, &table.name, checkpoint, &now_iso())?;
        if checkpoint.outbox {
            let changed: Vec<WindowRow> = checkpoint.rows.iter().chain(&merged).chain(&finalized).cloned().collect();
            super::outbox::sqlite_append(&tx, pipeline, &changed)?;
        }
        tx.commit().context("committing the checkpoint")?;
        self.merged = merged;
        self.table = Some(table);
        self.fence.committed(checkpoint);
        Ok(())
    }

    /// A full disk and a database another process holds pass by themselves (space freed,
    /// the lock let go): the checkpoint waits and is tried again, whole.
    fn deliver(&mut self, pipeline: &str, outputs: &mut [Box<dyn super::Output>]) -> Result<u64> {
        self.deliver_outbox(pipeline, outputs)
    }

    fn is_transient(&self, error: &anyhow::Error) -> bool {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, DiskFull};
        error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<rusqlite::Error>(),
                Some(rusqlite::Error::SqliteFailure(e, _)) if matches!(e.code, DiskFull | DatabaseBusy | DatabaseLocked)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{DeadLetter, DeadLetterKind};
    use weir_sdk::ColumnDef;

    fn schema() -> TableSchema {
        TableSchema {
            name: "rides_city_minute".into(),
            keys: vec![ColumnDef::new("city", ColumnType::Text)],
            values: vec![
                ColumnDef::new("trips", ColumnType::Int64),
                ColumnDef::nullable("avg_fare", ColumnType::Float64),
            ],
        }
    }

    fn row(trips: i64, fare: f64) -> WindowRow {
        WindowRow {
            window: Window { start: 0, end: 60_000 },
            key: vec![Cell::Text("Oslo".into())],
            values: vec![Cell::Int(trips), Cell::Float(fare)],
            is_final: false,
            revision: 1,
        }
    }

    #[test]
    fn a_window_state_table_from_before_partials_gets_a_state_per_partition_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE weir_window_state (pipeline TEXT NOT NULL, window_start INTEGER NOT NULL, \
             window_end INTEGER NOT NULL, key TEXT NOT NULL, source_partition INTEGER NOT NULL, state BLOB NOT NULL, \
             revision INTEGER NOT NULL, is_final INTEGER NOT NULL, PRIMARY KEY (pipeline, window_start, window_end, key)); \
             INSERT INTO weir_window_state VALUES ('p', 0, 60000, '[\"Oslo\"]', 0, x'01', 1, 0);",
        )
        .unwrap();
        drop(old);
        let sink = SqliteSink::open(&path).unwrap();
        let second = "INSERT INTO weir_window_state VALUES ('p', 0, 60000, '[\"Oslo\"]', 1, x'02', 1, 0)";
        sink.connection().execute(second, []).expect("a second partition's state of the same window");
        let n: i64 = sink.connection().query_row("SELECT count(*) FROM weir_window_state", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn checkpoints_upsert_absolute_values_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weir.db");
        let mut sink = SqliteSink::open(&path).unwrap();
        sink.prepare(&schema()).unwrap();
        assert_eq!(sink.restore("rides", &[0]).unwrap(), None);
        let dead = DeadLetter {
            kind: DeadLetterKind::Malformed,
            reason: "truncated".into(),
            plugin: "json_parser".into(),
            digest: "sha256:x".into(),
            partition: 0,
            offset: 7,
            raw: b"{\"ci".to_vec(),
        };
        let state = WindowState {
            window: Window { start: 0, end: 60_000 },
            key: vec![Cell::Text("Oslo".into())],
            partition: 0,
            state: vec![1, 2],
            revision: 1,
            is_final: false,
        };
        let first = Checkpoint {
            rows: vec![row(2, 10.0)],
            states: vec![state.clone()],
            offsets: vec![(0, 10)],
            watermark: Some(5),
            dead_letters: vec![dead.clone()],
            ..Default::default()
        };
        sink.commit("rides", &first).unwrap();
        // The same checkpoint again (a replay) changes nothing; a later one overwrites.
        sink.commit("rides", &first).unwrap();
        sink.commit("rides", &Checkpoint { rows: vec![row(3, 12.0)], offsets: vec![(0, 12)], ..Default::default() })
            .unwrap();
        let (trips, fare): (i64, f64) = sink
            .connection()
            .query_row("SELECT trips, avg_fare FROM rides_city_minute", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((trips, fare), (3, 12.0));
        let dead_count: i64 =
            sink.connection().query_row("SELECT count(*) FROM weir_dead_letters", [], |r| r.get(0)).unwrap();
        assert_eq!(dead_count, 1);

        let mut reopened = SqliteSink::open(&path).unwrap();
        reopened.prepare(&schema()).unwrap();
        let restored = reopened.restore("rides", &[0, 1]).unwrap().unwrap();
        assert_eq!(restored.offsets, vec![(0, 12)]);
        assert_eq!(restored.states, vec![state]);
    }

    #[test]
    fn an_incompatible_table_is_refused_and_a_new_output_is_added() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SqliteSink::open(&dir.path().join("weir.db")).unwrap();
        sink.prepare(&schema()).unwrap();
        let mut more = schema();
        more.values.push(ColumnDef::nullable("max_fare", ColumnType::Float64));
        sink.prepare(&more).unwrap();
        let mut rekeyed = schema();
        rekeyed.keys = vec![ColumnDef::new("driver_id", ColumnType::Text)];
        let err = sink.prepare(&rekeyed).unwrap_err().to_string();
        assert!(err.contains("primary key") && err.contains("driver_id"), "{err}");
        let mut retyped = schema();
        retyped.values[0] = ColumnDef::new("trips", ColumnType::Text);
        let err = sink.prepare(&retyped).unwrap_err().to_string();
        assert!(err.contains("trips") && err.contains("INTEGER"), "{err}");
    }
}
