//! The tables a retention setting bounds, and the one statement that expires their rows
//! in both sinks.

/// A table of weir's own records that a retention setting bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// `weir_checkpoint_log`.
    CheckpointLog,
    /// `weir_dead_letters`.
    DeadLetters,
    /// `weir_late_events`.
    LateEvents,
}

impl Kept {
    /// The table, and the column that says when a row was written.
    pub fn table(self) -> (&'static str, &'static str) {
        match self {
            Kept::CheckpointLog => ("weir_checkpoint_log", "committed_at"),
            Kept::DeadLetters => ("weir_dead_letters", "created_at"),
            Kept::LateEvents => ("weir_late_events", "created_at"),
        }
    }
}

/// The statement's third parameter for a row limit of `keep`; unused without one.
pub(crate) fn keep_param(keep: Option<u64>) -> i64 {
    keep.map_or(i64::MAX, |k| k.min(i64::MAX as u64) as i64)
}

/// The statement that expires rows of `table` (stamped in `stamp`) among the pipeline's
/// oldest, as many as the fourth parameter: those older than the second parameter, and
/// `by_rows`, those at or below the id of the row just past the newest third-parameter
/// ones. Placeholders are `$n` for PostgreSQL, `?n` for SQLite.
///
/// Only the oldest slice is looked at: rows are stamped as they are inserted, so when none
/// of it has expired, nothing newer has. Filtering the whole table instead scanned every
/// row (raw records and all) on each tick when nothing was due, 2.9 s for a million dead
/// letters, on the sink thread: the hour's soak saw its latency grow with the lanes. An
/// unbounded `OFFSET` (no row limit) cost the same, so without one the clause is dropped.
pub(crate) fn expire_sql(table: &str, stamp: &str, mark: char, by_rows: bool) -> String {
    let rows = if by_rows {
        format!("id <= coalesce((SELECT id FROM {table} WHERE pipeline = {mark}1 ORDER BY id DESC LIMIT 1 OFFSET {mark}3), -1)")
    } else {
        // The parameter stays (the statement's parameters do not change); this is false.
        // PostgreSQL would infer `integer` from the literal, and refuse the bigint bound.
        let cast = if mark == '$' { "::bigint" } else { "" };
        format!("{mark}3{cast} < 0")
    };
    format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM (SELECT id, {stamp} AS stamp FROM {table} \
         WHERE pipeline = {mark}1 ORDER BY id LIMIT {mark}4) AS oldest WHERE stamp < {mark}2 OR {rows})"
    )
}
