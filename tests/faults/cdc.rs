//! SIGKILL loop of a change-capture pipeline (`[source] kind = "postgres"`): a writer
//! inserts, updates and deletes rows of a table the whole time, while hosts are killed
//! during the snapshot, during the catch-up of a resumed one, and during the changes.
//! Windows keyed by row and operation are checked against the table itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

const PIPELINE: &str = r#"
name = "items-cdc"

[source]
kind = "postgres"
url = "URL"
table = "items"

[parser]
plugin = "json_parser"
config.event_time = "_commit_time"
config.fields = [
  { name = "_op", type = "text" },
  { name = "_commit_time", type = "timestamp", format = "iso8601" },
  { name = "id", type = "int64" },
  { name = "v", type = "float64" },
]

[aggregator]
plugin = "window_stats"
config.count = "events"
config.metrics = [{ column = "v", stats = ["max"] }]

[window]
kind = "tumbling"
size = "1h"
key = ["id", "_op"]

[watermark]
lateness = "1h"

[sink]
url = "SINK"
table = "item_ops"

[checkpoint]
interval = "200ms"
"#;

/// A host of `pipeline` reading batches of `batch`, its stderr in `log`.
fn cdc_host(pipeline: &Path, batch: &str, log: &HostLog) -> Reaped {
    Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--until-idle", "3s", "--quiet", "--no-admin", "--batch", batch])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::null())
            .stderr(log.stderr())
            .spawn()
            .unwrap(),
    )
}

/// Small transactions of inserts, updates (`v + 1`) and deletes until `stop`.
fn writer(pg: &Postgres, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut client = pg.client("app");
    std::thread::spawn(move || {
        let mut txns = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let n = txns as i64;
            client
                .batch_execute(&format!(
                    "BEGIN; INSERT INTO items (v) SELECT 1 FROM generate_series(1, 20); \
                     UPDATE items SET v = v + 1 WHERE id % 97 = {} AND id % 3 = 0; \
                     DELETE FROM items WHERE id IN (SELECT id FROM items WHERE id % 89 = {} LIMIT 3); COMMIT",
                    n % 97,
                    n % 89
                ))
                .unwrap();
            txns += 1;
            // Pacing, so the table changes all through the run rather than in one burst.
            std::thread::sleep(Duration::from_millis(5));
        }
        txns
    })
}

#[test]
fn sigkills_of_a_change_capture_run_lose_and_repeat_no_change() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    pg.create_database("app");
    let (rows, kills): (i64, u64) = faults::size((60_000, 5), (300_000, 40));
    pg.client("app")
        .batch_execute(&format!(
            "CREATE TABLE items (id bigserial PRIMARY KEY, v int NOT NULL); ALTER TABLE items REPLICA IDENTITY FULL; \
             INSERT INTO items (v) SELECT 1 FROM generate_series(1, {rows})"
        ))
        .unwrap();
    let db = dir.path().join("out.db");
    let pipeline = dir.path().join("items.toml");
    let text = PIPELINE.replace("URL", &pg.url("app")).replace("SINK", &format!("sqlite://{}", db.display()));
    std::fs::write(&pipeline, text).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(&pg, stop.clone());
    let log = HostLog::new(dir.path());
    let host = || cdc_host(&pipeline, "1000", &log);
    let small_batches = || cdc_host(&pipeline, "100", &log);
    // Kills that strike while the snapshot is half read, each once a checkpoint of it has
    // landed: the next host must finish it from a new snapshot.
    let snapshot_at = || -> i64 {
        let Ok(db) = rusqlite::Connection::open(&db) else { return 0 };
        db.query_row("SELECT next_offset FROM weir_checkpoints WHERE source_partition = 1", [], |r| r.get(0))
            .unwrap_or(0)
    };
    let mut mid_snapshot = 0;
    for _ in 0..2 {
        let before = snapshot_at();
        let mut first = small_batches();
        loop {
            if let Ok(Some(status)) = first.try_wait() {
                panic!("a host exited with {status}: {}", log.text());
            }
            let now = snapshot_at();
            if now == 1 << 62 {
                break;
            }
            if now > before {
                first.kill().unwrap();
                mid_snapshot += 1;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = first.kill();
        let _ = first.wait();
    }
    assert!(mid_snapshot > 0, "no kill struck the snapshot: {}", log.text());
    let killed = log.kill_loop(kills, 0xcdc, Duration::from_millis(600), host, || faults::committed_sqlite(&db));
    stop.store(true, Ordering::SeqCst);
    let txns = writing.join().unwrap();
    let status = host().wait().unwrap();
    assert!(status.success(), "the last run failed: {}", log.text());

    // The table's rows now, and what the sink counted per row and operation.
    let live: HashMap<i64, i64> = pg
        .client("app")
        .query("SELECT id, v::int8 FROM items", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let ever: i64 = pg.client("app").query_one("SELECT last_value FROM items_id_seq", &[]).unwrap().get(0);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut counts: HashMap<i64, (i64, i64, i64)> = HashMap::new(); // entered, deleted, max v
    let mut stmt = conn.prepare("SELECT id, _op, sum(events), max(max_v) FROM item_ops GROUP BY 1, 2").unwrap();
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get(2)?, r.get(3)?))).unwrap()
    {
        let (id, op, n, v): (i64, String, i64, f64) = row.unwrap();
        let entry = counts.entry(id).or_default();
        match op.as_str() {
            "snapshot" | "insert" => entry.0 += n,
            "delete" => entry.1 += n,
            "update" => {}
            other => panic!("an operation {other:?}"),
        }
        if op != "delete" {
            entry.2 = entry.2.max(v as i64);
        }
    }
    let (mut lost, mut duplicated, mut differences) = (0u64, 0u64, Vec::new());
    for id in 1..=ever {
        let (entered, deleted, max_v) = counts.get(&id).copied().unwrap_or_default();
        match live.get(&id) {
            // A row there now entered once, was never deleted, and its last value was read.
            Some(&v) => {
                lost += u64::from(entered == 0);
                duplicated += (entered - 1).max(0) as u64 + deleted as u64;
                if entered > 0 && max_v != v && differences.len() < 5 {
                    differences.push(format!("row {id}: v {v} in the table, {max_v} read"));
                }
            }
            // A deleted row either never showed (it came and went between two snapshots'
            // reads) or entered once and left once.
            None => {
                duplicated += (entered - 1).max(0) as u64 + (deleted - 1).max(0) as u64;
                lost += u64::from(entered != deleted && entered <= 1 && deleted <= 1);
            }
        }
    }
    let hosts = log.text();
    let resumed = hosts.matches("finishing the snapshot").count();
    eprintln!("{hosts}");
    let tally = faults::Tally { lost, duplicated, differences };
    record(Row {
        scenario: "SIGKILL loop, PostgreSQL change capture → SQLite",
        runs: killed.kills,
        events: (rows + txns as i64 * 20) as u64,
        tally: &tally,
        recover: Some(killed.recover),
        note: format!(
            "{txns} writer transactions of inserts, updates and deletes during the kills; the snapshot resumed {resumed} times ({mid_snapshot} killed in it)"
        ),
    });
}

/// The same table polled (`mode = "poll"`, by `updated_at`), windows keyed by row and
/// value: every state a poll saw is counted once, and each row's last state is there.
const POLLED: &str = r#"
name = "items-poll"

[source]
kind = "postgres"
mode = "poll"
url = "URL"
table = "items"
cursor = "updated_at"
lag = "200ms"
interval = "50ms"

[parser]
plugin = "json_parser"
config.event_time = "_commit_time"
config.fields = [
  { name = "_commit_time", type = "timestamp", format = "iso8601" },
  { name = "id", type = "int64" },
  { name = "v", type = "int64" },
]

[aggregator]
plugin = "window_stats"
config.count = "reads"

[window]
kind = "tumbling"
size = "1h"
key = ["id", "v"]

[watermark]
lateness = "1h"

[sink]
url = "SINK"
table = "item_states"

[checkpoint]
interval = "200ms"
"#;

#[test]
fn sigkills_of_a_polling_run_lose_and_repeat_no_row() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    pg.create_database("app");
    let (rows, kills): (i64, u64) = faults::size((30_000, 5), (300_000, 40));
    let mut client = pg.client("app");
    client
        .batch_execute(&format!(
            "CREATE TABLE items (id bigserial PRIMARY KEY, v int NOT NULL, updated_at timestamptz NOT NULL \
             DEFAULT clock_timestamp()); CREATE INDEX ON items (updated_at, id); \
             INSERT INTO items (v) SELECT 1 FROM generate_series(1, {rows})"
        ))
        .unwrap();
    let db = dir.path().join("out.db");
    let pipeline = dir.path().join("poll.toml");
    std::fs::write(
        &pipeline,
        POLLED.replace("URL", &pg.url("app")).replace("SINK", &format!("sqlite://{}", db.display())),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut txns = 0u64;
            while !stop.load(Ordering::SeqCst) {
                client
                    .batch_execute(&format!(
                        "BEGIN; INSERT INTO items (v) SELECT 1 FROM generate_series(1, 20); \
                         UPDATE items SET v = v + 1, updated_at = clock_timestamp() WHERE id % 97 = {}; COMMIT",
                        txns % 97
                    ))
                    .unwrap();
                txns += 1;
                // Pacing, so the table changes all through the run rather than in one burst.
                std::thread::sleep(Duration::from_millis(5));
            }
            txns
        })
    };
    let log = HostLog::new(dir.path());
    let host = || cdc_host(&pipeline, "1000", &log);
    let killed = log.kill_loop(kills, 0x9011, Duration::from_millis(600), host, || faults::committed_sqlite(&db));
    stop.store(true, Ordering::SeqCst);
    let txns = writing.join().unwrap();
    let status = host().wait().unwrap();
    assert!(status.success(), "the last run failed: {}", log.text());

    let live: Vec<(i64, i64)> = pg
        .client("app")
        .query("SELECT id, v::int8 FROM items", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut reads: HashMap<(i64, i64), i64> = HashMap::new();
    let mut stmt = conn.prepare("SELECT id, v, sum(reads) FROM item_states GROUP BY 1, 2").unwrap();
    for row in stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?))).unwrap() {
        let (state, n) = row.unwrap();
        reads.insert(state, n);
    }
    let duplicated: i64 = reads.values().map(|n| n - 1).sum();
    let lost = live.iter().filter(|state| !reads.contains_key(state)).count() as u64;
    let tally = faults::Tally { lost, duplicated: duplicated as u64, differences: Vec::new() };
    record(Row {
        scenario: "SIGKILL loop, PostgreSQL polling → SQLite",
        runs: killed.kills,
        events: reads.len() as u64,
        tally: &tally,
        recover: Some(killed.recover),
        note: format!("{txns} writer transactions of inserts and updates during the kills; each row's last state read"),
    });
}
