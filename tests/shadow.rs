//! Shadow deployments (files → SQLite, the rides pipeline): a candidate runs beside the
//! live version on the same records and writes `rides_city_minute__shadow`; `weir plugin
//! diff` lists exactly the windows where the two tables differ; discard ends it; a
//! candidate that agrees everywhere is promoted. Through all of it the live table equals
//! a run that never had a shadow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::Value;
use weir::rides::{TripGenerator, TripOptions};
use weir_tests::guests::{RULES_VALIDATOR, TRAPPING_VALIDATOR};
use weir_tests::{free_addr, http_get, marked, plugin_dir, rides_pipeline, wait_status, weir_bin, weir_cli, Reaped};

const TABLE: &str = "rides_city_minute";
const PER_FILE: usize = 3000;

/// The rides pipeline over the files of `dir/in`, followed. With 20 minutes of lateness
/// no generated event is late, so the table depends on the events alone.
fn pipeline(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("in")).unwrap();
    let path = rides_pipeline(
        dir,
        &[("interval = \"1s\"", "interval = \"100ms\""), ("lateness = \"10m\"", "lateness = \"20m\"")],
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let source = text.find("[source]").unwrap()..text.find("[parser]").unwrap();
    let mut text = text.clone();
    text.replace_range(source, "[source]\nkind = \"files\"\npath = \"in\"\nfollow = true\n\n");
    std::fs::write(&path, text).unwrap();
    path
}

fn write(dir: &Path, name: &str, events: &[Vec<u8>]) {
    let mut text = events.join(&b'\n');
    text.push(b'\n');
    // Renamed into place, so the follower never reads half a file.
    let part = dir.join(format!(".{name}.part"));
    std::fs::write(&part, text).unwrap();
    std::fs::rename(part, dir.join("in").join(name)).unwrap();
}

fn json(addr: &str, path: &str) -> Value {
    let (code, body) = http_get(addr, path);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Pauses the host and waits until everything it checkpointed has committed.
fn pause_and_settle(addr: &str) {
    let (ok, _, why) = weir_cli(addr, &["pipeline", "pause"]);
    assert!(ok, "{why}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = json(addr, "/api/status");
        if !status["held"].is_null() && json(addr, "/api/results")["commits"] == status["checkpoints"] {
            return;
        }
        assert!(Instant::now() < deadline, "the host did not settle: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn resume(addr: &str) {
    let (ok, _, why) = weir_cli(addr, &["pipeline", "resume"]);
    assert!(ok, "{why}");
}

/// Each row of `table` by window start and city: trips, avg_fare.
fn rows(db: &Path, table: &str) -> BTreeMap<(String, String), (i64, f64)> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn.prepare(&format!("SELECT window_start, city, trips, avg_fare FROM {table}")).unwrap();
    stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?)))).unwrap().map(Result::unwrap).collect()
}

fn diff(addr: &str) -> (bool, Value) {
    let (ok, out, why) = weir_cli(addr, &["plugin", "diff", "--pipeline", "rides", "--limit", "100000"]);
    (ok, if ok { serde_json::from_str(&out).unwrap() } else { Value::String(why) })
}

fn records(addr: &str, host: &mut Reaped, n: u64) {
    wait_status(addr, &mut host.0, Duration::from_secs(120), |s| s["records"].as_u64() == Some(n));
}

#[test]
fn a_shadow_diffs_exactly_is_discarded_or_promoted_and_the_live_table_never_notices() {
    let mut generator = TripGenerator::new(TripOptions::default());
    let files: Vec<Vec<Vec<u8>>> = (0..4).map(|_| (0..PER_FILE).map(|_| generator.next_event()).collect()).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(dir.path());
    let db = dir.path().join("rides.db");
    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(["run", path.to_str().unwrap(), "--quiet", "--admin", &addr, "--until-idle", "120s"])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("host.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    write(dir.path(), "a.jsonl", &files[0]);
    records(&addr, &mut host, PER_FILE as u64);

    // A validator that traps on fares above 40 runs in the shadow: no trial holds it back.
    let stage = ["--pipeline", "rides", "--stage", "validators[0]"];
    let (ok, report, why) = weir_cli(&addr, &[&["plugin", "shadow"][..], &stage, &[TRAPPING_VALIDATOR]].concat());
    assert!(ok, "{why}");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["table"], format!("{TABLE}__shadow"), "{report}");
    wait_status(&addr, &mut host.0, Duration::from_secs(10), |s| s["shadow"][0] == "validators[0]");
    write(dir.path(), "b.jsonl", &files[1]);
    records(&addr, &mut host, 2 * PER_FILE as u64);
    pause_and_settle(&addr);

    // The diff lists exactly the windows where the two tables differ, with their values.
    let (ok, report) = diff(&addr);
    assert!(ok, "{report}\n{}", std::fs::read_to_string(dir.path().join("host.log")).unwrap());
    let live = rows(&db, TABLE);
    let shadow = rows(&db, &format!("{TABLE}__shadow"));
    assert!(!shadow.is_empty());
    let differing_in_sql: BTreeSet<(String, String)> =
        shadow.iter().filter(|(k, v)| live.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    let windows = report["windows"].as_array().unwrap();
    assert_eq!(report["differing"].as_u64(), Some(windows.len() as u64), "{report}");
    assert!(windows.len() > 10, "dropping fares above 40 changes most windows: {report}");
    let mut listed = BTreeSet::new();
    for w in windows {
        let key = (w["window_start"].as_str().unwrap().to_string(), w["key"]["city"].as_str().unwrap().to_string());
        let side = |v: &Value| (v["trips"].as_i64().unwrap(), v["avg_fare"].as_f64().unwrap());
        assert_eq!(Some(&side(&w["live"])), live.get(&key), "{w}");
        if w["shadow"].is_null() {
            assert!(!shadow.contains_key(&key), "{w}");
        } else {
            assert_eq!(Some(&side(&w["shadow"])), shadow.get(&key), "{w}");
            listed.insert(key);
        }
    }
    assert_eq!(listed, differing_in_sql, "the diff and the tables agree on which windows differ");

    // Discarded, the shadow stops; its table stays for inspection.
    resume(&addr);
    let (ok, _, why) = weir_cli(&addr, &["plugin", "discard", "--pipeline", "rides"]);
    assert!(ok, "{why}");
    wait_status(&addr, &mut host.0, Duration::from_secs(10), |s| s["shadow"].is_null());
    let (ok, _, why) = weir_cli(&addr, &["plugin", "promote", "--pipeline", "rides"]);
    assert!(!ok && why.contains("no shadow is running"), "{why}");

    // A rebuild of the running validator agrees everywhere, and is promoted.
    let candidate = dir.path().join("rules_validator.wasm");
    std::fs::write(&candidate, marked(RULES_VALIDATOR, "v2")).unwrap();
    let (ok, report, why) =
        weir_cli(&addr, &[&["plugin", "shadow"][..], &stage, &[candidate.to_str().unwrap()]].concat());
    assert!(ok, "{why}");
    let candidate_version = serde_json::from_str::<Value>(&report).unwrap()["candidate"].as_str().unwrap().to_string();
    write(dir.path(), "c.jsonl", &files[2]);
    records(&addr, &mut host, 3 * PER_FILE as u64);
    pause_and_settle(&addr);
    let (ok, report) = diff(&addr);
    assert!(ok, "{report}");
    assert_eq!(report["candidate"], candidate_version.as_str());
    assert!(report["windows_compared"].as_u64().unwrap() > 10, "{report}");
    assert_eq!(report["differing"], 0, "{report}");
    resume(&addr);
    let (ok, report, why) = weir_cli(&addr, &["plugin", "promote", "--pipeline", "rides"]);
    assert!(ok, "{why}");
    assert!(serde_json::from_str::<Value>(&report).unwrap()["from_offsets"].is_array(), "{report}");
    let list: Value = serde_json::from_str(&weir_cli(&addr, &["plugin", "list"]).1).unwrap();
    let validator = list["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "validators[0]").unwrap();
    assert_eq!(
        format!("{}@{}", validator["plugin"].as_str().unwrap(), validator["digest"].as_str().unwrap()),
        candidate_version
    );
    assert_eq!(list["history"].as_array().unwrap().last().unwrap()["how"], "promote", "{list}");
    wait_status(&addr, &mut host.0, Duration::from_secs(10), |s| s["shadow"].is_null());

    write(dir.path(), "d.jsonl", &files[3]);
    records(&addr, &mut host, 4 * PER_FILE as u64);
    pause_and_settle(&addr);
    let shadowed = rows(&db, TABLE);
    drop(host);

    // The same files in one run without a shadow.
    let plain = tempfile::tempdir().unwrap();
    let path = pipeline(plain.path());
    for (i, events) in files.iter().enumerate() {
        write(plain.path(), &format!("{i}.jsonl"), events);
    }
    let out = Command::new(weir_bin())
        .args(["run", path.to_str().unwrap(), "--quiet", "--no-admin", "--until-idle", "1s"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(shadowed, rows(&plain.path().join("rides.db"), TABLE), "the live table equals a run without shadows");
}
