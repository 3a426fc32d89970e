//! The built-in synthetic trip producer as a source: one partition, offset `n` is the
//! `n`-th event of the seed's stream, so seeking replays the same events. Paced, it makes
//! events due at a fixed rate of wall time; each record's source timestamp is when it was
//! read, so event-to-row latency means something for it too.

use std::num::NonZeroU32;
use std::time::Instant;

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
    /// Events per second of wall time, and since when at which offset.
    pace: Option<(NonZeroU32, Option<(Instant, i64)>)>,
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
            pace: None,
        }
    }

    /// Makes `pace` events due per second of wall time, counted from the first poll.
    pub fn paced(mut self, pace: Option<NonZeroU32>) -> Self {
        self.pace = pace.map(|p| (p, None));
        self
    }

    /// The events due by now that have not been read: all the remaining ones unpaced.
    fn due(&self) -> Option<u64> {
        let remaining = self.limit.map(|l| l.saturating_sub(self.next as u64));
        let Some((pace, since)) = self.pace else { return remaining };
        let (started, from) = since.unwrap_or((Instant::now(), self.next));
        let due = (started.elapsed().as_secs_f64() * pace.get() as f64) as i64 + from - self.next;
        let due = due.max(0) as u64;
        Some(remaining.map_or(due, |r| r.min(due)))
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

    fn lags(&mut self) -> Option<Vec<(i32, u64)>> {
        self.due().map(|due| vec![(0, due)])
    }

    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>> {
        if self.limit.is_some_and(|l| self.next as u64 >= l) {
            return Ok(None);
        }
        if let Some((_, since @ None)) = &mut self.pace {
            *since = Some((Instant::now(), self.next));
        }
        let mut batch = RawBatch::default();
        let now = crate::pipeline::now_ms();
        for _ in 0..(max as u64).min(self.due().unwrap_or(u64::MAX)) {
            self.buf.clear();
            let city = self.generator.next_into(&mut self.buf);
            let key = self.options.cities[city].as_bytes();
            batch.push(&self.buf, key, now, 0, self.next);
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

    #[test]
    fn a_paced_producer_makes_events_due_with_wall_time() {
        let mut paced = ProducerSource::new(TripOptions::default(), Some(1_000)).paced(NonZeroU32::new(1_000));
        let started = Instant::now();
        let mut read = 0;
        while read < 200 {
            read += paced.poll(10_000).unwrap().unwrap().len();
        }
        // 200 events at 1000/s cannot all be read in less than 0.2 s.
        assert!(started.elapsed().as_secs_f64() >= 0.19, "{:?}", started.elapsed());
        assert!(read < 1_000, "not all at once: {read}");
    }
}
