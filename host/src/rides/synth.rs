//! Synthetic trip events, deterministic by seed: the same seed always yields the same
//! stream, so tests can compute their expectations independently.

use std::io::Write;

/// What the generator produces.
#[derive(Clone, Debug)]
pub struct TripOptions {
    /// The seed.
    pub seed: u64,
    /// Cities to draw from.
    pub cities: Vec<String>,
    /// Event time of the first event, ms since the epoch.
    pub start_ms: i64,
    /// Event-time rate: events per second of event time.
    pub events_per_second: u32,
    /// Share of events delivered out of order: half of them 2 to 5 minutes behind the
    /// stream (inside the rides example's 10-minute lateness, so they still count), half
    /// 15 to 18 minutes behind (beyond it, so they go to the late lane). The gap between
    /// the two keeps which events are late independent of how partitions interleave.
    pub late_share: f64,
    /// Share of malformed events: truncated JSON, a fare given as a string, a missing
    /// city, or a negative fare.
    pub malformed_share: f64,
}

impl Default for TripOptions {
    fn default() -> Self {
        TripOptions {
            seed: 42,
            cities: ["Denver", "Oslo", "Lagos", "Lima", "Pune", "Austin", "Berlin", "Tokyo", "Seoul", "Quito"]
                .map(String::from)
                .to_vec(),
            // 2024-05-01T00:00:00Z
            start_ms: 1_714_521_600_000,
            events_per_second: 1000,
            late_share: 0.02,
            malformed_share: 0.01,
        }
    }
}

/// An endless, deterministic stream of trip events as JSON.
pub struct TripGenerator {
    options: TripOptions,
    rng: u64,
    n: u64,
}

impl TripGenerator {
    /// A generator from its options.
    pub fn new(options: TripOptions) -> Self {
        // splitmix64 of the seed, so nearby seeds give unrelated streams.
        let rng = options.seed.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1;
        TripGenerator { options, rng, n: 0 }
    }

    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Appends the next event to `out` and returns its city (the Kafka key).
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> usize {
        let n = self.n;
        self.n += 1;
        let city = self.below(self.options.cities.len() as u64) as usize;
        let mut event_ms = self.options.start_ms + (n as i64 * 1000) / i64::from(self.options.events_per_second.max(1));
        if self.unit() < self.options.late_share {
            let behind = if self.below(2) == 0 { 2 * 60_000 } else { 15 * 60_000 };
            event_ms -= behind + self.below(3 * 60_000) as i64;
        }
        let fare = (250 + self.below(7_500)) as f64 / 100.0;
        let distance = (5 + self.below(300)) as f64 / 10.0;
        let status = if self.below(4) == 0 { "started" } else { "completed" };
        let (driver, rider) = (self.below(10_000), self.below(100_000));
        let malformed = if self.unit() < self.options.malformed_share { Some(self.below(4)) } else { None };
        let start = out.len();
        let city_name = &self.options.cities[city];
        let time = weir_sdk::time::format_iso8601(event_ms);
        // Writing into a Vec cannot fail.
        let _ = match malformed {
            Some(1) => write!(
                out,
                r#"{{"trip_id":"t-{seed}-{n:012}","city":"{city_name}","driver_id":"d-{driver:07}","rider_id":"r-{rider:08}","fare":"{fare:.2}","distance_km":{distance:.2},"status":"{status}","event_time":"{time}"}}"#,
                seed = self.options.seed
            ),
            Some(2) => write!(
                out,
                r#"{{"trip_id":"t-{seed}-{n:012}","driver_id":"d-{driver:07}","rider_id":"r-{rider:08}","fare":{fare:.2},"distance_km":{distance:.2},"status":"{status}","event_time":"{time}"}}"#,
                seed = self.options.seed
            ),
            Some(3) => write!(
                out,
                r#"{{"trip_id":"t-{seed}-{n:012}","city":"{city_name}","driver_id":"d-{driver:07}","rider_id":"r-{rider:08}","fare":-{fare:.2},"distance_km":{distance:.2},"status":"{status}","event_time":"{time}"}}"#,
                seed = self.options.seed
            ),
            _ => write!(
                out,
                r#"{{"trip_id":"t-{seed}-{n:012}","city":"{city_name}","driver_id":"d-{driver:07}","rider_id":"r-{rider:08}","fare":{fare:.2},"distance_km":{distance:.2},"status":"{status}","event_time":"{time}"}}"#,
                seed = self.options.seed
            ),
        };
        if malformed == Some(0) {
            // Truncated: cut the record somewhere in its second half.
            let len = out.len() - start;
            out.truncate(start + len / 2 + self.below(len as u64 / 2) as usize);
        }
        city
    }

    /// The next event as its own buffer.
    pub fn next_event(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(220);
        self.next_into(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_by_seed() {
        let take = |seed| {
            let mut g = TripGenerator::new(TripOptions { seed, ..Default::default() });
            (0..50).map(|_| g.next_event()).collect::<Vec<_>>()
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
    }

    #[test]
    fn shares_of_malformed_and_late_events_are_near_their_settings() {
        let options = TripOptions { malformed_share: 0.1, late_share: 0.05, ..Default::default() };
        let mut g = TripGenerator::new(options);
        let events: Vec<String> = (0..20_000).map(|_| String::from_utf8(g.next_event()).unwrap()).collect();
        let broken = events
            .iter()
            .filter(|e| {
                !e.ends_with('}') || e.contains("\"fare\":\"") || e.contains("\"fare\":-") || !e.contains("\"city\"")
            })
            .count();
        assert!((1_600..2_400).contains(&broken), "{broken}");
        assert!(events[0].starts_with(r#"{"trip_id":"t-42-000000000000","city":""#), "{}", events[0]);
    }
}
