//! The results the dashboard shows: the window rows of the last few window starts, as
//! committed. The sink thread updates it after each commit lands, so the page never shows
//! a value the sink does not hold.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::sink::{cell_json, key_json, Cell, TableSchema, WindowRow};
use crate::window::Window;

/// How many distinct window starts are kept: half an hour of 1-minute windows.
const WINDOWS_KEPT: usize = 30;
/// And at most this many rows, the oldest going first, so that a pipeline with many keys
/// does not make the board (copied for each page update) grow without bound.
const ROWS_KEPT: usize = 5_000;

/// A column of the output table.
#[derive(Clone, Debug, Serialize)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// `int64`, `float64`, `text`, …
    #[serde(rename = "type")]
    pub ty: String,
}

/// One committed window row.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The window's start, ms since the epoch.
    pub start: i64,
    /// Its end, ms since the epoch.
    pub end: i64,
    /// The key values, in `keys` order.
    pub key: Vec<Value>,
    /// The aggregator's values, in `values` order.
    pub values: Vec<Value>,
    /// Whether the watermark has closed it.
    pub is_final: bool,
    /// Its revision.
    pub revision: i64,
}

/// The committed results of the most recent windows.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Board {
    /// The output table's name.
    pub table: String,
    /// The key columns.
    pub keys: Vec<Column>,
    /// The aggregator's columns.
    pub values: Vec<Column>,
    /// Commits that have landed since the host started.
    pub commits: u64,
    /// The rows, oldest window first (filled in by [`snapshot`](Self::snapshot)).
    pub rows: Vec<Row>,
    #[serde(skip)]
    by_window: BTreeMap<(i64, i64, String), Row>,
}

fn columns(defs: &[weir_sdk::ColumnDef]) -> Vec<Column> {
    defs.iter().map(|d| Column { name: d.name.clone(), ty: d.ty.name().to_string() }).collect()
}

impl Board {
    /// An empty board for `table`.
    pub fn new(table: &TableSchema) -> Self {
        Board {
            table: table.name.clone(),
            keys: columns(&table.keys),
            values: columns(&table.values),
            ..Board::default()
        }
    }

    /// Takes in a commit that has landed: its rows replace the stored ones, retracted
    /// (merged session) windows go, and only the newest window starts are kept.
    pub fn committed(&mut self, retracted: &[(Window, Vec<Cell>)], rows: &[WindowRow]) {
        self.commits += 1;
        self.put(retracted, rows);
    }

    /// Replaces the rows by `rows`, read from the sink: the group's latest windows,
    /// whichever host committed them.
    pub fn replace(&mut self, rows: &[WindowRow]) {
        self.by_window.clear();
        self.put(&[], rows);
    }

    /// Takes in rows without counting a commit.
    pub fn put(&mut self, retracted: &[(Window, Vec<Cell>)], rows: &[WindowRow]) {
        for (window, key) in retracted {
            self.by_window.remove(&(window.start, window.end, key_json(key)));
        }
        for row in rows {
            let entry = Row {
                start: row.window.start,
                end: row.window.end,
                key: row.key.iter().map(cell_json).collect(),
                values: row.values.iter().map(cell_json).collect(),
                is_final: row.is_final,
                revision: row.revision,
            };
            self.by_window.insert((row.window.start, row.window.end, key_json(&row.key)), entry);
        }
        let mut starts: Vec<i64> = self.by_window.keys().map(|(start, ..)| *start).collect();
        starts.dedup();
        if let Some(&oldest_kept) = starts.len().checked_sub(WINDOWS_KEPT).and_then(|skip| starts.get(skip)) {
            self.by_window.retain(|(start, ..), _| *start >= oldest_kept);
        }
        while self.by_window.len() > ROWS_KEPT {
            self.by_window.pop_first();
        }
    }

    /// A copy to serve, with `rows` filled in.
    pub fn snapshot(&self) -> Board {
        Board {
            table: self.table.clone(),
            keys: self.keys.clone(),
            values: self.values.clone(),
            commits: self.commits,
            rows: self.by_window.values().cloned().collect(),
            by_window: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures::{city_trips as row, city_trips_table};

    #[test]
    fn later_commits_replace_rows_and_old_windows_fall_off() {
        let table = city_trips_table("t");
        let mut board = Board::new(&table);
        board.committed(&[], &[row(0, "Berlin", 1), row(0, "Lagos", 2)]);
        board.committed(&[], &[row(0, "Berlin", 5)]);
        assert_eq!(board.commits, 2);
        let rows = board.snapshot().rows;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].values, vec![Value::from(5)]);

        let later: Vec<WindowRow> = (1..=WINDOWS_KEPT as i64).map(|m| row(m * 60_000, "Berlin", m)).collect();
        board.committed(&[], &later);
        let rows = board.snapshot().rows;
        assert_eq!(rows.len(), WINDOWS_KEPT);
        assert_eq!(rows[0].start, 60_000, "the oldest start went");

        let gone = row(60_000, "Berlin", 0);
        board.committed(&[(gone.window, gone.key)], &[]);
        assert_eq!(board.snapshot().rows.len(), WINDOWS_KEPT - 1);

        let many: Vec<WindowRow> = (0..ROWS_KEPT + 10).map(|k| row(99 * 60_000, &k.to_string(), 1)).collect();
        board.committed(&[], &many);
        assert_eq!(board.snapshot().rows.len(), ROWS_KEPT, "rows are capped");
    }
}
