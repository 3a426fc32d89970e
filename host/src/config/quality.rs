//! `[quality]`: how a pipeline's data is scored (per window and source partition), the
//! output columns' valid ranges, the anomaly detector's settings, and the rules and SLAs
//! held against the scores. What each score means is in `docs/QUALITY.md`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use super::duration::serde_duration;
pub use super::score::{Check, Op, Score};

/// `[quality]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// The span of event time a quality row covers (default: the pipeline's window size,
    /// or its hop for hopping windows, or a minute for sessions).
    #[serde(default, deserialize_with = "optional_duration")]
    pub window: Option<Duration>,
    /// A column holding each producer's sequence number: a jump counts the records
    /// between as missing.
    #[serde(default)]
    pub sequence: Option<String>,
    /// Whose sequence it is: a column naming the producer (default: the source partition).
    #[serde(default)]
    pub producer: Option<String>,
    /// The valid range of output columns: `avg_fare = { min = 0, max = 500 }`.
    #[serde(default)]
    pub ranges: BTreeMap<String, Range>,
    /// The anomaly detector over output columns.
    #[serde(default)]
    pub anomalies: AnomalyConfig,
    /// Rules and SLAs over the scores.
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
}

/// An output column's valid range, both ends included.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The least valid value.
    pub min: Option<f64>,
    /// The greatest valid value.
    pub max: Option<f64>,
}

impl Range {
    /// Whether `value` lies inside.
    pub fn holds(&self, value: f64) -> bool {
        self.min.is_none_or(|m| value >= m) && self.max.is_none_or(|m| value <= m) && !value.is_nan()
    }
}

/// `[quality.anomalies]`: a window's value is compared, per key and column, with the
/// same key's previous final windows.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Whether to look for anomalies at all (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How many previous windows of a key make its baseline (default 30).
    #[serde(default = "default_history")]
    pub history: usize,
    /// No flag before a key has this many (default 10).
    #[serde(default = "default_min_history")]
    pub min_history: usize,
    /// How far from the baseline's median a value must be, in robust standard
    /// deviations (1.4826 × the median absolute deviation), to be flagged (default 6).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Per output column: `trips = { absent = 0 }`, `avg_tip = { off = true }`.
    #[serde(default)]
    pub columns: BTreeMap<String, ColumnAnomaly>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: true,
            history: default_history(),
            min_history: default_min_history(),
            threshold: default_threshold(),
            columns: BTreeMap::new(),
        }
    }
}

/// One column's detector settings.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ColumnAnomaly {
    /// Never flag this column.
    #[serde(default)]
    pub off: bool,
    /// The value a key with a history has in a final window where it has no row (a
    /// count's 0): without it, a missing row is not judged.
    pub absent: Option<f64>,
}

/// One `[[quality.rule]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Its name in alerts and on the dashboard (default: the check as written).
    #[serde(default)]
    pub name: Option<String>,
    /// `SCORE OP THRESHOLD`, e.g. `accuracy >= 0.99`, `latency_p99 <= 5m`.
    pub check: String,
    /// The span the score is taken over (default 5m): of event time for the window
    /// scores, of wall time for `uptime`.
    #[serde(default = "five_minutes", with = "serde_duration")]
    pub over: Duration,
    /// `warn`, `page` or `stop` (stop also opens the circuit breaker).
    #[serde(default)]
    pub severity: Severity,
    /// Makes the rule an SLA: the share of minutes it must hold (e.g. 0.999).
    #[serde(default)]
    pub target: Option<f64>,
    /// The SLA's period, over which compliance and the error budget are counted (default 30d).
    #[serde(default = "thirty_days", with = "serde_duration")]
    pub period: Duration,
}

impl RuleConfig {
    /// The rule's name.
    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.check.trim().to_string())
    }
}

/// What a broken rule does.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Shown and alerted.
    #[default]
    Warn,
    /// Alerted as a page.
    Page,
    /// Paged, and the circuit breaker opens: reading stops until it holds again.
    Stop,
}

impl Severity {
    /// As written.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Page => "page",
            Severity::Stop => "stop",
        }
    }
}

impl QualityConfig {
    /// The checks serde cannot express, each error with its key. Column names are checked
    /// against the wiring (`check_columns`), once the plugins are known.
    pub fn check(&self) -> Result<()> {
        if self.window.is_some_and(|w| w.is_zero()) {
            bail!("quality.window must be positive");
        }
        if self.producer.is_some() && self.sequence.is_none() {
            bail!("quality.producer names whose sequence quality.sequence holds; set quality.sequence too");
        }
        for (column, range) in &self.ranges {
            if let (Some(min), Some(max)) = (range.min, range.max) {
                if min > max {
                    bail!("quality.ranges.{column}: min {min} is above max {max}");
                }
            }
            if range.min.is_some_and(|v| !v.is_finite()) || range.max.is_some_and(|v| !v.is_finite()) {
                bail!("quality.ranges.{column}: min and max must be finite numbers");
            }
            if range.min.is_none() && range.max.is_none() {
                bail!("quality.ranges.{column}: give min, max or both");
            }
        }
        let a = &self.anomalies;
        if !(a.threshold > 0.0 && a.threshold.is_finite()) {
            bail!("quality.anomalies.threshold must be a positive number, got {}", a.threshold);
        }
        if a.min_history < 3 || a.history < a.min_history {
            bail!(
                "quality.anomalies: need 3 <= min_history <= history, got min_history = {} and history = {}",
                a.min_history,
                a.history
            );
        }
        for (i, rule) in self.rule.iter().enumerate() {
            Check::parse(&rule.check).map_err(|e| anyhow::anyhow!("quality.rule[{i}].check: {e}"))?;
            if rule.over.is_zero() {
                bail!("quality.rule[{i}].over must be positive");
            }
            if let Some(target) = rule.target {
                if !(target > 0.0 && target < 1.0) {
                    bail!(
                        "quality.rule[{i}].target is the share of minutes the rule must hold, in (0, 1); got {target}"
                    );
                }
            }
            if rule.period < Duration::from_secs(60) {
                bail!("quality.rule[{i}].period must be at least 1m: compliance is counted by the minute");
            }
            if self.rule[..i].iter().any(|r| r.name() == rule.name()) {
                bail!("quality.rule[{i}]: a second rule named {:?}; give it a name", rule.name());
            }
        }
        Ok(())
    }

    /// The parsed checks, in rule order (after `check`).
    pub fn checks(&self) -> Vec<Check> {
        self.rule.iter().filter_map(|r| Check::parse(&r.check).ok()).collect()
    }

    /// Checks the columns it names: `sequence` and `producer` among the parser's (or the
    /// last transform's) columns, ranges and anomaly settings among the output's numeric
    /// ones.
    pub fn check_columns(&self, input: &[weir_sdk::ColumnDef], output: &[weir_sdk::ColumnDef]) -> Result<()> {
        use weir_sdk::ColumnType;
        let names = |c: &[weir_sdk::ColumnDef]| c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        for (key, column) in [("quality.sequence", &self.sequence), ("quality.producer", &self.producer)] {
            let Some(column) = column else { continue };
            match input.iter().find(|c| &c.name == column) {
                None => bail!("{key}: no column {column:?} reaches the aggregator (available: {})", names(input)),
                Some(c) if key == "quality.sequence" && c.ty != ColumnType::Int64 => {
                    bail!("{key}: column {column:?} is {}; a sequence is an int64 column", c.ty.name())
                }
                Some(_) => {}
            }
        }
        let numeric: Vec<&weir_sdk::ColumnDef> =
            output.iter().filter(|c| matches!(c.ty, ColumnType::Int64 | ColumnType::Float64)).collect();
        let listed = self.ranges.keys().map(|c| ("quality.ranges", c));
        for (key, column) in listed.chain(self.anomalies.columns.keys().map(|c| ("quality.anomalies.columns", c))) {
            if !numeric.iter().any(|c| &c.name == column) {
                let names: Vec<&str> = numeric.iter().map(|c| c.name.as_str()).collect();
                bail!(
                    "{key}.{column}: not a numeric output column of the aggregator (numeric outputs: {})",
                    names.join(", ")
                );
            }
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}
fn default_history() -> usize {
    30
}
fn default_min_history() -> usize {
    10
}
fn default_threshold() -> f64 {
    6.0
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn thirty_days() -> Duration {
    Duration::from_secs(30 * 86_400)
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    serde_duration::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<QualityConfig> {
        let config: QualityConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn checks_parse_with_their_units_and_bad_ones_name_the_key() {
        let config =
            read("[[rule]]\ncheck = \"accuracy >= 0.99\"\n[[rule]]\ncheck = \"latency_p99 <= 5m\"\ntarget = 0.999\n")
                .unwrap();
        let checks = config.checks();
        assert_eq!(checks[0], Check { score: Score::Accuracy, op: Op::AtLeast, threshold: 0.99 });
        assert_eq!(checks[1].threshold, 300_000.0);
        assert!(checks[1].holds(299_000.0) && !checks[1].holds(301_000.0));
        for (text, says) in [
            ("[[rule]]\ncheck = \"accuracy >= 5m\"", "quality.rule[0].check: accuracy is a share"),
            ("[[rule]]\ncheck = \"freshness <= 0.5\"", "freshness is a duration"),
            ("[[rule]]\ncheck = \"acuracy >= 0.9\"", "unknown score \"acuracy\""),
            ("[[rule]]\ncheck = \"accuracy > 0.9\"", "unknown comparison \">\""),
            ("[[rule]]\ncheck = \"accuracy >= 0.9\"\nover = \"five\"", "not a duration"),
            ("[[rule]]\ncheck = \"uptime >= 0.9\"\ntarget = 2.0", "quality.rule[0].target"),
            ("[ranges]\nfare = { min = 5, max = 1 }", "quality.ranges.fare: min 5 is above max 1"),
        ] {
            let error = format!("{:#}", read(text).unwrap_err());
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn columns_are_checked_against_the_wiring() {
        use weir_sdk::{ColumnDef, ColumnType};
        let input = [ColumnDef::new("seq", ColumnType::Int64), ColumnDef::new("city", ColumnType::Text)];
        let output = [ColumnDef::new("trips", ColumnType::Int64), ColumnDef::new("top", ColumnType::Text)];
        let ok = read("sequence = \"seq\"\nproducer = \"city\"\n[ranges]\ntrips = { min = 0 }").unwrap();
        ok.check_columns(&input, &output).unwrap();
        for (text, says) in [
            ("sequence = \"city\"", "quality.sequence: column \"city\" is text"),
            ("sequence = \"sq\"", "quality.sequence: no column \"sq\""),
            ("[ranges]\ntop = { min = 0 }", "quality.ranges.top: not a numeric output column"),
            ("[anomalies.columns]\nfares = { off = true }", "quality.anomalies.columns.fares"),
        ] {
            let error = read(text).unwrap().check_columns(&input, &output).unwrap_err().to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }
}
