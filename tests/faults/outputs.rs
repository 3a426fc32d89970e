//! SIGKILL loops of pipelines that deliver their rows to outputs: Redis and a Delta table
//! (`[sink.redis]`, `[sink.delta]`), locally and on S3. Each output is read by a reader of
//! its own, never by weir, and must hold exactly the windows the truth gives.

use super::*;
use weir_tests::outputs::{delta_read, delta_read_at, delta_windows, redis_windows};
use weir_tests::s3::S3;
use weir_tests::services::Redis;

/// What a killed run into SQLite with `outputs` left: the sink's rows, the truth, and the
/// kills.
struct Killed {
    stored: faults::Held,
    want: group::Truth,
    killed: kills::Killed,
    events: u64,
}

/// Files into SQLite at `db`, delivered to `outputs` (pipeline text), killed again and
/// again; then a last run to the end, after which the outbox is empty.
fn killed_run(dir: &Path, db: &Path, outputs: &str) -> Killed {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let pipeline = files_pipeline(dir, &input, &format!("sqlite://{}", db.display()));
    let text = std::fs::read_to_string(&pipeline).unwrap() + outputs;
    std::fs::write(&pipeline, text).unwrap();
    let (events, kills): (u64, u64) = faults::size((60_000, 5), (1_000_000, 50));
    // Built before the writer starts, or the input is all there before the first kill.
    weir_bin();
    let writer = kills::write_files(&input, events, 4, events * 10 / (kills * 9), 0x0ed5);
    let committed = || faults::committed_sqlite(db);
    let killed = kills::kill_loop(kills, 0x7e57, Duration::from_millis(800), || files_host(&pipeline), committed);
    let written = writer.join().unwrap();
    let (ok, _, log) = group::ended(files_host(&pipeline));
    assert!(ok, "the last run failed: {log}");

    let conn = rusqlite::Connection::open(db).unwrap();
    let mut labels = conn.prepare("SELECT source_partition, label FROM weir_partitions").unwrap();
    let labels = labels.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let want = super::files_truth(&written, &faults::file_partitions(labels));
    let pending: i64 = conn.query_row("SELECT count(*) FROM weir_outbox", [], |r| r.get(0)).unwrap();
    assert_eq!(pending, 0, "every outbox entry is delivered and forgotten");
    Killed { stored: held_sqlite(db), want, killed, events }
}

impl Killed {
    /// Checks what `output` holds, read by `reader`, against the sink and the truth, and
    /// records it as `scenario`.
    fn check(&self, scenario: &str, output: &str, windows: BTreeMap<(i64, String), (i64, f64)>, reader: &str) {
        let held = faults::Held { windows, ..self.stored.clone() };
        assert_eq!(held.windows, self.stored.windows, "{output} holds the sink's rows");
        let tally = compare(&held, &self.want);
        record(Row {
            scenario,
            runs: self.killed.kills,
            events: self.events,
            tally: &tally,
            recover: Some(self.killed.recover),
            note: format!("read back by {reader}"),
        });
    }
}

/// Delivered to Redis and to a local Delta table compacted every second.
#[test]
fn sigkills_of_a_run_delivering_to_redis_and_delta_lose_and_repeat_nothing() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start();
    let db = dir.path().join("out.db");
    let outputs = format!(
        "\n[sink.redis]\nurl = \"{}\"\n\n[sink.delta]\npath = \"lake/rides\"\ncompact_every = \"1s\"\ncompact_files = 4\n",
        redis.url()
    );
    let run = killed_run(dir.path(), &db, &outputs);

    let delta = delta_read(&dir.path().join("lake/rides"), "city", "rides-files");
    let operations: Vec<&str> = delta["operations"].as_array().unwrap().iter().filter_map(|o| o.as_str()).collect();
    assert!(operations.contains(&"OPTIMIZE"), "the small files were compacted: {operations:?}");
    let delivered: i64 = redis.cli(&["GET", "rides-files:rides_city_minute:_delivered"]).trim().parse().unwrap();
    assert_eq!(delta["txn"].as_i64(), Some(delivered), "both outputs hold the same outbox entries");
    run.check("SIGKILL loop, files → Redis", "Redis", redis_windows(&redis, "rides-files"), "redis-cli");
    run.check("SIGKILL loop, files → Delta", "Delta", delta_windows(&delta), "Python's deltalake");
}

/// Delivered to a Delta table on S3 (moto's server), whose commits are conditional PUTs.
#[test]
fn sigkills_of_a_run_delivering_to_delta_on_s3_lose_and_repeat_nothing() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3::start();
    let db = dir.path().join("out.db");
    let table = s3.url("rides");
    let options = S3::options(&s3.addr);
    let outputs = format!(
        "\n[sink.delta]\npath = {table:?}\nstorage = {}\ncompact_every = \"1s\"\ncompact_files = 4\n",
        S3::toml(&options)
    );
    let run = killed_run(dir.path(), &db, &outputs);

    let delta = delta_read_at(&table, &options, "city", "rides-files");
    let operations: Vec<&str> = delta["operations"].as_array().unwrap().iter().filter_map(|o| o.as_str()).collect();
    assert!(operations.contains(&"OPTIMIZE"), "the small files were compacted: {operations:?}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let last: i64 = conn.query_row("SELECT seq FROM weir_outbox_seq", [], |r| r.get(0)).unwrap();
    assert_eq!(delta["txn"].as_i64(), Some(last), "the table holds the last outbox entry");
    run.check("SIGKILL loop, files → Delta on S3", "Delta on S3", delta_windows(&delta), "Python's deltalake");
}
