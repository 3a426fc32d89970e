//! `weir run` on the embedded default (producer → plugins → SQLite): the table equals
//! an independent computation; a kill -9 followed by a restart leaves the sink exactly as
//! an uninterrupted run does; a first start on baseline code that switches to optimized
//! code mid-stream leaves the same sink as a start on optimized code.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use weir::rides::{TripGenerator, TripOptions};
use weir_tests::{http_get, plugin_dir, rides_pipeline, sessions, weir_bin};

const TABLE: &str = "rides_city_minute";

fn pipeline(dir: &Path, events: u64, lateness: &str) -> std::path::PathBuf {
    rides_pipeline(
        dir,
        &[
            ("events = 1000000", &format!("events = {events}")),
            ("lateness = \"10m\"", &format!("lateness = \"{lateness}\"")),
            ("interval = \"1s\"", "interval = \"100ms\""),
        ],
    )
}

fn run(pipeline: &Path) -> std::process::Output {
    let out = Command::new(weir_bin())
        .args(["run", pipeline.to_str().unwrap(), "--until-idle", "300ms", "--quiet", "--batch", "2048"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Everything a run leaves in the sink, minus wall-clock columns.
fn snapshot(db: &Path) -> (Vec<String>, Vec<String>, Vec<String>) {
    let conn = Connection::open(db).unwrap();
    let rows = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| Ok((0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|")))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    (
        rows(&format!(
            "SELECT window_start, window_end, city, trips, avg_fare, sum_fare, min_fare, max_fare, avg_distance_km, is_final, revision FROM {TABLE} ORDER BY window_start, city"
        )),
        rows("SELECT kind, reason, plugin, digest, source_partition, source_offset, raw FROM weir_dead_letters ORDER BY source_offset, plugin"),
        rows("SELECT source_partition, source_offset, event_time, window_start, raw FROM weir_late_events ORDER BY source_offset, window_start"),
    )
}

/// Per (window start, city): trips and fare sum, computed from the generator's events
/// without weir, for the events `keep` lets through; and how many events the parser or a
/// validator must turn into dead letters (unparsable, no city, a non-numeric or negative
/// fare).
fn independent(events: u64, keep: impl Fn(&serde_json::Map<String, serde_json::Value>) -> bool) -> Expected {
    let mut generator = TripGenerator::new(TripOptions::default());
    let mut windows: BTreeMap<(String, String), (i64, f64)> = BTreeMap::new();
    let mut dead = 0;
    for _ in 0..events {
        let raw = generator.next_event();
        let Ok(serde_json::Value::Object(e)) = serde_json::from_slice::<serde_json::Value>(&raw) else {
            dead += 1;
            continue;
        };
        let (Some(city), Some(fare)) = (e.get("city").and_then(|c| c.as_str()), e.get("fare").and_then(|f| f.as_f64()))
        else {
            dead += 1;
            continue;
        };
        if fare < 0.0 {
            dead += 1;
            continue;
        }
        if !keep(&e) {
            continue;
        }
        let ms = weir_sdk::time::parse_iso8601(e["event_time"].as_str().unwrap().as_bytes()).unwrap();
        let start = weir_sdk::time::format_iso8601(ms.div_euclid(60_000) * 60_000);
        let entry = windows.entry((start, city.to_string())).or_default();
        entry.0 += 1;
        entry.1 += fare;
    }
    Expected { windows, dead }
}

struct Expected {
    windows: BTreeMap<(String, String), (i64, f64)>,
    dead: i64,
}

/// Checks the table, the dead letters and the late lane of a run against `want`.
fn assert_sink_equals(db: &Path, want: &Expected, extra_dead: i64) {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn.prepare(&format!("SELECT window_start, city, trips, avg_fare FROM {TABLE}")).unwrap();
    let got: BTreeMap<(String, String), (i64, f64)> = stmt
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get::<_, i64>(2)?, r.get::<_, f64>(3)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.windows.keys().collect::<Vec<_>>());
    for (key, (n, sum)) in &want.windows {
        let (got_n, got_avg) = got[key];
        assert_eq!(got_n, *n, "{key:?}");
        assert!((got_avg - sum / *n as f64).abs() < 1e-9, "{key:?}");
    }
    let dead: i64 = conn.query_row("SELECT count(*) FROM weir_dead_letters", [], |r| r.get(0)).unwrap();
    let late: i64 = conn.query_row("SELECT count(*) FROM weir_late_events", [], |r| r.get(0)).unwrap();
    assert_eq!((dead, late), (want.dead + extra_dead, 0));
}

#[test]
fn the_table_equals_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let events = 30_000;
    // Generated late events are at most 18 minutes late, so with 20 minutes of
    // lateness every valid event must land in its window.
    run(&pipeline(dir.path(), events, "20m"));
    assert_sink_equals(&dir.path().join("rides.db"), &independent(events, |_| true), 0);
}

#[test]
fn each_stage_sees_only_the_rows_the_stages_before_it_let_through() {
    // A second validator rejects long trips, and a transform drops trips not completed
    // and keeps only the columns the windows need: each sees the rows left by the ones
    // before it, however many of them dropped rows from the same batch.
    let dir = tempfile::tempdir().unwrap();
    let events = 30_000;
    let stages = r#"[[validators]]
plugin = "rules_validator"
config.rules = [{ name = "short-trip", field = "distance_km", max = 20.0 }]

[[transforms]]
plugin = "projection"
config.columns = [
  { name = "city", type = "text" },
  { name = "fare", type = "float64" },
  { name = "distance_km", type = "float64" },
]
config.filter = { column = "status", equals = "completed" }

[aggregator]"#;
    let path = rides_pipeline(
        dir.path(),
        &[
            ("events = 1000000", &format!("events = {events}")),
            ("lateness = \"10m\"", "lateness = \"20m\""),
            ("interval = \"1s\"", "interval = \"100ms\""),
            ("[aggregator]", stages),
        ],
    );
    run(&path);
    let long = |e: &serde_json::Map<String, serde_json::Value>| e["distance_km"].as_f64().unwrap() > 20.0;
    let want = independent(events, |e| !long(e) && e["status"] == "completed");
    // Long trips are rejected, so dead letters: those the first validator let through.
    let rejected = independent(events, long).windows.values().map(|(n, _)| n).sum::<i64>();
    assert!(rejected > 0 && want.windows.values().map(|(n, _)| n).sum::<i64>() > 0);
    assert_sink_equals(&dir.path().join("rides.db"), &want, rejected);
}

#[test]
fn kill_9_then_restart_equals_an_uninterrupted_run() {
    let events = 400_000;
    let whole = tempfile::tempdir().unwrap();
    run(&pipeline(whole.path(), events, "10m"));
    let expected = snapshot(&whole.path().join("rides.db"));
    assert!(!expected.2.is_empty(), "the stream has events later than the lateness");

    let crashed = tempfile::tempdir().unwrap();
    let path = pipeline(crashed.path(), events, "10m");
    let mut child = Command::new(weir_bin())
        .args(["run", path.to_str().unwrap(), "--until-idle", "300ms", "--quiet", "--batch", "2048"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .spawn()
        .unwrap();
    // Wait for a checkpoint in the middle of the stream, then kill without warning.
    let db = crashed.path().join("rides.db");
    let deadline = Instant::now() + Duration::from_secs(120);
    let committed = loop {
        let offset = Connection::open(&db).ok().and_then(|c| {
            c.query_row("SELECT next_offset FROM weir_checkpoints WHERE source_partition = 0", [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
        });
        if let Some(offset) = offset.filter(|&o| o > 0) {
            break offset;
        }
        assert!(Instant::now() < deadline, "no checkpoint within two minutes");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(committed < events as i64, "the kill must land mid-stream (committed {committed} of {events})");

    run(&path);
    assert_eq!(snapshot(&db), expected);
}

#[test]
fn a_first_start_runs_baseline_code_until_optimized_code_takes_over_with_the_same_results() {
    let events = 300_000;
    let cache = tempfile::tempdir().unwrap();
    let run_in = |dir: &Path| {
        // Paced (6 s), so that records flow before and after the switch.
        let path = rides_pipeline(
            dir,
            &[("events = 1000000", &format!("events = {events}")), ("seed = 42", "seed = 42\npace = 50000")],
        );
        let out = Command::new(weir_bin())
            .args(["run", path.to_str().unwrap(), "--until-idle", "300ms", "--quiet"])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("WEIR_CACHE_DIR", cache.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        // "parser runs optimized code of json_parser@… from 0:123456"
        let switches: Vec<(String, i64)> = stderr
            .lines()
            .filter_map(|l| l.split_once(" runs optimized code of "))
            .map(|(stage, rest)| (stage.to_string(), rest.rsplit_once(":").unwrap().1.parse().unwrap()))
            .collect();
        (snapshot(&dir.join("rides.db")), switches, stderr)
    };

    // Nothing compiled yet: every stage starts on baseline code and switches mid-stream.
    let first = tempfile::tempdir().unwrap();
    let (tiered, switches, stderr) = run_in(first.path());
    let stages: Vec<&str> = switches.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(stages, ["parser", "validators[0]", "aggregator"], "{stderr}");
    for (stage, from) in &switches {
        assert!(*from > 0 && *from < events as i64, "{stage} switched at offset {from}, not mid-stream:\n{stderr}");
    }

    // The optimized code is cached now: the next start runs it from the first record.
    let second = tempfile::tempdir().unwrap();
    let (optimized, switches, stderr) = run_in(second.path());
    assert!(switches.is_empty(), "{stderr}");
    assert_eq!(tiered, optimized);
}

fn replay(pipeline: &Path, args: &[&str]) -> String {
    let out = Command::new(weir_bin())
        .args(["replay", pipeline.to_str().unwrap(), "--quiet"])
        .args(args)
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn replays_move_late_events_and_fixed_dead_letters_into_the_table_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // 25 minutes of event time: events 15-18 minutes behind reach windows already final.
    let path = rides_pipeline(
        dir.path(),
        &[
            ("events = 1000000", "events = 30000"),
            ("rate = 1000 ", "rate = 20 "),
            ("interval = \"1s\"", "interval = \"100ms\""),
        ],
    );
    run(&path);
    let db = dir.path().join("rides.db");
    let count = |sql: &str| -> i64 { Connection::open(&db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap() };
    let trips = || count(&format!("SELECT sum(trips) FROM {TABLE}"));
    let (before, late) = (trips(), count("SELECT count(*) FROM weir_late_events"));
    assert!(late > 50, "the stream has late events: {late}");
    assert_eq!(count(&format!("SELECT count(*) FROM {TABLE} WHERE revision > 1")), 0);

    let out = replay(&path, &["--late"]);
    assert!(out.starts_with(&format!("replayed {late} late events")), "{out}");
    assert_eq!(count("SELECT count(*) FROM weir_late_events"), 0);
    assert_eq!(trips(), before + late, "every late event counted once");
    assert!(count(&format!("SELECT count(*) FROM {TABLE} WHERE revision > 1 AND is_final")) > 0, "corrections");
    // Again: nothing is left to replay, and nothing changes.
    assert!(replay(&path, &["--late"]).starts_with("replayed 0 late events"));
    assert_eq!(trips(), before + late);

    // A fixed validator (negative fares allowed) takes back what the old one rejected.
    let fixed = dir.path().join("fixed.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("  { name = \"fare-non-negative\", field = \"fare\", min = 0.0, max = 10000.0 },\n", "");
    std::fs::write(&fixed, text).unwrap();
    let rejected = count("SELECT count(*) FROM weir_dead_letters WHERE reason LIKE '%fare-non-negative%'");
    let others = count("SELECT count(*) FROM weir_dead_letters") - rejected;
    assert!(rejected > 10, "{rejected}");
    let before = trips();
    let out = replay(&fixed, &["--dead-letters", "--reason", "fare-non-negative"]);
    assert!(out.contains(&format!("replayed {rejected} dead letters: {rejected} folded")), "{out}");
    assert_eq!(count("SELECT count(*) FROM weir_dead_letters"), others, "the other dead letters stay");
    assert_eq!(trips(), before + rejected);
}

/// Session windows: the table holds exactly the sessions a sort-and-split computes, so
/// every session the stream extended or bridged was retracted and rewritten, within a
/// run and across the restart.
#[test]
fn session_windows_equal_a_sort_and_split_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    sessions::run_in_two_halves(dir.path(), &[]);
    let want = sessions::stream().want;
    let conn = Connection::open(dir.path().join("sessions.db")).unwrap();
    let mut stmt =
        conn.prepare("SELECT window_start, window_end, driver_id, trips, sum_fare FROM driver_sessions").unwrap();
    let ms = |text: String| weir_sdk::time::parse_iso8601(text.as_bytes()).unwrap();
    let got = stmt
        .query_map([], |r| Ok((ms(r.get(0)?), ms(r.get(1)?), r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    sessions::assert_sessions(got, &want);
    let states: i64 = conn.query_row("SELECT count(*) FROM weir_window_state", [], |r| r.get(0)).unwrap();
    let late: i64 = conn.query_row("SELECT count(*) FROM weir_late_events", [], |r| r.get(0)).unwrap();
    assert_eq!((states, late), (want.len() as i64, 0), "one stored state per session, nothing late");
}

/// A directory holding the rides pipeline over a file of `lines`, with the breaker's
/// `cooldown` and the dead-letter rate judged over 200 records.
fn breaker_dir(lines: &[Vec<u8>], cooldown: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = rides_pipeline(
        dir.path(),
        &[("cooldown = \"5m\"", &format!("cooldown = \"{cooldown}\"")), ("min_records = 1000", "min_records = 200")],
    );
    let rides = std::fs::read_to_string(&path).unwrap();
    let source = rides.find("[source]").unwrap()..rides.find("[parser]").unwrap();
    let mut text = rides.clone();
    text.replace_range(source, "[source]\nkind = \"files\"\npath = \"input.jsonl\"\n\n");
    std::fs::write(&path, text).unwrap();
    let mut input = lines.join(&b'\n');
    input.push(b'\n');
    std::fs::write(dir.path().join("input.jsonl"), input).unwrap();
    dir
}

fn weir_in(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(weir_bin());
    cmd.args([
        "run",
        dir.join("pipeline.toml").to_str().unwrap(),
        "--until-idle",
        "300ms",
        "--quiet",
        "--batch",
        "100",
    ])
    .args(args)
    .env("WEIR_PLUGIN_DIR", plugin_dir());
    cmd
}

/// Runs the pipeline of `breaker_dir(lines, "2s")` to its end.
fn breaker_run(lines: &[Vec<u8>]) -> (std::process::Output, Duration, tempfile::TempDir) {
    let dir = breaker_dir(lines, "2s");
    let started = Instant::now();
    let out = weir_in(dir.path(), &["--no-admin"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (out, started.elapsed(), dir)
}

/// Clean trips, with one fare in cents instead of euros a third of the way in.
fn trips_with_a_critical_fare() -> Vec<Vec<u8>> {
    let clean = TripOptions { malformed_share: 0.0, late_share: 0.0, ..TripOptions::default() };
    let mut generator = TripGenerator::new(clean);
    let mut lines: Vec<Vec<u8>> = (0..3000).map(|_| generator.next_event()).collect();
    let cents = String::from_utf8(lines[1000].clone()).unwrap();
    let fare = cents.split("\"fare\":").nth(1).unwrap().split(',').next().unwrap();
    lines[1000] = cents.replace(&format!("\"fare\":{fare},"), "\"fare\":250000.0,").into_bytes();
    lines
}

fn count(db: &Path, sql: &str) -> i64 {
    Connection::open(db).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// A critical rule, and then a burst of dead letters, each open the breaker: reading stops
/// for the cooldown, the reason is reported, and afterwards every record is accounted for.
#[test]
fn the_circuit_breaker_pauses_on_a_critical_rule_and_on_a_dead_letter_burst() {
    let lines = trips_with_a_critical_fare();
    let (out, elapsed, dir) = breaker_run(&lines);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("circuit breaker open: a critical rule was violated: fare-in-currency-units"), "{stderr}");
    assert!(stderr.contains("circuit breaker closed after its cooldown (2s cooldown)"), "{stderr}");
    assert!(elapsed >= Duration::from_secs(2), "reading paused for the cooldown: the run took {elapsed:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("the circuit breaker opened 1 time(s)"));
    let db = dir.path().join("rides.db");
    assert_eq!(count(&db, &format!("SELECT sum(trips) FROM {TABLE}")), 2999, "every other record is counted");
    assert_eq!(count(&db, "SELECT count(*) FROM weir_dead_letters WHERE reason LIKE '%fare-in-currency-units%'"), 1);

    // Now the first 300 records are garbage: over half of the records within the interval.
    let mut burst = lines.clone();
    burst[1000] = lines[999].clone();
    for line in &mut burst[..300] {
        line.truncate(40);
    }
    let (out, elapsed, dir) = breaker_run(&burst);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("were dead letters within 60s, above breaker.dead_letter_rate = 0.5"), "{stderr}");
    assert!(elapsed >= Duration::from_secs(2), "reading paused for the cooldown: the run took {elapsed:?}");
    let db = dir.path().join("rides.db");
    assert_eq!(count(&db, &format!("SELECT sum(trips) FROM {TABLE}")), 2700);
    assert_eq!(count(&db, "SELECT count(*) FROM weir_dead_letters WHERE kind = 'malformed'"), 300);
}

/// An open breaker with an hour's cooldown is reported by the admin API (`/readyz` is 503,
/// `/metrics` shows reading held) and closed by `weir pipeline resume`.
#[test]
fn the_admin_api_reports_an_open_breaker_and_resumes_on_command() {
    let dir = breaker_dir(&trips_with_a_critical_fare(), "1h");
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut child = weir_in(dir.path(), &["--admin", &addr])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pipeline_cli = |verb: &str| {
        let json = if verb == "status" { "--json" } else { "" };
        let args = ["pipeline", verb, "--admin", &addr, json];
        let out = Command::new(weir_bin()).args(args.iter().filter(|a| !a.is_empty())).output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (ok, status) = pipeline_cli("status");
        if ok && status.contains("fare-in-currency-units") {
            break status;
        }
        assert!(child.try_wait().unwrap().is_none(), "weir run ended while the breaker should hold it");
        assert!(Instant::now() < deadline, "the breaker was not reported within a minute: {status}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert!(status["records"].as_u64().unwrap() < 3000, "reading stopped mid-file: {status}");
    let (code, body) = http_get(&addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("circuit breaker open"), "{body}");
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let (_, metrics) = http_get(&addr, "/metrics");
    assert!(metrics.contains("weir_reading_held{pipeline=\"rides\"} 1"), "{metrics}");
    assert!(metrics.contains("weir_breaker_trips_total{pipeline=\"rides\"} 1"), "{metrics}");

    let (ok, answer) = pipeline_cli("resume");
    assert!(ok, "{answer}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("circuit breaker closed on command"), "{stderr}");
    let db = dir.path().join("rides.db");
    assert_eq!(count(&db, &format!("SELECT sum(trips) FROM {TABLE}")), 2999, "every other record is counted");
}
