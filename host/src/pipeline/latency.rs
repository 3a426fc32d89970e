//! End-to-end latency: from a record's source timestamp (Kafka's create time) to the
//! commit of the checkpoint that made its effect visible in the sink.

use std::collections::VecDeque;

/// Latencies in whole milliseconds, one bucket per millisecond up to a minute.
#[derive(Clone, Debug)]
pub struct Latency {
    buckets: Vec<u64>,
    count: u64,
    /// Timestamps of records processed since the last commit, run-length encoded (a fast
    /// producer stamps hundreds of records with the same millisecond): a record each would
    /// cost 8 bytes per record between checkpoints, megabytes at a million events/s.
    pending: VecDeque<(i64, usize)>,
    /// How many records `pending` holds.
    pending_records: usize,
    /// A sample of the latest latencies, oldest overwritten first.
    recent: Vec<u32>,
    next_recent: usize,
}

const MAX_MS: usize = 60_000;
/// Samples kept of the latest latencies, and taken of one commit at most: the latest
/// 16 commits or more.
const RECENT: usize = 1024;
const PER_COMMIT: usize = 64;

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: vec![0; MAX_MS + 1],
            count: 0,
            pending: VecDeque::new(),
            pending_records: 0,
            recent: Vec::new(),
            next_recent: 0,
        }
    }
}

impl Latency {
    /// Notes the source timestamps of processed records; negative ones mean "none".
    pub fn processed(&mut self, timestamps: &[i64]) {
        for &t in timestamps.iter().filter(|&&t| t >= 0) {
            match self.pending.back_mut() {
                Some((last, n)) if *last == t => *n += 1,
                _ => self.pending.push_back((t, 1)),
            }
            self.pending_records += 1;
        }
    }

    /// How many records are pending: a checkpoint taken now holds exactly these.
    pub fn mark(&self) -> usize {
        self.pending_records
    }

    /// A checkpoint holding the first `upto` pending records (its [`mark`](Self::mark))
    /// committed at `now_ms`.
    pub fn committed(&mut self, upto: usize, now_ms: i64) {
        let upto = upto.min(self.pending_records);
        let stride = upto.div_ceil(PER_COMMIT).max(1);
        let mut done = 0;
        while done < upto {
            let Some((t, run)) = self.pending.front_mut() else { break };
            let n = (*run).min(upto - done);
            let ms = (now_ms - *t).clamp(0, MAX_MS as i64) as usize;
            *run -= n;
            if *run == 0 {
                self.pending.pop_front();
            }
            self.buckets[ms] += n as u64;
            self.count += n as u64;
            // Every `stride`-th record of the commit is sampled: those among done..done + n.
            for _ in 0..(done + n).div_ceil(stride) - done.div_ceil(stride) {
                if self.recent.len() < RECENT {
                    self.recent.push(ms as u32);
                } else {
                    self.recent[self.next_recent] = ms as u32;
                }
                self.next_recent = (self.next_recent + 1) % RECENT;
            }
            done += n;
        }
        self.pending_records -= done;
    }

    /// p50 and p99 in ms over a sample of the latest commits' records.
    pub fn recent(&self) -> Option<(u64, u64)> {
        let mut sorted = self.recent.clone();
        sorted.sort_unstable();
        let at =
            |q: f64| sorted.get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)).map(|&ms| ms as u64);
        at(0.5).zip(at(0.99))
    }

    /// The `q` quantile (0..=1) in milliseconds, if any record had a timestamp.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        self.buckets
            .iter()
            .position(|&n| {
                seen += n;
                seen >= rank
            })
            .map(|ms| ms as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_count_from_source_time_to_commit() {
        let mut l = Latency::default();
        assert_eq!(l.quantile(0.5), None);
        l.processed(&[1_000, 1_010, -1, 1_020, 1_030]);
        l.committed(usize::MAX, 1_100);
        l.processed(&[2_000]);
        l.committed(usize::MAX, 2_500);
        // Latencies: 100, 90, 80, 70, 500.
        assert_eq!(l.quantile(0.5), Some(90));
        assert_eq!(l.quantile(0.99), Some(500));
        assert_eq!(l.quantile(0.0), Some(70));
        assert_eq!(l.recent(), Some((90, 500)));
    }

    #[test]
    fn a_commit_takes_only_the_records_it_holds() {
        let mut l = Latency::default();
        l.processed(&[1_000, 1_000, 1_000, 1_500]);
        let mark = l.mark();
        l.processed(&[1_500, 1_500, 2_000]);
        assert_eq!(l.mark(), 7);
        l.committed(2, 1_100);
        l.committed(mark - 2, 2_000);
        assert_eq!(l.mark(), 3, "the records after the mark wait for the next commit");
        l.committed(l.mark(), 3_000);
        assert_eq!(l.mark(), 0);
        // Latencies: 100, 100, 1000, 500, 1500, 1500, 1000.
        assert_eq!(l.quantile(0.0), Some(100));
        assert_eq!(l.quantile(0.5), Some(1_000));
        assert_eq!(l.quantile(1.0), Some(1_500));
        assert_eq!(l.count, 7);
    }

    #[test]
    fn recent_latency_forgets_old_commits() {
        let mut l = Latency::default();
        l.processed(&vec![0; 10_000]);
        l.committed(usize::MAX, 5_000);
        for round in 1..=(RECENT / PER_COMMIT + 1) as i64 {
            l.processed(&vec![round * 10_000; 1_000]);
            l.committed(usize::MAX, round * 10_000 + 20);
        }
        assert_eq!(l.recent(), Some((20, 20)), "the slow first commit has been overwritten");
        assert_eq!(l.quantile(0.99), Some(5_000), "but the run's quantiles keep it");
    }
}
