//! Data quality end to end, with real parts: scores in the sink, rules and SLAs, alerts
//! through a real Prometheus and Alertmanager and weir's own webhooks, anomaly flags on
//! the dashboard in headless Chromium, exact counts on several hosts through a kill, and
//! `weir validate`'s refusals. The automatic rollback is in `tests/canary.rs`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::quality::{
    alerts, deploy_strict, files_with, grafana, grafana_quality_sql, receiver, receiver_failing, rides_with, trips,
    weir_host,
};
use weir_tests::services::{Alertmanager, Postgres, Prometheus};
use weir_tests::{free_addr, http_get, plugin_dir, rides_pipeline, wait_status, weir_bin, Reaped};

#[test]
fn a_broken_accuracy_rule_fires_through_prometheus_and_alertmanager_and_weirs_own_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = Postgres::start();
    let url = postgres.create_database("quality");
    let (receiving, posts) = receiver();
    let alertmanager = Alertmanager::start(&format!("http://{receiving}/alertmanager"));
    let pipeline = rides_with(
        dir.path(),
        &[
            ("events = 1000000", "events = 100000000"),
            ("seed = 42", "seed = 42\npace = 4000"),
            // A third of the records bad: about half of those the validator rejects.
            ("malformed_share = 0.01", "malformed_share = 0.3"),
            ("sqlite://./rides.db", &url),
        ],
        &format!("[alerts]\nwebhooks = [\"http://{receiving}/weir\"]\n"),
    );

    let rules = Command::new(weir_bin()).args(["alerts", "rules", pipeline.to_str().unwrap()]).output().unwrap();
    assert!(rules.status.success(), "{}", String::from_utf8_lossy(&rules.stderr));
    let rules = String::from_utf8(rules.stdout).unwrap();
    assert!(rules.contains("rule: \"accuracy\""), "{rules}");
    // The minute a rule must stay broken is Prometheus' own `for`; a second keeps the test short.
    let rules_file = dir.path().join("rules.yml");
    std::fs::write(&rules_file, rules.replace("for: 1m", "for: 1s")).unwrap();

    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &[], Stdio::null());
    let _prometheus = Prometheus::start_alerting(&addr, Some((&rules_file, &alertmanager.addr)));

    let broken = |s: &serde_json::Value| {
        s["quality"]["rules"].as_array().into_iter().flatten().any(|r| r["rule"] == "accuracy" && r["ok"] == false)
    };
    let status = wait_status(&addr, &mut host.0, Duration::from_secs(120), broken);
    let rule = status["quality"]["rules"].as_array().unwrap().iter().find(|r| r["rule"] == "accuracy").unwrap();
    let accuracy = rule["value"].as_f64().unwrap();
    assert!((0.8..0.97).contains(&accuracy), "{rule}");

    let deadline = Instant::now() + Duration::from_secs(120);
    let fired = |path: &str| {
        alerts(&posts, path).iter().any(|(status, labels)| {
            status == "firing" && labels["alertname"] == "WeirQualityRule" && labels["rule"] == "accuracy"
        })
    };
    while !(fired("/weir") && fired("/alertmanager")) {
        assert!(
            Instant::now() < deadline,
            "no firing accuracy alert from both weir and Alertmanager within 2 minutes: {:?}",
            posts.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let routed = alerts(&posts, "/alertmanager");
    let (_, labels) = routed.iter().find(|(_, l)| l["rule"] == "accuracy").unwrap();
    assert_eq!(labels["severity"], "page");
    assert_eq!(labels["pipeline"], "rides");

    // Judged again and again, still broken: weir posts it once (the repeat is 4 hours).
    let judged = status["quality"]["judged_ms"].as_i64().unwrap();
    wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| {
        s["quality"]["judged_ms"].as_i64().is_some_and(|t| t > judged + 6_000)
    });
    let firing: Vec<_> =
        alerts(&posts, "/weir").into_iter().filter(|(s, l)| s == "firing" && l["rule"] == "accuracy").collect();
    assert_eq!(firing.len(), 1, "{firing:?}");

    // The scores come from the sink: weir_quality holds the counts, weir_sla the minutes.
    let mut db = postgres.client("quality");
    let row = db
        .query_one(
            "SELECT sum(records)::bigint, sum(complete)::bigint, sum(accurate)::bigint FROM weir_quality \
             WHERE pipeline = 'rides' AND source_partition >= 0",
            &[],
        )
        .unwrap();
    let (records, complete, accurate): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(records > 10_000 && complete < records && accurate < complete, "{records} {complete} {accurate}");
    let stored = accurate as f64 / complete as f64;
    assert!((stored - accuracy).abs() < 0.02, "the sink's accuracy {stored} against the rule's {accuracy}");
    let bad: i64 = db
        .query_one("SELECT count(*) FROM weir_sla WHERE pipeline = 'rides' AND rule = 'accuracy' AND NOT ok", &[])
        .unwrap()
        .get(0);
    assert!(bad >= 1);
    // The Grafana dashboard's quality panels read the same tables.
    let titles: Vec<String> = grafana_quality_sql().into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        titles,
        [
            "Quality scores per window",
            "Rules and SLAs, last 30 days",
            "Anomalies",
            "Deployments and rollbacks",
            "annotations"
        ]
    );
    let scores = grafana(&mut db, "Quality scores per window");
    assert!(!scores.is_empty());
    let worst = scores.iter().filter_map(|r| r.get::<_, Option<f64>>("accuracy")).fold(1.0, f64::min);
    assert!(worst < 0.97, "the worst window's accuracy {worst}");
    let rules = grafana(&mut db, "Rules and SLAs, last 30 days");
    let accuracy =
        rules.iter().find(|r| r.get::<_, String>("rule") == "accuracy").expect("the accuracy rule's minutes");
    assert!(accuracy.get::<_, i64>("bad_minutes") >= 1);
    for title in ["Anomalies", "annotations", "Deployments and rollbacks"] {
        grafana(&mut db, title);
    }
    let (code, metrics) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics
        .contains("weir_quality_rule_ok{pipeline=\"rides\",rule=\"accuracy\",severity=\"page\",score=\"accuracy\"} 0"));
}

/// Forty minutes of steady trips with one strange minute: the detector flags exactly
/// Oslo's tripled fare and Lima's missing trips, in the sink; the dashboard, in Debian's
/// headless Chromium, shows the scores, the rules, both anomalies listed and ringed on the
/// charts, and then the automatic rollback of a bad version deployed meanwhile.
#[test]
fn an_injected_spike_is_flagged_and_the_dashboard_shows_it_and_the_rollback() {
    let drive = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    assert!(
        drive.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/dashboard` (cargo xtask test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.jsonl"), trips(0..40, (10.0, 30.0), Some(28))).unwrap();
    let pipeline = files_with(
        dir.path(),
        &input,
        &[("interval = \"1s\"", "interval = \"250ms\"")],
        "[deploy]\ncanary = \"1m\"\nmax_dead_letter_increase = 0.05\nmin_records = 200\n",
    );
    let addr = free_addr();
    let _host = weir_host(&pipeline, &addr, &[], Stdio::null());
    let mut browser = Reaped(
        Command::new("node")
            .arg(drive.join("quality.mjs"))
            .arg(format!("http://{addr}/"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running node"),
    );
    let mut steps = BufReader::new(browser.0.stdout.take().unwrap()).lines();
    let mut next = |name: &str| -> serde_json::Value {
        let line = steps.next().unwrap_or_else(|| panic!("the browser ended before step {name}")).unwrap();
        let step: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(step["step"], name, "{step}");
        step
    };

    let seen = next("anomalies");
    assert_eq!(seen["errors"], serde_json::json!([]), "the page logged no errors");
    assert_eq!(seen["shown"], true);
    assert_eq!(seen["tiles"]["accuracy"]["text"], "100.00 %", "{seen}");
    assert_eq!(seen["tiles"]["accuracy"]["bad"], false);
    let rules: Vec<String> = seen["rules"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().into()).collect();
    assert_eq!(rules, ["accuracy", "on time"]);
    assert_eq!(seen["rules"][1][3], "holds", "{seen}");
    let mut flagged: Vec<(String, String)> = seen["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a[1].as_str().unwrap().to_string(), a[2].as_str().unwrap().to_string()))
        .collect();
    flagged.sort();
    assert_eq!(flagged, [("Lima".to_string(), "trips".to_string()), ("Oslo".into(), "avg_fare".into())]);
    assert!(seen["anomalies"].as_array().unwrap().iter().all(|a| a[0] == "00:28–00:29"), "{seen}");
    assert_eq!(seen["marks"][0].as_i64().unwrap() + seen["marks"][1].as_i64().unwrap(), 2, "both ringed: {seen}");

    // The sink holds them, and nothing else of 40 minutes × 6 cities × 5 columns.
    let db = rusqlite::Connection::open(dir.path().join("rides.db")).unwrap();
    let stored: Vec<(String, String, String)> = db
        .prepare("SELECT window_start, key, column_name FROM weir_anomalies ORDER BY key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        stored,
        [
            ("2024-05-01T00:28:00.000Z".to_string(), "[\"Lima\"]".to_string(), "trips".to_string()),
            ("2024-05-01T00:28:00.000Z".into(), "[\"Oslo\"]".into(), "avg_fare".into()),
        ]
    );

    // A bad version (it rejects every fare above 40) meets trips of 30 to 60.
    deploy_strict(&addr, true);
    std::fs::write(input.join("b.jsonl"), trips(40..42, (30.0, 60.0), None)).unwrap();
    browser.0.stdin.as_mut().unwrap().write_all(b"deployed\n").unwrap();
    let rolled = next("rollback");
    assert_eq!(rolled["errors"], serde_json::json!([]), "the page logged no errors");
    let event = rolled["events"].as_array().unwrap().iter().find(|e| e[2] == "rollback").unwrap().clone();
    assert_eq!(event[1], "validators[0] rolled back to rules_validator", "{rolled}");
    assert!(event[3].as_str().unwrap().starts_with("canary: "), "{rolled}");
    assert!(browser.0.wait().unwrap().success());
}

/// weir's own webhook: a receiver that fails twice gets the firing alert on the third
/// attempt, 3 s later, while the rules are judged on meanwhile, and once later data mends
/// the rule, a resolved alert for the same rule, fingerprint and start.
#[test]
fn weirs_webhook_retries_a_failing_receiver_and_resolves_when_the_rule_holds_again() {
    let dir = tempfile::tempdir().unwrap();
    let (receiving, posts) = receiver_failing(2);
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // Ten minutes with one record in three not a trip at all (complete, not accurate).
    let bad: String = trips(0..10, (10.0, 30.0), None)
        .lines()
        .enumerate()
        .map(|(i, line)| if i % 3 == 0 { line.replace("\"city\"", "\"town\"") } else { line.to_string() } + "\n")
        .collect();
    std::fs::write(input.join("a.jsonl"), bad).unwrap();
    let pipeline = files_with(
        dir.path(),
        &input,
        &[("dead_letter_rate = 0.5", "dead_letter_rate = 0.99")],
        &format!("[alerts]\nwebhooks = [\"http://{receiving}/weir\"]\n"),
    );
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &[], Stdio::null());
    let accuracy = |s: &serde_json::Value| -> Option<serde_json::Value> {
        s["quality"]["rules"].as_array()?.iter().find(|r| r["rule"] == "accuracy").cloned()
    };
    let broken =
        wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| accuracy(s).is_some_and(|r| r["ok"] == false));
    let value = accuracy(&broken).unwrap()["value"].as_f64().unwrap();
    assert!((0.6..0.7).contains(&value), "a third rejected: {value}");
    // Refused twice (1 s, then 2 s apart), delivered on the third attempt; the status
    // page shows the failure meanwhile.
    let delivered = wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| {
        s["quality"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["rule"] == "accuracy" && a["delivered"] == 1))
    });
    assert!(delivered["quality"]["alerts"][0]["error"].is_null(), "{delivered}");
    let judged = |s: &serde_json::Value| s["quality"]["judged_ms"].as_i64().unwrap();
    assert!(judged(&delivered) >= judged(&broken) + 2_000, "the retries held nothing up");
    let fired = alerts(&posts, "/weir");
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].0, "firing");

    // Twelve more minutes of clean trips: the last five minutes of windows hold.
    std::fs::write(input.join("b.jsonl"), trips(10..22, (10.0, 30.0), None)).unwrap();
    wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| {
        s["quality"]["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["status"] == "resolved" && a["delivered"] == 1))
    });
    let posted = posts.lock().unwrap().clone();
    let bodies: Vec<&serde_json::Value> = posted.iter().map(|(_, b)| b).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[1]["status"], "resolved");
    let (firing, resolved) = (&bodies[0]["alerts"][0], &bodies[1]["alerts"][0]);
    assert_eq!(firing["fingerprint"], resolved["fingerprint"], "one alert, two states");
    assert_eq!(firing["endsAt"], "0001-01-01T00:00:00Z");
    assert_ne!(resolved["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(firing["startsAt"], resolved["startsAt"]);
}

/// Quality counts on three hosts of one group, one of them SIGKILLed mid-stream, on an
/// unkeyed topic: every record counted once, per partition, in the stage it reached (as
/// an independent reading of the topic says), the on-time records of each window equal to
/// its trips, and each window's output recount equal to its rows.
#[test]
fn quality_counts_are_exact_on_three_hosts_through_a_kill() {
    use weir_tests::group::{self, finish, host, produce, read_topic, truth, wait_committed};
    const EVENTS: u64 = 200_000;
    let broker = weir_tests::services::Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "[quality.ranges]\ntrips = { min = 1 }\n");
    let out = produce(&broker, "trips", "none", 7, EVENTS, "2024-05-01T00:00:00Z", None).wait_with_output().unwrap();
    assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    let records = read_topic(&broker, "trips", EVENTS as usize);
    let want = truth(&records);

    let url = pg.create_database("quality_group");
    let mut a = host(&pipeline, &broker, "trips", &url, "quality");
    let mut b = host(&pipeline, &broker, "trips", &url, "quality");
    wait_committed(&pg, "quality_group", 0, &mut a);
    let c = host(&pipeline, &broker, "trips", &url, "quality");
    let at = wait_committed(&pg, "quality_group", EVENTS as i64 / 3, &mut b);
    b.kill().unwrap(); // SIGKILL
    b.wait().unwrap();
    assert!(at < EVENTS as i64, "the kill lands mid-stream ({at} of {EVENTS} committed)");
    let b2 = host(&pipeline, &broker, "trips", &url, "quality");
    for (h, name) in [(a, "a"), (c, "c"), (b2, "b again")] {
        finish(h, name);
    }

    let mut db = pg.client("quality_group");
    let by_partition = db
        .query(
            "SELECT source_partition, sum(records)::bigint, sum(complete)::bigint, sum(accurate)::bigint, \
             sum(late)::bigint, sum(on_time)::bigint FROM weir_quality WHERE source_partition >= 0 GROUP BY 1 ORDER BY 1",
            &[],
        )
        .unwrap();
    assert_eq!(by_partition.len(), 6, "a row set per partition");
    for row in by_partition {
        let p: i32 = row.get(0);
        let count = |set: &std::collections::BTreeSet<(i32, i64)>| set.iter().filter(|(q, _)| *q == p).count() as i64;
        let read = records.iter().filter(|(q, _, _)| *q == p).count() as i64;
        let (malformed, rejected, late) = (count(&want.malformed), count(&want.rejected), count(&want.late));
        let got: (i64, i64, i64, i64, i64) = (row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        let accurate = read - malformed - rejected;
        assert_eq!(got, (read, read - malformed, accurate, late, accurate - late), "partition {p}");
    }
    let mismatched: Vec<(i64, i64, i64, i64, i64)> = db
        .query(
            "WITH q AS (SELECT window_start, sum(on_time)::bigint AS on_time, sum(rows_out)::bigint AS rows_out \
                        FROM weir_quality GROUP BY 1), \
                  t AS (SELECT window_start, sum(trips)::bigint AS trips, count(*) AS rows FROM rides_city_minute GROUP BY 1) \
             SELECT (extract(epoch FROM coalesce(q.window_start, t.window_start)) * 1000)::bigint, \
                    coalesce(q.on_time, 0), coalesce(t.trips, 0), coalesce(q.rows_out, 0), coalesce(t.rows, 0) \
             FROM q FULL JOIN t USING (window_start) \
             WHERE coalesce(q.on_time, 0) <> coalesce(t.trips, 0) OR coalesce(q.rows_out, 0) <> coalesce(t.rows, 0)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(mismatched, [], "(window, on time, trips, rows recounted, rows)");
    let valid: i64 = db.query_one("SELECT sum(rows_valid)::bigint FROM weir_quality", &[]).unwrap().get(0);
    let rows: i64 = db.query_one("SELECT count(*) FROM rides_city_minute", &[]).unwrap().get(0);
    assert_eq!(valid, rows, "every row has a trip");
}

/// `weir validate` refuses a rule naming an unknown score, a threshold of the wrong type,
/// a span that does not parse and a range naming no numeric output column, each with its
/// key, and changes nothing.
#[test]
fn weir_validate_names_the_key_of_a_bad_quality_setting() {
    let dir = tempfile::tempdir().unwrap();
    for (from, to, says) in [
        (
            "check = \"accuracy >= 0.97\"",
            "check = \"acuracy >= 0.97\"",
            "quality.rule[0].check: unknown score \"acuracy\"",
        ),
        ("check = \"accuracy >= 0.97\"", "check = \"accuracy >= 5m\"", "quality.rule[0].check: accuracy is a share"),
        (
            "check = \"timeliness >= 0.95\"",
            "check = \"freshness <= 0.95\"",
            "quality.rule[1].check: freshness is a duration",
        ),
        ("over = \"5m\"", "over = \"five minutes\"", "not a duration"),
        (
            "avg_fare = { min = 0.0, max = 500.0 }",
            "avg_fares = { min = 0.0 }",
            "quality.ranges.avg_fares: not a numeric output column",
        ),
        (
            "trips = { absent = 0.0 }",
            "city = { absent = 0.0 }",
            "quality.anomalies.columns.city: not a numeric output column",
        ),
    ] {
        let pipeline = rides_pipeline(dir.path(), &[(from, to)]);
        let out = Command::new(weir_bin())
            .args(["validate", pipeline.to_str().unwrap()])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!out.status.success() && said.contains(says), "{to}: {said}");
        assert!(!dir.path().join("rides.db").exists(), "validate created the sink");
    }
}
