//! The live dashboard in a real browser: Debian's headless Chromium, driven by
//! playwright-core (`tests/dashboard/drive.mjs`), loads the page of a host running the
//! rides example. The numbers on the page change while events flow; paused, and again
//! once drained, every row the page shows equals the sink's, and no window it should
//! show is missing. The screenshot lands in `$WEIR_SCREENSHOT` when that is set (the
//! README's is made so).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use rusqlite::Connection;
use serde_json::Value;
use weir_tests::{free_addr, plugin_dir, rides_pipeline, weir_bin, Reaped};

const EVENTS: u64 = 100_000;

/// The rows the page shows must be the sink's rows of those windows, value for value.
fn assert_matches_sink(db: &Path, step: &Value) {
    let rows = step["rows"].as_array().expect("rows");
    assert!(!rows.is_empty(), "the page shows no results: {step}");
    let conn = Connection::open(db).unwrap();
    let columns: Vec<String> = rows[0]["values"].as_object().unwrap().keys().cloned().collect();
    let mut starts: Vec<i64> = rows.iter().map(|r| r["start"].as_i64().unwrap()).collect();
    starts.dedup();
    let mut want = 0;
    for start in &starts {
        let iso = weir_sdk::time::format_iso8601(*start);
        want += conn
            .query_row("SELECT count(*) FROM rides_city_minute WHERE window_start = ?", [&iso], |r| r.get::<_, i64>(0))
            .unwrap();
        for row in rows.iter().filter(|r| r["start"].as_i64() == Some(*start)) {
            let city = row["key"][0].as_str().expect("the key is the city");
            let sql =
                format!("SELECT {} FROM rides_city_minute WHERE window_start = ? AND city = ?", columns.join(", "));
            let stored: Vec<Value> = conn
                .query_row(&sql, [&iso, city], |r| {
                    Ok((0..columns.len())
                        .map(|i| match r.get_ref(i).unwrap() {
                            rusqlite::types::ValueRef::Integer(v) => Value::from(v),
                            rusqlite::types::ValueRef::Real(v) => Value::from(v),
                            rusqlite::types::ValueRef::Null => Value::Null,
                            other => panic!("unexpected {other:?}"),
                        })
                        .collect())
                })
                .unwrap_or_else(|e| panic!("{city} at {iso} is on the page but not in the sink: {e}"));
            // JavaScript writes a whole float without its ".0": compare numbers as numbers.
            let stored: Vec<Option<f64>> = stored.iter().map(Value::as_f64).collect();
            let shown: Vec<Option<f64>> = columns.iter().map(|c| row["values"][c].as_f64()).collect();
            assert_eq!(shown, stored, "{city} at {iso}: page {shown:?}, sink {stored:?} ({columns:?})");
        }
    }
    assert_eq!(rows.len() as i64, want, "the page shows every row of its windows");
}

#[test]
fn the_dashboard_shows_live_results_that_match_the_sink() {
    let drive = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    assert!(
        drive.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/dashboard` (cargo xtask test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    // 100 events per second of event time, 5000 per second of wall time: a new minute
    // window every 1.2 s, for 20 s.
    let pipeline = rides_pipeline(
        dir.path(),
        &[
            ("events = 1000000", &format!("events = {EVENTS}")),
            ("rate = 1000", "rate = 100\npace = 5000"),
            ("interval = \"1s\"", "interval = \"250ms\""),
        ],
    );
    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let screenshot = std::env::var("WEIR_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("dashboard.png"));
    let mut browser = Reaped(
        Command::new("node")
            .arg(drive.join("drive.mjs"))
            .args([&format!("http://{addr}/"), &EVENTS.to_string(), screenshot.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running node"),
    );
    let mut steps = BufReader::new(browser.0.stdout.take().unwrap()).lines();
    let mut next = |name: &str| -> Value {
        let line = steps.next().unwrap_or_else(|| panic!("the browser ended before step {name}")).unwrap();
        let step: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(step["step"], name, "{step}");
        step
    };
    let db = dir.path().join("rides.db");

    let first = next("first");
    let changed = next("changed");
    assert!(changed["commits"].as_u64() > first["commits"].as_u64(), "{first}\n{changed}");
    assert_ne!(first["rows"], changed["rows"], "the numbers on the page changed while events flowed");
    assert_ne!(changed["throughput"], "–", "throughput is shown: {changed}");
    assert!(changed["latency"].as_str().unwrap().ends_with(" ms"), "latency is shown: {changed}");
    let plugins = changed["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 3, "parser, validator and aggregator: {plugins:?}");
    assert!(plugins.iter().all(|v| v.as_str().unwrap().contains('@')), "name@digest: {plugins:?}");
    assert_eq!(changed["charts"], 2, "two charts are drawn");

    let paused = next("paused");
    assert_eq!(paused["state"], "paused");
    assert_matches_sink(&db, &paused);
    writeln!(browser.0.stdin.as_mut().unwrap()).unwrap();

    let drained = next("drained");
    assert_eq!(drained["errors"], serde_json::json!([]), "the page logged no errors");
    assert_matches_sink(&db, &drained);
    assert!(drained["commits"].as_u64() > paused["commits"].as_u64());
    assert!(browser.0.wait().unwrap().success());
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000, "a screenshot was taken");

    host.0.kill().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut host.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains(&format!("dashboard: http://{addr}/")), "the host prints the dashboard URL: {stderr}");
}
