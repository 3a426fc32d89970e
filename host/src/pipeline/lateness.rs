//! Which events are late, decided record by record: each source partition's clock is the
//! largest event time of its accepted records, and an event is late for a window that
//! ended at or before its partition's clock minus the lateness (`docs/PIPELINES.md`,
//! "Late events"). Nothing here depends on batch boundaries or processing time, except
//! `max_ahead`, which guards the clocks against an event time far in the future.

use weir_sdk::RawBatch;

use super::build::Pipeline;
use super::process::push_dead_from;

/// 0000-01-01T00:00:00Z: an event time before it (an `epoch_millis` field can say
/// anything) would make a window the sink cannot store, and stop the pipeline at commit.
const EARLIEST_MS: i64 = -62_167_219_200_000;

impl Pipeline {
    /// Decides, record by record in the order of their partition, what moves event time.
    /// A row whose event time lies more than `watermark.max_ahead` beyond the processing
    /// clock `now_ms` becomes a dead letter (its key set to `no_key`); every other row of
    /// an accepted record moves its partition's clock. Returns each row's partition
    /// watermark as its record left it, which decides whether the row is late: the same
    /// for any batch size, since a clock depends only on its partition's records so far.
    /// (A row's own event time cannot make it late: its windows end after it.)
    pub(super) fn judge(
        &mut self,
        batch: &RawBatch,
        records: &[u32],
        times: &[i64],
        keys: &mut [u32],
        now_ms: i64,
        no_key: u32,
    ) -> Vec<Option<i64>> {
        let max_ahead = self.config.watermark.max_ahead;
        let limit = now_ms.saturating_add(max_ahead.as_millis() as i64);
        let lateness = self.config.watermark.lateness.as_millis() as i64;
        let mut marks = Vec::with_capacity(keys.len());
        // Rows of one partition come in runs: its clock is kept here for the run and
        // written back when the partition changes, not looked up for every row.
        let mut run: Option<(i32, Option<i64>)> = None;
        for (row, key) in keys.iter_mut().enumerate() {
            let (r, t) = (records[row] as usize, times[row]);
            if *key == no_key {
                marks.push(None);
                continue;
            }
            let refused = if t < EARLIEST_MS {
                Some(format!(
                    "event time {t} ms is before the year 0: its window could not be stored (PostgreSQL's \
                     timestamps begin in 4713 BC, and weir writes years from 0 on)"
                ))
            } else if t > limit {
                Some(format!(
                    "event time {} is more than watermark.max_ahead ({max_ahead:?}) beyond the processing clock ({})",
                    weir_sdk::time::format_iso8601(t),
                    weir_sdk::time::format_iso8601(now_ms)
                ))
            } else {
                None
            };
            if let Some(reason) = refused {
                push_dead_from(&mut self.dead_letters, batch, records[row], "watermark", reason);
                *key = no_key;
                marks.push(None);
                continue;
            }
            if self.replaying {
                // A replay judges nothing late and moves no clock: it writes no offsets.
                marks.push(None);
                continue;
            }
            let partition = batch.partitions[r];
            let clock = match &mut run {
                Some((p, clock)) if *p == partition => clock,
                _ => {
                    if let Some((p, Some(max))) = run {
                        self.tracker.observe(p, max, now_ms);
                    }
                    let clock = self.tracker.partition_watermark(partition).map(|m| m + lateness);
                    &mut run.insert((partition, clock)).1
                }
            };
            *clock = Some(clock.map_or(t, |c| c.max(t)));
            marks.push(clock.map(|c| c - lateness));
        }
        if let Some((p, Some(max))) = run {
            self.tracker.observe(p, max, now_ms);
        }
        marks
    }
}
