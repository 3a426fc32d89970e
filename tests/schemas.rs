//! Schemas that evolve, end to end: producers written with confluent-kafka's own
//! SchemaRegistryClient and AvroSerializer (PyPI) register trip schemas v1 and v2 in
//! weir's registry (served on the admin port) and write both to one Tansu topic at
//! once; weir reads them with v2 into PostgreSQL.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::group::{finish, wait_committed};
use weir_tests::services::{repo_root, signal, Broker, Postgres};
use weir_tests::{free_addr, http_get, plugin_dir, weir_bin, Reaped};

/// Runs `tests/avro/produce.py` with `args`, failing the test with its output if it fails.
fn python(args: &[&str]) {
    let out = Command::new("python3")
        .arg(repo_root().join("tests/avro/produce.py"))
        .args(args)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "produce.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `weir run` of the Avro rides example, its admin API (and so its registry) at `admin`.
fn run(broker: &Broker, topic: &str, db: &str, admin: &str, registry: Option<&str>) -> Reaped {
    let mut cmd = Command::new(weir_bin());
    cmd.args(["run", repo_root().join("examples/rides/pipeline-avro.toml").to_str().unwrap()])
        .args(["--admin", admin, "--batch", "512"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("KAFKA_BROKERS", broker.brokers())
        .env("KAFKA_TOPIC", topic)
        .env("KAFKA_GROUP", format!("weir-{db}"))
        .env("DATABASE_URL", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = registry {
        cmd.env("SCHEMA_REGISTRY", url);
    }
    Reaped(cmd.spawn().unwrap())
}

/// Waits until `path` on `admin` answers `code`, while `host` runs.
fn wait_for(admin: &str, path: &str, code: u16, host: &mut Reaped) -> String {
    wait_until(admin, path, code, host, |_| true)
}

/// Waits until `path` on `admin` answers `code` with a body that `fits`, while `host` runs.
fn wait_until(admin: &str, path: &str, code: u16, host: &mut Reaped, fits: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = host.0.try_wait() {
            panic!("weir exited with {status} before {path} answered {code}");
        }
        if std::net::TcpStream::connect(admin).is_ok() {
            let (got, body) = http_get(admin, path);
            if got == code && fits(&body) {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "{path} on {admin} did not answer {code} within a minute");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What produce.py says the sink must hold.
struct Truth {
    records: i64,
    ids: (i64, i64),
    refused: serde_json::Value,
    /// (window start, city) → (trips, fare sum, tip sum, tips)
    windows: BTreeMap<(i64, String), (i64, f64, f64, i64)>,
}

fn truth(path: &Path) -> Truth {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let windows = json["windows"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let (start, city) = k.split_once(' ').unwrap();
            let w = v.as_array().unwrap();
            let n = |i: usize| w[i].as_f64().unwrap();
            ((start.parse().unwrap(), city.to_string()), (n(0) as i64, n(1), n(2), n(3) as i64))
        })
        .collect();
    Truth {
        records: json["records"].as_i64().unwrap(),
        ids: (json["ids"]["1"].as_i64().unwrap(), json["ids"]["2"].as_i64().unwrap()),
        refused: json["refused"].clone(),
        windows,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(1.0)
}

/// Compares the sink's windows and dead letters with the truth.
fn assert_sink(pg: &Postgres, db: &str, want: &Truth) {
    let mut client = pg.client(db);
    let sql = "SELECT (extract(epoch FROM window_start) * 1000)::bigint, city, trips, sum_fare, sum_tip, avg_tip \
               FROM rides_avro_city_minute ORDER BY 1, 2";
    let rows = client.query(sql, &[]).unwrap();
    assert_eq!(rows.len(), want.windows.len(), "windows");
    for r in rows {
        let key: (i64, String) = (r.get(0), r.get(1));
        let (trips, fare, tips, tipped) = want.windows[&key];
        let (got_trips, got_fare): (i64, f64) = (r.get(2), r.get(3));
        let (sum_tip, avg_tip): (Option<f64>, Option<f64>) = (r.get(4), r.get(5));
        assert_eq!(got_trips, trips, "{key:?}: trips from v1 and v2 together");
        assert!(close(got_fare, fare), "{key:?}: fare sum {got_fare}, want {fare}");
        match tipped {
            0 => assert_eq!((sum_tip, avg_tip), (None, None), "{key:?}: no tip, no average"),
            n => {
                assert!(close(sum_tip.unwrap(), tips), "{key:?}: tip sum");
                // The average is over the trips with a tip: v1 trips take v2's default, null.
                assert!(close(avg_tip.unwrap(), tips / n as f64), "{key:?}: average tip over {n} of {trips} trips");
            }
        }
    }
    let reasons: Vec<String> = client
        .query("SELECT reason FROM weir_dead_letters ORDER BY reason", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(reasons.len(), 2, "the two broken records, and nothing else: {reasons:?}");
    eprintln!("dead letters: {reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("unknown schema id 999")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("field \"")), "a truncated body names its field: {reasons:?}");
}

#[test]
fn v1_and_v2_producers_with_a_stock_client_count_in_the_same_windows() {
    let (pg, broker) = (Postgres::start(), Broker::start());
    let db = pg.create_database("avro");
    let topic = "trips-avro";
    python(&["create-topic", &broker.brokers(), topic, "3"]);
    let admin = free_addr();
    let mut host = run(&broker, topic, &db, &admin, None);
    assert_eq!(wait_for(&admin, "/subjects", 200, &mut host).trim(), "[]", "a new registry is empty");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("truth.json");
    python(&["produce", &broker.brokers(), &format!("http://{admin}"), topic, "20000", "7", out.to_str().unwrap()]);
    let want = truth(&out);
    wait_committed(&pg, "avro", want.records - 1, &mut host.0);
    // A stock client sets the subject's level to NONE and registers a version whose fare
    // is a string, which the v2 reader cannot read.
    python(&["retype-fare", &format!("http://{admin}"), &format!("{topic}-value")]);
    signal(host.0.id(), "-TERM");
    finish(host, "the Avro pipeline");
    assert_sink(&pg, "avro", &want);

    // `weir validate` lists the versions the pipeline reads, and the one it cannot.
    let out = Command::new(weir_bin())
        .args(["validate", repo_root().join("examples/rides/pipeline-avro.toml").to_str().unwrap()])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("KAFKA_BROKERS", broker.brokers())
        .env("KAFKA_TOPIC", topic)
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "an unreadable version is a problem: {report}");
    let reader = report.lines().find(|l| l.contains("reader schema schemas/trip-v2.avsc: {")).unwrap_or_default();
    assert!(reader.contains("\"aliases\":[\"distance_km\"]") && reader.contains("\"tip\""), "{report}");
    for (version, id) in [(1, want.ids.0), (2, want.ids.1)] {
        let line = format!("subject {topic}-value version {version} (id {id}, registered ");
        let line = report.lines().find(|l| l.contains(&line)).unwrap_or_else(|| panic!("{line} in {report}"));
        assert!(line.ends_with("): readable"), "{line}");
    }
    let line = report.lines().find(|l| l.contains("version 3 (id ")).unwrap_or_else(|| panic!("{report}"));
    assert!(line.contains("NOT readable") && line.contains("fare"), "{line}");

    // The registry kept both versions, with the ids the serializers framed records with.
    let mut client = pg.client("avro");
    let versions: Vec<(String, i64, i64)> = client
        .query("SELECT subject, version, id FROM weir_schemas ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let subject = format!("{topic}-value");
    assert_eq!(versions[..2], [(subject.clone(), 1, want.ids.0), (subject.clone(), 2, want.ids.1)]);
    assert_eq!(versions[2].1, 3, "the retyped fare, registered under NONE: {versions:?}");
    // v3 adds a field without a default: BACKWARD refuses it with a 409 naming the field.
    let message = want.refused["message"].as_str().unwrap_or_default();
    assert_eq!(want.refused["status"], 409, "{:?}", want.refused);
    assert!(message.contains("BACKWARD") && message.contains("surge"), "{message}");
    eprintln!("v3 refused: {message}");
}

/// A host that reads through an external registry (here another weir's, by URL) holds
/// its pipeline while the registry is out of reach, dead-letters nothing, says why on
/// `/readyz`, and goes on once the registry answers.
#[test]
fn a_registry_out_of_reach_holds_the_pipeline_and_dead_letters_nothing() {
    let (pg, broker) = (Postgres::start(), Broker::start());
    let (registry_db, reader_db) = (pg.create_database("registry"), pg.create_database("reader"));
    let topic = "trips-avro";
    python(&["create-topic", &broker.brokers(), topic, "3"]);
    let registry_addr = free_addr();
    let mut registry = run(&broker, topic, &registry_db, &registry_addr, None);
    wait_for(&registry_addr, "/subjects", 200, &mut registry);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("truth.json");
    let url = format!("http://{registry_addr}");
    python(&["produce", &broker.brokers(), &url, topic, "4000", "11", out.to_str().unwrap()]);
    let want = truth(&out);
    wait_committed(&pg, "registry", want.records - 1, &mut registry.0);
    signal(registry.0.id(), "-TERM");
    finish(registry, "the registry's host");

    let reader_addr = free_addr();
    let mut reader = run(&broker, topic, &reader_db, &reader_addr, Some(&url));
    let why = wait_until(&reader_addr, "/readyz", 503, &mut reader, |body| body.contains("schema registry"));
    assert!(why.contains(&registry_addr), "names the registry: {why}");
    let mut client = pg.client("reader");
    let dead: i64 = client.query_one("SELECT count(*) FROM weir_dead_letters", &[]).unwrap().get(0);
    assert_eq!(dead, 0, "records wait for their schemas; none is a dead letter meanwhile");

    // The registry's host comes back at the same address.
    let mut registry = run(&broker, topic, &registry_db, &registry_addr, None);
    wait_committed(&pg, "reader", want.records - 1, &mut reader.0);
    wait_until(&reader_addr, "/readyz", 200, &mut reader, |_| true);
    signal(reader.0.id(), "-TERM");
    finish(reader, "the reader");
    signal(registry.0.id(), "-TERM");
    let _ = registry.0.wait();
    assert_sink(&pg, "reader", &want);
}
