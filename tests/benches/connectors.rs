//! The connectors benchmark, on the release build: the rides files pipeline (1,000,000
//! events) into a real PostgreSQL, alone and with its rows also delivered to Redis
//! (Debian's `redis-server`) or to a Delta table (`[sink.redis]`, `[sink.delta]`),
//! checkpointing every 100 ms so that many deliveries fall inside the run. Three rounds
//! of the three runs back to back; each run's events/s over its reading span and from
//! start to exit, and the median ratio of each output against PostgreSQL alone.
//!
//! HTTP ingest: 4 clients push the same trips as 100-event requests (`POST
//! /ingest/PIPELINE`, each with an `Idempotency-Key`, a new connection each) into a host
//! reading its inbox, into PostgreSQL and into SQLite: requests/s and events/s
//! acknowledged (committed to the inbox), and events/s until the pipeline has committed
//! them all.
//!
//! Change capture: the rides CDC example over 300,000 trips of an app table, as changes
//! and as a snapshot, against the same rows from a Kafka topic (`cdc_case`).
//!
//! Run with `cargo xtask bench` (or `cargo bench -p weir-tests --bench connectors`; add
//! `-- ingest` for HTTP ingest alone, `-- cdc` for change capture alone).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use weir_tests::services::{repo_root, Postgres, Redis};
use weir_tests::{plugin_dir, weir_release_bin};

const EVENTS: u64 = 1_000_000;

/// The events/s `weir run` printed over its reading span (`first to last record …`).
fn span_rate(stdout: &str) -> f64 {
    let line = stdout.lines().find(|l| l.starts_with("first to last record")).expect("a timing line");
    let rest = &line[line.find("s (").expect("a rate") + 3..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// The files example into `db`, checkpointing every 100 ms, with `extra` appended.
fn pipeline(dir: &Path, name: &str, input: &Path, db: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-files.toml")).unwrap();
    let text = text
        .replace("${INPUT_DIR}", input.to_str().unwrap())
        .replace("${DATABASE_URL}", db)
        .replace("interval = \"1s\"", "interval = \"100ms\"");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text + "\n" + extra).unwrap();
    path
}

/// Runs `pipeline` to its end: (events/s over the reading span, events/s start to exit).
fn run(pipeline: &Path, cache: &Path) -> (f64, f64) {
    let started = Instant::now();
    let out = Command::new(weir_release_bin())
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "--no-admin"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("WEIR_CACHE_DIR", cache)
        .output()
        .unwrap();
    let whole = EVENTS as f64 / started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}: {}\n{stdout}", pipeline.display(), String::from_utf8_lossy(&out.stderr));
    (span_rate(&stdout), whole)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Requests of HTTP ingest, of 100 events each.
const REQUESTS: usize = 2_000;
const CLIENTS: usize = 4;

/// Pushes [`REQUESTS`] requests into a host reading its inbox into `url`.
fn ingest_case(name: &str, url: &str, dir: &Path, cache: &Path) {
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-files.toml")).unwrap();
    let start = text.find("[source]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let text = format!("{}[source]\nkind = \"http\"\nmax_waiting = 1000000{}", &text[..start], &text[end..])
        .replace("${DATABASE_URL}", url);
    let pipeline = dir.join(format!("http-{name}.toml"));
    std::fs::write(&pipeline, text).unwrap();
    let addr = weir_tests::free_addr();
    let host = Command::new(weir_release_bin())
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", &addr, "--until-idle", "1s"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("WEIR_CACHE_DIR", cache)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let minutes = (REQUESTS * 100 / 240 + 1) as i64;
    let bodies = weir_tests::ingest::requests(&weir_tests::quality::trips(0..minutes, (5.0, 40.0), None), 100);
    let bodies: Vec<String> = bodies.into_iter().take(REQUESTS).collect();
    while weir_tests::ingest::post(&addr, "rides-files", None, b"").code == 0 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (addr, bodies) = (addr.clone(), bodies.clone());
            std::thread::spawn(move || {
                for (i, body) in bodies.iter().enumerate().skip(c).step_by(CLIENTS) {
                    let answer =
                        weir_tests::ingest::post(&addr, "rides-files", Some(&format!("b{i}")), body.as_bytes());
                    assert_eq!(answer.code, 200, "{}", answer.body);
                }
            })
        })
        .collect();
    clients.into_iter().for_each(|c| c.join().unwrap());
    let acked = started.elapsed().as_secs_f64();
    let out = host.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events = bodies.iter().map(|b| b.lines().count()).sum::<usize>() as f64;
    println!(
        "HTTP ingest → {name:<11} {:>8.0} requests/s {:>9.0} events/s acknowledged; pipeline {:>9.0} events/s",
        REQUESTS as f64 / acked,
        events / acked,
        span_rate(&stdout)
    );
}

/// Rows of the change-capture case.
const CDC_ROWS: i64 = 300_000;

/// `weir run --until-idle 2s` of `pipeline` with `env`: events/s over its reading span.
fn run_idle(pipeline: &Path, cache: &Path, env: &[(&str, String)]) -> f64 {
    let out = Command::new(weir_release_bin())
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "--no-admin", "--until-idle", "2s"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("WEIR_CACHE_DIR", cache)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}: {}\n{stdout}", pipeline.display(), String::from_utf8_lossy(&out.stderr));
    span_rate(&stdout)
}

/// The rides CDC example over [`CDC_ROWS`] trips of an app table, read as changes (the
/// slot made before they were inserted, in transactions of 1,000) and as a snapshot (a
/// new slot after); and the same rows as JSON from a Kafka topic of one partition
/// through the Kafka example. Each into a PostgreSQL database of its own.
fn cdc_case(pg: &Postgres, dir: &Path, cache: &Path) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    println!("change capture: {CDC_ROWS} trips of an app table, against the same rows from Kafka, release build");
    let app = pg.create_database("app");
    let mut client = pg.client("app");
    client.batch_execute(&std::fs::read_to_string(repo_root().join("examples/rides/cdc-trips.sql")).unwrap()).unwrap();
    let cdc = |name: &str| {
        let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-cdc.toml")).unwrap();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text.replace("name = \"rides-cdc\"", &format!("name = \"{name}\""))).unwrap();
        let env =
            vec![("APP_DATABASE_URL", app.clone()), ("DATABASE_URL", pg.create_database(&name.replace('-', "_")))];
        (path, env)
    };
    let (changes, changes_env) = cdc("cdc-changes");
    run_idle(&changes, cache, &changes_env); // makes the slot, on the empty table
    for chunk in 0..CDC_ROWS / 1000 {
        client
            .batch_execute(&format!(
                "INSERT INTO trips (trip_id, city, driver_id, rider_id, fare, distance_km, status, event_time) \
                 SELECT 't' || g, (ARRAY['Oslo','Lima','Pune','Austin','Berlin','Tokyo'])[1 + g % 6], 'd' || g % 97, \
                 'r' || g % 89, 5 + (g % 37) * 0.5, 1 + (g % 13) * 0.7, 'completed', \
                 timestamptz '2024-05-01 12:00:00+00' + g * interval '250 milliseconds' FROM generate_series({}, {}) g",
                chunk * 1000,
                chunk * 1000 + 999
            ))
            .unwrap();
    }
    let as_changes = run_idle(&changes, cache, &changes_env);
    let (snapshot, snapshot_env) = cdc("cdc-snapshot");
    let as_snapshot = run_idle(&snapshot, cache, &snapshot_env);

    let broker = weir_tests::services::Broker::start();
    let created = Command::new(weir_release_bin())
        .args(["produce", "--brokers", &broker.brokers(), "--topic", "cdc-same", "--partitions", "1", "--events", "0"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("linger.ms", "20")
        .create()
        .unwrap();
    for row in client.query("SELECT row_to_json(t)::text FROM trips t ORDER BY id", &[]).unwrap() {
        let payload: String = row.get(0);
        let mut record = BaseRecord::<(), str>::to("cdc-same").payload(payload.as_str());
        while let Err((e, back)) = producer.send(record) {
            assert!(matches!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)), "{e}");
            producer.poll(std::time::Duration::from_millis(10));
            record = back;
        }
    }
    producer.flush(std::time::Duration::from_secs(60)).unwrap();
    let kafka = dir.join("cdc-kafka.toml");
    std::fs::copy(repo_root().join("examples/rides/pipeline-kafka.toml"), &kafka).unwrap();
    let kafka_env = vec![
        ("KAFKA_BROKERS", broker.brokers()),
        ("KAFKA_TOPIC", "cdc-same".to_string()),
        ("DATABASE_URL", pg.create_database("cdc_kafka")),
    ];
    let from_kafka = run_idle(&kafka, cache, &kafka_env);
    println!(
        "CDC, rows as changes      {as_changes:>10.0} events/s reading span {:>6.2}× Kafka",
        as_changes / from_kafka
    );
    println!(
        "CDC, rows as a snapshot   {as_snapshot:>10.0} events/s reading span {:>6.2}× Kafka",
        as_snapshot / from_kafka
    );
    println!("Kafka, the same rows      {from_kafka:>10.0} events/s reading span");
}

fn main() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    if std::env::args().any(|a| a == "cdc") {
        return cdc_case(&pg, dir.path(), &cache);
    }
    cdc_case(&pg, dir.path(), &cache);
    let ingest = || {
        println!("HTTP ingest: {REQUESTS} requests of 100 events from {CLIENTS} clients, release build");
        ingest_case("PostgreSQL", &pg.create_database("ingest"), dir.path(), &cache);
        ingest_case("SQLite", &format!("sqlite://{}", dir.path().join("ingest.db").display()), dir.path(), &cache);
    };
    if std::env::args().any(|a| a == "ingest") {
        return ingest();
    }
    ingest();
    let redis = Redis::start();
    let input = dir.path().join("input");
    weir_tests::kills::write_trips(&input, EVENTS);
    println!(
        "weir connectors benchmark: rides files example, {EVENTS} events, checkpoints every 100 ms, release build"
    );
    let cases = ["PostgreSQL alone", "PostgreSQL + Redis", "PostgreSQL + Delta"];
    let mut ratios: Vec<Vec<(f64, f64)>> = vec![Vec::new(); cases.len()];
    // Round 0 warms the plugin cache and the page cache; it is not counted.
    for round in 0..4 {
        let mut rates = Vec::new();
        for (k, case) in cases.iter().enumerate() {
            let db = pg.create_database(&format!("connectors_{round}_{k}"));
            let extra = match k {
                0 => String::new(),
                1 => format!("[sink.redis]\nurl = \"{}\"\nprefix = \"bench{round}\"\n", redis.url()),
                _ => format!("[sink.delta]\npath = \"{}\"\n", dir.path().join(format!("lake{round}")).display()),
            };
            let (span, whole) = run(&pipeline(dir.path(), &format!("p{round}_{k}"), &input, &db, &extra), &cache);
            if round > 0 {
                println!("{case:<24} {span:>10.0} events/s reading span {whole:>10.0} events/s start to exit");
            }
            rates.push((span, whole));
        }
        if round > 0 {
            for k in 1..cases.len() {
                ratios[k].push((rates[k].0 / rates[0].0, rates[k].1 / rates[0].1));
            }
        }
    }
    for k in 1..cases.len() {
        let span = median(ratios[k].iter().map(|r| r.0).collect());
        let whole = median(ratios[k].iter().map(|r| r.1).collect());
        println!(
            "{:<24} {span:>10.2}× reading span {whole:>10.2}× start to exit (against PostgreSQL alone, median of three)",
            cases[k]
        );
    }
}
