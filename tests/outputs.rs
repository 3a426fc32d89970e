//! Outputs (`[sink.delta]`, `[sink.redis]`) with real parts: Debian's `redis-server` read
//! back through `redis-cli`, and Delta tables read and written by Python's `deltalake`, on
//! the local filesystem and on S3 (moto's server).
//! The SIGKILL loops are in the fault suite (`tests/faults/outputs.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::outputs::{delta_read, delta_read_at, delta_windows, redis_hashes, redis_windows};
use weir_tests::quality::{files_with, trips, weir_host};
use weir_tests::s3::{Relay, S3};
use weir_tests::services::{repo_root, Postgres, Redis};
use weir_tests::{free_addr, http_get, plugin_dir, weir_bin};

/// `(window start, city) → (trips, sum_fare)` of the rides table in a SQLite sink.
fn sqlite_windows(db: &Path) -> BTreeMap<(i64, String), (i64, f64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut rows = conn.prepare("SELECT window_start, city, trips, sum_fare FROM rides_city_minute").unwrap();
    let ms = |text: String| weir_sdk::time::parse_iso8601(text.as_bytes()).unwrap();
    let rows = rows.query_map([], |r| Ok(((ms(r.get(0)?), r.get(1)?), (r.get(2)?, r.get(3)?)))).unwrap();
    rows.map(Result::unwrap).collect()
}

/// The trips the windows count.
fn trips_in(windows: &BTreeMap<(i64, String), (i64, f64)>) -> usize {
    windows.values().map(|(n, _)| *n as usize).sum()
}

/// The records of the test's two input files.
fn input_lines(input: &Path) -> usize {
    ["a.jsonl", "b.jsonl"].iter().map(|f| std::fs::read_to_string(input.join(f)).unwrap().lines().count()).sum()
}

/// The outbox entries not yet delivered, in the SQLite sink at `db`.
fn outbox_entries(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row("SELECT count(*) FROM weir_outbox", [], |r| r.get::<_, i64>(0)).unwrap_or(0)
}

fn weir(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(weir_bin())
        .args(args)
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("WEIR_DATA_DIR", data)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Polls `done` every 50 ms for up to 60 s, naming `what` if it never holds.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_rides_delta_example_writes_a_table_that_python_reads_as_the_sink_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-delta.toml")).unwrap();
    let text = text
        .replace("events = 1000000", "events = 40000")
        .replace("rate = 1000 ", "rate = 20 ")
        .replace("pace = 20000", "");
    let pipeline = dir.path().join("pipeline-delta.toml");
    std::fs::write(&pipeline, text).unwrap();
    let out = weir(&["run", pipeline.to_str().unwrap(), "--until-idle", "2s", "--quiet", "--no-admin"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let db = dir.path().join("rides-delta.db");
    let read = delta_read(&dir.path().join("lake/rides_city_minute"), "city", "rides-delta");
    let stored = sqlite_windows(&db);
    assert!(stored.len() >= 10, "the run wrote a window of each city at least: {}", stored.len());
    assert_eq!(delta_windows(&read), stored, "the latest revisions are the sink's rows");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let last: i64 = conn.query_row("SELECT seq FROM weir_outbox_seq", [], |r| r.get(0)).unwrap();
    assert_eq!(read["txn"].as_i64(), Some(last), "the log's txn action names the last checkpoint delivered");
    let finals: i64 =
        conn.query_row("SELECT count(*) FROM rides_city_minute WHERE is_final", [], |r| r.get(0)).unwrap();
    let closed = read["rows"].as_array().unwrap().iter().filter(|r| r["is_final"] == true).count() as i64;
    assert!(finals > 0 && closed == finals, "the same windows are final in both: {closed} and {finals}");

    // A second run over the same table: nothing new, and nothing written again.
    let version = read["version"].as_i64().unwrap();
    let out = weir(&["run", pipeline.to_str().unwrap(), "--until-idle", "1s", "--quiet", "--no-admin"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = delta_read(&dir.path().join("lake/rides_city_minute"), "city", "rides-delta");
    assert_eq!(again["version"].as_i64(), Some(version), "a run with nothing new commits nothing to the table");
}

#[test]
fn redis_out_of_reach_pauses_delivery_and_it_resumes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.jsonl"), trips(0..20, (5.0, 40.0), None)).unwrap();
    let outputs = format!("[sink.redis]\nurl = \"{}\"\nttl = \"1h\"\n", redis.url());
    let pipeline = files_with(dir.path(), &input, &[("interval = \"1s\"", "interval = \"200ms\"")], &outputs);
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &["--until-idle", "3s"], Stdio::piped());
    let mark = || redis.cli(&["GET", "rides:rides_city_minute:_delivered"]).trim().parse::<i64>().unwrap_or(0);
    until("a first delivery to Redis", || mark() > 0);

    redis.stop();
    std::fs::write(input.join("b.jsonl"), trips(20..40, (5.0, 40.0), None)).unwrap();
    let db = dir.path().join("rides.db");
    let pending = || outbox_entries(&db);
    until("readiness naming Redis", || {
        let (code, body) = http_get(&addr, "/readyz");
        code == 503 && body.contains(&format!("127.0.0.1:{}", redis.port))
    });
    assert!(pending() > 0, "the rows wait in the outbox while Redis is out of reach");
    assert!(host.try_wait().unwrap().is_none(), "the host waits for Redis rather than failing");

    redis.restart();
    let status = host.wait().unwrap();
    assert!(status.success(), "the host ends well once Redis is back");
    assert_eq!(pending(), 0, "every entry delivered and forgotten");
    let stored = sqlite_windows(&db);
    assert_eq!(redis_windows(&redis, "rides"), stored, "Redis holds the sink's rows, none twice or missing");
    assert_eq!(trips_in(&stored), input_lines(&input), "every trip counted once");
    let (key, hash) = redis_hashes(&redis, "rides").into_iter().next().unwrap();
    assert_eq!(hash["is_final"], "true", "{key}: {hash:?}");
    let ttl: i64 = redis.cli(&["PTTL", &key]).trim().parse().unwrap();
    assert!((1..=3_600_000).contains(&ttl), "a window hash expires within the ttl: {ttl}");
}

/// The Delta output on S3: a run delivers, the store goes out of reach (connections
/// refused), delivery waits with the rows in the outbox and readiness naming the table, and
/// once the store is back every row is there once, as Python's `deltalake` reads it.
#[test]
fn a_delta_table_on_s3_out_of_reach_pauses_delivery_and_it_resumes_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start();
    let relay = Relay::start(&s3.addr);
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.jsonl"), trips(0..20, (5.0, 40.0), None)).unwrap();
    let table = s3.url("rides");
    let outputs = format!(
        "[sink.delta]\npath = {table:?}\nstorage = {}\ncompact_every = \"1s\"\ncompact_files = 2\n",
        S3::toml(&S3::options(&relay.addr))
    );
    let pipeline = files_with(dir.path(), &input, &[("interval = \"1s\"", "interval = \"200ms\"")], &outputs);
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &["--until-idle", "3s"], Stdio::piped());
    let read = || delta_read_at(&table, &S3::options(&s3.addr), "city", "rides");
    until("a first delivery to S3", || read()["txn"].as_i64().is_some_and(|t| t > 0));

    relay.cut();
    std::fs::write(input.join("b.jsonl"), trips(20..40, (5.0, 40.0), None)).unwrap();
    let db = dir.path().join("rides.db");
    let pending = || outbox_entries(&db);
    until("readiness naming the Delta table", || {
        if host.try_wait().unwrap().is_some() {
            let mut log = String::new();
            std::io::Read::read_to_string(host.stderr.as_mut().unwrap(), &mut log).unwrap();
            panic!("the host ended while S3 was out of reach: {log}");
        }
        let (code, body) = http_get(&addr, "/readyz");
        code == 503 && body.contains(&table)
    });
    assert!(pending() > 0, "the rows wait in the outbox while S3 is out of reach");
    assert!(host.try_wait().unwrap().is_none(), "the host waits for S3 rather than failing");

    relay.heal();
    let status = host.wait().unwrap();
    assert!(status.success(), "the host ends well once S3 is back");
    assert_eq!(pending(), 0, "every entry delivered and forgotten");
    let stored = sqlite_windows(&db);
    let read = read();
    assert_eq!(delta_windows(&read), stored, "the table's latest revisions are the sink's rows, none missing");
    assert_eq!(trips_in(&stored), input_lines(&input), "every trip counted once");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let last: i64 = conn.query_row("SELECT seq FROM weir_outbox_seq", [], |r| r.get(0)).unwrap();
    assert_eq!(read["txn"].as_i64(), Some(last), "the log's txn action names the last entry delivered");
}

#[test]
fn a_delta_table_another_writer_made_with_another_schema_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Python's deltalake writes a table whose `trips` is text.
    let script = format!(
        "from arro3.core import Table, Array, DataType\nfrom deltalake import write_deltalake\n\
         write_deltalake({:?}, Table.from_pydict({{'city': Array(['Oslo'], DataType.string()), \
         'trips': Array(['many'], DataType.string())}}))",
        lake.to_str().unwrap()
    );
    let made = Command::new("python3").args(["-c", &script]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.jsonl"), trips(0..3, (5.0, 40.0), None)).unwrap();
    let pipeline = files_with(dir.path(), &input, &[], "[sink.delta]\npath = \"lake\"\n");
    let out = weir(&["run", pipeline.to_str().unwrap(), "--until-idle", "1s", "--quiet", "--no-admin"], dir.path());
    assert!(!out.status.success(), "the run is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("window_start") || err.contains("trips"), "the error names a column: {err}");
    assert!(err.contains(lake.to_str().unwrap()), "and the table: {err}");
    let read = Command::new("python3")
        .args([
            "-c",
            &format!("from deltalake import DeltaTable; print(DeltaTable({:?}).version())", lake.to_str().unwrap()),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), "0", "the table is as its writer left it");
}

#[test]
fn validate_names_the_output_key_that_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case; 7] = [
        (&[], "[sink.redis]\nurl = \"redis://127.0.0.1:1/0\"\nttl = \"0s\"\n", "sink.redis.ttl"),
        (&[], "[sink.redis]\nurl = \"http://127.0.0.1:1\"\n", "sink.redis.url"),
        (&[], "[sink.delta]\npath = \"gs://bucket/t\"\n", "sink.delta.path"),
        (
            &[],
            "[sink.delta]\npath = \"s3://b/t\"\nstorage = { endpoint_uri = \"x\" }\n",
            "sink.delta.storage.endpoint_uri",
        ),
        (&[], "[sink.delta]\npath = \"lake\"\nstorage = { aws_region = \"x\" }\n", "sink.delta.storage:"),
        (&[], "[sink.delta]\npath = \"lake\"\ncompact_every = \"often\"\n", "compact_every"),
        (
            &[("kind = \"tumbling\"\nsize = \"1m\"", "kind = \"session\"\ngap = \"5m\"")],
            "[sink.delta]\npath = \"lake\"\n",
            "session windows",
        ),
    ];
    for (replace, extra, named) in cases {
        let pipeline = files_with(dir.path(), &input, replace, extra);
        let out = weir(&["validate", pipeline.to_str().unwrap()], dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra} is refused");
        assert!(err.contains(named), "the error for {extra:?} names {named}: {err}");
    }
}

/// Three hosts of one group on an unkeyed topic (rows merged from partial states in the
/// sink), one SIGKILLed mid-stream, delivering to Redis and to a Delta table on S3 (which
/// the first two hosts both try to create at once): both hold exactly the windows an
/// independent reading of the topic gives, as PostgreSQL does.
#[test]
fn outputs_are_exact_on_three_hosts_through_a_kill() {
    use weir_tests::group::{self, finish, host, produce, read_topic, truth, wait_committed};
    const EVENTS: u64 = 120_000;
    let broker = weir_tests::services::Broker::start();
    let pg = Postgres::start();
    let redis = Redis::start();
    let s3 = S3::start();
    let dir = tempfile::tempdir().unwrap();
    let lake = s3.url("rides");
    let outputs = format!(
        "[sink.redis]\nurl = \"{}\"\n\n[sink.delta]\npath = {lake:?}\nstorage = {}\ncompact_every = \"2s\"\n\
         compact_files = 4\n",
        redis.url(),
        S3::toml(&S3::options(&s3.addr))
    );
    let pipeline = group::pipeline(dir.path(), &outputs);
    let out = produce(&broker, "trips", "none", 7, EVENTS, "2024-05-01T00:00:00Z", None).wait_with_output().unwrap();
    assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    let want = truth(&read_topic(&broker, "trips", EVENTS as usize));

    let url = pg.create_database("outputs_group");
    let mut a = host(&pipeline, &broker, "trips", &url, "outputs");
    let mut b = host(&pipeline, &broker, "trips", &url, "outputs");
    wait_committed(&pg, "outputs_group", 0, &mut a);
    let c = host(&pipeline, &broker, "trips", &url, "outputs");
    let at = wait_committed(&pg, "outputs_group", EVENTS as i64 / 3, &mut b);
    b.kill().unwrap(); // SIGKILL
    b.wait().unwrap();
    assert!(at < EVENTS as i64, "the kill lands mid-stream ({at} of {EVENTS} committed)");
    let b2 = host(&pipeline, &broker, "trips", &url, "outputs");
    for (h, name) in [(a, "a"), (c, "c"), (b2, "b again")] {
        finish(h, name);
    }

    // Sums merged from partial states add in another order than the truth's: within 1e-6.
    let stored = group::read(&pg, "outputs_group");
    group::assert_truth(&stored, &want, "PostgreSQL");
    assert_eq!(redis_windows(&redis, "rides"), stored.windows, "Redis holds PostgreSQL's rows exactly");
    let delta = delta_read_at(&lake, &S3::options(&s3.addr), "city", "rides");
    assert_eq!(delta_windows(&delta), stored.windows, "the Delta table's latest revisions are PostgreSQL's rows");
    let pending: i64 = pg.client("outputs_group").query_one("SELECT count(*) FROM weir_outbox", &[]).unwrap().get(0);
    assert_eq!(pending, 0, "every entry delivered and forgotten");
}
