//! Data quality end to end, with real parts: the rides pipeline into a real PostgreSQL with
//! a third of its records bad breaks its accuracy rule. A real Prometheus, scraping weir
//! and evaluating the rules `weir alerts rules` wrote, fires the alert; a real Alertmanager
//! routes it to a webhook served by this test; and weir's own notifier posts the same
//! receiver, once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_tests::services::{Alertmanager, Postgres, Prometheus};
use weir_tests::{free_addr, http_get, plugin_dir, rides_pipeline, wait_status, weir_bin, Reaped};

type Posts = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A webhook receiver: every POST's path and JSON body, answered 200 (but the first
/// `failing` posts, answered 503 and not kept).
fn receiver_failing(failing: usize) -> (String, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let posts: Posts = Arc::default();
    let kept = posts.clone();
    std::thread::spawn(move || {
        let mut failed = 0;
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            if failed < failing {
                failed += 1;
                let _ =
                    reader.get_mut().write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            kept.lock().unwrap().push((path, json));
            let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, posts)
}

fn receiver() -> (String, Posts) {
    receiver_failing(0)
}

/// The alerts posted to `path` so far, as (status, labels).
fn alerts(posts: &Posts, path: &str) -> Vec<(String, serde_json::Value)> {
    let posts = posts.lock().unwrap();
    let bodies = posts.iter().filter(|(p, _)| p == path);
    let all = bodies.flat_map(|(_, body)| body["alerts"].as_array().cloned().unwrap_or_default());
    all.map(|a| (a["status"].as_str().unwrap_or_default().to_string(), a["labels"].clone())).collect()
}

/// The example Grafana dashboard's SQL over weir's quality tables (panels and the
/// anomaly annotations), by title, as Grafana would send it for pipeline `rides` with
/// every row in the panel's time range.
fn grafana_quality_sql() -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap().iter().flat_map(|p| {
        p["targets"].as_array().into_iter().flatten().map(move |t| (p["title"].as_str().unwrap_or_default(), t))
    });
    let annotations =
        dashboard["annotations"]["list"].as_array().into_iter().flatten().map(|a| ("annotations", &a["target"]));
    panels
        .chain(annotations)
        .filter_map(|(title, t)| Some((title.to_string(), t["rawSql"].as_str()?.to_string())))
        .filter(|(_, sql)| sql.contains("weir_"))
        .map(|(title, sql)| {
            let sql = sql.replace("$pipeline", "rides");
            let sql = sql.replace("$__timeFilter(window_start)", "window_start IS NOT NULL");
            (title, sql)
        })
        .collect()
}

/// Runs the Grafana query titled `title` against `db`.
fn grafana(db: &mut postgres::Client, title: &str) -> Vec<postgres::Row> {
    let (_, sql) =
        grafana_quality_sql().into_iter().find(|(t, _)| t == title).unwrap_or_else(|| panic!("no panel {title}"));
    db.query(&sql, &[]).unwrap_or_else(|e| panic!("{title}: {sql}: {e:?}"))
}

#[test]
fn a_broken_accuracy_rule_fires_through_prometheus_and_alertmanager_and_weirs_own_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = Postgres::start();
    let url = postgres.create_database("quality");
    let (receiving, posts) = receiver();
    let alertmanager = Alertmanager::start(&format!("http://{receiving}/alertmanager"));
    let pipeline = rides_pipeline(
        dir.path(),
        &[
            ("events = 1000000", "events = 100000000"),
            ("seed = 42", "seed = 42\npace = 4000"),
            // A third of the records bad: about half of those the validator rejects.
            ("malformed_share = 0.01", "malformed_share = 0.3"),
            ("sqlite://./rides.db", &url),
        ],
    );
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text.push_str(&format!("\n[alerts]\nwebhooks = [\"http://{receiving}/weir\"]\n"));
    std::fs::write(&pipeline, text).unwrap();

    let rules = Command::new(weir_bin()).args(["alerts", "rules", pipeline.to_str().unwrap()]).output().unwrap();
    assert!(rules.status.success(), "{}", String::from_utf8_lossy(&rules.stderr));
    let rules = String::from_utf8(rules.stdout).unwrap();
    assert!(rules.contains("rule: \"accuracy\""), "{rules}");
    // The minute a rule must stay broken is Prometheus' own `for`; a second keeps the test short.
    let rules_file = dir.path().join("rules.yml");
    std::fs::write(&rules_file, rules.replace("for: 1m", "for: 1s")).unwrap();

    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
    let pipeline = rides_pipeline(
        dir.path(),
        &[
            ("events = 1000000", &format!("events = {EVENTS}")),
            ("seed = 42", "seed = 42\npace = 3000"),
            ("sqlite://./rides.db", &url),
            // Only the canary acts on the broken version's dead letters here.
            ("dead_letter_rate = 0.5", "dead_letter_rate = 0.99"),
        ],
    );
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text.push_str("\n[deploy]\ncanary = \"1m\"\nmax_dead_letter_increase = 0.05\nmin_records = 500\n");
    std::fs::write(&pipeline, text).unwrap();
    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", &addr, "--until-idle", "3s"])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| s["records"].as_i64().is_some_and(|r| r > 6_000));
    let (ok, _, why) = weir_tests::weir_cli(
        &addr,
        &[
            "plugin",
            "deploy",
            "--pipeline",
            "rides",
            "--stage",
            "validators[0]",
            "--max-error-increase",
            "100",
            weir_tests::guests::STRICT_VALIDATOR,
        ],
    );
    assert!(ok, "{why}");
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

/// Trips of `cities` for each minute of `minutes` as JSON lines: about 40 per city, fares
/// uniform in `fares` (deterministic), but for `spike`: Oslo's fares triple and Lima has
/// no trip at all.
fn trips(minutes: std::ops::Range<i64>, fares: (f64, f64), spike: Option<i64>) -> String {
    let cities = ["Oslo", "Lima", "Pune", "Austin", "Berlin", "Tokyo"];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ minutes.start as u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut out = String::new();
    for minute in minutes {
        for city in cities {
            if spike == Some(minute) && city == "Lima" {
                continue;
            }
            let n = 35 + (next() * 11.0) as i64;
            for i in 0..n {
                let mut fare = fares.0 + next() * (fares.1 - fares.0);
                if spike == Some(minute) && city == "Oslo" {
                    fare *= 3.0;
                }
                let at = weir_sdk::time::format_iso8601(1_714_521_600_000 + minute * 60_000 + i * 60_000 / n);
                out.push_str(&format!(
                    "{{\"trip_id\":\"t-{minute}-{city}-{i}\",\"city\":\"{city}\",\"driver_id\":\"d\",\"rider_id\":\"r\",\
                     \"fare\":{fare:.2},\"distance_km\":3.5,\"status\":\"completed\",\"event_time\":\"{at}\"}}\n"
                ));
            }
        }
    }
    out
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
    let source = format!("kind = \"files\"\npath = \"{}\"\nformat = \"jsonl\"\nfollow = true", input.display());
    let pipeline = rides_pipeline(
        dir.path(),
        &[
            ("kind = \"producer\"", &source),
            ("events = 1000000", ""),
            ("rate = 1000", ""),
            ("seed = 42", ""),
            ("late_share = 0.02", ""),
            ("malformed_share = 0.01", ""),
            ("interval = \"1s\"", "interval = \"250ms\""),
        ],
    );
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text.push_str("\n[deploy]\ncanary = \"1m\"\nmax_dead_letter_increase = 0.05\nmin_records = 200\n");
    std::fs::write(&pipeline, text).unwrap();
    let addr = free_addr();
    let _host = Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
    let (ok, _, why) = weir_tests::weir_cli(
        &addr,
        &[
            "plugin",
            "deploy",
            "--pipeline",
            "rides",
            "--stage",
            "validators[0]",
            "--max-error-increase",
            "100",
            weir_tests::guests::STRICT_VALIDATOR,
        ],
    );
    assert!(ok, "{why}");
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
    let source = format!("kind = \"files\"\npath = \"{}\"\nformat = \"jsonl\"\nfollow = true", input.display());
    let pipeline = rides_pipeline(
        dir.path(),
        &[
            ("kind = \"producer\"", &source),
            ("events = 1000000", ""),
            ("rate = 1000", ""),
            ("seed = 42", ""),
            ("late_share = 0.02", ""),
            ("malformed_share = 0.01", ""),
            ("dead_letter_rate = 0.5", "dead_letter_rate = 0.99"),
        ],
    );
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text.push_str(&format!("\n[alerts]\nwebhooks = [\"http://{receiving}/weir\"]\n"));
    std::fs::write(&pipeline, text).unwrap();
    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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

/// A shadow whose rows differ from the live version's in most windows is promoted all
/// the same; with `deploy.max_changed_rows` the canary rolls it back at once, and the
/// record says why.
#[test]
fn a_promoted_shadow_that_changed_too_many_rows_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("a.jsonl"), trips(0..5, (10.0, 60.0), None)).unwrap();
    let source = format!("kind = \"files\"\npath = \"{}\"\nformat = \"jsonl\"\nfollow = true", input.display());
    let pipeline = rides_pipeline(
        dir.path(),
        &[
            ("kind = \"producer\"", &source),
            ("events = 1000000", ""),
            ("rate = 1000", ""),
            ("seed = 42", ""),
            ("late_share = 0.02", ""),
            ("malformed_share = 0.01", ""),
            ("interval = \"1s\"", "interval = \"250ms\""),
        ],
    );
    let mut text = std::fs::read_to_string(&pipeline).unwrap();
    text.push_str("\n[deploy]\ncanary = \"1m\"\nmax_changed_rows = 0.1\n");
    std::fs::write(&pipeline, text).unwrap();
    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
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
