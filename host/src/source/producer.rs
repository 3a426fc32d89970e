//! The built-in synthetic trip producer as a source: one partition, offset `n` is the
//! `n`-th event of the seed's stream, so seeking replays the same events.

use anyhow::Result;
use weir_sdk::RawBatch;

use super::Source;
use crate::rides::{TripGenerator, TripOptions};

/// Generated trip events.
pub struct ProducerSource {
    options: TripOptions,
    generator: TripGenerator,
    next: i64,
    limit: Option<u64>,
    buf: Vec<u8>,
}

impl ProducerSource {
    /// A producer of `limit` events (endless if `None`).
    pub fn new(options: TripOptions, limit: Option<u64>) -> Self {
        ProducerSource {
            generator: TripGenerator::new(options.clone()),
            options,
            next: 0,
            limit,
            buf: Vec::with_capacity(256),
        }
    }
}

impl Source for ProducerSource {
    fn describe(&self) -> String {
        format!("producer seed {}", self.options.seed)
    }

    fn partitions(&self) -> Vec<i32> {
        vec![0]
    }

    fn seek(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        let Some(&(_, offset)) = offsets.iter().find(|(p, _)| *p == 0) else { return Ok(()) };
        // The stream is a pure function of the seed: regenerate up to the offset.
        self.generator = TripGenerator::new(self.options.clone());
        for _ in 0..offset {
            self.buf.clear();
            self.generator.next_into(&mut self.buf);
        }
        self.next = offset;
        Ok(())
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        vec![(0, self.next)]
    }

    fn lag(&mut self) -> Option<u64> {
        self.limit.map(|l| l.saturating_sub(self.next as u64))
    }

    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>> {
        let remaining = self.limit.map_or(u64::MAX, |l| l.saturating_sub(self.next as u64));
        if remaining == 0 {
            return Ok(None);
        }
        let mut batch = RawBatch::default();
        for _ in 0..(max as u64).min(remaining) {
            self.buf.clear();
            let city = self.generator.next_into(&mut self.buf);
            let key = self.options.cities[city].as_bytes();
            batch.push(&self.buf, key, -1, 0, self.next);
            self.next += 1;
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeking_replays_the_same_events() {
        let mut a = ProducerSource::new(TripOptions::default(), Some(100));
        let first = a.poll(60).unwrap().unwrap();
        let mut b = ProducerSource::new(TripOptions::default(), Some(100));
        b.seek(&[(0, 40)]).unwrap();
        let resumed = b.poll(60).unwrap().unwrap();
        assert_eq!(resumed.offsets[0], 40);
        assert_eq!(resumed.payloads.get(0), first.payloads.get(40));
        assert_eq!(resumed.len(), 60);
        assert!(b.poll(10).unwrap().is_none(), "the limit ends the stream");
    }
}
