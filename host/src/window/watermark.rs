//! Watermarks. A partition's clock is the largest event time of the records it has
//! delivered that were accepted; its watermark is that clock minus the allowed lateness,
//! and it alone decides which of the partition's records are late. The pipeline's
//! watermark, the minimum over the partitions that hold it (not idle longer than the
//! idle timeout, not set aside by [`hold`](WatermarkTracker::hold)), only decides when
//! a window is written as final. It never moves backwards.
//!
//! Processing time is passed in (`now_ms`) rather than read from a clock, so the
//! tracker is deterministic and its checkpoints restore exactly.

use std::collections::{BTreeMap, BTreeSet};

/// What the tracker knows about one partition; this is what a checkpoint stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionClock {
    /// The largest event time seen, if any.
    pub max_event_ms: Option<i64>,
    /// When (processing time) the partition last delivered a record or was assigned.
    pub last_active_ms: i64,
}

/// Per-partition event-time progress and the pipeline watermark derived from it.
#[derive(Clone, Debug)]
pub struct WatermarkTracker {
    lateness_ms: i64,
    idle_timeout_ms: i64,
    partitions: BTreeMap<i32, PartitionClock>,
    /// Partitions that keep their clock but do not hold the pipeline watermark back now
    /// (files not being read).
    resting: BTreeSet<i32>,
    emitted: Option<i64>,
}

impl WatermarkTracker {
    /// A tracker with no partitions.
    pub fn new(lateness_ms: i64, idle_timeout_ms: i64) -> Self {
        WatermarkTracker {
            lateness_ms,
            idle_timeout_ms,
            partitions: BTreeMap::new(),
            resting: BTreeSet::new(),
            emitted: None,
        }
    }

    /// The partition is now ours; until it delivers an event (or idles out) it holds the watermark.
    pub fn assign(&mut self, partition: i32, now_ms: i64) {
        self.partitions.entry(partition).or_insert(PartitionClock { max_event_ms: None, last_active_ms: now_ms });
    }

    /// The partition is no longer ours.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.resting.remove(&partition);
    }

    /// Makes exactly `partitions` hold the pipeline watermark back; the others keep their
    /// clocks, which still judge their records, but wait without holding anyone back.
    pub fn hold(&mut self, partitions: &[i32], now_ms: i64) {
        for &p in partitions {
            self.assign(p, now_ms);
        }
        self.resting = self.partitions.keys().copied().filter(|p| !partitions.contains(p)).collect();
    }

    /// The partitions that hold the watermark back at processing time `now_ms`.
    fn holding(&self, now_ms: i64) -> impl Iterator<Item = (&i32, &PartitionClock)> {
        self.partitions
            .iter()
            .filter(move |(p, c)| !self.resting.contains(p) && now_ms - c.last_active_ms <= self.idle_timeout_ms)
    }

    /// A record arrived from `partition` with event time `event_ms`.
    pub fn observe(&mut self, partition: i32, event_ms: i64, now_ms: i64) {
        let clock =
            self.partitions.entry(partition).or_insert(PartitionClock { max_event_ms: None, last_active_ms: now_ms });
        clock.max_event_ms = Some(clock.max_event_ms.map_or(event_ms, |m| m.max(event_ms)));
        clock.last_active_ms = clock.last_active_ms.max(now_ms);
    }

    /// A record arrived from `partition` without a usable event time (e.g. malformed):
    /// the partition is active but its event time does not move.
    pub fn touch(&mut self, partition: i32, now_ms: i64) {
        if let Some(clock) = self.partitions.get_mut(&partition) {
            clock.last_active_ms = clock.last_active_ms.max(now_ms);
        }
    }

    /// One partition's watermark: an event of the partition is late for every window
    /// that ended at or before it.
    pub fn partition_watermark(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition)?.max_event_ms.map(|m| m - self.lateness_ms)
    }

    /// Recomputes the pipeline watermark at processing time `now_ms` and returns it.
    /// `None` until every active partition has delivered an event or gone idle.
    pub fn advance(&mut self, now_ms: i64) -> Option<i64> {
        let mut computed: Option<Option<i64>> = None;
        for (_, clock) in self.holding(now_ms) {
            let mark = clock.max_event_ms.map(|m| m - self.lateness_ms);
            computed = Some(match computed {
                None => mark,
                Some(current) => current.zip(mark).map(|(a, b)| a.min(b)),
            });
        }
        let computed = match computed {
            Some(mark) => mark,
            // Every partition is idle: nothing holds event time back but what was seen.
            None => self.partitions.values().filter_map(|c| c.max_event_ms).max().map(|m| m - self.lateness_ms),
        };
        self.emitted = match (self.emitted, computed) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.emitted
    }

    /// Partitions whose event time runs more than `max_skew` ahead of the slowest active
    /// partition. One that is active but has delivered nothing yet is the slowest of all,
    /// unless it is `drained`: read to its end, it has nothing to catch up with, and
    /// holding the others back for it would only stall them until it idles out.
    pub fn ahead(&self, max_skew: i64, now_ms: i64, drained: &[i32]) -> Vec<i32> {
        let slowest = self
            .holding(now_ms)
            .filter(|(p, _)| !drained.contains(p))
            .map(|(_, c)| c.max_event_ms.unwrap_or(i64::MIN))
            .min();
        let Some(slowest) = slowest else {
            return Vec::new();
        };
        // A resting partition (a file already read) is not read, so there is nothing to hold.
        self.partitions
            .iter()
            .filter(|(p, _)| !self.resting.contains(p))
            .filter(|(_, c)| c.max_event_ms.is_some_and(|m| m > slowest.saturating_add(max_skew)))
            .map(|(p, _)| *p)
            .collect()
    }

    /// The watermark as last computed by [`advance`](Self::advance).
    pub fn current(&self) -> Option<i64> {
        self.emitted
    }

    /// The per-partition state, for a checkpoint.
    pub fn snapshot(&self) -> (Vec<(i32, PartitionClock)>, Option<i64>) {
        (self.partitions.iter().map(|(p, c)| (*p, *c)).collect(), self.emitted)
    }

    /// Takes on partitions with the clocks and the watermark a checkpoint stored for them.
    /// A tracker that holds no partition starts from that watermark; one that already
    /// holds some keeps its own, since a watermark never moves backwards.
    pub fn restore(&mut self, partitions: &[(i32, PartitionClock)], watermark: Option<i64>) {
        if self.partitions.is_empty() {
            self.emitted = watermark;
        }
        self.partitions.extend(partitions.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::window::{Window, WindowSpec};

    #[test]
    fn minimum_over_active_partitions_and_idle_ones_stop_holding_it_back() {
        let mut w = WatermarkTracker::new(10, 1_000);
        w.assign(0, 0);
        w.assign(1, 0);
        w.observe(0, 500, 0);
        assert_eq!(w.advance(0), None, "partition 1 has delivered nothing yet");
        w.observe(1, 200, 10);
        assert_eq!(w.advance(10), Some(190));
        w.observe(0, 900, 1_500);
        assert_eq!(w.advance(1_500), Some(890), "partition 1 idled out");
        w.observe(1, 300, 1_600);
        assert_eq!(w.advance(1_600), Some(890), "the watermark never moves back");
        assert_eq!(w.partition_watermark(1), Some(290));
    }

    #[test]
    fn an_event_beyond_the_lateness_is_late() {
        let spec = WindowSpec::Tumbling { size_ms: 100 };
        let mut w = WatermarkTracker::new(10, 1_000);
        w.observe(0, 250, 0);
        let mark = w.advance(0).unwrap();
        let mut windows = Vec::new();
        spec.windows_of(50, &mut windows);
        assert!(windows[0].end <= mark, "[0, 100) closed at watermark {mark}");
        spec.windows_of(245, &mut windows);
        assert!(windows[0].end > mark, "[200, 300) is still open");
    }

    #[test]
    fn partitions_ahead_of_the_slowest_are_held() {
        let mut w = WatermarkTracker::new(0, 1_000);
        w.assign(0, 0);
        w.assign(1, 0);
        w.observe(0, 10_000, 0);
        assert_eq!(w.ahead(5_000, 0, &[]), vec![0], "partition 1 has delivered nothing yet");
        assert_eq!(w.ahead(5_000, 0, &[1]), Vec::<i32>::new(), "unless it has nothing to deliver");
        w.observe(1, 6_000, 10);
        assert_eq!(w.ahead(5_000, 10, &[]), Vec::<i32>::new(), "within the allowed skew");
        w.observe(0, 12_000, 20);
        assert_eq!(w.ahead(5_000, 20, &[]), vec![0]);
        assert_eq!(w.ahead(5_000, 2_000, &[]), Vec::<i32>::new(), "an idle partition holds nobody back");
    }

    #[test]
    fn a_resting_partition_keeps_its_clock_but_holds_nothing_back() {
        let mut w = WatermarkTracker::new(10, 1_000);
        w.observe(0, 5_000, 0);
        w.observe(1, 100, 0);
        w.hold(&[1], 0);
        assert_eq!(w.advance(0), Some(90), "only partition 1 holds the watermark");
        assert_eq!(w.partition_watermark(0), Some(4_990), "partition 0 still judges its own records");
        assert_eq!(w.ahead(1_000, 0, &[]), Vec::<i32>::new(), "a resting partition is never held");
        assert!(w.snapshot().0.iter().any(|(p, c)| *p == 0 && c.max_event_ms == Some(5_000)), "and is checkpointed");
    }

    #[test]
    fn snapshot_restores_exactly() {
        let mut w = WatermarkTracker::new(5, 100);
        w.observe(3, 77, 1);
        w.advance(1);
        let (clocks, mark) = w.snapshot();
        let mut restored = WatermarkTracker::new(5, 100);
        restored.restore(&clocks, mark);
        assert_eq!(restored.snapshot(), w.snapshot());
        assert_eq!(restored.current(), Some(72));
    }

    /// A deterministic generator for the property test.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Any arrival order in which no event is later than the allowed lateness gives
    /// the same windows as a batch group-by, and nothing is counted late.
    #[test]
    fn reordering_within_the_lateness_gives_the_batch_result() {
        for seed in 1..300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let lateness = 1 + rng.next(5_000) as i64;
            let spec = match rng.next(2) {
                0 => WindowSpec::Tumbling { size_ms: 1 + rng.next(3_000) as i64 },
                _ => {
                    let slide = 1 + rng.next(1_000) as i64;
                    WindowSpec::Hopping { size_ms: slide * (1 + rng.next(4) as i64), slide_ms: slide }
                }
            };
            let partitions = 1 + rng.next(4) as i32;
            // Each partition's events in event-time order, then displaced by less than the lateness.
            let mut arrivals: Vec<(i64, i32, i64)> = Vec::new();
            for p in 0..partitions {
                let mut t = rng.next(10_000) as i64;
                for _ in 0..rng.next(300) {
                    t += rng.next(200) as i64;
                    let displaced = t + rng.next(lateness as u64) as i64;
                    arrivals.push((displaced, p, t));
                }
            }
            arrivals.sort();

            let mut batch: BTreeMap<Window, (u64, i64)> = BTreeMap::new();
            let mut buf = Vec::new();
            for &(_, _, t) in &arrivals {
                spec.windows_of(t, &mut buf);
                for w in &buf {
                    let e = batch.entry(*w).or_default();
                    e.0 += 1;
                    e.1 += t;
                }
            }

            let mut tracker = WatermarkTracker::new(lateness, i64::MAX / 2);
            for p in 0..partitions {
                tracker.assign(p, 0);
            }
            let mut streamed: BTreeMap<Window, (u64, i64)> = BTreeMap::new();
            let mut late = 0;
            for (now, &(_, p, t)) in arrivals.iter().enumerate() {
                let mark = tracker.current();
                spec.windows_of(t, &mut buf);
                for w in &buf {
                    if mark.is_some_and(|m| w.end <= m) {
                        late += 1;
                    } else {
                        let e = streamed.entry(*w).or_default();
                        e.0 += 1;
                        e.1 += t;
                    }
                }
                tracker.observe(p, t, now as i64);
                tracker.advance(now as i64);
            }
            assert_eq!(late, 0, "seed {seed}: {spec:?}, lateness {lateness}");
            assert_eq!(streamed, batch, "seed {seed}: {spec:?}, lateness {lateness}");
        }
    }
}
