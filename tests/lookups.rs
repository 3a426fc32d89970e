//! Broadcast lookups, end to end: the rides pipeline enriched from a CSV lookup table
//! (`examples/rides/pipeline-regions.toml`), the table edited while it runs, then broken
//! and mended.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use weir_tests::services::repo_root;
use weir_tests::{free_addr, http_get, plugin_dir, wait_status, weir_bin, Reaped};

/// Writes `text` to `path` by renaming a sibling over it, as an editor saving would.
fn replace(path: &std::path::Path, text: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, text).unwrap();
    std::fs::rename(&new, path).unwrap();
}

/// The distinct lookup versions of the checkpoint log, in the order checkpoints used them.
fn versions_used(db: &std::path::Path) -> Vec<String> {
    let Ok(conn) = Connection::open(db) else { return Vec::new() };
    let Ok(mut stmt) = conn.prepare("SELECT lookups FROM weir_checkpoint_log ORDER BY id") else { return Vec::new() };
    let mut used: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    used.dedup();
    used
}

fn wait_until(what: &str, host: &mut Reaped, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if let Ok(Some(status)) = host.0.try_wait() {
            panic!("weir exited with {status} before {what}");
        }
        assert!(Instant::now() < deadline, "not within a minute: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_lookup_table_edited_mid_run_enriches_the_records_after_one_checkpoint_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let examples = repo_root().join("examples/rides");
    std::fs::create_dir(dir.path().join("lookups")).unwrap();
    let csv = dir.path().join("lookups/cities.csv");
    let original = std::fs::read_to_string(examples.join("lookups/cities.csv")).unwrap();
    std::fs::write(&csv, &original).unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    let text = std::fs::read_to_string(examples.join("pipeline-regions.toml"))
        .unwrap()
        .replace("refresh = \"5s\"", "refresh = \"100ms\"");
    std::fs::write(&pipeline, text).unwrap();
    let db = dir.path().join(".weir/rides-regions.db");

    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--until-idle", "1s", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("RIDES_EVENTS", "300000")
            .env("RIDES_PACE", "15000")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_status(&addr, &mut host.0, Duration::from_secs(60), |s| s["checkpoints"].as_u64().is_some_and(|c| c >= 2));
    let first = versions_used(&db);
    assert_eq!(first.len(), 1, "{first:?}");

    // Oslo moves to another region: the new version is used from a checkpoint boundary on.
    let before_edit = weir_sdk::time::format_iso8601(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
    );
    let edited = original.replace("Oslo,Europe,", "Oslo,Nordics,");
    replace(&csv, &edited);
    wait_until("the edited table is used", &mut host, || versions_used(&db).len() == 2);

    // A broken file keeps the last good version in use, and /readyz says so.
    replace(&csv, "town;region\nOslo;Nordics\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    let why = loop {
        let (code, body) = http_get(&addr, "/readyz");
        if code == 503 && body.contains("lookup table cities") {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz never named the failing lookup: {code} {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(why.contains("keeping version sha256:") && why.contains("no key column \"city\""), "{why}");
    let status: serde_json::Value = serde_json::from_str(&http_get(&addr, "/api/status").1).unwrap();
    assert!(status["troubles"][0].as_str().unwrap().contains("lookup table cities"), "{status}");
    // Mended, it is all right again, and no version came of the broken file.
    replace(&csv, &edited);
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&addr, "/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "/readyz stayed unready after the file was mended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ok, stdout, stderr) = weir_tests::group::ended(host);
    assert!(ok, "{stderr}");
    let used = versions_used(&db);
    assert_eq!(used.len(), 2, "the first version, then the edited one, never back: {used:?}");

    let conn = Connection::open(&db).unwrap();
    let stored: i64 = conn.query_row("SELECT count(*) FROM weir_lookups", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 2, "each version used is stored once, with its content");
    let regions: Vec<(String, i64)> = conn
        .prepare(
            "SELECT region, sum(trips) FROM rides_region_minute WHERE city = 'Oslo' GROUP BY region ORDER BY region",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(regions.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["Europe", "Nordics"], "{regions:?}");
    // Every windowed event is counted once, under one region or the other.
    let trips: i64 = conn.query_row("SELECT sum(trips) FROM rides_region_minute", [], |r| r.get(0)).unwrap();
    let windowed: i64 = stdout
        .split(" windowed")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no windowed count in {stdout}"));
    assert_eq!(trips, windowed);

    // A replay of the late lane as of before the edit enriches with the version then in
    // use, read back from the sink (the CSV now says Nordics), and records it.
    let replay = |args: &[&str]| {
        let out = Command::new(weir_bin())
            .args(["replay", pipeline.to_str().unwrap(), "--late", "--quiet"])
            .args(args)
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let late: i64 = conn.query_row("SELECT count(*) FROM weir_late_events", [], |r| r.get(0)).unwrap();
    assert!(late > 0, "the producer's late events");
    let logged = |conn: &Connection| -> i64 {
        conn.query_row("SELECT max(id) FROM weir_checkpoint_log", [], |r| r.get(0)).unwrap()
    };
    let before = logged(&conn);
    let report = replay(&["--lookups-as-of", &before_edit]);
    assert!(report.contains(&format!("replayed {late} late events")), "{report}");
    let used: Vec<String> = conn
        .prepare("SELECT DISTINCT lookups FROM weir_checkpoint_log WHERE id > ?")
        .unwrap()
        .query_map([before], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(used, [first[0].clone()], "the replay enriched with the version in use before the edit");
    let err = Command::new(weir_bin())
        .args(["replay", pipeline.to_str().unwrap(), "--late", "--lookups-as-of", "2000-01-01T00:00:00Z"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    let why = String::from_utf8_lossy(&err.stderr);
    assert!(!err.status.success() && why.contains("no recorded version of lookup table cities"), "{why}");
}

/// The same table from each kind of source: a CSV file, JSON lines, a PostgreSQL query,
/// and a compacted Kafka topic (where the latest record of a key wins and an empty value
/// deletes it) loads as the same version.
#[test]
fn a_file_a_query_and_a_compacted_topic_load_the_same_table() {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use weir::config::LookupConfig;
    let dir = tempfile::tempdir().unwrap();
    let csv = std::fs::read_to_string(repo_root().join("examples/rides/lookups/cities.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    std::fs::write(dir.path().join("cities.csv"), &csv).unwrap();
    let jsonl: String = rows
        .iter()
        .map(|r| {
            serde_json::json!({"city": r[0], "region": r[1], "timezone": r[2], "currency": r[3]}).to_string() + "\n"
        })
        .collect();
    std::fs::write(dir.path().join("cities.jsonl"), jsonl).unwrap();

    let pg = weir_tests::services::Postgres::start();
    let url = pg.create_database("app");
    let mut client = pg.client("app");
    client
        .batch_execute(
            "CREATE TABLE cities (city text PRIMARY KEY, region text, timezone text, currency text, pop int)",
        )
        .unwrap();
    for r in &rows {
        client.execute("INSERT INTO cities VALUES ($1, $2, $3, $4, 1)", &[&r[0], &r[1], &r[2], &r[3]]).unwrap();
    }

    let broker = weir_tests::services::Broker::start();
    let producer: BaseProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", broker.brokers()).create().unwrap();
    let send = |key: &str, value: &str| {
        producer.send(BaseRecord::to("cities").key(key).payload(value)).map_err(|(e, _)| e).unwrap();
    };
    send("Atlantis", r#"{"region": "Nowhere", "timezone": "UTC", "currency": "XAU"}"#);
    for r in &rows {
        // A stale value first: the later record of the key wins.
        send(r[0], r#"{"region": "stale"}"#);
        let value = serde_json::json!({"region": r[1], "timezone": r[2], "currency": r[3]}).to_string();
        send(r[0], &value);
    }
    send("Atlantis", "");
    producer.flush(Duration::from_secs(30)).unwrap();

    let columns = Some(vec!["region".to_string(), "timezone".to_string(), "currency".to_string()]);
    let base = LookupConfig {
        name: "cities".into(),
        key: "city".into(),
        file: None,
        query: None,
        url: None,
        topic: None,
        brokers: None,
        columns: columns.clone(),
        refresh: Duration::from_secs(60),
    };
    let sources = [
        LookupConfig { file: Some("cities.csv".into()), columns: None, ..base.clone() },
        LookupConfig { file: Some("cities.jsonl".into()), ..base.clone() },
        LookupConfig {
            query: Some("SELECT city, region, timezone, currency FROM cities".into()),
            url: Some(url.clone()),
            columns: None,
            ..base.clone()
        },
        LookupConfig { topic: Some("cities".into()), brokers: Some(broker.brokers()), ..base.clone() },
    ];
    let tables: Vec<_> = sources
        .iter()
        .map(|c| {
            weir::lookup::load(c, dir.path(), "sqlite://unused.db", None).unwrap_or_else(|e| panic!("{c:?}: {e:#}"))
        })
        .collect();
    for table in &tables {
        assert_eq!(table.columns, columns.clone().unwrap());
        assert_eq!(
            table.rows.len(),
            rows.len(),
            "{} rows of {:?}",
            table.rows.len(),
            table.rows.keys().collect::<Vec<_>>()
        );
        assert_eq!(table.rows["Oslo"], [Some("Europe".into()), Some("Europe/Oslo".into()), Some("NOK".into())]);
        assert_eq!(table.version, tables[0].version, "the same rows are the same version");
    }
    // A source without the key column is refused, naming it.
    let bad = LookupConfig { key: "town".into(), ..sources[0].clone() };
    let err = format!("{:#}", weir::lookup::load(&bad, dir.path(), "", None).unwrap_err());
    assert!(err.contains("no key column \"town\""), "{err}");
}
