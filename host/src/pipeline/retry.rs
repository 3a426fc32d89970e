//! Retrying transient sink failures with capped exponential backoff and full jitter, so
//! several hosts that lost the same database do not all come back at the same instant.
//! While a checkpoint is being retried nothing new is read: consumption pauses rather
//! than buffering without bound, and the checkpoint itself is kept whole until it lands.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;

/// How long to wait between attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first delay's upper bound.
    pub initial: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (1-based), jittered by `noise` in [0, 1).
    pub fn delay(&self, attempt: u32, noise: f64) -> Duration {
        let ceiling = self.initial.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max);
        // Full jitter, but never less than a tenth of the ceiling: no busy loop.
        ceiling.mul_f64(0.1 + 0.9 * noise)
    }
}

/// A small xorshift generator: jitter needs spread, not cryptographic quality.
struct Jitter(u64);

impl Jitter {
    fn new() -> Self {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        Jitter(seed | 1)
    }

    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A failed attempt, and whether trying again may help.
pub struct Failed {
    /// What went wrong.
    pub error: anyhow::Error,
    /// Whether it may go away on its own (a lost connection, a restarting server).
    pub transient: bool,
}

/// Runs `op` until it succeeds, fails for good, or `stop` is raised. Each retry is
/// reported on stderr with its cause.
pub fn retry<T>(
    what: &str,
    backoff: &Backoff,
    stop: &AtomicBool,
    mut op: impl FnMut() -> std::result::Result<T, Failed>,
) -> Result<T> {
    let mut jitter = Jitter::new();
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        match op() {
            Ok(value) => {
                if attempt > 0 {
                    eprintln!("\n{what}: succeeded after {attempt} retries ({:.1?})", started.elapsed());
                }
                return Ok(value);
            }
            Err(Failed { error, transient: true }) if !stop.load(Ordering::SeqCst) => {
                attempt += 1;
                let delay = backoff.delay(attempt, jitter.next());
                eprintln!("\n{what} failed: {error:#}; retry {attempt} in {delay:.1?}");
                std::thread::sleep(delay);
            }
            Err(Failed { error, .. }) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use anyhow::anyhow;

    use super::*;

    fn failed(message: &str) -> Failed {
        Failed { error: anyhow!("{message}"), transient: message.contains("reset") }
    }

    #[test]
    fn delays_grow_to_the_cap_and_jitter_spreads_them() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(10), "never less than a tenth of the ceiling");
        assert!(b.delay(1, 0.999) <= Duration::from_millis(100));
        assert!(b.delay(3, 0.999) > Duration::from_millis(300), "doubling per attempt");
        assert_eq!(b.delay(20, 0.0), Duration::from_millis(500));
        assert!(b.delay(20, 0.999) <= Duration::from_secs(5));
        let mut j = Jitter::new();
        let draws: Vec<f64> = (0..100).map(|_| j.next()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        assert!(draws.iter().any(|&d| d < 0.3) && draws.iter().any(|&d| d > 0.7));
    }

    #[test]
    fn transient_errors_are_retried_and_others_are_not() {
        let fast = Backoff { initial: Duration::from_millis(1), max: Duration::from_millis(2) };
        let stop = AtomicBool::new(false);
        let mut calls = 0;
        let value = retry("commit", &fast, &stop, || {
            calls += 1;
            if calls < 3 {
                return Err(failed("connection reset"));
            }
            Ok(calls)
        })
        .unwrap();
        assert_eq!(value, 3);
        let mut calls = 0;
        let err = retry::<()>("commit", &fast, &stop, || {
            calls += 1;
            Err(failed("syntax error"))
        })
        .unwrap_err();
        assert_eq!((calls, err.to_string()), (1, "syntax error".to_string()));
    }
}
