//! Window rows merged from partial states. When a topic is not keyed by the window key,
//! the events of one window and key arrive on several source partitions, which several
//! hosts may own. Each host then keeps a partial state per window, key and partition,
//! and the checkpoint that writes a partial also rewrites its window's row: it reads
//! every stored partial of that window and key, merges them with the aggregator's
//! `merge`, and upserts the result, in the same transaction, under a lock that lets the
//! group's checkpoints merge one at a time. A row therefore always holds exactly the
//! events that committed checkpoints hold, however the partitions are spread over hosts.
//! Sessions also merge as intervals: a partition's session can bridge others'.
//!
//! Whether a row is final is decided by the group watermark: the lowest watermark under
//! which any partition of the pipeline was last committed. A row is final once the group
//! watermark passes its window (a session's gap after its end); each checkpoint marks the
//! rows that have become final since, whoever wrote them.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::{Cell, Checkpoint, WindowRow};
use crate::window::Window;

/// Turns the partial states of windows into their rows' values, with the aggregator.
pub trait Merger: Send {
    /// For each window and key, its partial states (one per source partition, in
    /// partition order): the values of its row, in the table's value-column order.
    fn rows(&mut self, partials: Vec<Vec<Vec<u8>>>) -> Result<Vec<Vec<Cell>>>;
    /// How long after its end a window's row becomes final: 0, or a session's gap.
    fn final_after_ms(&self) -> i64;
    /// Whether the windows are sessions, which partials of several partitions can bridge.
    fn sessions(&self) -> bool;
}

/// A window and key whose row a checkpoint rewrites.
pub(super) struct Touched {
    pub window: Window,
    pub key: Vec<Cell>,
    /// The key as stored in `weir_window_state`.
    pub key_json: String,
}

/// The windows and keys whose partial states `checkpoint` writes, each once.
pub(super) fn touched(checkpoint: &Checkpoint) -> Vec<Touched> {
    let mut seen = BTreeMap::new();
    for s in &checkpoint.states {
        let key_json = super::key_json(&s.key);
        seen.entry((s.window.start, s.window.end, key_json.clone())).or_insert_with(|| Touched {
            window: s.window,
            key: s.key.clone(),
            key_json,
        });
    }
    seen.into_values().collect()
}

/// One stored partial state: window bounds, key (as stored), partition, state.
pub(super) type Partial = (i64, i64, String, i32, Vec<u8>);

/// The merged rows of `touched`, from the `stored` partials (every partition's, this
/// checkpoint's included). Rows are final if the group `watermark` has passed them;
/// revisions are left to the upsert, which raises a final row's revision when it changes.
pub(super) fn merged_rows(
    merger: &mut dyn Merger,
    touched: &[Touched],
    stored: Vec<Partial>,
    watermark: Option<i64>,
) -> Result<Vec<WindowRow>> {
    type ByPartition = Vec<(i32, Vec<u8>)>;
    let mut by_window: BTreeMap<(i64, i64, String), ByPartition> = BTreeMap::new();
    for (start, end, key, partition, state) in stored {
        by_window.entry((start, end, key)).or_default().push((partition, state));
    }
    let mut partials = Vec::with_capacity(touched.len());
    for t in touched {
        let Some(mut states) = by_window.remove(&(t.window.start, t.window.end, t.key_json.clone())) else {
            bail!("the partial states of window {:?} key {} are missing from the sink", t.window, t.key_json);
        };
        states.sort_by_key(|(partition, _)| *partition);
        partials.push(states.into_iter().map(|(_, state)| state).collect());
    }
    let values = merger.rows(partials)?;
    let after = merger.final_after_ms();
    Ok(touched
        .iter()
        .zip(values)
        .map(|(t, values)| WindowRow {
            window: t.window,
            key: t.key.clone(),
            values,
            is_final: watermark.is_some_and(|w| t.window.end.saturating_add(after) <= w),
            revision: 1,
        })
        .collect())
}

/// The `SET` list of the merged upsert on `table` (quoted): values as written, final once
/// final, and a new revision when a final row changes. `excluded` is how the dialect
/// names the proposed row.
pub(super) fn merged_updates(table: &super::TableSchema, quoted: &str) -> String {
    let mut sets: Vec<String> =
        table.values.iter().map(|c| super::schema::quote(&c.name)).map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    sets.push(format!("revision = CASE WHEN {quoted}.is_final THEN {quoted}.revision + 1 ELSE {quoted}.revision END"));
    sets.push(format!("is_final = {quoted}.is_final OR EXCLUDED.is_final"));
    sets.push("updated_at = EXCLUDED.updated_at".into());
    sets.join(", ")
}

/// A session as the group sees it: the union of overlapping per-partition sessions of one
/// key, with their partial states.
#[derive(Debug, PartialEq)]
pub(super) struct Session {
    pub window: Window,
    pub states: Vec<Vec<u8>>,
}

/// The group's sessions of one key, from its per-partition `partials` (window, partition,
/// state): sessions that overlap are one, as on a single host (`window::session`).
pub(super) fn sessions(mut partials: Vec<(Window, i32, Vec<u8>)>) -> Vec<Session> {
    partials.sort_by_key(|(w, p, _)| (w.start, *p));
    let mut out: Vec<Session> = Vec::new();
    for (window, _, state) in partials {
        match out.last_mut() {
            Some(last) if window.start < last.window.end => {
                last.window.end = last.window.end.max(window.end);
                last.states.push(state);
            }
            _ => out.push(Session { window, states: vec![state] }),
        }
    }
    out
}

/// The span the `sessions` of a key cover, if any.
pub(super) fn hull(sessions: &[Session]) -> Option<Window> {
    let start = sessions.iter().map(|s| s.window.start).min()?;
    let end = sessions.iter().map(|s| s.window.end).max()?;
    Some(Window { start, end })
}

/// A key's group sessions to write: those overlapping a window the checkpoint `touched`,
/// each with the revision it takes over from the stored rows it replaces (`stored`:
/// window, is_final, revision). Returns them with the stored windows to delete.
pub(super) fn session_plan(
    sessions: Vec<Session>,
    touched: &[Window],
    stored: &[(Window, bool, i64)],
) -> (Vec<(Session, i64)>, Vec<Window>) {
    let overlaps = |a: &Window, b: &Window| a.start < b.end && b.start < a.end;
    let mut write = Vec::new();
    let mut delete = Vec::new();
    for session in sessions.into_iter().filter(|s| touched.iter().any(|t| overlaps(t, &s.window))) {
        let replaced: Vec<&(Window, bool, i64)> =
            stored.iter().filter(|(w, ..)| overlaps(w, &session.window)).collect();
        // A row kept under the same bounds keeps its revision through the upsert; one that
        // replaces others follows theirs, one higher if any was final (a correction).
        let revision = replaced.iter().map(|(.., r)| *r).max().unwrap_or(1)
            + i64::from(replaced.iter().any(|(w, f, _)| *f && *w != session.window));
        delete.extend(replaced.iter().map(|(w, ..)| *w).filter(|w| *w != session.window));
        write.push((session, revision));
    }
    (write, delete)
}

/// Per key whose partial sessions `checkpoint` writes or retracts: its cells and those
/// windows.
pub(super) fn touched_keys(checkpoint: &Checkpoint) -> BTreeMap<String, (Vec<Cell>, Vec<Window>)> {
    let mut keys: BTreeMap<String, (Vec<Cell>, Vec<Window>)> = BTreeMap::new();
    let states = checkpoint.states.iter().map(|s| (&s.window, &s.key));
    let gone = checkpoint.retracted_partials.iter().map(|(w, k, _)| (w, k));
    for (window, key) in states.chain(gone) {
        keys.entry(super::key_json(key)).or_insert_with(|| (key.clone(), Vec::new())).1.push(*window);
    }
    keys
}

/// The span of `windows` (not empty).
pub(super) fn span(windows: &[Window]) -> Window {
    Window {
        start: windows.iter().map(|w| w.start).min().unwrap_or(0),
        end: windows.iter().map(|w| w.end).max().unwrap_or(0),
    }
}

/// The rows of `planned` sessions (with their key and revision): their merged partials'
/// values, final once the group `watermark` is a gap past their end.
pub(super) fn session_rows(
    merger: &mut dyn Merger,
    planned: Vec<(Session, Vec<Cell>, i64)>,
    watermark: Option<i64>,
) -> Result<Vec<WindowRow>> {
    let after = merger.final_after_ms();
    let (heads, states): (Vec<_>, Vec<_>) =
        planned.into_iter().map(|(s, key, revision)| ((s.window, key, revision), s.states)).unzip();
    let values = merger.rows(states)?;
    Ok(heads
        .into_iter()
        .zip(values)
        .map(|((window, key, revision), values)| WindowRow {
            window,
            key,
            values,
            is_final: watermark.is_some_and(|w| window.end.saturating_add(after) <= w),
            revision,
        })
        .collect())
}

/// The index of `table`'s rows not final yet, which each checkpoint looks through.
pub(super) fn open_rows_index(table: &super::TableSchema) -> String {
    let index = super::schema::quote(&format!("{}_open_windows", table.name));
    format!(
        "CREATE INDEX IF NOT EXISTS {index} ON {} (window_end) WHERE NOT is_final",
        super::schema::quote(&table.name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::WindowState;

    /// Sums little-endian u64 counts: merge as a test aggregator would.
    struct Sum;
    impl Merger for Sum {
        fn rows(&mut self, partials: Vec<Vec<Vec<u8>>>) -> Result<Vec<Vec<Cell>>> {
            Ok(partials
                .into_iter()
                .map(|p| vec![Cell::Int(p.iter().map(|s| i64::from_le_bytes(s[..8].try_into().unwrap())).sum())])
                .collect())
        }
        fn final_after_ms(&self) -> i64 {
            0
        }
        fn sessions(&self) -> bool {
            false
        }
    }

    fn state(start: i64, city: &str, partition: i32, n: i64) -> WindowState {
        WindowState {
            window: Window { start, end: start + 60_000 },
            key: vec![Cell::Text(city.into())],
            partition,
            state: n.to_le_bytes().to_vec(),
            revision: 1,
            is_final: false,
        }
    }

    #[test]
    fn a_row_merges_every_partitions_partial_and_is_final_only_past_the_group_watermark() {
        let checkpoint = Checkpoint {
            states: vec![state(0, "Oslo", 2, 5), state(60_000, "Oslo", 2, 1), state(0, "Oslo", 2, 5)],
            ..Default::default()
        };
        let touched = touched(&checkpoint);
        assert_eq!(touched.len(), 2, "each window and key once");
        let stored: Vec<Partial> = [state(0, "Oslo", 2, 5), state(0, "Oslo", 0, 3), state(60_000, "Oslo", 2, 1)]
            .into_iter()
            .map(|s| (s.window.start, s.window.end, crate::sink::key_json(&s.key), s.partition, s.state))
            .collect();
        let rows = merged_rows(&mut Sum, &touched, stored.clone(), Some(60_000)).unwrap();
        assert_eq!(rows[0].values, vec![Cell::Int(8)], "partitions 0 and 2 together");
        assert!(rows[0].is_final && !rows[1].is_final);
        let missing = merged_rows(&mut Sum, &touched, stored[..2].to_vec(), None).unwrap_err();
        assert!(format!("{missing}").contains("missing"), "{missing}");
    }

    /// Two hosts' checkpoints of one window into a real sink: the row is the sum of both
    /// partitions' partials, final once both partitions' watermarks passed it, and a
    /// correction after that is a new revision.
    #[test]
    fn the_sink_merges_each_partitions_partial_into_the_row_and_finalises_by_the_group_watermark() {
        use crate::sink::{Sink, SqliteSink};
        let dir = tempfile::tempdir().unwrap();
        let mut sink = SqliteSink::open(&dir.path().join("weir.db")).unwrap();
        let table = crate::sink::fixtures::city_trips_table("trips");
        sink.prepare(&table).unwrap();
        let checkpoint = |states: Vec<WindowState>, partition: i32, watermark: i64| Checkpoint {
            states,
            offsets: vec![(partition, 1)],
            watermark: Some(watermark),
            partials: true,
            ..Default::default()
        };
        let refused = sink.commit("p", &checkpoint(vec![state(0, "Oslo", 0, 3)], 0, 0)).unwrap_err();
        assert!(format!("{refused}").contains("merge"), "{refused}");
        sink.set_merger(Box::new(Sum)).unwrap();
        let row = |sink: &SqliteSink| -> (i64, bool, i64) {
            sink.connection()
                .query_row("SELECT trips, is_final, revision FROM trips", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
        };
        sink.commit("p", &checkpoint(vec![state(0, "Oslo", 0, 3)], 0, 0)).unwrap();
        sink.commit("p", &checkpoint(vec![state(0, "Oslo", 1, 5)], 1, 30_000)).unwrap();
        assert_eq!(row(&sink), (8, false, 1), "both partitions' partials");
        sink.commit("p", &checkpoint(vec![], 0, 70_000)).unwrap();
        assert_eq!(row(&sink), (8, false, 1), "partition 1 still holds the group watermark at 30 s");
        sink.commit("p", &checkpoint(vec![], 1, 60_000)).unwrap();
        assert_eq!(row(&sink), (8, true, 1), "final once every partition passed its end");
        sink.commit("p", &checkpoint(vec![state(0, "Oslo", 1, 6)], 1, 60_000)).unwrap();
        assert_eq!(row(&sink), (9, true, 2), "a final row corrected is a new revision");
    }

    #[test]
    fn partial_sessions_of_several_partitions_that_overlap_are_one_session() {
        let w = |start, end| Window { start, end };
        let sessions = sessions(vec![
            (w(20, 30), 1, vec![2]),
            (w(0, 10), 0, vec![1]),
            (w(9, 21), 2, vec![3]),
            (w(30, 40), 0, vec![4]),
        ]);
        // [0,10) and [9,21) overlap, [9,21) and [20,30) too; [30,40) only touches [20,30).
        assert_eq!(sessions.len(), 2);
        assert_eq!((sessions[0].window, sessions[0].states.clone()), (w(0, 30), vec![vec![1], vec![3], vec![2]]));
        assert_eq!(sessions[1].window, w(30, 40));
        assert_eq!(hull(&sessions), Some(w(0, 40)));
    }

    #[test]
    fn a_session_that_absorbs_stored_rows_replaces_them_and_a_final_one_raises_the_revision() {
        let w = |start, end| Window { start, end };
        let bridged = vec![Session { window: w(0, 30), states: vec![] }, Session { window: w(50, 60), states: vec![] }];
        let stored = [(w(0, 10), true, 2), (w(20, 30), false, 1), (w(50, 60), true, 1)];
        // Only [0, 30) was touched: [50, 60) is left as it is.
        let (write, delete) = session_plan(bridged, &[w(9, 21)], &stored);
        assert_eq!(write.len(), 1);
        assert_eq!((write[0].0.window, write[0].1), (w(0, 30), 3), "after revision 2, a final one corrected");
        assert_eq!(delete, vec![w(0, 10), w(20, 30)]);
        let (write, delete) = session_plan(vec![Session { window: w(50, 60), states: vec![] }], &[w(50, 60)], &stored);
        assert_eq!((write[0].1, delete), (1, vec![]), "the same bounds: the upsert keeps the row's revision");
    }
}
