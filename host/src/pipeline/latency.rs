//! End-to-end latency: from a record's source timestamp (Kafka's create time) to the
//! commit of the checkpoint that made its effect visible in the sink.

/// Latencies in whole milliseconds, one bucket per millisecond up to a minute.
#[derive(Clone, Debug)]
pub struct Latency {
    buckets: Vec<u64>,
    count: u64,
    /// Timestamps of records processed since the last commit.
    pending: Vec<i64>,
}

const MAX_MS: usize = 60_000;

impl Default for Latency {
    fn default() -> Self {
        Latency { buckets: vec![0; MAX_MS + 1], count: 0, pending: Vec::new() }
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
        for t in self.pending.drain(..upto.min(self.pending.len())) {
            let ms = (now_ms - t).clamp(0, MAX_MS as i64) as usize;
            self.buckets[ms] += 1;
            self.count += 1;
        }
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
    }
}
