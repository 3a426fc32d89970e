//! Session windows in the pipeline: each batch's events of a key merged into the key's
//! sessions, whatever their state. A merged session replaces the ones it absorbs: their
//! rows are retracted in the checkpoint that writes it, and it carries their aggregator
//! states merged by the plugin.

use anyhow::Result;

use super::build::Pipeline;
use super::windows::Group;
use crate::plugin::AggregatorStage;
use crate::window::{session, Window};

impl Pipeline {
    /// Each row's session window. Late rows (`late(row, span)` for their own span
    /// `[t, t + gap)`) keep that span and touch nothing. The others are merged into every session of
    /// their key that memory holds, final ones included: [`reopen`](Pipeline::reopen)
    /// has brought back the final sessions they reach, so the result is that of merging
    /// every on-time event there is, in any order.
    pub(super) fn sessions(
        &mut self,
        keys: &[u32],
        times: &[i64],
        gap_ms: i64,
        late: impl Fn(usize, &Window) -> bool,
        no_key: u32,
    ) -> Result<Vec<Window>> {
        let mut by_key: rustc_hash::FxHashMap<u32, Vec<(i64, usize)>> = Default::default();
        let mut out: Vec<Window> = times.iter().map(|&t| Window { start: t, end: t.saturating_add(gap_ms) }).collect();
        for (row, &key) in keys.iter().enumerate().filter(|&(row, &k)| k != no_key && !late(row, &out[row])) {
            by_key.entry(key).or_default().push((times[row], row));
        }
        for (key, rows) in by_key {
            let open: Vec<Window> = self.windows.of_key(key).to_vec();
            for merged in session::merge(&open, &rows, gap_ms) {
                for &row in &merged.rows {
                    out[row] = merged.window;
                }
                if merged.absorbed.is_empty() || merged.absorbed == [merged.window] {
                    continue;
                }
                self.replace_sessions(key, merged.window, &merged.absorbed)?;
            }
        }
        Ok(out)
    }

    /// Replaces the sessions `absorbed` of `key` by `window`, whose state is the
    /// aggregator's merge of theirs. A merged session that absorbed a final one is a
    /// correction: its revision follows theirs, and it is final again once the watermark
    /// passes it.
    fn replace_sessions(&mut self, key: u32, window: Window, absorbed: &[Window]) -> Result<()> {
        let replaced: Vec<Group> = absorbed.iter().filter_map(|w| self.windows.remove(*w, key)).collect();
        let Some((first, rest)) = replaced.split_first() else { return Ok(()) };
        let mut state = first.state.clone();
        for group in rest {
            state = self.aggregator.merge(&state, &group.state).map_err(|e| {
                anyhow::anyhow!("aggregator {} failed to merge two sessions: {e}", self.aggregator.component().name)
            })?;
        }
        for group in replaced.iter().filter(|g| g.stored) {
            let cells = self.windows.keys[key as usize].clone();
            if self.partials {
                // Only this partition's partial goes; the sink recomputes the key's rows.
                self.retracted_partials.push((group.window, cells, group.partition));
            } else {
                self.retracted.push((group.window, cells));
            }
        }
        let corrected = replaced.iter().any(|g| g.is_final);
        let revision = replaced.iter().map(|g| g.revision).max().unwrap_or(1) + i64::from(corrected);
        let g = self.windows.group(window, key, first.partition, &self.empty_state);
        let group = &mut self.windows.groups[g];
        (group.state, group.revision, group.is_final, group.dirty) = (state, revision, false, true);
        Ok(())
    }
}
