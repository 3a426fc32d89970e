//! SIGKILLs at particular moments: during a replay, during a sink migration, while the
//! breaker holds reading.

use super::*;

/// SIGKILLs of `weir replay --late` at random moments; replayed again to the end, every
/// late record is folded once (a replay removes what it folded in the same transaction).
#[test]
fn sigkills_during_a_replay_fold_each_late_record_once() {
    use weir_tests::lateness::{self, Shape};
    let _one = faults::serial();
    let input = lateness::random(31, faults::size(60_000, 400_000));
    let dir = lateness::setup(Shape::Tumbling, &input);
    lateness::run(dir.path(), 1024);
    let late_left = |dir: &Path| -> usize {
        let conn = rusqlite::Connection::open(dir.join("out.db")).unwrap();
        let _ = conn.busy_timeout(Duration::from_secs(5));
        conn.query_row("SELECT count(*) FROM weir_late_events", [], |r| r.get::<_, i64>(0)).unwrap() as usize
    };
    let late_before = late_left(dir.path());
    let mut rng = weir_tests::lateness::Rng(0x7e91a7);
    let (mut kills, mut finished) = (0u64, false);
    for _ in 0..faults::size(5, 30) {
        let before = late_left(dir.path());
        // Small batches: each is one transaction, so a kill can fall between them.
        let args = ["replay", "p.toml", "--late", "--quiet", "--batch", "64"];
        let mut replay = Reaped(lateness::weir(dir.path(), &args).stdout(Stdio::null()).spawn().unwrap());
        // A random moment once the replay has begun to remove what it folded.
        while late_left(dir.path()) == before && replay.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(30)));
        if replay.try_wait().unwrap().is_some() {
            finished = true;
            break;
        }
        replay.kill().unwrap();
        replay.wait().unwrap();
        kills += 1;
    }
    let left = late_left(dir.path());
    lateness::replay_late(dir.path());
    let got = lateness::read(dir.path());
    lateness::assert_truth(&got, &lateness::truth(&input, Shape::Tumbling, false), "after the killed replays");
    record(Row {
        scenario: "SIGKILL during weir replay --late",
        runs: kills,
        events: late_before as u64,
        tally: &faults::Tally::default(),
        recover: None,
        note: format!(
            "{late_before} late records; {left} still to replay after the kills{}",
            if finished { "; one replay finished before its kill" } else { "" }
        ),
    });
    assert!(
        kills > 0 && left < late_before,
        "the kills must land mid-replay: {kills} kills, {left} of {late_before} left"
    );
}

/// SIGKILLs in the first moments of a run that must migrate `weir_window_state` to a
/// partial state per partition (an older weir's table): the migration is one transaction,
/// so each kill leaves the old table or the new one, and the run that follows is exact.
#[test]
fn sigkills_during_a_sink_migration_leave_the_old_table_or_the_new() {
    use weir_tests::lateness::{self, Shape};
    let _one = faults::serial();
    let input = lateness::random(37, 20_000);
    let (first, second) = input.split_at(10_000);
    let dir = lateness::setup(Shape::Tumbling, first);
    lateness::run(dir.path(), 1024);
    let db = dir.path().join("out.db");
    let old_key = |db: &Path| -> bool {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.query_row(
            "SELECT pk = 0 FROM pragma_table_info('weir_window_state') WHERE name = 'source_partition'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let mut rng = weir_tests::lateness::Rng(0x3e9);
    let (mut kills, mut before) = (0u64, 0u64);
    for _ in 0..faults::size(6, 30) {
        // An older weir's table: the same columns, keyed without the partition.
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(
                "BEGIN; ALTER TABLE weir_window_state RENAME TO before_partials; DROP INDEX IF EXISTS weir_window_state_by_key; \
                 CREATE TABLE weir_window_state (pipeline TEXT NOT NULL, window_start INTEGER NOT NULL, \
                 window_end INTEGER NOT NULL, key TEXT NOT NULL, source_partition INTEGER NOT NULL, state BLOB NOT NULL, \
                 revision INTEGER NOT NULL, is_final INTEGER NOT NULL, PRIMARY KEY (pipeline, window_start, window_end, key)); \
                 INSERT INTO weir_window_state SELECT * FROM before_partials; DROP TABLE before_partials; \
                 CREATE INDEX weir_window_state_by_key ON weir_window_state (pipeline, key, window_start); COMMIT;",
            )
            .unwrap();
        let args = ["run", "p.toml", "--until-idle", "200ms", "--quiet", "--no-admin"];
        let mut host = Reaped(lateness::weir(dir.path(), &args).spawn().unwrap());
        std::thread::sleep(Duration::from_millis(rng.below(120)));
        let _ = host.kill();
        host.wait().unwrap();
        kills += 1;
        before += u64::from(old_key(&db));
        // Left as the old table or the new one, never between: both read back whole.
        assert!(!lateness::read(dir.path()).rows.is_empty());
    }
    let mut file = std::fs::OpenOptions::new().append(true).open(dir.path().join("input/trips.jsonl")).unwrap();
    std::io::Write::write_all(&mut file, lateness::file(second).as_bytes()).unwrap();
    lateness::run(dir.path(), 1024);
    assert!(!old_key(&db), "the last run migrated the table");
    let got = lateness::read(dir.path());
    lateness::assert_truth(&got, &lateness::truth(&input, Shape::Tumbling, true), "after the killed migrations");
    record(Row {
        scenario: "SIGKILL during a sink migration (SQLite)",
        runs: kills,
        events: input.len() as u64,
        tally: &faults::Tally::default(),
        recover: None,
        note: format!("{before} of {kills} kills struck before the migration committed"),
    });
}

/// A stream whose records are mostly broken opens the circuit breaker; the host is
/// SIGKILLed while it is open, again and again, and started again: the run ends exact.
#[test]
fn sigkills_while_the_breaker_is_open_lose_nothing() {
    use weir_tests::lateness::{self, Line, Shape};
    let _one = faults::serial();
    // 1,500 broken records, then ordinary ones.
    let mut input: Vec<Line> = Vec::new();
    let mut offset = 0;
    for _ in 0..1500 {
        let text = "{\"city\":\"Oslo\",\"fare\":\n".to_string();
        input.push(Line { offset, text: text.clone(), event: None });
        offset += text.len() as i64;
    }
    for mut line in lateness::random(41, 20_000) {
        line.offset += offset;
        input.push(line);
    }
    let dir = lateness::setup(Shape::Tumbling, &input);
    let mut text = std::fs::read_to_string(dir.path().join("p.toml")).unwrap();
    text.push_str("\n[breaker]\ndead_letter_rate = 0.5\nmin_records = 1000\ncooldown = \"2s\"\n");
    std::fs::write(dir.path().join("p.toml"), text).unwrap();
    let mut kills = 0;
    for _ in 0..faults::size(3, 20) {
        let addr = weir_tests::free_addr();
        // Batches small enough that the broken records alone fill the first ones.
        let args = ["run", "p.toml", "--until-idle", "5s", "--quiet", "--batch", "256", "--admin", &addr];
        let mut host =
            Reaped(lateness::weir(dir.path(), &args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(30);
        let open = loop {
            if host.try_wait().unwrap().is_some() {
                let mut log = String::new();
                std::io::Read::read_to_string(&mut host.stderr.take().unwrap(), &mut log).unwrap();
                assert!(kills > 0, "the run ended before its breaker opened: {log}");
                break false;
            }
            let (code, why) = readiness(&addr);
            if code == 503 && why.contains("circuit breaker open") {
                break true;
            }
            assert!(Instant::now() < deadline, "the breaker neither opened nor did the run end");
            std::thread::sleep(Duration::from_millis(20));
        };
        if !open {
            break;
        }
        host.kill().unwrap();
        host.wait().unwrap();
        kills += 1;
    }
    lateness::run(dir.path(), 1024);
    let got = lateness::read(dir.path());
    lateness::assert_truth(&got, &lateness::truth(&input, Shape::Tumbling, true), "after kills with the breaker open");
    record(Row {
        scenario: "SIGKILL while the breaker is open",
        runs: kills,
        events: input.len() as u64,
        tally: &faults::Tally::default(),
        recover: None,
        note: "each restart resumes from the sink; the breaker opens again on what it re-reads".into(),
    });
    assert!(kills > 0, "no kill struck an open breaker");
}
