//! Windows written as final that an on-time record reaches again. Lateness is judged per
//! partition, but a window is written as final by the pipeline watermark, which partitions
//! that idle or are not being read stop holding back; so a record that is on time by its
//! own partition's clock can belong to a window that has already left memory. Its state is
//! in the sink: it is brought back and corrected (a new revision), never restarted empty.
//!
//! Sessions leave memory a `gap` after their end ([`WindowSpec::final_at`]); a final
//! session an on-time event extends is brought back the same way, and merged.

use anyhow::Result;
use rustc_hash::FxHashSet;

use super::build::Pipeline;
use crate::sink::{Cell, WindowState};
use crate::window::{Window, WindowSpec};

/// Asks the sink for the stored states of each key that overlap its window.
pub type WindowLookup = Box<dyn FnMut(Vec<(Vec<Cell>, Window)>) -> Result<Vec<WindowState>> + Send>;

impl Pipeline {
    /// Brings back from the sink the final windows that the on-time rows (`late(row)` is
    /// false) of a batch belong to, before they are folded. Only windows that could have
    /// been written as final are asked for: those the watermark has passed (during a
    /// replay, every window not in memory).
    pub(super) fn reopen(
        &mut self,
        keys: &[u32],
        times: &[i64],
        late: impl Fn(usize, &Window) -> bool,
        no_key: u32,
    ) -> Result<()> {
        if self.lookup.is_none() {
            return Ok(());
        }
        let bound = match (self.replaying, self.closed_upto()) {
            (true, _) => i64::MAX,
            (false, Some(bound)) => bound,
            (false, None) => return Ok(()),
        };
        let mut wanted: Vec<(u32, Window)> = Vec::new();
        let mut seen: FxHashSet<(u32, Window)> = FxHashSet::default();
        let mut windows = Vec::new();
        for (row, &key) in keys.iter().enumerate().filter(|(_, &k)| k != no_key) {
            let t = times[row];
            match self.spec {
                WindowSpec::Session { gap_ms } => {
                    // A stored final session ends by `bound - gap`; the span must start before that to reach it.
                    let span = Window { start: t, end: t.saturating_add(gap_ms) };
                    if t < bound.saturating_sub(gap_ms) && !late(row, &span) && seen.insert((key, span)) {
                        wanted.push((key, span));
                    }
                }
                // Every window of `t` ends after it: none can be final yet.
                _ if t >= bound => {}
                _ => {
                    self.spec.windows_of(t, &mut windows);
                    for &w in &windows {
                        if w.end <= bound && !late(row, &w) && !self.windows.contains(w, key) && seen.insert((key, w)) {
                            wanted.push((key, w));
                        }
                    }
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let query = wanted.iter().map(|(k, w)| (self.windows.keys[*k as usize].clone(), *w)).collect();
        let lookup = self.lookup.as_mut().expect("checked above");
        let sessions = matches!(self.spec, WindowSpec::Session { .. });
        let wanted_keys: FxHashSet<u32> = wanted.iter().map(|(k, _)| *k).collect();
        for state in lookup(query)? {
            // Only the asked-for keys: with partials per partition, another partition's
            // state of the same window is not this host's to fold into.
            let encoded = self.state_key(&state);
            let Some(key) = self.windows.known(&encoded).filter(|k| wanted_keys.contains(k)) else { continue };
            // Memory is newer than the sink for anything it holds.
            let fits = sessions || seen.contains(&(key, state.window));
            if fits && !self.windows.contains(state.window, key) {
                self.windows.restore(state, &encoded);
            }
        }
        Ok(())
    }

    /// The highest watermark under which a window of these partitions may have been
    /// written as final: this run's, or the one the sink stored for them.
    pub(super) fn closed_upto(&self) -> Option<i64> {
        self.tracker.current().max(self.stored_watermark)
    }
}
