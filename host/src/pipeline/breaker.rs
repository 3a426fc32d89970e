//! The data-quality circuit breaker. A critical rule violation, or a dead-letter rate
//! above the threshold over a sliding interval of processing time, opens it: the run
//! checkpoints, stops reading, and says why. It closes after the cooldown or on command.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// Why and since when the breaker is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// Why it opened, naming the rule or the rate.
    pub reason: String,
    /// When it opened.
    pub since: Instant,
    /// When the cooldown ends.
    pub until: Instant,
}

/// The breaker's state and its sliding window of (time, records, dead letters).
pub struct Breaker {
    config: BreakerConfig,
    window: VecDeque<(Instant, u64, u64)>,
    records: u64,
    dead: u64,
    open: Option<Open>,
    /// How often it has opened.
    pub trips: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker { config, window: VecDeque::new(), records: 0, dead: 0, open: None, trips: 0 }
    }

    /// Counts one batch: `records` in, `dead` of them dead letters, and the first critical
    /// violation if any. Returns the opening if this batch opened the breaker.
    pub fn observe(&mut self, now: Instant, records: u64, dead: u64, critical: Option<String>) -> Option<&Open> {
        self.window.push_back((now, records, dead));
        self.records += records;
        self.dead += dead;
        while let Some(&(at, r, d)) = self.window.front() {
            if now.duration_since(at) <= self.config.interval {
                break;
            }
            self.window.pop_front();
            self.records -= r;
            self.dead -= d;
        }
        if self.open.is_some() {
            return None;
        }
        let rate = self.dead as f64 / self.records.max(1) as f64;
        let reason = match critical {
            Some(violation) => format!("a critical rule was violated: {violation}"),
            None if self.records >= self.config.min_records && rate > self.config.dead_letter_rate => format!(
                "{} of the last {} records ({:.1}%) were dead letters within {:?}, above breaker.dead_letter_rate = {}",
                self.dead,
                self.records,
                rate * 100.0,
                self.config.interval,
                self.config.dead_letter_rate
            ),
            None => return None,
        };
        self.trips += 1;
        self.open = Some(Open { reason, since: now, until: now + self.config.cooldown });
        self.open.as_ref()
    }

    /// The opening, while open.
    pub fn open(&self) -> Option<&Open> {
        self.open.as_ref()
    }

    /// Whether the cooldown of an open breaker has passed.
    pub fn cooled(&self, now: Instant) -> bool {
        self.open.as_ref().is_some_and(|o| now >= o.until)
    }

    /// Closes the breaker and forgets the window, so the records that opened it do not
    /// open it again at once.
    pub fn close(&mut self) -> Option<Open> {
        self.window.clear();
        (self.records, self.dead) = (0, 0);
        self.open.take()
    }

    /// How long an open breaker has been open.
    pub fn open_for(&self, now: Instant) -> Option<Duration> {
        self.open.as_ref().map(|o| now.duration_since(o.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            dead_letter_rate: 0.5,
            interval: Duration::from_secs(10),
            min_records: 100,
            cooldown: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_dead_letter_rate_over_the_sliding_interval_opens_it() {
        let t0 = Instant::now();
        let mut breaker = Breaker::new(config());
        // Too few records to judge, however bad.
        assert!(breaker.observe(t0, 50, 50, None).is_none());
        // 60 of 150 is 40%: below the threshold.
        assert!(breaker.observe(t0 + Duration::from_secs(1), 100, 10, None).is_none());
        // The first batch slides out; 10 + 80 of 200 is 45%, still below.
        assert!(breaker.observe(t0 + Duration::from_millis(10_500), 100, 80, None).is_none());
        // 10 + 80 + 90 of 300 is 60%.
        let open = breaker.observe(t0 + Duration::from_millis(10_800), 100, 90, None).cloned().unwrap();
        assert!(open.reason.contains("180 of the last 300 records (60.0%)"), "{}", open.reason);
        assert_eq!(open.until, t0 + Duration::from_millis(70_800));
        assert!(!breaker.cooled(t0 + Duration::from_secs(70)) && breaker.cooled(open.until));
        assert_eq!(breaker.close(), Some(open));
        // The window starts afresh after closing.
        assert!(breaker.observe(t0 + Duration::from_secs(71), 100, 60, None).is_some());
        assert_eq!(breaker.trips, 2);
    }

    #[test]
    fn a_critical_violation_opens_it_at_once() {
        let mut breaker = Breaker::new(config());
        let open = breaker.observe(Instant::now(), 1, 1, Some("rule fare-sane".into())).unwrap();
        assert_eq!(open.reason, "a critical rule was violated: rule fare-sane");
    }
}
