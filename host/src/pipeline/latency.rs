//! End-to-end latency: from a record's source timestamp (Kafka's create time) to the
//! commit of the checkpoint that made its effect visible in the sink.

/// Latencies in whole milliseconds, one bucket per millisecond up to a minute.
#[derive(Clone, Debug)]
pub struct Latency {
    buckets: Vec<u64>,
    count: u64,
    /// Timestamps of records processed since the last commit.
    pending: Vec<i64>,
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
        Latency { buckets: vec![0; MAX_MS + 1], count: 0, pending: Vec::new(), recent: Vec::new(), next_recent: 0 }
    }
}

impl Latency {
    /// Notes the source timestamps of processed records; negative ones mean "none".
    pub fn processed(&mut self, timestamps: &[i64]) {
        self.pending.extend(timestamps.iter().copied().filter(|&t| t >= 0));
    }

    /// How many records are pending: a checkpoint taken now holds exactly these.
    pub fn mark(&self) -> usize {
        self.pending.len()
    }

    /// A checkpoint holding the first `upto` pending records (its [`mark`](Self::mark))
    /// committed at `now_ms`.
    pub fn committed(&mut self, upto: usize, now_ms: i64) {
        let upto = upto.min(self.pending.len());
        let stride = upto.div_ceil(PER_COMMIT).max(1);
        for (i, t) in self.pending.drain(..upto).enumerate() {
            let ms = (now_ms - t).clamp(0, MAX_MS as i64) as usize;
            self.buckets[ms] += 1;
            self.count += 1;
            if i % stride == 0 {
                if self.recent.len() < RECENT {
                    self.recent.push(ms as u32);
                } else {
                    self.recent[self.next_recent] = ms as u32;
                }
                self.next_recent = (self.next_recent + 1) % RECENT;
            }
        }
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
