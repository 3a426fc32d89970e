//! SIGKILL loops of pipelines that deliver their rows to outputs: Redis and a Delta table
//! (`[sink.redis]`, `[sink.delta]`). Each output is read by a reader of its own, never by
//! weir, and must hold exactly the windows the truth gives.

use super::*;
use weir_tests::outputs::{delta_read, delta_windows, redis_windows};
use weir_tests::services::Redis;

/// Files into SQLite, delivered to Redis and to a Delta table compacted every second,
/// killed again and again; then a last run to the end.
#[test]
fn sigkills_of_a_run_delivering_to_redis_and_delta_lose_and_repeat_nothing() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let db = dir.path().join("out.db");
    let pipeline = files_pipeline(dir.path(), &input, &format!("sqlite://{}", db.display()));
    let outputs = format!(
        "\n[sink.redis]\nurl = \"{}\"\n\n[sink.delta]\npath = \"lake/rides\"\ncompact_every = \"1s\"\ncompact_files = 4\n",
        redis.url()
    );
    let text = std::fs::read_to_string(&pipeline).unwrap() + &outputs;
    std::fs::write(&pipeline, text).unwrap();
    let (events, kills): (u64, u64) = faults::size((60_000, 5), (1_000_000, 50));
    let writer = kills::write_files(&input, events, 4, events * 10 / (kills * 9), 0x0ed5);
    let committed = || faults::committed_sqlite(&db);
    let killed = kills::kill_loop(kills, 0x7e57, Duration::from_millis(800), || files_host(&pipeline), committed);
    let written = writer.join().unwrap();
    let (ok, _, log) = group::ended(files_host(&pipeline));
    assert!(ok, "the last run failed: {log}");

    let stored = held_sqlite(&db);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut labels = conn.prepare("SELECT source_partition, label FROM weir_partitions").unwrap();
    let labels = labels.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let want = super::files_truth(&written, &faults::file_partitions(labels));
    let pending: i64 = conn.query_row("SELECT count(*) FROM weir_outbox", [], |r| r.get(0)).unwrap();
    assert_eq!(pending, 0, "every outbox entry is delivered and forgotten");

    let in_redis = faults::Held { windows: redis_windows(&redis, "rides-files"), ..held_sqlite(&db) };
    let delta = delta_read(&dir.path().join("lake/rides"), "city", "rides-files");
    let in_delta = faults::Held { windows: delta_windows(&delta), ..held_sqlite(&db) };
    let operations: Vec<&str> = delta["operations"].as_array().unwrap().iter().filter_map(|o| o.as_str()).collect();
    assert!(operations.contains(&"OPTIMIZE"), "the small files were compacted: {operations:?}");
    let delivered: i64 = redis.cli(&["GET", "rides-files:rides_city_minute:_delivered"]).trim().parse().unwrap();
    assert_eq!(delta["txn"].as_i64(), Some(delivered), "both outputs hold the same outbox entries");
    for (name, held) in [("Redis", &in_redis), ("Delta", &in_delta)] {
        assert_eq!(held.windows, stored.windows, "{name} holds the sink's rows");
        let tally = compare(held, &want);
        record(Row {
            scenario: if name == "Redis" { "SIGKILL loop, files → Redis" } else { "SIGKILL loop, files → Delta" },
            runs: killed.kills,
            events,
            tally: &tally,
            recover: Some(killed.recover),
            note: format!("read back by {}", if name == "Redis" { "redis-cli" } else { "Python's deltalake" }),
        });
    }
}
