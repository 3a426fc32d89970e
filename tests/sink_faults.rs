//! Passing database faults are waited out, on a real PostgreSQL: while the sink refuses
//! weir's connections with SQLSTATE 53300 (too many connections), the run stays up, says
//! so on `/readyz`, and once the fault passes it commits everything exactly once. A
//! checkpoint retried after a failed reconnect is still fenced.

use std::process::Command;
use std::time::{Duration, Instant};

use weir_tests::lateness::{self, assert_truth, file, read_postgres, setup_into, truth, Shape};
use weir_tests::services::Postgres;
use weir_tests::{free_addr, http_get, plugin_dir, weir_bin, Reaped};

#[test]
fn a_refused_connection_is_retried_until_it_passes_and_nothing_is_lost() {
    let pg = Postgres::start();
    // weir connects as an ordinary role: a role's connection limit binds it (a superuser's would not).
    let mut setup = pg.client("postgres");
    setup.batch_execute("CREATE ROLE etl LOGIN").expect("creating the role");
    setup.batch_execute("CREATE DATABASE faults OWNER etl").expect("creating its database");
    let url = pg.url("faults").replace("weir@", "etl@");
    let input = lateness::random(17, 600);
    let (first, second) = input.split_at(300);
    let dir = setup_into(Shape::Tumbling, first, &url);
    let text = std::fs::read_to_string(dir.path().join("p.toml")).unwrap();
    std::fs::write(dir.path().join("p.toml"), text.replace("path = \"input\"", "path = \"input\"\nfollow = true"))
        .unwrap();
    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .current_dir(dir.path())
            .args(["run", "p.toml", "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut admin = pg.client("faults");
    let committed = |admin: &mut postgres::Client| -> i64 {
        admin.query_one("SELECT coalesce(max(next_offset), 0) FROM weir_checkpoints", &[]).map_or(0, |r| r.get(0))
    };
    let wait = |admin: &mut postgres::Client, host: &mut Reaped, upto: i64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while committed(admin) < upto {
            assert!(host.0.try_wait().unwrap().is_none(), "weir run ended");
            assert!(Instant::now() < deadline, "nothing committed up to {upto}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(&mut admin, &mut host, file(first).len() as i64);

    // The fault: no connection for the role, and its open ones cut.
    admin
        .batch_execute(
            "ALTER ROLE etl CONNECTION LIMIT 0; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'etl'",
        )
        .unwrap();
    let mut appended = std::fs::OpenOptions::new().append(true).open(dir.path().join("input/trips.jsonl")).unwrap();
    std::io::Write::write_all(&mut appended, file(second).as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let reason = loop {
        assert!(host.0.try_wait().unwrap().is_none(), "weir run ended on a passing fault");
        // First the cut connection (57P01), then every reconnect refused (53300).
        let (code, body) = http_get(&addr, "/readyz");
        if code == 503 && body.contains("too many connections") {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz never said the sink refused connections: {code} {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reason.starts_with("not ready: the sink cannot commit"), "{reason}");

    admin.batch_execute("ALTER ROLE etl CONNECTION LIMIT -1").unwrap();
    let all = file(first).len() + file(second).len();
    wait(&mut admin, &mut host, all as i64);
    assert_eq!(http_get(&addr, "/readyz").0, 200, "ready again once the fault passed");
    let stopped = Command::new("kill").args(["-INT", &host.0.id().to_string()]).status().unwrap();
    assert!(stopped.success() && host.0.wait().unwrap().success());
    assert_truth(&read_postgres(&mut admin), &truth(&input, Shape::Tumbling, true), "after the fault");
}

/// A checkpoint whose reconnect fails (PostgreSQL down) keeps its fence for the retry: if
/// another writer moved the partition meanwhile, the retry is refused, not written over
/// it. (The fence was once lost with a failed reconnect, and a host cut off from its
/// database then wrote its older offsets over its successor's.)
#[test]
fn a_checkpoint_retried_after_a_failed_reconnect_is_still_fenced() {
    use weir::sink::{Checkpoint, PostgresSink, Sink, TableSchema};
    let pg = Postgres::start();
    let url = pg.create_database("fence");
    let city = weir_sdk::ColumnDef { name: "city".into(), ty: weir_sdk::ColumnType::Text, nullable: false };
    let table = TableSchema { name: "t".into(), keys: vec![city], values: vec![] };
    let at = |offset| Checkpoint { offsets: vec![(0, offset)], source: "test".into(), ..Default::default() };
    let mut a = PostgresSink::open(&url).unwrap();
    a.prepare(&table).unwrap();
    a.restore("p", &[0]).unwrap();
    a.commit("p", &at(10)).unwrap();
    pg.stop();
    // Tried as the sink thread does, again and again: the first attempt finds the
    // connection gone, the next ones cannot reconnect.
    for attempt in 0..3 {
        assert!(a.commit("p", &at(20)).is_err(), "attempt {attempt} while PostgreSQL is down");
    }
    pg.restart();
    let mut b = PostgresSink::open(&url).unwrap();
    b.prepare(&table).unwrap();
    b.restore("p", &[0]).unwrap();
    b.commit("p", &at(30)).unwrap();
    let refused = a.commit("p", &at(20)).expect_err("the retry must meet the fence");
    assert!(format!("{refused:#}").contains("the sink holds offset 30"), "{refused:#}");
    let held: i64 = pg.client("fence").query_one("SELECT next_offset FROM weir_checkpoints", &[]).unwrap().get(0);
    assert_eq!(held, 30, "the successor's checkpoint stands");
}
