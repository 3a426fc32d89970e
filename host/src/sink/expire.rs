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

/// The statement that expires rows of `table` (stamped in `stamp`): older than the
/// second parameter, or at or below the id of the row just past the newest third-
/// parameter ones; the oldest first, at most the fourth parameter. Placeholders are
/// `$n` for PostgreSQL, `?n` for SQLite.
pub(crate) fn expire_sql(table: &str, stamp: &str, mark: char) -> String {
    format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE pipeline = {mark}1 AND ({stamp} < {mark}2 OR id <= \
         coalesce((SELECT id FROM {table} WHERE pipeline = {mark}1 ORDER BY id DESC LIMIT 1 OFFSET {mark}3), -1)) \
         ORDER BY id LIMIT {mark}4)"
    )
}
