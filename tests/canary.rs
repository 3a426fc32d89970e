//! Automatic rollback on real parts: a bad validator version deployed under load into
//! PostgreSQL is rolled back by the canary with the sink exact, a promoted shadow that
//! changed too many windows is rolled back at once, and a rollback that is refused keeps
//! the running version and pages.

use std::process::{Command, Stdio};
use std::time::Duration;

use weir_tests::quality::{alerts, deploy_strict, files_with, grafana, receiver, rides_with, trips, weir_host};
use weir_tests::services::Postgres;
use weir_tests::{free_addr, http_get, wait_status};

/// A validator version that rejects half the trips, deployed under load past its trial
/// (`--max-error-increase 100`), is rolled back by the canary at a checkpoint; the sink
/// stays exact: every record counted once, in a window, a dead letter or the late lane,
/// and the broken version's failures lie between its switch and the rollback's.
#[test]
fn a_broken_validator_is_rolled_back_by_the_canary_and_the_sink_stays_exact() {
    const EVENTS: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let postgres = Postgres::start();
    let url = postgres.create_database("canary");
    let pipeline = rides_with(
        dir.path(),
        &[
            ("events = 1000000", &format!("events = {EVENTS}")),
            ("seed = 42", "seed = 42\npace = 3000"),
            ("sqlite://./rides.db", &url),
            // Only the canary acts on the broken version's dead letters here.
            ("dead_letter_rate = 0.5", "dead_letter_rate = 0.99"),
        ],
        "[deploy]\ncanary = \"1m\"\nmax_dead_letter_increase = 0.05\nmin_records = 500\n",
    );
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &["--until-idle", "3s"], Stdio::piped());
    wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| s["records"].as_i64().is_some_and(|r| r > 6_000));
    deploy_strict(&addr, true);
    let rolled_back = |s: &serde_json::Value| s["records"].as_i64().is_some() && s["swaps"].as_u64() >= Some(2);
    wait_status(&addr, &mut host.0, Duration::from_secs(120), rolled_back);
    let (code, plugins) = http_get(&addr, "/api/plugins");
    assert_eq!(code, 200);
    let plugins: serde_json::Value = serde_json::from_str(&plugins).unwrap();
    let history = plugins["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["how"], "rollback", "{plugins}");
    assert_eq!(last["plugin"], "rules_validator", "{plugins}");
    assert!(last["reason"].as_str().unwrap().starts_with("canary: "), "{plugins}");

    let out = std::mem::replace(&mut host.0, Command::new("true").spawn().unwrap()).wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("rolled back to rules_validator"), "{stderr}");

    let mut db = postgres.client("canary");
    let one = |db: &mut postgres::Client, sql: &str| -> i64 { db.query_one(sql, &[]).unwrap().get(0) };
    let windowed = one(&mut db, "SELECT sum(trips)::bigint FROM rides_city_minute");
    let dead = one(&mut db, "SELECT count(*) FROM weir_dead_letters");
    let late = one(&mut db, "SELECT count(*) FROM weir_late_events");
    assert_eq!(windowed + dead + late, EVENTS, "{windowed} windowed + {dead} dead letters + {late} late");
    // The broken version's rejections lie between its switch and the rollback's, which the
    // sink recorded with the reason.
    let rows = db
        .query("SELECT how, from_offsets, reason FROM weir_deployments WHERE pipeline = 'rides' AND how <> 'configured' ORDER BY id", &[])
        .unwrap();
    let hows: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(hows, ["deploy", "rollback"]);
    let offset = |i: usize| -> i64 {
        let offsets: serde_json::Value = serde_json::from_str(rows[i].get::<_, &str>(1)).unwrap();
        offsets[0][1].as_i64().unwrap()
    };
    let (from, to) = (offset(0), offset(1));
    assert!(rows[1].get::<_, Option<String>>(2).unwrap().contains("canary"));
    let shown = grafana(&mut db, "Deployments and rollbacks");
    assert_eq!(shown[0].get::<_, String>("how"), "rollback", "the newest first");
    assert!(shown[0].get::<_, Option<String>>("reason").unwrap().starts_with("canary: "));
    let failures =
        db.query("SELECT source_offset FROM weir_dead_letters WHERE reason LIKE 'fare-at-most-40%'", &[]).unwrap();
    assert!(!failures.is_empty());
    for f in failures {
        let at: i64 = f.get(0);
        assert!((from..to).contains(&at), "a rejection at offset {at}, outside the broken version's {from}..{to}");
    }
}

/// A shadow whose rows differ from the live version's in most windows is promoted all
/// the same; with `deploy.max_changed_rows` the canary rolls it back at once, and the
/// record says why.
#[test]
fn a_promoted_shadow_that_changed_too_many_rows_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.jsonl"), trips(0..5, (10.0, 60.0), None)).unwrap();
    let pipeline = files_with(
        dir.path(),
        &input,
        &[("interval = \"1s\"", "interval = \"250ms\"")],
        "[deploy]\ncanary = \"1m\"\nmax_changed_rows = 0.1\n",
    );
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &[], Stdio::null());
    let read = |n: u64| move |s: &serde_json::Value| s["records"].as_u64() >= Some(n);
    let first = trips(0..5, (10.0, 60.0), None).lines().count() as u64;
    wait_status(&addr, &mut host.0, Duration::from_secs(60), read(first));
    let stage = ["--pipeline", "rides", "--stage", "validators[0]"];
    let (ok, _, why) = weir_tests::weir_cli(
        &addr,
        &[&["plugin", "shadow"][..], &stage, &[weir_tests::guests::STRICT_VALIDATOR]].concat(),
    );
    assert!(ok, "{why}");
    std::fs::write(input.join("b.jsonl"), trips(5..10, (10.0, 60.0), None)).unwrap();
    let second = first + trips(5..10, (10.0, 60.0), None).lines().count() as u64;
    wait_status(&addr, &mut host.0, Duration::from_secs(60), read(second));
    // Until the shadow's rows of the second file are compared.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, out, why) = weir_tests::weir_cli(&addr, &["plugin", "diff", "--pipeline", "rides", "--limit", "0"]);
        // Until the shadow's first commit there is nothing to compare.
        assert!(ok || why.contains("none has committed yet"), "{why}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        if report["differing"].as_u64() >= Some(10) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the shadow never differed: {report} {why}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, _, why) = weir_tests::weir_cli(&addr, &["plugin", "promote", "--pipeline", "rides"]);
    assert!(ok, "{why}");
    let history = |s: &serde_json::Value| s["swaps"].as_u64() >= Some(2);
    wait_status(&addr, &mut host.0, Duration::from_secs(60), history);
    let list: serde_json::Value = serde_json::from_str(&weir_tests::weir_cli(&addr, &["plugin", "list"]).1).unwrap();
    let hows: Vec<&str> = list["history"].as_array().unwrap().iter().filter_map(|d| d["how"].as_str()).collect();
    assert_eq!(hows[hows.len() - 2..], ["promote", "rollback"], "{list}");
    let reason = list["history"].as_array().unwrap().last().unwrap()["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("canary: as a shadow, fixture_strict_validator@"), "{reason}");
    assert!(reason.contains("more than deploy.max_changed_rows = 0.1"), "{reason}");
    let validator = list["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "validators[0]").unwrap();
    assert_eq!(validator["plugin"], "rules_validator", "{list}");
}

/// A rollback that cannot be made keeps the running version and pages: the version before
/// the condemned one traps on the recent input the rollback is tried on, so the rollback
/// is refused; readiness says why, and the webhook gets the page.
#[test]
fn a_rollback_that_is_refused_keeps_the_running_version_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // Fares up to 30: the configured validator (it traps on fares above 40) runs clean.
    std::fs::write(input.join("a.jsonl"), trips(0..3, (10.0, 30.0), None)).unwrap();
    let (receiving, posts) = receiver();
    let configured = format!("plugin = \"{}\"", weir_tests::guests::TRAPPING_VALIDATOR);
    let pipeline = files_with(
        dir.path(),
        &input,
        &[("plugin = \"rules_validator\"", &configured), ("dead_letter_rate = 0.5", "dead_letter_rate = 0.99")],
        &format!("[deploy]\ncanary = \"5m\"\nmin_records = 2000\n[alerts]\nwebhooks = [\"http://{receiving}/weir\"]\n"),
    );
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &[], Stdio::null());
    let first = trips(0..3, (10.0, 30.0), None).lines().count() as u64;
    wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| s["records"].as_u64() >= Some(first));
    deploy_strict(&addr, false);
    // Fares of 30 to 60, a minute (about 240 trips) at a time, each read before the next
    // is written: the deployer's sample of recent input (a batch every 500 ms) holds some
    // long before the canary has seen 2,000 of them.
    let mut read = first;
    for minute in 3..40 {
        let more = trips(minute..minute + 1, (30.0, 60.0), None);
        read += more.lines().count() as u64;
        std::fs::write(input.join(format!("m{minute}.jsonl")), more).unwrap();
        let status = wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| s["records"].as_u64() >= Some(read));
        if status["troubles"].as_array().is_some_and(|t| !t.is_empty()) {
            break;
        }
    }
    let status = wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| {
        s["troubles"].as_array().is_some_and(|t| t.iter().any(|t| t.as_str().unwrap_or("").contains("rollback failed")))
    });
    let trouble = status["troubles"][0].as_str().unwrap().to_string();
    assert!(trouble.contains("the condemned version runs on"), "{trouble}");
    let (code, ready) = http_get(&addr, "/readyz");
    assert_eq!(code, 503, "{ready}");
    assert!(ready.contains("automatic rollback failed"), "{ready}");
    let list: serde_json::Value = serde_json::from_str(&weir_tests::weir_cli(&addr, &["plugin", "list"]).1).unwrap();
    let validator = list["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "validators[0]").unwrap();
    assert_eq!(validator["plugin"], "fixture_strict_validator", "the running version stays: {list}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !alerts(&posts, "/weir").iter().any(|(_, l)| l["alertname"] == "WeirAutoRollback") {
        assert!(std::time::Instant::now() < deadline, "no page: {:?}", posts.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    let paged = posts
        .lock()
        .unwrap()
        .iter()
        .find(|(_, b)| b["alerts"][0]["labels"]["alertname"] == "WeirAutoRollback")
        .unwrap()
        .1
        .clone();
    assert_eq!(paged["alerts"][0]["labels"]["severity"], "page");
    assert!(paged["alerts"][0]["annotations"]["summary"].as_str().unwrap().contains("rollback failed"), "{paged}");
}
