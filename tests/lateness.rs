//! Late data and replay, on SQLite and PostgreSQL: which events are late follows one
//! per-record rule, whatever the batch size or where a run was killed; a replay of the
//! late lane leaves exactly the table of a run in which nothing was late; and a replay is
//! refused beside a running pipeline. Every expectation is computed from the input by
//! `weir_tests::lateness`, never from weir's counters.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rusqlite::Connection;
use weir_tests::lateness::{
    self, assert_truth, file, lines, read, read_postgres, replay_late, run, setup, setup_into, truth, weir, Line, Rng,
    Shape,
};
use weir_tests::Reaped;

/// Feeds `lines` to a following run with `batch` in 20 appended chunks, kills the run
/// with SIGKILL right after chunk `at` (wherever it then is), appends the rest, and runs
/// the pipeline again until it has read everything. Only the killed run follows the
/// directory; the file is whole before the second run starts.
fn run_killed(dir: &Path, batch: usize, lines: &[Line], at: usize) {
    let path = dir.join("input/trips.jsonl");
    std::fs::write(&path, "").unwrap();
    let text = std::fs::read_to_string(dir.join("p.toml")).unwrap();
    std::fs::write(dir.join("follow.toml"), text.replace("path = \"input\"", "path = \"input\"\nfollow = true"))
        .unwrap();
    let size = batch.to_string();
    let mut child = Reaped(
        weir(dir, &["run", "follow.toml", "--quiet", "--no-admin", "--batch", &size])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let chunks: Vec<&[Line]> = lines.chunks(lines.len().div_ceil(20)).collect();
    let append = |chunk: &[Line]| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, file(chunk).as_bytes()).unwrap();
    };
    for chunk in &chunks[..=at] {
        append(chunk);
        // Spaced so that the run reads while input arrives, as it would from a live writer.
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(child.0.try_wait().unwrap().is_none(), "a following run ended by itself");
    child.0.kill().unwrap();
    let _ = child.0.wait();
    for chunk in &chunks[at + 1..] {
        append(chunk);
    }
    run(dir, batch);
}

/// Checkpoints committed into the SQLite sink in `dir` (0 before it exists).
fn sqlite_checkpoints(dir: &Path) -> i64 {
    let Ok(conn) = Connection::open_with_flags(dir.join("out.db"), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM weir_checkpoint_log", [], |r| r.get(0)).unwrap_or(0)
}

const T0: i64 = 1_714_550_400_000; // 08:00
const MIN: i64 = 60_000;

/// Defect 1: replaying the late lane multiplied hopping windows, folding each late record
/// into all its windows once per stored row, including those that had counted it on time.
#[test]
fn replaying_hopping_windows_folds_each_record_once_into_the_windows_it_was_late_for() {
    let input = lines(&[
        Some(("Oslo", 10, T0 + 30_000)),
        Some(("Oslo", 10, T0 + 10 * MIN)),
        Some(("Oslo", 10, T0 + 5 * MIN + 30_000)),
    ]);
    let dir = setup(Shape::Hopping, &input);
    run(dir.path(), 1);
    assert_truth(&read(dir.path()), &truth(&input, Shape::Hopping, true), "before the replay");
    let out = replay_late(dir.path());
    assert!(out.starts_with("replayed 1 late events"), "{out}");
    let got = read(dir.path());
    for start in 1..=5 {
        let key = (T0 + start * MIN, T0 + (start + 5) * MIN, "Oslo".to_string());
        assert_eq!(got.rows[&key], (1, 10), "window starting 08:0{start}");
    }
    assert_truth(&got, &truth(&input, Shape::Hopping, false), "after the replay");
}

/// Defect 3: which events were late depended on the batch size. Defect 4: a rejected
/// record (no city, event time in 2030) moved the watermark and made every later event late.
#[test]
fn lateness_is_the_same_for_every_batch_size_and_rejected_records_move_no_clock() {
    let mut events: Vec<Option<(&str, i64, i64)>> = (0..50).map(|i| Some(("Oslo", 1, T0 + i * 6_000))).collect();
    let future = "{\"fare\":1,\"event_time\":\"2030-01-01T00:00:00Z\"}\n";
    events.extend((50..100).map(|i| Some(("Oslo", 1, T0 + i * 6_000))));
    // 20 minutes behind: late with a lateness of 2 minutes, in any batch.
    events.push(Some(("Oslo", 1, T0 - 15 * MIN)));
    let mut input = lines(&events);
    input.insert(50, Line { text: future.into(), offset: 0, event: None });
    let mut offset = 0;
    for line in &mut input {
        line.offset = offset;
        offset += line.text.len() as i64;
    }
    let want = truth(&input, Shape::Tumbling, true);
    assert_eq!((want.late.len(), want.dead.len()), (1, 1));
    for batch in [1, 10, 64, 8192] {
        let dir = setup(Shape::Tumbling, &input);
        run(dir.path(), batch);
        assert_truth(&read(dir.path()), &want, &format!("--batch {batch}"));
    }
}

/// `max_ahead`: an event time far beyond the processing clock is a dead letter that says
/// why, and closes no window.
#[test]
fn an_event_time_beyond_max_ahead_is_a_dead_letter_with_the_reason() {
    let input = lines(&[Some(("Oslo", 1, T0)), Some(("Oslo", 1, 1_900_000_000_000)), Some(("Oslo", 1, T0 + 1_000))]);
    let dir = setup(Shape::Tumbling, &input);
    run(dir.path(), 1);
    let conn = Connection::open(dir.path().join("out.db")).unwrap();
    let (plugin, reason): (String, String) =
        conn.query_row("SELECT plugin, reason FROM weir_dead_letters", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(plugin, "watermark");
    assert!(reason.contains("watermark.max_ahead") && reason.contains("2030-03-17"), "{reason}");
    let trips: i64 = conn.query_row("SELECT trips FROM trips", [], |r| r.get(0)).unwrap();
    assert_eq!(trips, 2, "both on-time events in the 08:00 window, nothing late");
}

/// Defect 5: sessions that a late-arriving but on-time event extended were written as two
/// overlapping rows, and replays could not repair them.
#[test]
fn an_event_that_extends_a_final_session_merges_into_it() {
    let input = lines(&[Some(("d1", 1, T0)), Some(("d1", 1, T0 + 7 * MIN)), Some(("d1", 1, T0 + 3 * MIN))]);
    let dir = setup(Shape::Session, &input);
    run(dir.path(), 1);
    let got = read(dir.path());
    let want = truth(&input, Shape::Session, true);
    assert_eq!(want.rows.len(), 2, "[08:00, 08:07) and [08:07, 08:11)");
    assert_truth(&got, &want, "sessions");
}

/// The property: random input with late, early and malformed records, run with random
/// batch sizes and killed at random points, gives the windows, late lane and dead letters
/// of one uninterrupted `--batch 1` run, which equal the rule's; after `replay --late` the
/// table equals a run in which nothing was late.
#[test]
fn random_batches_and_kills_give_one_result_and_replay_reaches_the_no_lateness_truth() {
    for (i, shape) in Shape::ALL.into_iter().enumerate() {
        let seed = 7 + i as u64;
        let input = lateness::random(seed, 1_200);
        let want = truth(&input, shape, true);
        assert!(want.late.len() > 20 && want.dead.len() > 20, "{shape:?}: the input has late and dead records");
        let reference = setup(shape, &input);
        run(reference.path(), 1);
        assert_truth(&read(reference.path()), &want, &format!("{shape:?}, --batch 1"));

        let mut rng = Rng(seed * 31 + 5);
        for batch in [2 + rng.below(6) as usize, 40 + rng.below(60) as usize] {
            let at = rng.below(19) as usize;
            let dir = setup(shape, &input);
            run_killed(dir.path(), batch, &input, at);
            assert_truth(&read(dir.path()), &want, &format!("{shape:?}, --batch {batch}, killed after chunk {at}"));
        }
        let dir = setup(shape, &input);
        run(dir.path(), 8192);
        assert_truth(&read(dir.path()), &want, &format!("{shape:?}, --batch 8192"));

        replay_late(reference.path());
        let replayed = read(reference.path());
        let mut no_lateness = truth(&input, shape, false);
        no_lateness.dead = want.dead.clone();
        assert_truth(&replayed, &no_lateness, &format!("{shape:?}, after replay --late"));
    }
}

/// The property on PostgreSQL: per shape, a `--batch 1` run, a run killed after a few
/// checkpoints and resumed, and then `replay --late`, each against the rule's truth.
#[test]
fn postgres_gives_the_same_late_lane_and_replays_to_the_no_lateness_truth() {
    let pg = weir_tests::services::Postgres::start();
    for (i, shape) in Shape::ALL.into_iter().enumerate() {
        let seed = 11 + i as u64;
        let input = lateness::random(seed, 1_000);
        let want = truth(&input, shape, true);
        for (n, batch) in [1usize, 5].into_iter().enumerate() {
            let db = format!("late_{i}_{n}");
            let url = pg.create_database(&db);
            let dir = setup_into(shape, &input, &url);
            let what = format!("{shape:?} into PostgreSQL, --batch {batch}");
            if batch == 1 {
                run(dir.path(), batch);
            } else {
                run_killed(dir.path(), batch, &input, 7 + i);
            }
            assert_truth(&read_postgres(&mut pg.client(&db)), &want, &what);
            if batch == 1 {
                replay_late(dir.path());
                let mut no_lateness = truth(&input, shape, false);
                no_lateness.dead = want.dead.clone();
                assert_truth(&read_postgres(&mut pg.client(&db)), &no_lateness, &format!("{what}, replayed"));
            }
        }
    }
}

/// Defect 2: a replay beside a running pipeline folded into the same windows and lost
/// records. Now it is refused, naming the running host, while the run goes on; once the
/// run has stopped (and given up its lease) the replay runs, and nothing is lost.
#[test]
fn a_replay_beside_a_running_pipeline_is_refused_and_loses_nothing() {
    let mut first = lateness::random(3, 300);
    let second = lateness::random(4, 300);
    let dir = setup(Shape::Tumbling, &first);
    let text = std::fs::read_to_string(dir.path().join("p.toml")).unwrap();
    std::fs::write(dir.path().join("p.toml"), text.replace("path = \"input\"", "path = \"input\"\nfollow = true"))
        .unwrap();
    let mut child = Reaped(
        weir(dir.path(), &["run", "p.toml", "--quiet", "--no-admin", "--batch", "16"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    while sqlite_checkpoints(dir.path()) < 2 {
        assert!(child.0.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = weir(dir.path(), &["replay", "p.toml", "--dead-letters", "--quiet"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a replay beside a run must be refused");
    assert!(stderr.contains("is being processed by weir run") && stderr.contains("Stop it first"), "{stderr}");

    // More input arrives after the refused replay; then the run stops cleanly.
    let offset = first.last().map_or(0, |l| l.offset + l.text.len() as i64);
    let mut appended = second.clone();
    for line in &mut appended {
        line.offset += offset;
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.path().join("input/trips.jsonl")).unwrap();
    std::io::Write::write_all(&mut f, file(&appended).as_bytes()).unwrap();
    first.extend(appended);
    let want = truth(&first, Shape::Tumbling, true);
    let wanted_offsets = want.dead.len() as i64;
    loop {
        let conn = Connection::open(dir.path().join("out.db")).unwrap();
        let dead: i64 = conn.query_row("SELECT count(*) FROM weir_dead_letters", [], |r| r.get(0)).unwrap();
        let read: i64 = conn
            .query_row("SELECT max(next_offset) FROM weir_checkpoints", [], |r| r.get::<_, Option<i64>>(0))
            .unwrap()
            .unwrap_or(0);
        if dead == wanted_offsets && read == file(&first).len() as i64 {
            break;
        }
        assert!(child.0.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = Command::new("kill").args(["-INT", &child.0.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert!(child.0.wait().unwrap().success(), "SIGINT ends the run cleanly");
    let leases: i64 = Connection::open(dir.path().join("out.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM weir_hosts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(leases, 0, "a run that stops gives its lease up");

    let out = weir(dir.path(), &["replay", "p.toml", "--dead-letters", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_truth(&read(dir.path()), &want, "after the run and the replay");
}
