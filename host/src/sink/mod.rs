//! Sinks: where a checkpoint lands. A checkpoint is one transaction holding the changed
//! window rows, every partition's next offset, the watermark, the open windows' state,
//! and the new dead letters and late events. Because they commit together, a restart
//! from the stored offsets never loses or repeats an event's effect.

mod sqlite;

pub use sqlite::SqliteSink;

use anyhow::Result;
use weir_sdk::ColumnDef;

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
}

/// What a restart resumes from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Restored {
    /// The next offset per partition.
    pub offsets: Vec<(i32, i64)>,
    /// The watermark.
    pub watermark: Option<i64>,
    /// The partitions' clocks.
    pub clocks: Vec<(i32, PartitionClock)>,
    /// The open windows.
    pub states: Vec<WindowState>,
}

/// A transactional sink.
pub trait Sink {
    /// Creates the output and bookkeeping tables, or checks that existing ones fit.
    fn prepare(&mut self, table: &TableSchema) -> Result<()>;
    /// The last committed checkpoint of `pipeline`, if any.
    fn restore(&mut self, pipeline: &str) -> Result<Option<Restored>>;
    /// Commits one checkpoint of `pipeline` in one transaction.
    fn commit(&mut self, pipeline: &str, checkpoint: &Checkpoint) -> Result<()>;
}
