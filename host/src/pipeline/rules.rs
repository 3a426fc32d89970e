//! Quality rules and SLAs (`[[quality.rule]]`), judged from what the sink holds: the
//! scores over `weir_quality` (so every host of a group judges the group's data, and a
//! restart forgets nothing), and each rule's minutes in `weir_sla`, from which an SLA's
//! compliance and error budget follow. Judged with each heartbeat, on the sink thread.

use std::sync::Mutex;

use anyhow::Result;
use serde::Serialize;

use crate::config::{Check, QualityConfig, RuleConfig, Score, Severity};
use crate::sink::{delay_quantile, QualitySums, Sink, SlaMinute};

/// The pipeline's own minutes up, kept beside the rules' for `uptime`.
pub const UP: &str = "(up)";
const MINUTE: i64 = 60_000;

/// A rule as last judged.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    /// The rule's name.
    pub rule: String,
    /// Its check, as written.
    pub check: String,
    /// The score it reads.
    pub score: Score,
    /// `warn`, `page` or `stop`.
    pub severity: Severity,
    /// The span, in ms.
    pub over_ms: i64,
    /// The score now (a share, or ms), if there is data to judge.
    pub value: Option<f64>,
    /// Whether it holds; `None` without data.
    pub ok: Option<bool>,
    /// Since when it has been in this state, ms since the epoch.
    pub since_ms: i64,
    /// For an SLA: its compliance and budget over its period.
    pub sla: Option<SlaState>,
}

/// An SLA's standing over its period.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct SlaState {
    /// The share of minutes the rule must hold.
    pub target: f64,
    /// The period, in ms.
    pub period_ms: i64,
    /// The share of minutes since the period began (or since it was first judged) that held.
    pub compliance: f64,
    /// Minutes that did not hold (or went unjudged while the pipeline was down).
    pub bad_minutes: i64,
    /// What is left of the error budget (`(1 - target) × period`): 1 untouched, 0 spent, below 0 overspent.
    pub budget_remaining: f64,
}

/// A rule that changed state, for alerts.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// The rule after the change.
    pub verdict: Verdict,
    /// Whether it now fails (else it holds again).
    pub firing: bool,
}

/// The span the scores on the status page and in `/metrics` are taken over.
pub const SPAN_MS: i64 = 300_000;

/// One judgement.
pub struct Judged {
    /// Rules that changed state.
    pub changes: Vec<Change>,
    /// Every rule's verdict.
    pub verdicts: Vec<Verdict>,
    /// Every score over [`SPAN_MS`].
    pub scores: Vec<(Score, Option<f64>)>,
}

/// The rules of a pipeline and their last verdicts.
pub struct Rules {
    rules: Vec<(RuleConfig, Check)>,
    last: Mutex<Vec<Verdict>>,
    /// A `stop` rule that just broke, for the run loop's breaker.
    stop: Mutex<Option<String>>,
}

impl Rules {
    /// The rules of `config` (perhaps none: the scores are judged all the same).
    pub fn new(config: &QualityConfig) -> Self {
        let rules: Vec<(RuleConfig, Check)> = config.rule.iter().cloned().zip(config.checks()).collect();
        Rules { rules, last: Mutex::new(Vec::new()), stop: Mutex::new(None) }
    }

    /// Why a `stop` rule broke, once.
    pub fn take_stop(&self) -> Option<String> {
        self.stop.lock().expect("rules lock").take()
    }

    /// Judges every rule at `now_ms`, records this minute of each (and of the pipeline
    /// being `up`), and returns the rules whose state changed, and every score over
    /// [`SPAN_MS`].
    pub fn judge(&self, sink: &mut dyn Sink, pipeline: &str, now_ms: i64, up: bool) -> Result<Judged> {
        let minute = now_ms.div_euclid(MINUTE) * MINUTE;
        sink.record_minutes(pipeline, &[SlaMinute { rule: UP.into(), minute, ok: up, value: None }])?;
        let mut minutes = Vec::new();
        let mut sums: Vec<(i64, QualitySums)> = vec![(SPAN_MS, sink.quality_sums(pipeline, SPAN_MS)?)];
        let scores = Score::ALL
            .iter()
            .filter(|(_, s)| *s != Score::Uptime)
            .map(|&(_, s)| (s, score(s, &sums[0].1, now_ms)))
            .collect();
        let mut verdicts = Vec::with_capacity(self.rules.len());
        for (rule, check) in &self.rules {
            let over_ms = rule.over.as_millis() as i64;
            let value = if check.score == Score::Uptime {
                let since = now_ms - over_ms;
                let record = sink.sla_record(pipeline, UP, since)?;
                share_of_minutes(record.ok, record.first_ms.unwrap_or(minute).max(since), minute)
            } else {
                if !sums.iter().any(|(o, _)| *o == over_ms) {
                    sums.push((over_ms, sink.quality_sums(pipeline, over_ms)?));
                }
                let (_, s) = sums.iter().find(|(o, _)| *o == over_ms).expect("just read");
                score(check.score, s, now_ms)
            };
            let ok = value.map(|v| check.holds(v));
            if let Some(ok) = ok {
                minutes.push(SlaMinute { rule: rule.name(), minute, ok, value });
            }
            verdicts.push(Verdict {
                rule: rule.name(),
                check: rule.check.trim().to_string(),
                score: check.score,
                severity: rule.severity,
                over_ms,
                value,
                ok,
                since_ms: now_ms,
                sla: None,
            });
        }
        sink.record_minutes(pipeline, &minutes)?;
        for ((rule, _), verdict) in self.rules.iter().zip(&mut verdicts) {
            let Some(target) = rule.target else { continue };
            let period_ms = rule.period.as_millis() as i64;
            let since = now_ms - period_ms;
            let record = sink.sla_record(pipeline, &verdict.rule, since)?;
            let first = record.first_ms.unwrap_or(minute).max(since.div_euclid(MINUTE) * MINUTE);
            let elapsed = (minute - first) / MINUTE + 1;
            let bad = (elapsed - record.ok).max(0);
            let budget = (1.0 - target) * (period_ms / MINUTE) as f64;
            verdict.sla = Some(SlaState {
                target,
                period_ms,
                compliance: record.ok as f64 / elapsed as f64,
                bad_minutes: bad,
                budget_remaining: 1.0 - bad as f64 / budget.max(1e-9),
            });
        }
        let mut last = self.last.lock().expect("rules lock");
        let mut changes = Vec::new();
        for (i, verdict) in verdicts.iter_mut().enumerate() {
            let before = last.get(i).filter(|v| v.rule == verdict.rule);
            match before {
                Some(b) if b.ok == verdict.ok => verdict.since_ms = b.since_ms,
                _ => {
                    let was_failing = before.is_some_and(|b| b.ok == Some(false));
                    let failing = verdict.ok == Some(false);
                    if failing != was_failing {
                        changes.push(Change { verdict: verdict.clone(), firing: failing });
                    }
                    if failing && verdict.severity == Severity::Stop {
                        *self.stop.lock().expect("rules lock") = Some(format!(
                            "quality rule {:?} ({}) broke: {} is {}",
                            verdict.rule,
                            verdict.check,
                            verdict.score.name(),
                            shown(verdict.score, verdict.value)
                        ));
                    }
                }
            }
        }
        *last = verdicts.clone();
        Ok(Judged { changes, verdicts, scores })
    }
}

/// `ok` minutes of those from `first` to `last` (both minute starts, inclusive).
fn share_of_minutes(ok: i64, first: i64, last: i64) -> Option<f64> {
    let elapsed = (last - first.div_euclid(MINUTE) * MINUTE) / MINUTE + 1;
    (elapsed > 0).then(|| (ok as f64 / elapsed as f64).min(1.0))
}

/// A score from the sums, or `None` with nothing to take it of.
pub fn score(score: Score, s: &QualitySums, now_ms: i64) -> Option<f64> {
    let c = &s.counts;
    let share = |part: i64, whole: i64| (whole > 0).then(|| part as f64 / whole as f64);
    match score {
        Score::Completeness => share(c.complete, c.records + c.missing),
        Score::Accuracy => share(c.accurate, c.complete),
        Score::Timeliness => share(c.on_time, c.on_time + c.late),
        Score::Validity => share(s.valid, s.rows),
        Score::DeadLetterRate => share(c.records - c.accurate, c.records),
        Score::LatencyP50 => delay_quantile(&c.delays, 0.5),
        Score::LatencyP99 => delay_quantile(&c.delays, 0.99),
        Score::Freshness => s.max_event_ms.map(|t| (now_ms - t).max(0) as f64),
        Score::Uptime => None,
    }
}

/// A score's value as people read it.
pub fn shown(score: Score, value: Option<f64>) -> String {
    match value {
        None => "unknown (no data)".into(),
        Some(v) if score.is_duration() => format!("{:.1}s", v / 1000.0),
        Some(v) => format!("{:.4}", v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::QualityRow;

    #[test]
    fn scores_are_shares_of_what_reached_each_stage() {
        let mut delays = [0; crate::sink::DELAY_BUCKETS];
        delays[0] = 90;
        let sums = QualitySums {
            newest_ms: Some(60_000),
            counts: QualityRow {
                records: 100,
                complete: 95,
                missing: 5,
                accurate: 90,
                on_time: 90,
                late: 0,
                delays,
                ..Default::default()
            },
            rows: 10,
            valid: 9,
            max_event_ms: Some(50_000),
        };
        assert_eq!(score(Score::Completeness, &sums, 0), Some(0.95 * 100.0 / 105.0));
        assert_eq!(score(Score::Accuracy, &sums, 0), Some(90.0 / 95.0));
        assert_eq!(score(Score::Timeliness, &sums, 0), Some(1.0));
        assert_eq!(score(Score::Validity, &sums, 0), Some(0.9));
        assert_eq!(score(Score::DeadLetterRate, &sums, 0), Some(0.1));
        assert_eq!(score(Score::Freshness, &sums, 80_000), Some(30_000.0));
        assert!(score(Score::LatencyP99, &sums, 0).unwrap() <= 1000.0);
        assert_eq!(score(Score::Accuracy, &QualitySums::default(), 0), None, "no data, no verdict");
        assert_eq!(share_of_minutes(1, 0, 60_000), Some(0.5));
    }
}
