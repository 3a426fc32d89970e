//! SIGKILL loops: files into SQLite and PostgreSQL, Kafka into PostgreSQL, and kills while a
//! new plugin version is being deployed.

use super::*;

/// SIGKILLs at random moments of a files run into `url`; then a last run to the end.
fn kill_a_files_run(
    scenario: &str,
    url: &str,
    held: impl Fn() -> (faults::Held, Vec<(i32, String)>),
    committed: impl Fn() -> i64,
    dir: &Path,
) {
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    let pipeline = files_pipeline(dir, &input, url);
    let (events, kills): (u64, u64) = faults::size((100_000, 5), (1_000_000, 50));
    // About 0.9 s of input a kill, so that the kills fall all over the run.
    let writer = kills::write_files(&input, events, 4, events * 10 / (kills * 9), 0xfa17);
    let killed = kills::kill_loop(kills, 0x5eed, Duration::from_millis(800), || files_host(&pipeline), committed);
    let written = writer.join().unwrap();
    let last = files_host(&pipeline);
    let (ok, _, log) = weir_tests::group::ended(last);
    assert!(ok, "the last run failed: {log}");
    let (held, labels) = held();
    let tally = compare(&held, &files_truth(&written, &faults::file_partitions(labels)));
    record(Row {
        scenario,
        runs: killed.kills,
        events,
        tally: &tally,
        recover: Some(killed.recover),
        note: format!("{} kills before the host's first commit", killed.before_commit),
    });
}

#[test]
fn sigkills_of_a_files_run_into_sqlite_lose_and_repeat_nothing() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("out.db");
    let url = format!("sqlite://{}", db.display());
    let held = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut labels = conn.prepare("SELECT source_partition, label FROM weir_partitions").unwrap();
        let labels = labels.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        (held_sqlite(&db), labels)
    };
    kill_a_files_run("SIGKILL loop, files → SQLite", &url, held, || faults::committed_sqlite(&db), dir.path());
}

#[test]
fn sigkills_of_a_files_run_into_postgres_lose_and_repeat_nothing() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let pg = Postgres::start();
    let url = pg.create_database("kills");
    let held = || {
        let labels = pg.client("kills").query("SELECT source_partition, label FROM weir_partitions", &[]).unwrap();
        (held_postgres(&pg, "kills"), labels.iter().map(|r| (r.get(0), r.get(1))).collect())
    };
    kill_a_files_run("SIGKILL loop, files → PostgreSQL", &url, held, || group::committed(&pg, "kills"), dir.path());
}

/// SIGKILLs at random moments of a Kafka → PostgreSQL run, each host started again in
/// the same consumer group while the producer goes on; then a last host to the end.
#[test]
fn sigkills_of_a_kafka_run_into_postgres_lose_and_repeat_nothing() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let (broker, pg) = (Broker::start(), Postgres::start());
    let url = pg.create_database("kafka_kills");
    let pipeline = group::pipeline(dir.path(), "");
    let (events, kills): (u64, u64) = faults::size((30_000, 2), (1_000_000, 50));
    // A restart waits out the killed member's 6 s session, then joins: about 10 s a kill.
    let rate = (events / (kills * 10)).max(1000) as u32;
    let mut producer = group::produce(&broker, "trips", "trip", 7, events, "2024-05-01T08:00:00Z", Some(rate));
    let spawn = || group::host(&pipeline, &broker, "trips", &url, "kills");
    let killed =
        kills::kill_loop(kills, 0xbadc0de, Duration::from_millis(1500), spawn, || group::committed(&pg, "kafka_kills"));
    assert!(producer.wait().unwrap().success(), "weir produce failed");
    group::finish(spawn(), "last");
    let records = group::read_topic(&broker, "trips", events as usize);
    let tally = compare(&held_postgres(&pg, "kafka_kills"), &truth(&records));
    record(Row {
        scenario: "SIGKILL loop, Kafka → PostgreSQL",
        runs: killed.kills,
        events,
        tally: &tally,
        recover: Some(killed.recover),
        note: format!("{} kills before the host's first commit; restarts wait out a 6 s session", killed.before_commit),
    });
}

/// SIGKILLs of a files → SQLite run that land while a new parser version is being
/// deployed (tried, compiled, switched at a checkpoint): each host deploys the next
/// version as soon as it answers, and is killed at a random moment of its first second
/// of commits. The table ends exact, whichever version each checkpoint was written by.
#[test]
fn sigkills_during_hot_swaps_lose_and_repeat_nothing() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let db = dir.path().join("out.db");
    let pipeline = files_pipeline(dir.path(), &input, &format!("sqlite://{}", db.display()));
    let (events, kills): (u64, u64) = faults::size((60_000, 4), (300_000, 20));
    let writer = kills::write_files(&input, events, 2, events * 10 / (kills * 12), 0x5a4b);
    let (deploys, interrupted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let version = AtomicU64::new(0);
    let spawn = || {
        let addr = weir_tests::free_addr();
        let host = files_host_at(&pipeline, "--admin", &addr);
        let n = version.fetch_add(1, Ordering::SeqCst);
        let file = dir.path().join(format!("json_parser_v{n}.wasm"));
        std::fs::write(&file, weir_tests::marked(guests::JSON_PARSER, &n.to_string())).unwrap();
        let (deploys, interrupted) = (deploys.clone(), interrupted.clone());
        std::thread::spawn(move || {
            let deploy = ["plugin", "deploy", "--pipeline", "rides-files", "--stage", "parser", file.to_str().unwrap()];
            // Until the host answers; then the deploy either lands or dies with the host.
            let started = Instant::now();
            while readyz(&addr) == 0 && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (ok, _, _) = weir_tests::weir_cli(&addr, &deploy);
            deploys.fetch_add(1, Ordering::SeqCst);
            interrupted.fetch_add(u64::from(!ok), Ordering::SeqCst);
        });
        host
    };
    let killed = kills::kill_loop(kills, 0x5a4b, Duration::from_millis(1000), spawn, || faults::committed_sqlite(&db));
    let written = writer.join().unwrap();
    let (ok, _, log) = group::ended(files_host(&pipeline));
    assert!(ok, "the last run failed: {log}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut labels = conn.prepare("SELECT source_partition, label FROM weir_partitions").unwrap();
    let labels = labels.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let tally = compare(&held_sqlite(&db), &files_truth(&written, &faults::file_partitions(labels)));
    record(Row {
        scenario: "SIGKILL during hot swaps, files → SQLite",
        runs: killed.kills,
        events,
        tally: &tally,
        recover: Some(killed.recover),
        note: format!(
            "{} deploys, {} cut short by the kill",
            deploys.load(Ordering::SeqCst),
            interrupted.load(Ordering::SeqCst)
        ),
    });
}
