//! A quality rule's check, `SCORE OP THRESHOLD` (`accuracy >= 0.99`, `latency_p99 <= 5m`):
//! the scores there are, and a check read with the threshold in the score's unit.

use anyhow::{bail, Result};

use super::duration::parse_duration;

/// What a rule measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Records that parsed, of those read (and of those a sequence says were sent).
    Completeness,
    /// Records that passed the validators, of those that parsed.
    Accuracy,
    /// Records on time, of those accepted.
    Timeliness,
    /// Output rows inside their ranges, of those written.
    Validity,
    /// Dead letters, of the records read.
    DeadLetterRate,
    /// Event-to-row delay, median.
    LatencyP50,
    /// Event-to-row delay, 99th percentile.
    LatencyP99,
    /// How far the newest committed event time trails the wall clock.
    Freshness,
    /// The share of minutes the pipeline committed and was not held.
    Uptime,
}

impl Score {
    /// Every score, as written in a check.
    pub const ALL: [(&'static str, Score); 9] = [
        ("completeness", Score::Completeness),
        ("accuracy", Score::Accuracy),
        ("timeliness", Score::Timeliness),
        ("validity", Score::Validity),
        ("dead_letter_rate", Score::DeadLetterRate),
        ("latency_p50", Score::LatencyP50),
        ("latency_p99", Score::LatencyP99),
        ("freshness", Score::Freshness),
        ("uptime", Score::Uptime),
    ];

    /// As written.
    pub fn name(self) -> &'static str {
        Score::ALL.iter().find(|(_, s)| *s == self).map_or("?", |(n, _)| n)
    }

    /// Whether it is a duration (in ms) rather than a share.
    pub fn is_duration(self) -> bool {
        matches!(self, Score::LatencyP50 | Score::LatencyP99 | Score::Freshness)
    }
}

/// How a score is compared with the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `>=`
    AtLeast,
    /// `<=`
    AtMost,
}

/// A parsed check: `score op threshold`, the threshold in ms for durations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Check {
    /// What is measured.
    pub score: Score,
    /// How it is compared.
    pub op: Op,
    /// With what: a share in [0, 1], or ms.
    pub threshold: f64,
}

impl Check {
    /// Whether `value` keeps the check.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Op::AtLeast => value >= self.threshold,
            Op::AtMost => value <= self.threshold,
        }
    }

    /// Reads `text`; errors say what is wrong, the caller adds the key.
    pub fn parse(text: &str) -> Result<Check> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [score, op, threshold] = parts[..] else {
            bail!("{text:?} is not SCORE OP THRESHOLD, e.g. \"accuracy >= 0.99\" or \"latency_p99 <= 5m\"");
        };
        let Some(&(_, score)) = Score::ALL.iter().find(|(n, _)| *n == score) else {
            let names: Vec<&str> = Score::ALL.iter().map(|(n, _)| *n).collect();
            bail!("unknown score {score:?}; the scores are {}", names.join(", "));
        };
        let op = match op {
            ">=" => Op::AtLeast,
            "<=" => Op::AtMost,
            other => bail!("unknown comparison {other:?}; use >= or <="),
        };
        let threshold = threshold.trim_matches('"');
        let threshold = if score.is_duration() {
            match parse_duration(threshold) {
                Ok(d) => d.as_millis() as f64,
                Err(_) => bail!("{} is a duration: write e.g. 60s or 5m, not {threshold:?}", score.name()),
            }
        } else {
            match threshold.parse::<f64>() {
                Ok(v) if (0.0..=1.0).contains(&v) => v,
                _ => bail!("{} is a share: write a number from 0 to 1, not {threshold:?}", score.name()),
            }
        };
        Ok(Check { score, op, threshold })
    }
}
