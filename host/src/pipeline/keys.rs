//! Window keys: each row's key columns encoded into bytes and interned, so that a row
//! finds its windows without allocating. A row whose key is null, or that a sink could
//! not store, is a dead letter and has no key.

use weir_sdk::{Column, ColumnValues, EventBatch, RawBatch};

use super::build::Pipeline;
use super::process::{push_dead, push_dead_from};
use crate::sink::{Cell, DeadLetterKind};

/// A key value as a cell, for the rows and the states a checkpoint writes.
pub(super) fn cell(column: &Column, row: usize) -> Cell {
    if !column.is_valid(row) {
        return Cell::Null;
    }
    match &column.values {
        ColumnValues::Int64(v) => Cell::Int(v[row]),
        ColumnValues::Float64(v) => Cell::Float(v[row]),
        ColumnValues::Boolean(v) => Cell::Bool(v[row]),
        ColumnValues::Text(v) => Cell::Text(v.str(row).to_string()),
        ColumnValues::TimestampMs(v) => Cell::Timestamp(v[row]),
    }
}

/// Appends a key value's bytes, tagged and length-prefixed so distinct keys never collide.
fn encode_cell(out: &mut Vec<u8>, column: &Column, row: usize) {
    match &column.values {
        ColumnValues::Int64(v) | ColumnValues::TimestampMs(v) => {
            out.push(1);
            out.extend_from_slice(&v[row].to_le_bytes());
        }
        ColumnValues::Boolean(v) => out.extend_from_slice(&[2, u8::from(v[row])]),
        ColumnValues::Text(v) => {
            let bytes = v.get(row);
            out.push(3);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        ColumnValues::Float64(v) => {
            out.push(4);
            out.extend_from_slice(&v[row].to_bits().to_le_bytes());
        }
    }
}

/// Marks the source partition appended to a key when partial states are kept per
/// partition; no cell encoding starts with it.
const PARTITION_TAG: u8 = 0xff;

fn encode_partition(out: &mut Vec<u8>, partition: i32) {
    out.push(PARTITION_TAG);
    out.extend_from_slice(&partition.to_le_bytes());
}

/// The same encoding from stored cells, for restored windows.
pub(super) fn encode_cells(cells: &[Cell]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cells {
        match c {
            Cell::Int(v) | Cell::Timestamp(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Cell::Bool(v) => out.extend_from_slice(&[2, u8::from(*v)]),
            Cell::Text(v) => {
                out.push(3);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v.as_bytes());
            }
            Cell::Float(v) => {
                out.push(4);
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            Cell::Null => out.push(0),
        }
    }
    out
}

impl Pipeline {
    /// The interned form of a stored state's key: its cells, and its partition when the
    /// sink merges per-partition partials (see [`window_keys`](Self::window_keys)).
    pub(super) fn state_key(&self, state: &crate::sink::WindowState) -> Vec<u8> {
        let mut out = encode_cells(&state.key);
        if self.partials {
            encode_partition(&mut out, state.partition);
        }
        out
    }

    /// Each row's key id, for the rows of `events` at `rows` (all of them if `None`) that
    /// came from `records` of `batch`; `no_key` for a row whose key is a dead letter.
    pub(super) fn window_keys(
        &mut self,
        batch: &RawBatch,
        events: &EventBatch,
        rows: Option<&[u32]>,
        records: &[u32],
        no_key: u32,
    ) -> Vec<u32> {
        let mut keys: Vec<u32> = Vec::with_capacity(records.len());
        let mut encoded = Vec::new();
        for (view_row, &record) in records.iter().enumerate() {
            let row = rows.map_or(view_row, |rows| rows[view_row] as usize);
            if let Some(k) = self.key_columns.iter().position(|&c| !events.columns[c].is_valid(row)) {
                let reason = format!("window key column {:?} is null", self.table.keys[k].name);
                push_dead(&mut self.dead_letters, batch, record, DeadLetterKind::Rejected, &self.aggregator, reason);
                keys.push(no_key);
                continue;
            }
            encoded.clear();
            for &c in &self.key_columns {
                encode_cell(&mut encoded, &events.columns[c], row);
            }
            if self.partials {
                // A partial state per source partition: every window, session and fold
                // below keeps the partitions of one key apart, and the sink merges them.
                encode_partition(&mut encoded, batch.partitions[record as usize]);
            }
            if self.windows.known(&encoded).is_none() {
                // A new key is checked once: one the sink cannot hold costs its record only.
                if let Some(reason) = self.unstorable_key(events, row) {
                    push_dead_from(&mut self.dead_letters, batch, record, "window", reason);
                    keys.push(no_key);
                    continue;
                }
            }
            let key_columns = &self.key_columns;
            let id =
                self.windows.key_id(&encoded, || key_columns.iter().map(|&c| cell(&events.columns[c], row)).collect());
            if let Some(seen) = self.key_partitions.as_mut() {
                let partition = batch.partitions[record as usize];
                let first = *seen.entry(id).or_insert(partition);
                if first != partition && self.miskeyed.is_none() {
                    self.miskeyed = Some(format!(
                        "[scale] keyed = true, but window key {:?} arrives on partitions {first} and {partition} \
                         (offset {}): the topic is not keyed by the window key. Remove [scale] keyed, so that \
                         rows are merged from each partition's partial states",
                        self.windows.keys[id as usize], batch.offsets[record as usize]
                    ));
                }
            }
            keys.push(id);
        }
        keys
    }

    /// Why the key of `row` cannot be stored, if it cannot: a text key column with a NUL
    /// byte (PostgreSQL text cannot hold one), or longer than `window.max_key_bytes` (its
    /// index could not). Both sinks refuse the same keys, so they hold the same windows.
    fn unstorable_key(&self, events: &EventBatch, row: usize) -> Option<String> {
        let max = self.config.window.max_key_bytes;
        for (k, &c) in self.key_columns.iter().enumerate() {
            let ColumnValues::Text(values) = &events.columns[c].values else { continue };
            let text = values.get(row);
            let name = &self.table.keys[k].name;
            if text.contains(&0) {
                return Some(format!(
                    "window key column {name:?} holds a NUL byte, which PostgreSQL text cannot store"
                ));
            }
            if text.len() > max {
                return Some(format!(
                    "window key column {name:?} is {} bytes long, more than window.max_key_bytes ({max})",
                    text.len()
                ));
            }
        }
        None
    }
}
