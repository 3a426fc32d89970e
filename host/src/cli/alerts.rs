//! `weir alerts rules PIPELINE`: a Prometheus rules file for the pipeline's health, over
//! the series weir's `/metrics` exports (all labelled `pipeline`). `promtool check rules`
//! accepts it, and `promtool test rules` shows each alert fire (`tests/observability.rs`).
//!
//! Health: reading held (breaker or pause), the sink failing, no commit for ten
//! checkpoint intervals, lag growing, and the pipeline's metrics gone. Quality: each
//! `[[quality.rule]]` broken for a minute, and each SLA's error budget spent.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::PipelineConfig;

/// Alert commands.
#[derive(clap::Subcommand)]
pub enum AlertsCommand {
    /// Print a Prometheus rules file for the pipeline's health (redirect it to a file).
    Rules {
        /// The pipeline file.
        pipeline: PathBuf,
    },
}

/// One alerting rule.
struct Rule {
    name: &'static str,
    expr: String,
    wait: &'static str,
    severity: &'static str,
    summary: String,
    /// The quality rule it watches, as a `rule` label.
    rule: Option<String>,
}

/// The rules for `config`.
fn rules(config: &PipelineConfig) -> Vec<Rule> {
    let p = format!("pipeline=\"{}\"", config.name.replace('\\', "\\\\").replace('"', "\\\""));
    let name = &config.name;
    // Ten intervals without a commit: a checkpoint that only retries is still news.
    let stale = (config.checkpoint.interval.as_secs_f64() * 10.0).max(30.0);
    let health = [
        (
            "WeirReadingHeld",
            format!("max(weir_reading_held{{{p}}}) == 1"),
            "1m",
            "page",
            "reading is held (circuit breaker open, or paused)".to_string(),
        ),
        (
            "WeirSinkFailing",
            format!("max(weir_sink_failing{{{p}}}) == 1"),
            "2m",
            "page",
            "checkpoints are failing and being retried".into(),
        ),
        (
            "WeirNoCommit",
            format!("min(weir_checkpoint_age_seconds{{{p}}}) > {stale}"),
            "1m",
            "page",
            format!("no checkpoint committed for over {stale} s (10 intervals)"),
        ),
        (
            "WeirLagGrowing",
            format!("sum(weir_consumer_lag{{{p}}}) > 0 and sum(delta(weir_consumer_lag{{{p}}}[10m])) > 0"),
            "10m",
            "warn",
            "its lag has grown for 10 minutes".into(),
        ),
        (
            "WeirMetricsAbsent",
            format!("absent_over_time(weir_records_in_total{{{p}}}[5m])"),
            "1m",
            "page",
            "no host has exported its metrics for 5 minutes".into(),
        ),
    ];
    let mut all: Vec<Rule> = health
        .into_iter()
        .map(|(alert, expr, wait, severity, what)| Rule {
            name: alert,
            expr,
            wait,
            severity,
            summary: format!("pipeline {name}: {what}"),
            rule: None,
        })
        .collect();
    for rule in config.quality.iter().flat_map(|q| &q.rule) {
        let r = format!("rule={}", quoted(&rule.name()));
        let severity = match rule.severity {
            crate::config::Severity::Warn => "warn",
            _ => "page",
        };
        all.push(Rule {
            name: "WeirQualityRule",
            expr: format!("min(weir_quality_rule_ok{{{p},{r}}}) == 0"),
            wait: "1m",
            severity,
            summary: format!("pipeline {name}: quality rule {:?} ({}) is broken", rule.name(), rule.check.trim()),
            rule: Some(rule.name()),
        });
        if rule.target.is_some() {
            all.push(Rule {
                name: "WeirSlaBudgetSpent",
                expr: format!("min(weir_sla_error_budget_remaining{{{p},{r}}}) <= 0"),
                wait: "5m",
                severity: "page",
                summary: format!("pipeline {name}: the error budget of SLA {:?} is spent", rule.name()),
                rule: Some(rule.name()),
            });
        }
    }
    all
}

/// `s` as a YAML double-quoted string.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// The rules file.
pub fn rules_file(config: &PipelineConfig) -> String {
    let mut out = format!(
        "# Prometheus alerting rules for weir pipeline {:?}, by `weir alerts rules`.\ngroups:\n  - name: {}\n    rules:\n",
        config.name,
        quoted(&format!("weir-{}", config.name))
    );
    for r in rules(config) {
        let rule = r.rule.map(|rule| format!("          rule: {}\n", quoted(&rule))).unwrap_or_default();
        out.push_str(&format!(
            "      - alert: {}\n        expr: {}\n        for: {}\n        labels:\n          severity: {}\n          pipeline: {}\n{rule}        annotations:\n          summary: {}\n",
            r.name,
            quoted(&r.expr),
            r.wait,
            r.severity,
            quoted(&config.name),
            quoted(&r.summary)
        ));
    }
    out
}

pub fn run(command: AlertsCommand) -> Result<()> {
    let AlertsCommand::Rules { pipeline } = command;
    let config = PipelineConfig::load(&pipeline)?;
    print!("{}", rules_file(&config));
    Ok(())
}
