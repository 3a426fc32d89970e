//! Kafka or files → weir → PostgreSQL on real services: a Tansu broker and a throwaway
//! PostgreSQL cluster, both started here. The rides example pipelines run as the user
//! would run them; the tests check the table against an independent computation and
//! against itself across kill -9, a PostgreSQL restart and a consumer-group rebalance.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use weir::rides::{TripGenerator, TripOptions};
use weir_tests::services::{repo_root, Broker, Postgres};
use weir_tests::{plugin_dir, sessions, weir_bin};

const TABLE: &str = "rides_city_minute";
/// Three partitions: the ten cities hash onto all of them, so none sits empty.
const PARTITIONS: &str = "3";
const WARM_UP: u64 = 20_000;
const EVENTS: u64 = 150_000;
/// The main stream starts where the warm-up's event time ends (1000 events/s).
const MAIN_START: &str = "2024-05-01T00:00:20Z";

/// `weir produce` of one phase of the stream: the clean warm-up (so every partition has
/// set the watermark before the first out-of-order event arrives), or the main stream
/// with late and malformed events.
fn producer(broker: &Broker, topic: &str, main: bool) -> Command {
    let mut cmd = Command::new(weir_bin());
    cmd.args(["produce", "--brokers", &broker.brokers(), "--topic", topic, "--partitions", PARTITIONS, "--quiet"]);
    if main {
        cmd.args(["--events", &EVENTS.to_string(), "--seed", "2", "--late-share", "0.02"]).args([
            "--malformed-share",
            "0.01",
            "--start",
            MAIN_START,
        ]);
    } else {
        cmd.args(["--events", &WARM_UP.to_string(), "--seed", "1", "--late-share", "0", "--malformed-share", "0"]);
    }
    cmd
}

/// Fills `topic` with the whole stream.
fn produce(broker: &Broker, topic: &str) {
    for main in [false, true] {
        let out = producer(broker, topic, main).output().unwrap();
        assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The events `produce` sent, in order, regenerated from their seeds.
fn produced() -> Vec<Vec<u8>> {
    let warm_up = TripOptions { seed: 1, late_share: 0.0, malformed_share: 0.0, ..TripOptions::default() };
    let start_ms = weir_sdk::time::parse_iso8601(MAIN_START.as_bytes()).unwrap();
    let main = TripOptions { seed: 2, late_share: 0.02, malformed_share: 0.01, start_ms, ..TripOptions::default() };
    let mut a = TripGenerator::new(warm_up);
    let mut b = TripGenerator::new(main);
    (0..WARM_UP).map(|_| a.next_event()).chain((0..EVENTS).map(|_| b.next_event())).collect()
}

/// The rides Kafka example with a short checkpoint interval, so the tests can strike mid-stream.
fn pipeline(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-kafka.toml")).unwrap();
    let path = dir.join("pipeline-kafka.toml");
    std::fs::write(&path, text.replace("interval = \"1s\"", "interval = \"200ms\"")).unwrap();
    path
}

fn weir_run(pipeline: &Path, broker: &Broker, topic: &str, db: &str, group: &str) -> Command {
    let mut cmd = Command::new(weir_bin());
    cmd.args(["run", pipeline.to_str().unwrap(), "--until-idle", "4s", "--quiet", "--batch", "2048"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("KAFKA_BROKERS", broker.brokers())
        .env("KAFKA_TOPIC", topic)
        .env("KAFKA_GROUP", group)
        .env("DATABASE_URL", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn check(out: Output) -> Output {
    assert!(
        out.status.success(),
        "weir run failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Everything a run leaves in the sink, minus wall-clock columns.
fn snapshot(pg: &Postgres, db: &str) -> [Vec<String>; 3] {
    let mut client = pg.client(db);
    let mut rows = |sql: &str| -> Vec<String> {
        client
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| cell(r, i)).collect::<Vec<_>>().join("|"))
            .collect()
    };
    [
        rows(&format!(
            "SELECT window_start::text, window_end::text, city, trips, avg_fare, sum_fare, min_fare, max_fare, \
             avg_distance_km, is_final, revision FROM {TABLE} ORDER BY window_start, city"
        )),
        rows(
            "SELECT kind, reason, plugin, digest, source_partition, source_offset, encode(raw, 'escape') \
             FROM weir_dead_letters ORDER BY source_partition, source_offset, plugin",
        ),
        rows(
            "SELECT source_partition, source_offset, event_time::text, window_start::text, encode(raw, 'escape') \
             FROM weir_late_events ORDER BY source_partition, source_offset, window_start",
        ),
    ]
}

/// Compares two snapshots, reporting the first difference rather than both in full.
fn assert_same(got: &[Vec<String>; 3], want: &[Vec<String>; 3], what: &str) {
    for (i, name) in ["window rows", "dead letters", "late events"].iter().enumerate() {
        assert_eq!(got[i].len(), want[i].len(), "{what}: number of {name}");
        if let Some((g, w)) = got[i].iter().zip(&want[i]).find(|(g, w)| g != w) {
            panic!("{what}: {name} differ\n got: {g}\nwant: {w}");
        }
    }
}

fn cell(row: &postgres::Row, i: usize) -> String {
    use postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    match ty {
        Type::INT8 => format!("{:?}", row.get::<_, Option<i64>>(i)),
        Type::INT4 => format!("{:?}", row.get::<_, Option<i32>>(i)),
        Type::FLOAT8 => format!("{:?}", row.get::<_, Option<f64>>(i)),
        Type::BOOL => format!("{:?}", row.get::<_, Option<bool>>(i)),
        _ => format!("{:?}", row.get::<_, Option<String>>(i)),
    }
}

/// The largest committed offset sum, once a checkpoint has landed.
fn committed(pg: &Postgres, db: &str) -> i64 {
    let Ok(mut client) = postgres::Client::connect(&pg.url(db), postgres::NoTls) else { return 0 };
    client
        .query_one("SELECT coalesce(sum(next_offset), 0)::bigint FROM weir_checkpoints", &[])
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
}

/// Waits until `db` has a checkpoint past `at_least` records in total.
fn wait_for_checkpoint(pg: &Postgres, db: &str, at_least: i64, child: &mut Child) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = committed(pg, db);
        if n >= at_least {
            return n;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("weir run exited with {status} before committing {at_least} records");
        }
        assert!(Instant::now() < deadline, "no checkpoint past {at_least} records within two minutes");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Default, Debug, PartialEq)]
struct Expected {
    windows: BTreeMap<(i64, String), (i64, f64)>,
    malformed: i64,
    rejected: i64,
    late: i64,
}

/// Computes the table with serde_json, independently of weir: an event is malformed if
/// it is not JSON or its fare is not a number, rejected if it lacks a city or has a
/// negative fare, and late if its window ended more than 10 minutes before the latest
/// event time produced before it.
fn expected(events: &[Vec<u8>]) -> Expected {
    let mut want = Expected::default();
    let mut latest = i64::MIN / 2;
    for raw in events {
        let Ok(serde_json::Value::Object(e)) = serde_json::from_slice::<serde_json::Value>(raw) else {
            want.malformed += 1;
            continue;
        };
        let Some(fare) = e.get("fare").and_then(|f| f.as_f64()) else {
            want.malformed += 1;
            continue;
        };
        let ms = weir_sdk::time::parse_iso8601(e["event_time"].as_str().unwrap().as_bytes()).unwrap();
        let Some(city) = e.get("city").and_then(|c| c.as_str()).filter(|_| fare >= 0.0) else {
            want.rejected += 1;
            latest = latest.max(ms);
            continue;
        };
        let start = ms.div_euclid(60_000) * 60_000;
        if start + 60_000 <= latest - 600_000 {
            want.late += 1;
        } else {
            let entry = want.windows.entry((start, city.to_string())).or_default();
            entry.0 += 1;
            entry.1 += fare;
        }
        latest = latest.max(ms);
    }
    want
}

/// Checks database `weir` against the independent computation over `events`.
fn assert_expected(pg: &Postgres, events: &[Vec<u8>]) {
    let want = expected(events);
    assert!(
        want.late > 100 && want.malformed > 100 && want.rejected > 100,
        "the stream exercises every lane: {want:?}"
    );
    let mut client = pg.client("weir");
    let got: BTreeMap<(i64, String), (i64, f64)> = client
        .query(
            &format!("SELECT (extract(epoch FROM window_start) * 1000)::bigint, city, trips, avg_fare FROM {TABLE}"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), (r.get(2), r.get(3))))
        .collect();
    assert_eq!(got.len(), want.windows.len(), "windows");
    for (key, (n, sum)) in &want.windows {
        let (got_n, got_avg) = got.get(key).copied().unwrap_or_else(|| panic!("window {key:?} is missing"));
        assert_eq!(got_n, *n, "trips in {key:?}");
        assert!((got_avg - sum / *n as f64).abs() < 1e-9, "avg_fare in {key:?}: {got_avg} vs {}", sum / *n as f64);
    }
    let count = |sql: &str| -> i64 { pg.client("weir").query_one(sql, &[]).unwrap().get(0) };
    assert_eq!(count("SELECT count(*) FROM weir_dead_letters WHERE kind = 'malformed'"), want.malformed);
    assert_eq!(count("SELECT count(*) FROM weir_dead_letters WHERE kind = 'rejected'"), want.rejected);
    assert_eq!(count("SELECT count(*) FROM weir_late_events"), want.late);
    // Every record is accounted for exactly once.
    let total: i64 = want.windows.values().map(|(n, _)| n).sum::<i64>() + want.malformed + want.rejected + want.late;
    assert_eq!(total, events.len() as i64);
}

#[test]
fn kafka_to_postgres_equals_an_independent_computation() {
    let broker = Broker::start();
    let pg = Postgres::start();
    produce(&broker, "trips");
    let dir = tempfile::tempdir().unwrap();
    let db = pg.url("weir");
    let pipeline = pipeline(dir.path());
    check(weir_run(&pipeline, &broker, "trips", &db, "weir-expect").output().unwrap());
    let events = produced();
    assert_expected(&pg, &events);

    // The late lane replays into the same table exactly once.
    let want = expected(&events);
    let replay = || {
        let out = Command::new(weir_bin())
            .args(["replay", pipeline.to_str().unwrap(), "--late", "--quiet"])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("KAFKA_BROKERS", broker.brokers())
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        check(out)
    };
    replay();
    let count = |sql: &str| -> i64 { pg.client("weir").query_one(sql, &[]).unwrap().get(0) };
    let windowed: i64 = want.windows.values().map(|(n, _)| n).sum();
    assert_eq!(count("SELECT count(*) FROM weir_late_events"), 0);
    assert_eq!(count(&format!("SELECT sum(trips)::bigint FROM {TABLE}")), windowed + want.late);
    replay();
    assert_eq!(count(&format!("SELECT sum(trips)::bigint FROM {TABLE}")), windowed + want.late, "exactly once");
}

#[test]
fn files_to_postgres_equals_an_independent_computation() {
    let pg = Postgres::start();
    let input = tempfile::tempdir().unwrap();
    let events = produced();
    // Two files, read in name order as one stream.
    let (first, second) = events.split_at(events.len() / 2);
    for (name, part) in [("trips-0001.jsonl", first), ("trips-0002.jsonl", second)] {
        let mut text = part.join(&b'\n');
        text.push(b'\n');
        std::fs::write(input.path().join(name), text).unwrap();
    }
    let out = Command::new(weir_bin())
        .args(["run", repo_root().join("examples/rides/pipeline-files.toml").to_str().unwrap()])
        .args(["--until-idle", "1s", "--quiet"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("INPUT_DIR", input.path())
        .env("DATABASE_URL", pg.url("weir"))
        .output()
        .unwrap();
    check(out);
    assert_expected(&pg, &events);

    // The example Grafana dashboard's SQL panels read this table: one series per city,
    // with the table's values.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("examples/deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let queries: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["rawSql"].as_str())
        .filter(|sql| sql.contains(TABLE))
        .collect();
    assert_eq!(queries.len(), 2, "trips and average fare");
    let mut client = pg.client("weir");
    let rows = client.query(&format!("SELECT count(*), sum(trips)::float8, sum(avg_fare) FROM {TABLE}"), &[]).unwrap();
    let (windows, trips, fares): (i64, f64, f64) = (rows[0].get(0), rows[0].get(1), rows[0].get(2));
    for (sql, want) in queries.iter().zip([trips, fares]) {
        // Grafana expands the macro into a range of the panel's time; every row is in range here.
        let sql = sql.replace("$__timeFilter(window_start)", "window_start IS NOT NULL");
        let got = client.query(&sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(got.len() as i64, windows, "{sql}");
        let cities: std::collections::BTreeSet<String> = got.iter().map(|r| r.get("metric")).collect();
        assert_eq!(cities.len(), 10, "a series per city: {cities:?}");
        let sum: f64 =
            got.iter().map(|r| r.try_get::<_, f64>("value").unwrap_or_else(|_| r.get::<_, i64>("value") as f64)).sum();
        assert!((sum - want).abs() < 1e-6 * want.abs().max(1.0), "{sql}: {sum} vs {want}");
    }
}

const CSV_COLUMNS: [&str; 8] =
    ["trip_id", "city", "driver_id", "rider_id", "fare", "distance_km", "status", "event_time"];

/// One event as a CSV row that is bad in the same way: truncated JSON becomes a row cut
/// short, a fare written as a string becomes one that is not a number, and a missing
/// city an empty cell. Text is quoted, to exercise the quoting.
fn csv_row(raw: &[u8]) -> String {
    let Ok(serde_json::Value::Object(e)) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return "\"t-cut\",\"Lisbon, cut short\"".into();
    };
    let cell = |name: &str| match e.get(name) {
        None => String::new(),
        Some(serde_json::Value::String(s)) if name == "fare" => format!("{s} EUR"),
        Some(serde_json::Value::String(s)) => format!("\"{}\"", s.replace('"', "\"\"")),
        Some(other) => other.to_string(),
    };
    CSV_COLUMNS.map(cell).join(",")
}

#[test]
fn csv_files_picked_up_in_follow_mode_equal_an_independent_computation() {
    let pg = Postgres::start();
    let input = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-files.toml")).unwrap();
    let followed = text.replace("format = \"jsonl\"", "format = \"csv\"\nfollow = true");
    assert_ne!(followed, text, "the example names its format");
    let pipeline = work.path().join("pipeline-csv.toml");
    std::fs::write(&pipeline, followed).unwrap();
    let mut child = Command::new(weir_bin())
        .args(["run", pipeline.to_str().unwrap(), "--until-idle", "3s", "--quiet"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("INPUT_DIR", input.path())
        .env("DATABASE_URL", pg.url("weir"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The files arrive one by one while weir runs, each renamed into place whole, the
    // next only once weir has committed every byte of the ones before.
    let events = produced();
    let mut written = 0;
    for (i, part) in events.chunks(events.len().div_ceil(3)).enumerate() {
        let mut text = CSV_COLUMNS.join(",") + "\r\n";
        for raw in part {
            text += &csv_row(raw);
            text += "\r\n";
        }
        let staged = input.path().join(format!("trips-{i}.csv.partial"));
        std::fs::write(&staged, &text).unwrap();
        std::fs::rename(&staged, input.path().join(format!("trips-{i}.csv"))).unwrap();
        written += text.len() as i64;
        wait_for_checkpoint(&pg, "weir", written, &mut child);
    }
    let out = check(child.wait_with_output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("assigned ").count(), 3, "each new file is announced: {stderr}");
    assert_expected(&pg, &events);
    let count = |sql: &str| -> i64 { pg.client("weir").query_one(sql, &[]).unwrap().get(0) };
    let cut = events.iter().filter(|e| serde_json::from_slice::<serde_json::Value>(e).is_err()).count();
    assert_eq!(
        count("SELECT count(*) FROM weir_dead_letters WHERE plugin = 'source' AND reason = 'CSV row has 2 fields, the header has 8'"),
        cut as i64
    );
}

/// Session windows into PostgreSQL: merged sessions are retracted with one set-based
/// DELETE per checkpoint, within a run and across a restart.
#[test]
fn session_windows_into_postgres_equal_a_sort_and_split() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    sessions::run_in_two_halves(dir.path(), &[("DATABASE_URL", pg.url("weir"))]);
    let want = sessions::stream().want;
    let got = pg
        .client("weir")
        .query(
            "SELECT (extract(epoch FROM window_start) * 1000)::bigint, (extract(epoch FROM window_end) * 1000)::bigint, \
             driver_id, trips, sum_fare FROM driver_sessions",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    sessions::assert_sessions(got, &want);
    let states: i64 = pg.client("weir").query_one("SELECT count(*) FROM weir_window_state", &[]).unwrap().get(0);
    assert_eq!(states, want.len() as i64, "one stored state per session");
}

/// A burst of garbage on Kafka opens the breaker: the consumer pauses its partitions for
/// the cooldown without leaving its group, reads on from where it stopped, and every
/// record lands exactly once. The burst is long enough (~4,000 per partition) that a
/// batch of 2,048 drawn from one partition alone is still mostly garbage: with 1,000 per
/// partition, such a batch was 44% dead letters and the breaker rightly stayed shut.
#[test]
fn a_dead_letter_burst_on_kafka_pauses_and_resumes_without_losing_a_record() {
    let broker = Broker::start();
    let pg = Postgres::start();
    let produce = |args: &[&str]| {
        let out = Command::new(weir_bin())
            .args([
                "produce",
                "--brokers",
                &broker.brokers(),
                "--topic",
                "burst",
                "--partitions",
                PARTITIONS,
                "--quiet",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    };
    produce(&["--events", "12000", "--malformed-share", "0.9", "--late-share", "0", "--seed", "3"]);
    produce(&["--events", "20000", "--seed", "4", "--late-share", "0", "--start", "2024-05-01T00:00:03Z"]);
    let dir = tempfile::tempdir().unwrap();
    let path = pipeline(dir.path());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text += "\n[breaker]\nmin_records = 500\ncooldown = \"2s\"\n";
    std::fs::write(&path, text).unwrap();
    let started = Instant::now();
    let out = check(weir_run(&path, &broker, "burst", &pg.url("weir"), "weir-burst").output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("were dead letters within 60s, above breaker.dead_letter_rate"), "{stderr}");
    assert!(stderr.contains("circuit breaker closed after its cooldown"), "{stderr}");
    assert_eq!(stderr.matches("assigned ").count(), 1, "the pause did not cost the group its assignment: {stderr}");
    assert!(started.elapsed() >= Duration::from_secs(2), "reading paused for the cooldown");
    let count = |sql: &str| -> i64 { pg.client("weir").query_one(sql, &[]).unwrap().get(0) };
    let landed = count(&format!(
        "SELECT (SELECT sum(trips) FROM {TABLE})::bigint + (SELECT count(*) FROM weir_dead_letters) \
         + (SELECT count(*) FROM weir_late_events)"
    ));
    assert_eq!(landed, 32_000, "every record once: windowed, dead letter or late");
}

#[test]
fn kill_9_a_postgres_restart_and_a_rebalance_leave_the_table_identical() {
    let broker = Broker::start();
    let pg = Postgres::start();
    produce(&broker, "trips");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    let total = (WARM_UP + EVENTS) as i64;

    let whole = pg.create_database("whole");
    check(weir_run(&pipeline, &broker, "trips", &whole, "g-whole").output().unwrap());
    let baseline = snapshot(&pg, "whole");
    assert!(!baseline[0].is_empty() && !baseline[1].is_empty() && !baseline[2].is_empty());

    // kill -9 mid-stream, then a restart.
    let crashed = pg.create_database("crashed");
    let mut child = weir_run(&pipeline, &broker, "trips", &crashed, "g-crashed").spawn().unwrap();
    let at = wait_for_checkpoint(&pg, "crashed", 1, &mut child);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(at < total, "the kill must land mid-stream (committed {at} of {total})");
    check(weir_run(&pipeline, &broker, "trips", &crashed, "g-crashed").output().unwrap());
    assert_same(&snapshot(&pg, "crashed"), &baseline, "kill -9 and restart");

    // PostgreSQL goes away mid-stream and comes back.
    let restarted = pg.create_database("restarted");
    let mut child = weir_run(&pipeline, &broker, "trips", &restarted, "g-restarted").spawn().unwrap();
    let at = wait_for_checkpoint(&pg, "restarted", 1, &mut child);
    assert!(at < total, "the restart must land mid-stream (committed {at} of {total})");
    pg.stop();
    std::thread::sleep(Duration::from_millis(500)); // the outage itself: the host must ride it out
    pg.restart();
    let out = check(child.wait_with_output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("retry"), "the outage was noticed and ridden out: {stderr}");
    assert_same(&snapshot(&pg, "restarted"), &baseline, "PostgreSQL restart");

    // Two hosts in one group: the second joins while the stream is still arriving and
    // takes partitions over. The same stream goes to a fresh topic at a steady pace.
    let shared = pg.create_database("shared");
    let live = "trips-live";
    check(producer(&broker, live, false).output().unwrap());
    let mut first = weir_run(&pipeline, &broker, live, &shared, "g-shared").spawn().unwrap();
    wait_for_checkpoint(&pg, "shared", WARM_UP as i64, &mut first);
    let mut paced = producer(&broker, live, true);
    // Paced in wall time, with the same event times as the unpaced stream.
    let paced = paced.args(["--rate", "20000", "--event-rate", "1000"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let paced = paced.spawn().unwrap();
    let second = weir_run(&pipeline, &broker, live, &shared, "g-shared").spawn().unwrap();
    let produced = paced.wait_with_output().unwrap();
    assert!(produced.status.success(), "weir produce: {}", String::from_utf8_lossy(&produced.stderr));
    let second = check(second.wait_with_output().unwrap());
    let first = check(first.wait_with_output().unwrap());
    for (host, out) in [("first", &first), ("second", &second)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("assigned partition"), "the {host} host took part in the group: {stderr}");
    }
    let first_err = String::from_utf8_lossy(&first.stderr);
    assert!(first_err.contains("released partition"), "the first host gave partitions up: {first_err}");
    let took_over = String::from_utf8_lossy(&second.stdout);
    assert!(!took_over.starts_with("0 events"), "the second host read part of the stream: {took_over}");
    // Both ended with a final checkpoint; one more pass over every partition closes
    // what either host could not close alone, as the uninterrupted run did.
    check(weir_run(&pipeline, &broker, live, &shared, "g-shared").output().unwrap());
    assert_same(&snapshot(&pg, "shared"), &baseline, "rebalance");
}

#[test]
fn validate_reports_every_problem_without_changing_anything() {
    let broker = Broker::start();
    let pg = Postgres::start();
    let out = Command::new(weir_bin())
        .args(["produce", "--brokers", &broker.brokers(), "--topic", "trips", "--partitions", PARTITIONS])
        .args(["--events", "0", "--quiet"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let validate = |topic: &str| {
        Command::new(weir_bin())
            .args(["validate", repo_root().join("examples/rides/pipeline-kafka.toml").to_str().unwrap()])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("KAFKA_BROKERS", broker.brokers())
            .env("KAFKA_TOPIC", topic)
            .env("DATABASE_URL", pg.url("weir"))
            .output()
            .unwrap()
    };
    let ok = validate("trips");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}{}", String::from_utf8_lossy(&ok.stderr));
    assert!(stdout.contains("kafka topic trips") && stdout.contains("3 partitions"), "{stdout}");
    assert!(stdout.contains("will run: CREATE TABLE \"rides_city_minute\""), "{stdout}");
    let exists: bool =
        pg.client("weir").query_one("SELECT to_regclass('rides_city_minute') IS NOT NULL", &[]).unwrap().get(0);
    assert!(!exists, "validate must not create the table");

    // A table keyed differently and a missing topic: both reported in one run.
    pg.client("weir").batch_execute("CREATE TABLE rides_city_minute (driver text PRIMARY KEY)").unwrap();
    let bad = validate("no-such-topic");
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert!(!bad.status.success());
    let problems: Vec<&str> = stdout.lines().filter(|l| l.starts_with("problem")).collect();
    assert_eq!(problems.len(), 2, "{stdout}");
    assert!(problems[0].contains("\"no-such-topic\" does not exist"), "{stdout}");
    assert!(problems[1].contains("primary key (driver)"), "{stdout}");
}

/// The versions named in `weir_checkpoint_log`, checkpoint by checkpoint, with the offsets
/// each committed.
fn checkpoint_log(pg: &Postgres) -> Vec<(String, Vec<(i32, i64)>)> {
    pg.client("weir")
        .query("SELECT plugins, offsets FROM weir_checkpoint_log ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).unwrap()))
        .collect()
}

/// Plugin versions are deployed, refused and rolled back while events stream in at tens
/// of thousands a second. The table equals the independent computation (so equals an
/// uninterrupted run), and the checkpoint log shows every offset processed by exactly one
/// version, the switches falling on checkpoint boundaries mid-stream.
#[test]
fn hot_swaps_under_load_leave_the_table_as_an_uninterrupted_run() {
    use weir_tests::guests::{HOSTILE, JSON_PARSER, TRAPPING_VALIDATOR};
    let broker = Broker::start();
    let pg = Postgres::start();
    let topic = "swaps";
    let status = producer(&broker, topic, false).status().unwrap();
    assert!(status.success());
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    let addr = weir_tests::free_addr();
    let mut host =
        weir_run(&pipeline, &broker, topic, &pg.url("weir"), "weir-swaps").args(["--admin", &addr]).spawn().unwrap();
    wait_for_checkpoint(&pg, "weir", WARM_UP as i64, &mut host);
    // The main stream, paced: 150,000 events at 20,000 a second of wall time (and, as
    // `produced` regenerates them, 1,000 a second of event time).
    let mut main = producer(&broker, topic, true).args(["--rate", "20000", "--event-rate", "1000"]).spawn().unwrap();
    wait_for_checkpoint(&pg, "weir", WARM_UP as i64 + 10_000, &mut host);

    let v2 = dir.path().join("json_parser_v2.wasm");
    std::fs::write(&v2, weir_tests::marked(JSON_PARSER, "2")).unwrap();
    let deploy = |stage: &str, file: &str| {
        weir_tests::weir_cli(&addr, &["plugin", "deploy", "--pipeline", "rides", "--stage", stage, file])
    };
    let mut switched_at = Vec::new();
    let mut switched = |report: &str| {
        let report: serde_json::Value = serde_json::from_str(report).unwrap();
        let from: Vec<(i32, i64)> = serde_json::from_value(report["switched"]["from_offsets"].clone()).unwrap();
        assert!(report["trial"]["records"].as_u64().unwrap() > 0, "tried on recent input: {report}");
        switched_at.push(from);
    };
    let (ok, report, why) = deploy("parser", v2.to_str().unwrap());
    assert!(ok, "{why}");
    switched(&report);
    // A validator that traps on real fares is refused; so is a parser whose columns do not fit.
    let (ok, _, why) = deploy("validators[0]", TRAPPING_VALIDATOR);
    assert!(!ok && why.contains("keeps running: it failed on") && why.contains("fare above 40"), "{why}");
    let (ok, _, why) = deploy("parser", HOSTILE);
    assert!(!ok && why.contains("does not fit the pipeline") && why.contains("validators[0] reads column"), "{why}");
    let (ok, report, why) =
        weir_tests::weir_cli(&addr, &["plugin", "rollback", "--pipeline", "rides", "--stage", "parser"]);
    assert!(ok, "{why}");
    switched(&report);
    let (ok, report, why) = deploy("parser", v2.to_str().unwrap());
    assert!(ok, "{why}");
    switched(&report);
    assert!(main.wait().unwrap().success(), "weir produce");
    let out = check(host.wait_with_output().unwrap());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_expected(&pg, &produced());

    // The switches came while the main stream was still arriving.
    let total = (WARM_UP + EVENTS) as i64;
    for from in &switched_at {
        let at: i64 = from.iter().map(|(_, o)| o).sum();
        assert!(at > WARM_UP as i64 && at < total, "a switch at {at} of {total} records is not under load: {stderr}");
    }
    // Each checkpoint was processed by one set of versions; the set changes only where a
    // switch took over, at exactly the offsets the checkpoint before it committed.
    let log = checkpoint_log(&pg);
    let mut changes = Vec::new();
    for pair in log.windows(2) {
        let ((before, committed), (after, _)) = (&pair[0], &pair[1]);
        if before != after {
            changes.push(committed.clone());
            assert_eq!(after.contains("json_parser_v2@"), !before.contains("json_parser_v2@"), "{before} → {after}");
        }
        for (p, o) in &pair[1].1 {
            let previous = committed.iter().find(|(q, _)| q == p).map_or(0, |(_, o)| *o);
            assert!(*o >= previous, "partition {p} went back from {previous} to {o}");
        }
    }
    let sorted = |mut v: Vec<(i32, i64)>| {
        v.sort();
        v
    };
    assert_eq!(
        changes.into_iter().map(sorted).collect::<Vec<_>>(),
        switched_at.into_iter().map(sorted).collect::<Vec<_>>(),
        "the versions change exactly where the switches took over"
    );
}

/// Reads `source` until `enough` holds, recording each partition's offsets in the order
/// they arrive.
fn drain(
    source: &mut dyn weir::source::Source,
    offsets: &mut BTreeMap<i32, Vec<i64>>,
    enough: impl Fn(&BTreeMap<i32, Vec<i64>>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !enough(offsets) {
        assert!(Instant::now() < deadline, "the source stopped short: {:?}", counts(offsets));
        let batch = source.poll(1024).unwrap().expect("a Kafka source never ends");
        for (&p, &o) in batch.partitions.iter().zip(&batch.offsets) {
            offsets.entry(p).or_default().push(o);
        }
    }
}

fn counts(offsets: &BTreeMap<i32, Vec<i64>>) -> BTreeMap<i32, usize> {
    offsets.iter().map(|(p, o)| (*p, o.len())).collect()
}

/// How many messages each partition of `topic` holds, counted by reading it to its end
/// with a plain consumer (Tansu's high watermark can trail the last batch).
fn messages_per_partition(broker: &Broker, topic: &str, partitions: i32) -> BTreeMap<i32, usize> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::error::KafkaError;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "counter")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut counts: BTreeMap<i32, usize> = (0..partitions).map(|p| (p, 0)).collect();
    let mut ended = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ended.len() < partitions as usize {
        assert!(Instant::now() < deadline, "counting {topic}: only {ended:?} reached their end");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => *counts.get_mut(&rdkafka::Message::partition(&m)).unwrap() += 1,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ended.insert(p);
            }
            Some(Err(e)) => panic!("counting {topic}: {e}"),
            None => {}
        }
    }
    counts
}

#[test]
fn a_held_partition_stops_and_resumes_where_it_stopped() {
    use weir::source::{KafkaSource, Rebalance, Source};

    let broker = Broker::start();
    let out = Command::new(weir_bin())
        .args(["produce", "--brokers", &broker.brokers(), "--topic", "held", "--partitions", PARTITIONS, "--quiet"])
        .args(["--events", "100000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    let totals = messages_per_partition(&broker, "held", 3);
    let (&held, &held_total) = totals.iter().max_by_key(|(_, n)| **n).unwrap();
    // Far more than librdkafka keeps in memory for one partition (2 MiB queued).
    assert!(held_total > 30_000, "the held partition needs a long stream: {totals:?}");

    let mut source = KafkaSource::open(&broker.brokers(), "held", "hold-test", &BTreeMap::new()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while source.rebalance().is_none() {
        assert!(Instant::now() < deadline, "no partitions assigned");
        source.poll(1).unwrap();
    }
    assert_eq!(source.rebalance(), Some(Rebalance::Assigned(vec![0, 1, 2])));
    source.complete(&[]).unwrap();

    // Held once it has started, when more of it is already fetched.
    let mut offsets = BTreeMap::new();
    drain(&mut source, &mut offsets, |o| o.contains_key(&held));
    source.hold(&[held]).unwrap();
    let before_hold = offsets[&held].len();
    let others_read = |o: &BTreeMap<i32, Vec<i64>>| {
        totals.iter().all(|(p, total)| *p == held || o.get(p).map_or(0, Vec::len) >= *total)
    };
    drain(&mut source, &mut offsets, others_read);
    let seen = counts(&offsets);
    for (p, total) in &totals {
        if *p != held {
            assert_eq!(seen.get(p), Some(total), "partition {p} is read to its end while {held} is held");
        }
    }
    assert!(before_hold < held_total, "the held partition was read to its end before the hold");
    assert_eq!(seen[&held], before_hold, "the held partition delivered records after the hold");

    source.release(&[held]).unwrap();
    drain(&mut source, &mut offsets, |o| o.get(&held).map_or(0, Vec::len) >= held_total);
    for (p, total) in &totals {
        let want: Vec<i64> = (0..*total as i64).collect();
        assert!(offsets[p] == want, "partition {p}: every offset once, in order ({} read)", offsets[p].len());
    }
    let ends: Vec<(i32, i64)> = totals.iter().map(|(p, n)| (*p, *n as i64)).collect();
    assert_eq!(source.positions(), ends);
}
