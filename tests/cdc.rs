//! PostgreSQL change capture (`[source] kind = "postgres"`) with real parts: a real
//! PostgreSQL server with `wal_level = logical` holding the app's `trips` table, real
//! `weir run` hosts, and the windows checked against SQL over the table itself. The
//! SIGKILL loop is in the fault suite (`tests/faults/cdc.rs`).

use std::process::{Command, Stdio};

use weir_tests::quality::weir_host;
use weir_tests::services::{repo_root, Postgres};
use weir_tests::{free_addr, plugin_dir, weir_bin};

/// `n` trips from number `from` on, one a second of event time from 2024-05-01 12:00,
/// in three cities; every 100th has no city (a dead letter).
fn insert_trips(pg: &Postgres, from: i64, n: i64) {
    pg.client("app")
        .batch_execute(&format!(
            "INSERT INTO trips (trip_id, city, driver_id, rider_id, fare, distance_km, status, event_time) \
             SELECT 't' || g, CASE WHEN g % 100 = 0 THEN NULL ELSE (ARRAY['Oslo','Lima','Pune'])[1 + g % 3] END, \
             'd' || g % 7, 'r' || g % 11, 5 + (g % 37) * 0.5, 1.5, 'completed', \
             timestamptz '2024-05-01 12:00:00+00' + g * interval '1 second' FROM generate_series({from}, {}) g",
            from + n - 1
        ))
        .unwrap();
}

/// The example with the app's database and the sink filled in, in `dir`.
fn cdc_pipeline(dir: &std::path::Path, pg: &Postgres, name: &str) -> std::path::PathBuf {
    cdc_pipeline_into(dir, pg, pg, name)
}

/// [`cdc_pipeline`], its sink on the server `sink`.
fn cdc_pipeline_into(dir: &std::path::Path, pg: &Postgres, sink: &Postgres, name: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-cdc.toml"))
        .unwrap()
        .replace("${APP_DATABASE_URL}", &pg.url("app"))
        .replace("${DATABASE_URL}", &sink.url("weir"))
        .replace("name = \"rides-cdc\"", &format!("name = \"{name}\""));
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn app(pg: &Postgres) {
    pg.create_database("app");
    let schema = std::fs::read_to_string(repo_root().join("examples/rides/cdc-trips.sql")).unwrap();
    pg.client("app").batch_execute(&schema).unwrap();
}

/// Per city and minute: trips and the fare sum, from the table itself.
fn truth(pg: &Postgres) -> Vec<(String, String, i64, f64)> {
    pg.client("app")
        .query(
            "SELECT city, date_trunc('minute', event_time)::text, count(*), sum(fare) FROM trips \
             WHERE city IS NOT NULL GROUP BY 1, 2 ORDER BY 2, 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn counted(pg: &Postgres) -> Vec<(String, String, i64, f64)> {
    pg.client("weir")
        .query("SELECT city, window_start::text, trips, sum_fare FROM rides_city_minute ORDER BY 2, 1", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The snapshot partition's committed offset: the next key, or 2^62 once read whole.
fn snapshot_offset(pg: &Postgres, pipeline: &str) -> Option<i64> {
    let row = pg.client("weir").query_opt(
        "SELECT next_offset FROM weir_checkpoints WHERE pipeline = $1 AND source_partition = 1",
        &[&pipeline],
    );
    row.ok().flatten().map(|r| r.get(0))
}

fn run_to_idle(pipeline: &std::path::Path) -> (bool, String) {
    let out = Command::new(weir_bin())
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "--no-admin", "--until-idle", "2s"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_rides_cdc_example_counts_the_rows_already_there_and_every_insert_during_the_run() {
    let pg = Postgres::start();
    app(&pg);
    insert_trips(&pg, 1, 3000);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = cdc_pipeline(dir.path(), &pg, "rides-cdc");
    let mut host = weir_host(&pipeline, &free_addr(), &["--until-idle", "3s"], Stdio::piped());
    // The snapshot is committed before any insert below: those must come as changes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while snapshot_offset(&pg, "rides-cdc") != Some(1 << 62) {
        assert!(host.try_wait().unwrap().is_none(), "the host exited during the snapshot");
        assert!(std::time::Instant::now() < deadline, "the snapshot was not committed within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Twenty transactions of 100 trips while it runs, and one that inserts and rolls back.
    for i in 0..20 {
        insert_trips(&pg, 3001 + i * 100, 100);
    }
    let mut app = pg.client("app");
    let mut tx = app.transaction().unwrap();
    tx.batch_execute("INSERT INTO trips (trip_id, city, fare, event_time) VALUES ('gone', 'Oslo', 99, now())").unwrap();
    tx.rollback().unwrap();
    let out = host.0.ended_with_log();
    assert!(out.0, "the run failed: {}", out.1);
    let truth = truth(&pg);
    assert_eq!(truth.iter().map(|t| t.2).sum::<i64>(), 4950, "the table holds what was inserted");
    let counted = counted(&pg);
    assert_eq!(counted.len(), truth.len(), "windows: {counted:?}");
    for (c, t) in counted.iter().zip(&truth) {
        assert_eq!((&c.0, &c.1[..16], c.2), (&t.0, &t.1[..16], t.2), "{c:?} against {t:?}");
        assert!((c.3 - t.3).abs() < 1e-6, "{c:?} against {t:?}");
    }
    let dead: i64 = pg.client("weir").query_one("SELECT count(*) FROM weir_dead_letters", &[]).unwrap().get(0);
    assert_eq!(dead, 50, "one trip in 100 has no city");
    assert!(out.1.contains("created replication slot weir_rides_cdc"), "{}", out.1);
    // The slot is confirmed to what the sink committed, so the server may drop the WAL before it.
    let committed: i64 = pg
        .client("weir")
        .query_one(
            "SELECT next_offset FROM weir_checkpoints WHERE pipeline = 'rides-cdc' AND source_partition = 0",
            &[],
        )
        .unwrap()
        .get(0);
    let confirmed: i64 = pg
        .client("app")
        .query_one(
            "SELECT (confirmed_flush_lsn - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = 'weir_rides_cdc'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(confirmed, committed, "the slot is confirmed to the last checkpoint");
}

/// The app's server stopped mid-run (a fast shutdown, which waits for weir to confirm what
/// it was sent) and started again: the host says why it cannot read, waits, and ends exact.
#[test]
fn a_source_database_restart_is_waited_out_and_nothing_is_lost() {
    let (pg, sink) = (Postgres::start(), Postgres::start());
    app(&pg);
    insert_trips(&pg, 1, 2000);
    let dir = tempfile::tempdir().unwrap();
    let pipeline = cdc_pipeline_into(dir.path(), &pg, &sink, "rides-cdc");
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &["--until-idle", "4s"], Stdio::piped());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while snapshot_offset(&sink, "rides-cdc") != Some(1 << 62) {
        assert!(host.try_wait().unwrap().is_none(), "the host exited during the snapshot");
        assert!(std::time::Instant::now() < deadline, "the snapshot was not committed within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for i in 0..5 {
        insert_trips(&pg, 2001 + i * 100, 100);
    }
    if std::panic::catch_unwind(|| pg.stop()).is_err() {
        let _ = host.kill();
        panic!("the server did not stop: {}\n\nweir: {}", pg.log(), host.0.ended_with_log().1);
    }
    // Unready while the server is down, and still running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while weir_tests::http_get(&addr, "/readyz").0 != 503 {
        assert!(host.try_wait().unwrap().is_none(), "the host gave up on the stopped server");
        assert!(std::time::Instant::now() < deadline, "/readyz never said the server was gone");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    pg.restart();
    for i in 5..10 {
        insert_trips(&pg, 2001 + i * 100, 100);
    }
    let out = host.0.ended_with_log();
    assert!(out.0, "the run failed: {}", out.1);
    let (truth, counted) = (truth(&pg), counted(&sink));
    assert_eq!(truth.iter().map(|t| t.2).sum::<i64>(), 2970);
    assert_eq!(counted.iter().map(|t| t.2).sum::<i64>(), 2970, "every trip once across the restart");
    assert_eq!(counted.len(), truth.len());
}

#[test]
fn a_slot_gone_or_invalidated_stops_the_pipeline_with_the_way_back() {
    let pg = Postgres::start();
    app(&pg);
    insert_trips(&pg, 1, 500);
    let dir = tempfile::tempdir().unwrap();
    for (name, how) in [("dropped", "is gone"), ("behind", "fell behind max_slot_wal_keep_size")] {
        let pipeline = cdc_pipeline(dir.path(), &pg, name);
        let (ok, log) = run_to_idle(&pipeline);
        assert!(ok, "the first run failed: {log}");
        let slot = format!("weir_{name}");
        let mut admin = pg.client("postgres");
        if name == "dropped" {
            admin.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).unwrap();
        } else {
            // WAL beyond what the server keeps for slots, then a checkpoint that removes it.
            admin.batch_execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'").unwrap();
            admin.batch_execute("SELECT pg_reload_conf()").unwrap();
            let mut app = pg.client("app");
            app.batch_execute("CREATE TABLE filler (v text)").unwrap();
            for _ in 0..4 {
                app.batch_execute("INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 3000)").unwrap();
                app.batch_execute("SELECT pg_switch_wal()").unwrap();
                app.batch_execute("CHECKPOINT").unwrap();
            }
            let status: String = admin
                .query_one("SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
                .unwrap()
                .get(0);
            assert_eq!(status, "lost", "the slot should have lost its WAL");
        }
        insert_trips(&pg, 10_000, 10);
        let (ok, log) = run_to_idle(&pipeline);
        assert!(!ok, "a run without its slot went on: {log}");
        assert!(log.contains(how), "{log}");
        assert!(log.contains(&format!("pg_drop_replication_slot('{slot}')")), "{log}");
        assert!(log.contains("will not snapshot the table again"), "{log}");
    }
}

#[test]
fn validate_reports_the_source_and_refuses_a_snapshot_without_a_key() {
    let pg = Postgres::start();
    app(&pg);
    pg.client("app").batch_execute("CREATE TABLE events (at timestamptz, city text)").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = cdc_pipeline(dir.path(), &pg, "rides-cdc");
    let validate = |path: &std::path::Path| {
        let out = Command::new(weir_bin())
            .args(["validate", path.to_str().unwrap()])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = validate(&pipeline);
    assert!(ok, "{text}");
    assert!(text.contains("postgres table public.trips (9 columns), a snapshot by key id first"), "{text}");
    assert!(text.contains("slot weir_rides_cdc to be created"), "{text}");
    // validate changed nothing: no publication was made.
    let made: i64 = pg.client("app").query_one("SELECT count(*) FROM pg_publication", &[]).unwrap().get(0);
    assert_eq!(made, 0);
    let keyless = dir.path().join("keyless.toml");
    std::fs::write(
        &keyless,
        std::fs::read_to_string(&pipeline).unwrap().replace("table = \"trips\"", "table = \"events\""),
    )
    .unwrap();
    let (ok, text) = validate(&keyless);
    assert!(
        !ok && text.contains("public.events has no single-column integer primary key")
            && text.contains("snapshot = false"),
        "{text}"
    );
    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        std::fs::read_to_string(&pipeline).unwrap().replace("table = \"trips\"", "table = \"trip\""),
    )
    .unwrap();
    let (ok, text) = validate(&missing);
    assert!(!ok && text.contains("source.table \"trip\": no such table"), "{text}");
}

/// Polling (`mode = "poll"`): every row once, and again after each update that moves its
/// `updated_at`; rows inserted during the run are read once `lag` old.
#[test]
fn polling_reads_each_row_once_and_again_after_an_update() {
    let pg = Postgres::start();
    app(&pg);
    pg.client("app")
        .batch_execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, city text NOT NULL, fare float8 NOT NULL, \
             updated_at timestamptz NOT NULL DEFAULT clock_timestamp()); \
             INSERT INTO orders (city, fare) SELECT (ARRAY['Oslo','Lima'])[1 + g % 2], g FROM generate_series(1, 1000) g",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = POLLED
        .replace("URL", &pg.url("app"))
        .replace("SINK", &format!("sqlite://{}", dir.path().join("out.db").display()));
    let pipeline = dir.path().join("orders.toml");
    std::fs::write(&pipeline, text).unwrap();
    let mut host = weir_host(&pipeline, &free_addr(), &["--until-idle", "3s"], Stdio::piped());
    let db = dir.path().join("out.db");
    let counted = || -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT coalesce(sum(orders), 0) FROM order_counts", [], |r| r.get(0)))
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while counted() < 1000 {
        if host.try_wait().unwrap().is_some() {
            panic!("the host exited early: {}", host.0.ended_with_log().1);
        }
        assert!(std::time::Instant::now() < deadline, "the first rows were not read within 60 s");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut client = pg.client("app");
    for i in 0..5 {
        client
            .batch_execute(&format!(
                "INSERT INTO orders (city, fare) SELECT 'Pune', g FROM generate_series(1, 100) g; \
            UPDATE orders SET fare = fare + 1, updated_at = clock_timestamp() WHERE id % 50 = {i}"
            ))
            .unwrap();
    }
    let out = host.0.ended_with_log();
    assert!(out.0, "the run failed: {}", out.1);
    // 1000 rows, 500 inserted during the run, 5 × 20 updated (of the first 1000 ids).
    assert_eq!(counted(), 1600);
    let pune: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("SELECT sum(orders) FROM order_counts WHERE city = 'Pune'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pune, 500);
}

/// A polled `orders` table counted per city and hour of `updated_at`.
const POLLED: &str = r#"
name = "orders-poll"

[source]
kind = "postgres"
mode = "poll"
url = "URL"
table = "orders"
cursor = "updated_at"
lag = "200ms"
interval = "100ms"

[parser]
plugin = "json_parser"
config.event_time = "_commit_time"
config.fields = [
  { name = "_commit_time", type = "timestamp", format = "iso8601" },
  { name = "city", type = "text" },
]

[aggregator]
plugin = "window_stats"
config.count = "orders"

[window]
kind = "tumbling"
size = "1h"
key = ["city"]

[watermark]
lateness = "1h"

[sink]
url = "SINK"
table = "order_counts"

[checkpoint]
interval = "200ms"
"#;

trait EndedWithLog {
    fn ended_with_log(&mut self) -> (bool, String);
}

impl EndedWithLog for std::process::Child {
    /// Waits for the host (it ends once idle) and returns whether it succeeded, and its stderr.
    fn ended_with_log(&mut self) -> (bool, String) {
        let mut log = String::new();
        if let Some(mut err) = self.stderr.take() {
            std::io::Read::read_to_string(&mut err, &mut log).unwrap();
        }
        (self.wait().unwrap().success(), log)
    }
}
