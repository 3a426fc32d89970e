//! Sinks: where a checkpoint lands. A checkpoint is one transaction holding the changed
//! window rows, every partition's next offset, the watermark, the open windows' state,
//! and the new dead letters and late events. Because they commit together, a restart
//! from the stored offsets never loses or repeats an event's effect.

mod delta;
mod delta_compact;
mod delta_store;
mod expire;
mod outbox;
mod output;
mod redis;
pub use delta::{Compaction, DeltaOutput};
pub use delta_store::check_options as check_delta_storage;
pub use output::Output;
pub use redis::RedisOutput;
mod fence;
mod latest;
pub use expire::Kept;
pub(crate) use expire::{expire_sql, keep_param};
mod partials;
mod postgres;
mod postgres_bookkeeping;
mod postgres_connect;
mod postgres_versions;
mod postgres_write;
mod versions;
pub(crate) use postgres_connect::connect as connect_postgres;
mod postgres_partials;
mod postgres_quality;
mod quality;
pub use quality::{
    delay_bucket, delay_columns, delay_quantile, Anomaly, OutputCheck, QualityRow, QualityStore, QualitySums,
    SlaMinute, SlaRecord, DELAY_BOUNDS_S, DELAY_BUCKETS,
};
mod schema;
mod sqlite;
mod sqlite_bookkeeping;
mod sqlite_partials;
mod sqlite_quality;
mod sqlite_versions;
mod sqlite_write;

pub use latest::COUNTED_ROWS;
pub use partials::Merger;
pub use postgres::PostgresSink;
pub use sqlite::SqliteSink;

use anyhow::{Context, Result};
use weir_sdk::{ColumnDef, ColumnType};

use crate::window::{PartitionClock, Window};

/// One typed value of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// Milliseconds since the epoch.
    Timestamp(i64),
}

/// The output table: window bounds, key columns, the aggregator's columns, and
/// `is_final`, `revision`, `updated_at`.
#[derive(Clone, Debug, PartialEq)]
pub struct TableSchema {
    /// The table's name.
    pub name: String,
    /// The key columns, from the parser's schema.
    pub keys: Vec<ColumnDef>,
    /// The aggregator's declared output columns.
    pub values: Vec<ColumnDef>,
}

/// One window row, with absolute values.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowRow {
    /// The window.
    pub window: Window,
    /// The key values, in `TableSchema::keys` order.
    pub key: Vec<Cell>,
    /// The aggregator's values, in `TableSchema::values` order.
    pub values: Vec<Cell>,
    /// Whether the watermark has closed the window.
    pub is_final: bool,
    /// 1 when first written; raised each time a final window is corrected.
    pub revision: i64,
}

/// An open window's state, kept in the sink so a restart resumes it.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowState {
    /// The window.
    pub window: Window,
    /// The key values.
    pub key: Vec<Cell>,
    /// The source partition whose events it holds; whoever owns that partition owns the window.
    pub partition: i32,
    /// The aggregator's opaque state.
    pub state: Vec<u8>,
    /// The window's revision so far.
    pub revision: i64,
    /// Whether it has been written as final already.
    pub is_final: bool,
}

/// Why a record is in the dead-letter store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadLetterKind {
    /// The parser could not parse it.
    Malformed,
    /// A validator rejected it.
    Rejected,
    /// A plugin failed on it (trap, timeout, memory).
    PluginFailure,
}

impl DeadLetterKind {
    /// The stored name.
    pub fn name(self) -> &'static str {
        match self {
            DeadLetterKind::Malformed => "malformed",
            DeadLetterKind::Rejected => "rejected",
            DeadLetterKind::PluginFailure => "plugin_failure",
        }
    }
}

/// A record that could not be processed, with everything needed to replay it.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// Why.
    pub kind: DeadLetterKind,
    /// The reason, naming the field or rule.
    pub reason: String,
    /// The plugin that refused or failed on it.
    pub plugin: String,
    /// That plugin's digest.
    pub digest: String,
    /// The source partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The raw bytes.
    pub raw: Vec<u8>,
}

/// An event later than the watermark allows.
#[derive(Clone, Debug, PartialEq)]
pub struct LateEvent {
    /// The source partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// Its event time.
    pub event_ms: i64,
    /// The (closed) window it belongs to.
    pub window: Window,
    /// The raw bytes.
    pub raw: Vec<u8>,
}

/// Everything one checkpoint commits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// What newly assigned partitions stand for (a file's path), for people reading the
    /// lanes: a file's partition is a hash of its name.
    pub labels: Vec<(i32, String)>,
    /// Session windows a merged session replaced: their rows and state are deleted,
    /// before `rows` are written.
    pub retracted: Vec<(Window, Vec<Cell>)>,
    /// With `partials`: the partial sessions of a partition that a merged one replaced,
    /// by window, key and partition. Their states are deleted, and the rows of their
    /// keys recomputed from what remains.
    pub retracted_partials: Vec<(Window, Vec<Cell>, i32)>,
    /// Window rows to upsert.
    pub rows: Vec<WindowRow>,
    /// Open windows whose state changed.
    pub states: Vec<WindowState>,
    /// The next offset to read, per partition.
    pub offsets: Vec<(i32, i64)>,
    /// The watermark and the partitions' clocks.
    pub watermark: Option<i64>,
    /// Per-partition event-time progress.
    pub clocks: Vec<(i32, PartitionClock)>,
    /// New dead letters.
    pub dead_letters: Vec<DeadLetter>,
    /// New late events.
    pub late_events: Vec<LateEvent>,
    /// Which plugin versions processed this checkpoint's records (`name@digest`, …).
    pub plugins: String,
    /// What the offsets are offsets of, e.g. `kafka topic trips`.
    pub source: String,
    /// Late events replayed by this checkpoint: removed from the late lane in the same
    /// transaction that writes their effect, so a replay happens exactly once.
    pub replayed_late: Vec<i64>,
    /// Dead letters replayed by this checkpoint (a record that fails again is written back).
    pub replayed_dead: Vec<i64>,
    /// Plugin versions that processed this checkpoint's records and no earlier ones: a
    /// switch is committed together with the first records of the new version.
    pub deployments: Vec<Deployment>,
    /// The rows a shadow version made of the same records, for its own table.
    pub shadow: Option<ShadowRows>,
    /// The output table as a plugin switched in with this checkpoint's records writes it,
    /// when it adds columns: they are added (`ALTER TABLE … ADD COLUMN`) in this
    /// checkpoint's transaction, the one that records the switch.
    pub table: Option<TableSchema>,
    /// `table` breaks the old table's readers and the pipeline writes versioned tables
    /// (`[sink] versioned`): it goes into a new version table, behind a view of the old
    /// name (`versions.rs`).
    pub new_table_version: bool,
    /// The version of each lookup table this checkpoint's records were enriched with,
    /// as JSON (`{"cities": "sha256:…"}`); empty without lookups.
    pub lookups: String,
    /// Lookup versions no earlier checkpoint stored: kept in `weir_lookups`.
    pub lookup_versions: Vec<crate::lookup::LookupVersion>,
    /// `states` are partial states per source partition, and the sink writes the rows
    /// of their windows by merging every partition's partial (see `partials.rs`);
    /// `rows` is empty.
    pub partials: bool,
    /// Each source partition's quality counts per quality window since the last
    /// checkpoint (`[quality]`), added to `weir_quality`.
    pub quality: Vec<QualityRow>,
    /// The windows whose output rows are recounted against their ranges (`[quality]`).
    pub output_check: Option<OutputCheck>,
    /// The pipeline delivers its rows to outputs (`[sink.delta]`, `[sink.redis]`): the
    /// rows this checkpoint changed go to `weir_outbox` in its transaction (`output.rs`).
    pub outbox: bool,
}

/// What a candidate running in the shadow of a stage made of a checkpoint's records.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowRows {
    /// Its table: the output table's schema under another name.
    pub table: TableSchema,
    /// The stage it shadows.
    pub stage: String,
    /// The version running live in that stage, and the candidate, `name@digest`.
    pub live: String,
    /// The candidate.
    pub candidate: String,
    /// The first checkpoint of this shadow: the table is created if need be, and emptied.
    pub fresh: bool,
    /// When it started, ms since the epoch.
    pub started_ms: i64,
    /// The window rows it changed.
    pub rows: Vec<WindowRow>,
}

/// A plugin version switched into a stage, as `weir_deployments` records it.
#[derive(Clone, Debug, PartialEq)]
pub struct Deployment {
    /// The stage, as the pipeline file names it (`parser`, `validators[0]`, …).
    pub stage: String,
    /// The plugin's name.
    pub plugin: String,
    /// Its digest.
    pub digest: String,
    /// How it came: `configured` (the pipeline file, at start), `deploy`, `rollback`, `watch`, `promote`.
    pub how: String,
    /// An aggregator's state version.
    pub state_version: Option<u32>,
    /// The digest of the file the pipeline names for the stage, when this was switched in:
    /// a restart resumes a deployed version only while that file is unchanged.
    pub configured_digest: String,
    /// Where the version took over: each partition's first offset it processed.
    pub from_offsets: Vec<(i32, i64)>,
    /// When it was switched in, ms since the epoch.
    pub at_ms: i64,
    /// The component, so that a restart or a rollback can load it again.
    pub bytes: std::sync::Arc<Vec<u8>>,
    /// Why, where weir decided it: an automatic rollback names what the canary saw.
    pub reason: Option<String>,
}

impl Deployment {
    /// `from_offsets` as stored: a JSON array of `[partition, offset]`.
    pub(crate) fn offsets_json(&self) -> String {
        serde_json::to_string(&self.from_offsets).unwrap_or_default()
    }

    /// Reads stored offsets back.
    pub(crate) fn offsets_from_json(text: &str) -> Result<Vec<(i32, i64)>> {
        serde_json::from_str(text).with_context(|| format!("stored deployment offsets {text}"))
    }
}

/// A stored late event or dead letter, to replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// Its row id.
    pub id: i64,
    /// The source partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The raw bytes.
    pub raw: Vec<u8>,
    /// For dead letters: the kind (`malformed`, `rejected`, `plugin_failure`).
    pub kind: String,
    /// For dead letters: the reason.
    pub reason: String,
    /// For late events: the window the record was late for.
    pub window: Option<Window>,
    /// For dead letters: the plugin that refused it (or `source`, `watermark`).
    pub plugin: String,
    /// When it was stored, ms since the epoch.
    pub stored_ms: i64,
    /// For late events: the event time.
    pub event_ms: Option<i64>,
}

/// A process working on a pipeline, as it records itself in `weir_hosts` with each
/// heartbeat: its claim to work on the pipeline (a lease), and what the group's status
/// pages show of it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Lease {
    /// Who: `hostname:pid`.
    pub holder: String,
    /// `run` or `replay`.
    pub role: String,
    /// The holder's admin API, if it serves one.
    pub admin: Option<String>,
    /// The last renewal, ms since the epoch.
    pub heartbeat_ms: i64,
    /// The weir version it runs.
    pub version: String,
    /// Its Kafka consumer group, for a Kafka source.
    pub group: Option<String>,
    /// The plugin versions it runs, `name@digest`, in stage order.
    pub plugins: String,
    /// The source partitions it owns.
    pub partitions: Vec<i32>,
    /// Records it has read since it started.
    pub records: u64,
    /// Records of its partitions not read yet, if known.
    pub lag: Option<u64>,
    /// Records per second over its last few seconds.
    pub events_per_s: f64,
    /// A plugin version it asks the group about before switching to it (`pipeline/group.rs`).
    pub proposal: Option<String>,
    /// Its answer to the latest proposal of another host.
    pub verdict: Option<String>,
}

/// The columns of `weir_hosts`, in the order both sinks write and read them.
pub(crate) const HOST_COLUMNS: &str = "pipeline, holder, role, admin, heartbeat_ms, version, consumer_group, plugins, \
     partitions, records, lag, events_per_s, proposal, verdict";

/// What a heartbeat updates in `weir_hosts`.
pub(crate) const HOST_UPDATES: &str = "role = excluded.role, admin = excluded.admin, heartbeat_ms = excluded.heartbeat_ms, \
     version = excluded.version, consumer_group = excluded.consumer_group, plugins = excluded.plugins, \
     partitions = excluded.partitions, records = excluded.records, lag = excluded.lag, events_per_s = excluded.events_per_s, \
     proposal = excluded.proposal, verdict = excluded.verdict";

/// Partitions as `weir_hosts` stores them: `0,1,2`.
pub(crate) fn partitions_text(partitions: &[i32]) -> String {
    partitions.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// The partitions of [`partitions_text`] read back (anything unreadable is skipped).
pub(crate) fn partitions_from_text(text: &str) -> Vec<i32> {
    text.split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

/// Which store to replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// `weir_late_events`.
    Late,
    /// `weir_dead_letters`.
    DeadLetters,
}

impl Checkpoint {
    /// Each partition's next offset with its clock, as stored per partition.
    pub fn partitions(&self) -> impl Iterator<Item = (i32, i64, Option<PartitionClock>)> + '_ {
        self.offsets.iter().map(|&(p, offset)| {
            let clock = self.clocks.iter().find(|(q, _)| *q == p).map(|(_, c)| *c);
            (p, offset, clock)
        })
    }
}

/// One partition's row of `weir_checkpoints`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredPartition {
    /// The partition.
    pub partition: i32,
    /// The next offset to read.
    pub next_offset: i64,
    /// Its clock's largest event time.
    pub max_event_ms: Option<i64>,
    /// Its clock's last activity.
    pub last_active_ms: Option<i64>,
    /// The pipeline watermark when it was last committed.
    pub watermark: Option<i64>,
    /// What the offset is an offset of.
    pub source: String,
}

/// What a restart, or a newly assigned partition, resumes from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Restored {
    /// The next offset per partition.
    pub offsets: Vec<(i32, i64)>,
    /// The lowest watermark any of these partitions was committed under: never judging
    /// an event later than its previous owner did keeps lateness deterministic.
    pub watermark: Option<i64>,
    /// The highest watermark any of them was committed under: windows up to it may have
    /// been written as final.
    pub latest_watermark: Option<i64>,
    /// The partitions' clocks.
    pub clocks: Vec<(i32, PartitionClock)>,
    /// The open windows of these partitions.
    pub states: Vec<WindowState>,
    /// The sources the offsets were taken from.
    pub sources: Vec<String>,
}

impl Restored {
    /// Assembles what the sink stored for some partitions.
    pub fn from_partitions(stored: Vec<StoredPartition>, states: Vec<WindowState>) -> Self {
        Restored {
            offsets: stored.iter().map(|s| (s.partition, s.next_offset)).collect(),
            watermark: stored.iter().filter_map(|s| s.watermark).min(),
            latest_watermark: stored.iter().filter_map(|s| s.watermark).max(),
            clocks: stored
                .iter()
                .filter_map(|s| {
                    let clock = PartitionClock { max_event_ms: s.max_event_ms, last_active_ms: s.last_active_ms? };
                    Some((s.partition, clock))
                })
                .collect(),
            sources: {
                let mut sources: Vec<String> = stored.iter().map(|s| s.source.clone()).collect();
                sources.dedup();
                sources
            },
            states,
        }
    }
}

/// One row of `weir_checkpoint_log`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    /// `name@digest` of each stage's plugin, in pipeline order, comma-separated.
    pub plugins: String,
    /// The next offset of each partition the checkpoint wrote.
    pub offsets: Vec<(i32, i64)>,
    /// When it committed, RFC 3339 UTC.
    pub committed_at: String,
}

/// weir's bookkeeping tables, read and written outside a checkpoint: the dead letters and
/// late events (for replays and `weir dead-letters`), the leases of the processes working
/// on a pipeline, and what its partitions stand for.
pub trait Bookkeeping {
    /// Takes or renews `lease` on `pipeline`.
    fn renew(&mut self, pipeline: &str, lease: &Lease) -> Result<()>;
    /// Every lease on `pipeline`, stale ones included.
    fn leases(&mut self, pipeline: &str) -> Result<Vec<Lease>>;
    /// Deletes the rows `ids` of `lane`; returns how many were there.
    fn purge(&mut self, pipeline: &str, lane: Lane, ids: &[i64]) -> Result<u64>;
    /// What each partition of `pipeline` stands for, as recorded when it was assigned.
    fn labels(&mut self, pipeline: &str) -> Result<Vec<(i32, String)>>;
    /// Gives up `holder`'s lease on `pipeline`.
    fn give_up(&mut self, pipeline: &str, holder: &str) -> Result<()>;
    /// The stored late events or dead letters of `pipeline`, oldest first.
    fn stored(&mut self, pipeline: &str, lane: Lane) -> Result<Vec<Stored>>;
    /// Keeps a component's bytes by digest, so that other hosts can load it.
    fn store_component(&mut self, digest: &str, name: &str, bytes: &[u8]) -> Result<()>;
    /// A component's bytes by digest, if stored.
    fn component(&mut self, digest: &str) -> Result<Option<Vec<u8>>>;
    /// `pipeline`'s checkpoint log, oldest first: which plugin versions processed each
    /// checkpoint's records, the next offsets it left, and when it committed.
    fn checkpoint_log(&mut self, pipeline: &str) -> Result<Vec<LogRow>>;
    /// The lookup table versions the last checkpoint of `pipeline` committed at or before
    /// `at_ms` used, with their stored rows: `(name, version, content)`.
    fn lookups_as_of(&mut self, pipeline: &str, at_ms: i64) -> Result<Vec<(String, String, String)>>;
    /// Removes up to `limit` of `pipeline`'s rows of `lane` that are older than `before` or
    /// not among its newest `keep`, oldest first; returns how many went.
    fn expire(&mut self, pipeline: &str, lane: Kept, before: Option<i64>, keep: Option<u64>, limit: u64)
        -> Result<u64>;
}

/// A transactional sink, with its bookkeeping.
pub trait Sink: Bookkeeping + QualityStore {
    /// Creates weir's bookkeeping tables where they are missing.
    fn prepare_bookkeeping(&mut self) -> Result<()>;
    /// Creates the output and bookkeeping tables, or checks that existing ones fit.
    fn prepare(&mut self, table: &TableSchema) -> Result<()>;
    /// What `prepare` would change, without changing it: the statements to run (none
    /// when the table already fits), or the reason the table cannot be used.
    fn plan(&mut self, table: &TableSchema) -> Result<Vec<String>>;
    /// The last committed checkpoint of `partitions` of `pipeline`, if any of them has one.
    fn restore(&mut self, pipeline: &str, partitions: &[i32]) -> Result<Option<Restored>>;
    /// Commits one checkpoint of `pipeline` in one transaction.
    fn commit(&mut self, pipeline: &str, checkpoint: &Checkpoint) -> Result<()>;
    /// Every window state of `pipeline`, final ones included (replays correct those).
    fn all_windows(&mut self, pipeline: &str) -> Result<Vec<WindowState>>;
    /// The stored window states of each key that overlap its window, final ones included:
    /// a final window that an on-time record reaches again is corrected from these.
    fn windows_overlapping(&mut self, pipeline: &str, wanted: &[(Vec<Cell>, Window)]) -> Result<Vec<WindowState>>;
    /// Every version switched into a stage of `pipeline`, oldest first.
    fn deployments(&mut self, pipeline: &str) -> Result<Vec<Deployment>>;
    /// The id of the latest of them, if any: cheap, so hosts can look every heartbeat.
    fn last_deployment(&mut self, pipeline: &str) -> Result<Option<i64>>;
    /// The committed rows of the latest windows of the output table (oldest first), and
    /// how many rows the table holds.
    fn latest_rows(&mut self) -> Result<(Vec<WindowRow>, i64)>;
    /// The rows the last commit merged from partial states, taken once.
    fn take_merged(&mut self) -> Vec<WindowRow>;
    /// What merges partial states into rows, for checkpoints whose `partials` is set.
    fn set_merger(&mut self, merger: Box<dyn Merger>) -> Result<()>;
    /// The next offset of every partition of `pipeline` that has a checkpoint.
    fn next_offsets(&mut self, pipeline: &str) -> Result<Vec<(i32, i64)>>;
    /// Whether `error` (from this sink) may go away on a retry: a lost connection, a
    /// restarting server, a busy database.
    fn is_transient(&self, _error: &anyhow::Error) -> bool {
        false
    }
    /// Writes to each of `outputs` the outbox entries of `pipeline` it lacks, and forgets
    /// those every output holds; returns how many rows it wrote.
    fn deliver(&mut self, pipeline: &str, outputs: &mut [Box<dyn Output>]) -> Result<u64>;
}

/// Text as a sink can store it: a reason may quote a record's bytes, and PostgreSQL text
/// cannot hold a NUL, so it is written `\0` (in both sinks, which then hold the same).
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A cell as JSON: timestamps as ms since the epoch, non-finite floats as null.
pub(crate) fn cell_json(cell: &Cell) -> serde_json::Value {
    match cell {
        Cell::Null => serde_json::Value::Null,
        Cell::Int(v) | Cell::Timestamp(v) => (*v).into(),
        Cell::Float(v) => (*v).into(),
        Cell::Bool(v) => (*v).into(),
        Cell::Text(v) => v.clone().into(),
    }
}

/// Window-state keys are stored as a JSON array; decoding needs the key columns' types.
pub(crate) fn key_json(key: &[Cell]) -> String {
    serde_json::Value::Array(key.iter().map(cell_json).collect()).to_string()
}

pub(crate) fn key_from_json(text: &str, keys: &[ColumnDef]) -> Result<Vec<Cell>> {
    let values: Vec<serde_json::Value> =
        serde_json::from_str(text).with_context(|| format!("stored window key {text}"))?;
    cells_from_json(values, keys).with_context(|| format!("stored window key {text}"))
}

/// Cells stored as JSON by [`cell_json`], typed by their columns.
pub(crate) fn cells_from_json(values: Vec<serde_json::Value>, defs: &[ColumnDef]) -> Result<Vec<Cell>> {
    anyhow::ensure!(values.len() == defs.len(), "{} values for {} columns", values.len(), defs.len());
    defs.iter()
        .zip(values)
        .map(|(def, v)| {
            Ok(match (def.ty, v) {
                (_, serde_json::Value::Null) => Cell::Null,
                (ColumnType::Int64, v) => Cell::Int(v.as_i64().with_context(|| format!("integer {}", def.name))?),
                (ColumnType::TimestampMs, v) => {
                    Cell::Timestamp(v.as_i64().with_context(|| format!("timestamp {}", def.name))?)
                }
                (ColumnType::Float64, v) => Cell::Float(v.as_f64().with_context(|| format!("float {}", def.name))?),
                (ColumnType::Boolean, v) => Cell::Bool(v.as_bool().with_context(|| format!("boolean {}", def.name))?),
                (ColumnType::Text, v) => {
                    Cell::Text(v.as_str().with_context(|| format!("text {}", def.name))?.to_string())
                }
            })
        })
        .collect()
}

/// A one-key (`city`), one-value (`trips`) table and its rows, for tests of what reads
/// committed rows.
#[cfg(test)]
mod tests {
    #[test]
    fn a_nul_in_text_is_stored_escaped_and_other_text_as_it_is() {
        assert_eq!(super::storable("bad \0 city"), "bad \\0 city");
        assert!(matches!(super::storable("Oslo"), std::borrow::Cow::Borrowed("Oslo")));
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::{Cell, TableSchema, WindowRow};
    use crate::window::Window;
    use weir_sdk::{ColumnDef, ColumnType};

    pub(crate) fn city_trips_table(name: &str) -> TableSchema {
        TableSchema {
            name: name.into(),
            keys: vec![ColumnDef::nullable("city", ColumnType::Text)],
            values: vec![ColumnDef::nullable("trips", ColumnType::Int64)],
        }
    }

    /// The row of `city` in the one-minute window starting at `start`.
    pub(crate) fn city_trips(start: i64, city: &str, trips: i64) -> WindowRow {
        WindowRow {
            window: Window { start, end: start + 60_000 },
            key: vec![Cell::Text(city.into())],
            values: vec![Cell::Int(trips)],
            is_final: false,
            revision: 1,
        }
    }
}
