//! Outputs: where a pipeline's window rows are delivered besides the sink's own table, such
//! as a Delta table or Redis. The sink stays where checkpoints commit (offsets, state,
//! dead letters), so each output needs only one small trait.
//!
//! Exactly once, through an outbox: each checkpoint's transaction also stores the rows it
//! changed in `weir_outbox`, numbered in commit order. After the commit, the rows of every
//! entry the output lacks are written to it in one atomic step of the output's own (a Delta
//! commit, a Redis `MULTI`/`EXEC`) together with the last entry's number, and then the
//! delivered entries are deleted. A crash in between leaves entries the output already
//! holds: the next delivery reads the number back, recognises them and skips them.

use anyhow::{Context, Result};
use serde_json::Value;

use super::{cell_json, Cell, TableSchema, WindowRow};
use crate::window::Window;

/// A destination for window rows, written exactly once through the sink's outbox.
pub trait Output: Send {
    /// What it is, for logs and errors: `delta table /lake/trips`, `redis 127.0.0.1:6379`.
    fn describe(&self) -> String;
    /// Creates the destination for `table`'s rows, or checks that an existing one fits and
    /// refuses it, naming the column, when it does not.
    fn prepare(&mut self, table: &TableSchema) -> Result<()>;
    /// The number of the last outbox entry of `pipeline` it holds (0 for none).
    fn delivered(&mut self, pipeline: &str) -> Result<i64>;
    /// Writes `rows`, each with the number of its entry, oldest first (a later row of a
    /// window replaces an earlier one), and records `upto` as delivered, in one atomic step.
    fn deliver(&mut self, pipeline: &str, upto: i64, rows: &[(i64, WindowRow)]) -> Result<()>;
    /// Housekeeping between deliveries, when due (compacting small files).
    fn maintain(&mut self, _pipeline: &str) -> Result<()> {
        Ok(())
    }
    /// Whether `error` (from this output) may go away on a retry: the server out of reach.
    fn is_transient(&self, _error: &anyhow::Error) -> bool {
        false
    }
}

/// Entries delivered in one atomic step at the most, so one step stays small after an
/// outage let many pile up.
pub(crate) const ENTRIES_PER_STEP: i64 = 256;

/// The rows of one checkpoint as `weir_outbox` keeps them: a JSON array of
/// `[window_start, window_end, [keys], [values], is_final, revision]`.
pub(crate) fn encode(rows: &[WindowRow]) -> String {
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!([
                r.window.start,
                r.window.end,
                r.key.iter().map(cell_json).collect::<Vec<_>>(),
                r.values.iter().map(cell_json).collect::<Vec<_>>(),
                r.is_final,
                r.revision
            ])
        })
        .collect();
    Value::Array(rows).to_string()
}

/// One row of [`encode`]: window start and end, keys, values, is_final, revision.
type Encoded = (i64, i64, Vec<Value>, Vec<Value>, bool, i64);

/// The rows of [`encode`] read back, typed by `table`.
pub(crate) fn decode(text: &str, table: &TableSchema) -> Result<Vec<WindowRow>> {
    let rows: Vec<Encoded> = serde_json::from_str(text).context("an outbox entry that is not weir's")?;
    rows.into_iter()
        .map(|(start, end, key, values, is_final, revision)| {
            Ok(WindowRow {
                window: Window { start, end },
                key: super::cells_from_json(key, &table.keys)?,
                values: super::cells_from_json(values, &table.values)?,
                is_final,
                revision,
            })
        })
        .collect()
}

/// Delivers what each of `outputs` lacks of `pipeline`'s outbox: reads its mark, then the
/// entries after it with `read(after, limit)` (`(number, rows)`, oldest first), a step at a
/// time. Returns the rows written and the last number every output holds, whose entries
/// can go. The caller holds the pipeline's outbox lock, so no other host delivers
/// meanwhile. An empty outbox does not touch the outputs: a pipeline with nothing to
/// deliver does not wait for them.
pub(crate) fn deliver_pending(
    pipeline: &str,
    outputs: &mut [Box<dyn Output>],
    table: &TableSchema,
    mut read: impl FnMut(i64, i64) -> Result<Vec<(i64, String)>>,
) -> Result<(u64, i64)> {
    if read(0, 1)?.is_empty() {
        return Ok((0, 0));
    }
    let mut written = 0;
    let mut held = i64::MAX;
    for output in outputs {
        let (rows, mark) = deliver_one(pipeline, output.as_mut(), table, &mut read)?;
        written += rows;
        held = held.min(mark);
    }
    Ok((written, if held == i64::MAX { 0 } else { held }))
}

fn deliver_one(
    pipeline: &str,
    output: &mut dyn Output,
    table: &TableSchema,
    read: &mut impl FnMut(i64, i64) -> Result<Vec<(i64, String)>>,
) -> Result<(u64, i64)> {
    let mut mark = output.delivered(pipeline).with_context(|| format!("reading what {} holds", output.describe()))?;
    let mut written = 0;
    loop {
        let entries = read(mark, ENTRIES_PER_STEP)?;
        let Some(&(upto, _)) = entries.last() else { break };
        let mut rows = Vec::new();
        for (seq, text) in &entries {
            rows.extend(decode(text, table)?.into_iter().map(|r| (*seq, r)));
        }
        output.deliver(pipeline, upto, &rows).with_context(|| format!("delivering rows to {}", output.describe()))?;
        written += rows.len() as u64;
        mark = upto;
        if (entries.len() as i64) < ENTRIES_PER_STEP {
            break;
        }
    }
    Ok((written, mark))
}

/// A row's cells as text for stores without types (Redis): integers and floats as
/// numbers, booleans as `true`/`false`, times as ms since the epoch; `None` for null.
pub(crate) fn cell_text(cell: &Cell) -> Option<String> {
    match cell {
        Cell::Null => None,
        Cell::Int(v) | Cell::Timestamp(v) => Some(v.to_string()),
        Cell::Float(v) => Some(v.to_string()),
        Cell::Bool(v) => Some(v.to_string()),
        Cell::Text(v) => Some(v.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures::{city_trips, city_trips_table};

    #[test]
    fn rows_come_back_from_the_outbox_as_they_went_in() {
        let table = city_trips_table("trips");
        let mut rows = vec![city_trips(60_000, "Oslo", 3), city_trips(120_000, "Lima", 1)];
        rows[1].is_final = true;
        rows[1].revision = 2;
        rows[0].key = vec![Cell::Null];
        assert_eq!(decode(&encode(&rows), &table).unwrap(), rows);
        assert!(decode("[[1, 2]]", &table).is_err());
    }
}
