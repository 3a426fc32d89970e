//! The operating surface of a running host, checked by real clients: a Prometheus
//! server scrapes `/metrics`, and the series it stores agree with the sink; `promtool`
//! checks and evaluates the alert rules `weir alerts rules` writes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::services::{repo_root, Prometheus};
use weir_tests::{free_addr, http_get, plugin_dir, rides_pipeline, wait_status, weir_bin};

const EVENTS: u64 = 200_000;

/// The rides example on the embedded default, with a short checkpoint interval.
fn rides(dir: &Path) -> std::path::PathBuf {
    rides_pipeline(
        dir,
        &[("events = 1000000", &format!("events = {EVENTS}")), ("interval = \"1s\"", "interval = \"100ms\"")],
    )
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The values of an instant query, one per series, with their labels.
fn query(prometheus: &Prometheus, q: &str) -> Vec<(serde_json::Value, f64)> {
    let (code, body) = http_get(&prometheus.addr, &format!("/api/v1/query?query={}", encode(q)));
    assert_eq!(code, 200, "{q}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    answer["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["metric"].clone(), r["value"][1].as_str().unwrap().parse().unwrap()))
        .collect()
}

#[test]
fn prometheus_scrapes_the_expected_series_and_they_agree_with_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = rides(dir.path());
    let addr = free_addr();
    let mut host = Command::new(weir_bin())
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", &addr, "--until-idle", "300s"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_status(&addr, &mut host, Duration::from_secs(120), |s| {
        s["records"] == EVENTS && s["held"].is_null() && s["last_checkpoint_ms"].as_i64().is_some()
    });
    let prometheus = Prometheus::start(&addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while query(&prometheus, "weir_records_in_total").first().map(|r| r.1) != Some(EVENTS as f64) {
        assert!(Instant::now() < deadline, "Prometheus stored no weir_records_in_total of {EVENTS} within a minute");
        std::thread::sleep(Duration::from_millis(200));
    }
    let one = |q: &str| -> f64 {
        let result = query(&prometheus, q);
        assert_eq!(result.len(), 1, "{q}: {result:?}");
        result[0].1
    };
    assert_eq!(one("up{job=\"weir\"}"), 1.0);
    // Every stage reports its events and its call times.
    for stage in ["parser", "validators[0]", "aggregator"] {
        assert!(one(&format!("weir_stage_events_in_total{{stage=\"{stage}\"}}")) > 0.0, "{stage}");
        assert!(one(&format!("weir_plugin_call_seconds_count{{stage=\"{stage}\"}}")) > 0.0, "{stage}");
        assert_eq!(query(&prometheus, &format!("weir_plugin_call_seconds_bucket{{stage=\"{stage}\"}}")).len(), 15);
    }
    assert_eq!(one("weir_stage_events_in_total{stage=\"parser\"}"), EVENTS as f64);
    assert!(one("weir_checkpoint_duration_seconds_count") > 0.0);
    assert_eq!(one("weir_plugin_swaps_total"), 0.0);
    assert!(one("weir_watermark_delay_seconds") > 0.0);
    assert_eq!(query(&prometheus, "weir_plugin_version_info").len(), 3);

    // The dead-letter and late counts agree with what the sink holds.
    let db = rusqlite::Connection::open(dir.path().join("rides.db")).unwrap();
    let count = |sql: &str| -> f64 { db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as f64 };
    for kind in ["malformed", "rejected"] {
        assert_eq!(
            one(&format!("sum(weir_dead_letters_total{{kind=\"{kind}\"}})")),
            count(&format!("SELECT count(*) FROM weir_dead_letters WHERE kind = '{kind}'")),
            "{kind} dead letters"
        );
    }
    assert_eq!(one("weir_late_events_total{reason=\"window_closed\"}"), count("SELECT count(*) FROM weir_late_events"));

    // Every Prometheus query of the example Grafana dashboard answers with series. A rate
    // needs two samples in its range, which the scrapes may not have stored yet.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/grafana-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .map(|e| e.replace("$pipeline", "rides"))
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    for expr in &exprs {
        let deadline = Instant::now() + Duration::from_secs(60);
        while query(&prometheus, expr).is_empty() {
            assert!(Instant::now() < deadline, "the dashboard's query {expr} stays empty");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = host.kill();
    let _ = host.wait();
}

/// `weir alerts rules` writes rules that Prometheus's own `promtool` accepts, and, fed
/// series as weir's `/metrics` exports them, fires each health alert when it should and
/// not otherwise (`promtool test rules` evaluates them as Prometheus does).
#[test]
fn the_health_alert_rules_pass_promtool_and_fire_when_they_should() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(weir_bin())
        .args(["alerts", "rules", repo_root().join("examples/rides/pipeline.toml").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.path().join("rules.yml"), &out.stdout).unwrap();
    let promtool = |args: &[&str]| {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("promtool (Debian's prometheus)");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, said) = promtool(&["check", "rules", "rules.yml"]);
    // Five for health, one per quality rule, one per SLA's error budget.
    assert!(ok && said.contains("SUCCESS: 8 rules found"), "{said}");

    let alert = |name: &str, at: &str, summary: Option<&str>| {
        match summary {
        Some(summary) => format!(
            "      - eval_time: {at}\n        alertname: {name}\n        exp_alerts:\n          - exp_labels: {{severity: {}, pipeline: rides}}\n            exp_annotations: {{summary: \"{summary}\"}}\n",
            if name == "WeirLagGrowing" { "warn" } else { "page" }
        ),
        None => format!("      - eval_time: {at}\n        alertname: {name}\n        exp_alerts: []\n"),
    }
    };
    let tests = String::from(
        "rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n\
         \x20     - series: 'weir_reading_held{pipeline=\"rides\"}'\n        values: '0 0 1 1 1 1'\n\
         \x20     - series: 'weir_sink_failing{pipeline=\"rides\"}'\n        values: '0x20'\n\
         \x20     - series: 'weir_checkpoint_age_seconds{pipeline=\"rides\"}'\n        values: '1 1 100 160 220 280'\n\
         \x20     - series: 'weir_consumer_lag{pipeline=\"rides\", partition=\"0\"}'\n        values: '0+100x20'\n\
         \x20     - series: 'weir_records_in_total{pipeline=\"rides\"}'\n        values: '0+10x20'\n\
         \x20     - series: 'weir_quality_rule_ok{pipeline=\"rides\", rule=\"accuracy\", severity=\"page\", score=\"accuracy\"}'\n        values: '1 1 0 0 0 0'\n\
         \x20     - series: 'weir_sla_error_budget_remaining{pipeline=\"rides\", rule=\"on time\"}'\n        values: '1 1 1 1 1 1'\n    alert_rule_test:\n",
    ) + &alert("WeirReadingHeld", "1m", None)
        + &alert("WeirReadingHeld", "5m", Some("pipeline rides: reading is held (circuit breaker open, or paused)"))
        + &alert("WeirSinkFailing", "5m", None)
        + &alert("WeirNoCommit", "5m", Some("pipeline rides: no checkpoint committed for over 30 s (10 intervals)"))
        + &alert("WeirLagGrowing", "5m", None)
        + &alert("WeirLagGrowing", "20m", Some("pipeline rides: its lag has grown for 10 minutes"))
        + &alert("WeirMetricsAbsent", "5m", None)
        + &alert("WeirSlaBudgetSpent", "5m", None)
        + "      - eval_time: 2m\n        alertname: WeirQualityRule\n        exp_alerts: []\n"
        + "      - eval_time: 5m\n        alertname: WeirQualityRule\n        exp_alerts:\n          - exp_labels: {severity: page, pipeline: rides, rule: accuracy}\n            exp_annotations: {summary: 'pipeline rides: quality rule \"accuracy\" (accuracy >= 0.97) is broken'}\n";
    std::fs::write(dir.path().join("tests.yml"), tests).unwrap();
    let (ok, said) = promtool(&["test", "rules", "tests.yml"]);
    assert!(ok && said.contains("SUCCESS"), "{said}");
}
