//! The four plugin kinds. A plugin implements one trait and names its type in
//! [`export!`](crate::export).

use crate::batch::{ColumnDef, EventBatch, RawBatch, RecordError, Violation};
use crate::builder::BatchBuilder;
use crate::config::Config;

/// What a parser declares once configured.
#[derive(Clone, Debug, PartialEq)]
pub struct ParserInfo {
    /// The columns every parsed batch holds, in order.
    pub outputs: Vec<ColumnDef>,
    /// The output column of type `timestamp` that holds the event time.
    pub event_time_column: String,
}

/// The result of parsing one batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParseOutput {
    /// The parsed events.
    pub events: EventBatch,
    /// For each event, the index of the raw record it came from.
    pub sources: Vec<u32>,
    /// The records that produced no event, and why.
    pub errors: Vec<RecordError>,
}

/// Turns raw records into typed events.
pub trait Parser: Sized {
    /// Reads the config and declares the output columns.
    fn init(config: Config) -> Result<(Self, ParserInfo), String>;

    /// Parses one batch. A record that cannot be parsed becomes a [`RecordError`].
    fn parse(&self, batch: &RawBatch) -> ParseOutput;
}

/// Judges events against rules.
pub trait Validator: Sized {
    /// Reads the config and declares the input columns; `validate` gets exactly these, in order.
    fn init(config: Config) -> Result<(Self, Vec<ColumnDef>), String>;

    /// Appends the violations in `events` to `out`; rows without one pass.
    fn validate(&self, events: &EventBatch, out: &mut Vec<Violation>);
}

/// What an aggregator declares once configured.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregatorInfo {
    /// The columns it reads; `fold` gets exactly these, in order.
    pub inputs: Vec<ColumnDef>,
    /// The columns `emit` writes, in order.
    pub outputs: Vec<ColumnDef>,
    /// The version of the state encoding.
    pub state_version: u32,
}

/// Folds events into per-group state and turns state into output rows.
///
/// The host keeps the encoded state, one per window and key, and checkpoints it.
pub trait Aggregator: Sized {
    /// The in-memory state of one group.
    type State: Default;

    /// Reads the config and declares inputs, outputs and the state version.
    fn init(config: Config) -> Result<(Self, AggregatorInfo), String>;

    /// Folds row `row` of `events` into `state`.
    fn fold(&self, state: &mut Self::State, events: &EventBatch, row: usize);

    /// Folds a whole batch: row `i` goes into `states[groups[i]]`. Override it to work column by column.
    fn fold_batch(&self, states: &mut [Self::State], events: &EventBatch, groups: &[u32]) {
        for (row, &group) in groups.iter().enumerate() {
            self.fold(&mut states[group as usize], events, row);
        }
    }

    /// Combines `other` into `into`.
    fn merge(&self, into: &mut Self::State, other: Self::State);

    /// Writes the output row for `state` into `out`.
    fn emit(&self, state: &Self::State, out: &mut BatchBuilder) -> Result<(), String>;

    /// Encodes a state for the host to keep.
    fn encode(&self, state: &Self::State) -> Vec<u8>;

    /// Decodes a state written by `encode` with the current state version.
    fn decode(&self, bytes: &[u8]) -> Result<Self::State, String>;

    /// Decodes a state written by an older state version. The default refuses.
    fn migrate(&self, from_version: u32, bytes: &[u8]) -> Result<Self::State, String> {
        let _ = bytes;
        Err(format!("cannot migrate state from version {from_version}"))
    }
}

/// What a transform declares once configured.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformInfo {
    /// The columns it reads; `apply` gets exactly these, in order.
    pub inputs: Vec<ColumnDef>,
    /// The columns it writes; later stages see only these.
    pub outputs: Vec<ColumnDef>,
}

/// The result of transforming one batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TransformOutput {
    /// The output rows.
    pub events: EventBatch,
    /// For each output row, the input row it came from.
    pub sources: Vec<u32>,
    /// Input rows that failed, and why.
    pub errors: Vec<RecordError>,
}

/// Maps, filters or flat-maps events.
pub trait Transform: Sized {
    /// Reads the config and declares inputs and outputs.
    fn init(config: Config) -> Result<(Self, TransformInfo), String>;

    /// Transforms one batch.
    fn apply(&self, events: &EventBatch) -> TransformOutput;
}

/// Runs an aggregator's `fold` over encoded states, as the host calls it.
///
/// Shared by the WASM export glue and the host's native runner, so both decode,
/// fold and encode the same way.
pub fn fold_encoded<A: Aggregator>(
    plugin: &A,
    states: &[Vec<u8>],
    events: &EventBatch,
    groups: &[u32],
) -> Result<Vec<Vec<u8>>, String> {
    if groups.len() != events.len() {
        return Err(format!("{} group indices for {} rows", groups.len(), events.len()));
    }
    if let Some(&bad) = groups.iter().find(|&&g| g as usize >= states.len()) {
        return Err(format!("group index {bad} out of range for {} states", states.len()));
    }
    let mut decoded = states.iter().map(|s| plugin.decode(s)).collect::<Result<Vec<_>, _>>()?;
    plugin.fold_batch(&mut decoded, events, groups);
    Ok(decoded.iter().map(|s| plugin.encode(s)).collect())
}

/// Runs an aggregator's `emit` over encoded states.
pub fn emit_encoded<A: Aggregator>(
    plugin: &A,
    outputs: &[ColumnDef],
    states: &[Vec<u8>],
) -> Result<EventBatch, String> {
    let mut out = BatchBuilder::new(outputs);
    for state in states {
        plugin.emit(&plugin.decode(state)?, &mut out)?;
    }
    Ok(out.finish())
}

/// Runs an aggregator's `merge` over encoded states.
pub fn merge_encoded<A: Aggregator>(plugin: &A, a: &[u8], b: &[u8]) -> Result<Vec<u8>, String> {
    let mut into = plugin.decode(a)?;
    plugin.merge(&mut into, plugin.decode(b)?);
    Ok(plugin.encode(&into))
}

/// Runs an aggregator's `migrate` and re-encodes the result.
pub fn migrate_encoded<A: Aggregator>(plugin: &A, from_version: u32, state: &[u8]) -> Result<Vec<u8>, String> {
    Ok(plugin.encode(&plugin.migrate(from_version, state)?))
}

/// Runs a validator and returns its violations.
pub fn validate_all<V: Validator>(plugin: &V, events: &EventBatch) -> Vec<Violation> {
    let mut out = Vec::new();
    plugin.validate(events, &mut out);
    out
}
