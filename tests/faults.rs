//! The fault suite: weir against kills, outages, hostile input and hostile plugins, each
//! scenario compared with a truth computed without weir (`weir_tests::faults`). Short
//! here, inside `cargo xtask test`; full counts with `cargo xtask faults`, which prints
//! the table that `docs/RELIABILITY.md` records.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir::plugin::{FailureKind, Limits, ParserStage, Plugin, PluginKind, Policy};
use weir_sdk::RawBatch;
use weir_tests::faults::{self, compare, held_postgres, held_sqlite, record, Row};
use weir_tests::group::{self, truth, Truth};
use weir_tests::services::{repo_root, Broker, Postgres};
use weir_tests::{guests, kills, plugin_dir, runtime, weir_bin, Reaped};

const T0: i64 = 1_714_550_400_000;

/// A behaviour of the rogue parser, where it ends up, and what its dead letter must say.
struct Rogue {
    word: &'static str,
    /// Trips it adds to the `Rogue` city's window, when it is counted.
    trips: i64,
    /// The dead letter's kind and a phrase of its reason, when it is one.
    dead: Option<(&'static str, &'static str)>,
}

const fn counted(word: &'static str, trips: i64) -> Rogue {
    Rogue { word, trips, dead: None }
}

const fn dead(word: &'static str, kind: &'static str, says: &'static str) -> Rogue {
    Rogue { word, trips: 0, dead: Some((kind, says)) }
}

const ROGUES: &[Rogue] = &[
    dead("silent", "plugin_failure", "neither an event nor an error"),
    dead("both", "malformed", "only the error counts"),
    // A parser may turn one record into several events: a doubled event is a flat-map.
    counted("double", 2),
    dead("wrong-type", "plugin_failure", "column \"fare\""),
    dead("wrong-length", "plugin_failure", "event_time"),
    dead("bad-index", "plugin_failure", "out of range"),
    dead("bad-utf8", "plugin_failure", "invalid UTF-8"),
    dead("bad-ends", "plugin_failure", "\"city\""),
    dead("nan", "malformed", "NaN in column \"fare\""),
    dead("infinity", "malformed", "inf in column \"fare\""),
    dead("time-max", "rejected", "max_ahead"),
    dead("time-min", "rejected", "before the year 0"),
    dead("huge", "rejected", "max_key_bytes"),
    dead("loop", "plugin_failure", "deadline"),
    dead("alloc", "plugin_failure", "memory cap"),
    dead("recurse", "plugin_failure", "stack overflow"),
    dead("panic", "plugin_failure", "rogue: asked to panic"),
    counted("flood-stdout", 1),
    counted("flood-stderr", 1),
    counted("flood-log", 1),
    dead("probe", "malformed", "0 environment variables; 0 arguments"),
];

fn rogue_pipeline(dir: &Path) {
    std::fs::write(
        dir.join("p.toml"),
        r#"
name = "rogue"

[source]
kind = "files"
path = "input"

[parser]
plugin = "fixture_rogue"

[aggregator]
plugin = "window_stats"
config.count = "trips"
config.metrics = [{ column = "fare", stats = ["sum"] }]

[window]
kind = "tumbling"
size = "1m"
key = ["city"]

[watermark]
lateness = "10m"

[sink]
url = "sqlite://out.db"
table = "rides_city_minute"
"#,
    )
    .unwrap();
}

/// Every way the rogue parser breaks the contract, each once among 3,000 good records (in
/// the full suite, each once per 3,000 of 60,000): the host lives, each rogue record is in
/// the dead letters with a reason that says what the plugin did, the rest is exact, and
/// the floods do not reach the host's log.
#[test]
fn a_plugin_that_breaks_the_contract_costs_the_record_it_breaks_on() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    rogue_pipeline(dir.path());
    std::fs::create_dir(dir.path().join("input")).unwrap();
    let rounds = faults::size(1, 20);
    let mut want = Truth::default();
    let mut expect: BTreeMap<i64, &Rogue> = BTreeMap::new();
    let mut text = Vec::new();
    let mut i = 0i64;
    for _ in 0..rounds {
        for (n, rogue) in ROGUES.iter().enumerate() {
            for k in 0..3000 / ROGUES.len() {
                let offset = text.len() as i64;
                let t = T0 + i * 1000;
                i += 1;
                if k == 50 {
                    expect.insert(offset, rogue);
                    text.extend_from_slice(format!("{}@{t}", rogue.word).as_bytes());
                    if rogue.trips > 0 {
                        let w = want.windows.entry((t.div_euclid(60_000) * 60_000, "Rogue".into())).or_default();
                        *w = (w.0 + rogue.trips, w.1 + rogue.trips as f64);
                    }
                } else {
                    let (city, fare) = (["Oslo", "Lima", "Pune"][(i % 3) as usize], 1 + (i * 7 + n as i64) % 50);
                    text.extend_from_slice(format!("{city},{fare},{t}").as_bytes());
                    let w = want.windows.entry((t.div_euclid(60_000) * 60_000, city.into())).or_default();
                    *w = (w.0 + 1, w.1 + fare as f64);
                }
                text.push(b'\n');
            }
        }
    }
    std::fs::write(dir.path().join("input/records.jsonl"), &text).unwrap();

    let out = Command::new(weir_bin())
        .current_dir(dir.path())
        .args(["run", "p.toml", "--no-admin"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the host must live through every rogue record:\n{log}");
    let flood = log.lines().filter(|l| l.contains("rogue: flood line")).count();
    assert!(flood <= 2 * 50 * rounds as usize, "{flood} flood lines reached the host's log");
    assert!(log.contains("lines dropped"), "a dropped flood is said once: {log}");
    assert!(!log.contains(&"#".repeat(4096)), "a log line is cut short");

    let db = rusqlite::Connection::open(dir.path().join("out.db")).unwrap();
    let mut letters = db.prepare("SELECT source_offset, kind, reason FROM weir_dead_letters").unwrap();
    let letters: BTreeMap<i64, (String, String)> = letters
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (offset, rogue) in &expect {
        match (rogue.dead, letters.get(offset)) {
            (Some((kind, says)), Some((k, reason))) => {
                assert_eq!(k, kind, "{}: {reason}", rogue.word);
                assert!(reason.contains(says), "{}: the reason {reason:?} does not say {says:?}", rogue.word);
            }
            (None, Some(letter)) => panic!("{} is a dead letter, {letter:?}", rogue.word),
            (Some(_), None) => panic!("{} is not in the dead letters", rogue.word),
            (None, None) => {}
        }
    }
    let held = held_sqlite(&dir.path().join("out.db"));
    // Every dead letter is a rogue record: compare the windows, and the letters' places.
    let partition = held.dead.first().map_or(0, |d| d.1);
    for (offset, rogue) in &expect {
        if rogue.dead.is_some() {
            let lane = if rogue.dead.unwrap().0 == "malformed" { &mut want.malformed } else { &mut want.rejected };
            lane.insert((partition, *offset));
        }
    }
    let tally = compare(&held, &want);
    record(Row {
        scenario: "hostile plugin (raw WIT parser, 21 behaviours)",
        runs: expect.len() as u64,
        events: text.iter().filter(|&&b| b == b'\n').count() as u64,
        tally: &tally,
        recover: None,
        note: format!("{flood} of {} flood log lines reached the host log", 20_000 * rounds),
    });
}

/// A record that loops costs two deadlines in all, whatever the batch size: the batch's
/// call, then its own once the batch is run row by row.
#[test]
fn a_looping_record_is_isolated_in_two_deadlines() {
    let _one = faults::serial();
    let deadline = Duration::from_millis(200);
    let component = runtime().load(guests::ROGUE.as_ref(), &Policy::none()).unwrap();
    let limits = Limits { max_memory_bytes: 64 << 20, deadline };
    let mut parser = Plugin::new(component, PluginKind::Parser, "{}", limits).unwrap();
    let mut worst = Duration::ZERO;
    let runs: u64 = faults::size(3, 20);
    for run in 0..runs {
        let at = 1 + (run as usize * 997) % 4095;
        let payloads: Vec<String> =
            (0..4096).map(|i| if i == at { "loop".into() } else { format!("Oslo,1,{}", T0 + i as i64) }).collect();
        let started = Instant::now();
        let parsed = parser.parse(&RawBatch::from_payloads(payloads.iter().map(String::as_bytes)));
        worst = worst.max(started.elapsed());
        assert_eq!(parsed.failures.len(), 1);
        assert_eq!((parsed.failures[0].index as usize, parsed.failures[0].failure.kind()), (at, FailureKind::Timeout));
        assert_eq!(parsed.output.sources.len(), 4095, "every other record is parsed once");
    }
    // The batch's timeout and the loop's each left a trapped instance behind: two deadlines a run.
    assert_eq!(parser.restarts(), 2 * runs, "deadlines paid");
    let tally = faults::Tally::default();
    record(Row {
        scenario: "looping record in a batch of 4,096",
        runs,
        events: runs * 4096,
        tally: &tally,
        recover: Some(worst),
        note: format!("isolated in {} ms at most, with a {} ms deadline (target: 2 deadlines)", worst.as_millis(), deadline.as_millis()),
    });
}

/// The rides files example in follow mode into `url`, checkpointing every 200 ms.
fn files_pipeline(dir: &Path, input: &Path, url: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-files.toml")).unwrap();
    let text = text
        .replace("${INPUT_DIR}", input.to_str().unwrap())
        .replace("${DATABASE_URL}", url)
        .replace("# follow = true", "follow = true")
        .replace("interval = \"1s\"", "interval = \"200ms\"");
    assert!(text.contains("follow = true") && text.contains("200ms"), "{text}");
    let path = dir.join("pipeline-files.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn files_host(pipeline: &Path) -> Reaped {
    files_host_at(pipeline, "--no-admin", "")
}

/// [`files_host`] with `flag` and `value` (`--admin ADDR`).
fn files_host_at(pipeline: &Path, flag: &str, value: &str) -> Reaped {
    let admin: &[&str] = if value.is_empty() { &[flag] } else { &[flag, value] };
    Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--until-idle", "3s", "--quiet", "--batch", "2048"])
            .args(admin)
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// The truth of files written by `kills::write_files`, under the partitions the sink
/// gave the files.
fn files_truth(written: &kills::Written, partitions: &BTreeMap<String, i32>) -> Truth {
    let mut records: Vec<(i32, i64, Vec<u8>)> = written
        .iter()
        .map(|(k, offset, raw)| (partitions[&format!("trips-{k}.jsonl")], *offset, raw.clone()))
        .collect();
    records.sort_by_key(|(p, o, _)| (*p, *o));
    truth(&records)
}

/// SIGKILLs at random moments of a files run into `url`; then a last run to the end.
fn kill_a_files_run(scenario: &str, url: &str, held: impl Fn() -> (faults::Held, Vec<(i32, String)>), committed: impl Fn() -> i64, dir: &Path) {
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

/// `/readyz` of the host at `addr`: its code, or 0 while it does not listen.
fn readyz(addr: &str) -> u16 {
    if std::net::TcpStream::connect(addr).is_err() {
        return 0;
    }
    weir_tests::http_get(addr, "/readyz").0
}

/// The sum of the lags the host at `addr` reports (none while it cannot know them).
fn lag(addr: &str) -> u64 {
    let Some(status) = group::status(addr) else { return 0 };
    status["lags"].as_array().map_or(0, |l| l.iter().filter_map(|p| p[1].as_u64()).sum())
}

/// Polls until `done`, or panics after `within` naming `what`; fails if `host` exits.
fn until(host: &mut Reaped, within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        if let Ok(Some(status)) = host.try_wait() {
            panic!("the host exited with {status} while waiting for {what}");
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A Kafka → PostgreSQL run at a steady rate with `fault` for `hold`, then `heal`:
/// `/readyz` must drop and come back, and the run must end exact. Figures: the time
/// from the heal to ready, to caught up, and the peak lag.
fn outage(scenario: &str, hold: Duration, fault: impl FnOnce(&Broker, &Postgres), heal: impl FnOnce(&Broker, &Postgres)) {
    let dir = tempfile::tempdir().unwrap();
    // A server that keeps what it acknowledged: see `Postgres::start_durable`. weir connects
    // as an ordinary role, which limits and full connection tables bind (a superuser's not).
    let (broker, pg) = (Broker::start(), Postgres::start_durable());
    let mut admin = pg.client("postgres");
    admin.batch_execute("CREATE ROLE etl LOGIN").unwrap();
    admin.batch_execute("CREATE DATABASE outage OWNER etl").unwrap();
    let url = pg.url("outage").replace("weir@", "etl@");
    let pipeline = group::pipeline(dir.path(), "");
    // Input for the whole outage and a while after, at 2,000 events/s.
    let events = (hold.as_secs() + 20) * 2000;
    let mut producer = group::produce(&broker, "trips", "trip", 11, events, "2024-05-01T08:00:00Z", Some(2000));
    let addr = weir_tests::free_addr();
    let mut host = group::host_at(&pipeline, &broker, "trips", &url, "outage", &addr, "3s");
    until(&mut host, Duration::from_secs(60), "ready", || readyz(&addr) == 200);
    until(&mut host, Duration::from_secs(60), "a first commit", || group::committed(&pg, "outage") > 0);

    fault(&broker, &pg);
    let struck = Instant::now();
    until(&mut host, Duration::from_secs(60), "/readyz to drop", || readyz(&addr) == 503);
    let dropped = struck.elapsed();
    let mut peak = 0;
    while struck.elapsed() < hold {
        peak = peak.max(lag(&addr));
        std::thread::sleep(Duration::from_millis(100));
    }
    heal(&broker, &pg);
    let healed = Instant::now();
    until(&mut host, Duration::from_secs(120), "/readyz to return", || {
        peak = peak.max(lag(&addr));
        readyz(&addr) == 200
    });
    let ready = healed.elapsed();
    // Caught up: less than a second of input left to read, as the host reports its lag.
    until(&mut host, Duration::from_secs(120), "catching up", || {
        let now = lag(&addr);
        peak = peak.max(now);
        now < 2000 && readyz(&addr) == 200
    });
    let caught_up = healed.elapsed();
    assert!(producer.wait().unwrap().success(), "weir produce failed");
    let records = group::read_topic(&broker, "trips", events as usize);
    until(&mut host, Duration::from_secs(120), "the last commit", || group::committed(&pg, "outage") >= events as i64);
    group::finish(host, "the host");
    let tally = compare(&held_postgres(&pg, "outage"), &truth(&records));
    record(Row {
        scenario,
        runs: 1,
        events,
        tally: &tally,
        recover: Some(ready),
        note: format!(
            "unready {} ms after the fault; caught up {} ms after the heal; peak lag {peak}",
            dropped.as_millis(),
            caught_up.as_millis()
        ),
    });
}

#[test]
fn postgres_stopped_mid_run_is_waited_out_exactly() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 60));
    outage("PostgreSQL stopped (fast shutdown)", hold, |_, pg| pg.stop(), |_, pg| pg.restart());
}

#[test]
fn postgres_killed_mid_run_is_waited_out_exactly() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 60));
    outage("PostgreSQL killed (-m immediate)", hold, |_, pg| pg.kill(), |_, pg| pg.restart());
}

#[test]
fn a_broker_gone_mid_run_is_waited_out_exactly() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 30));
    outage("broker frozen (SIGSTOP)", hold, |broker, _| broker.freeze(), |broker, _| broker.thaw());
}

/// One of two hosts frozen (SIGSTOP) past its group session, while the other takes its
/// partitions and commits past it; then let go on. Whatever it had not committed must
/// not land over the newer checkpoints: the sink refuses it (fence.rs) and the host
/// stops, naming the partition. The table ends exact.
#[test]
fn a_host_frozen_past_its_session_cannot_write_over_its_successor() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let (broker, pg) = (Broker::start(), Postgres::start());
    let url = pg.create_database("zombie");
    let pipeline = group::pipeline(dir.path(), "");
    let rounds: u64 = faults::size(1, 10);
    // Input for the whole of each round (about 30 s at 2,000 a second): B must still have
    // records to commit once it holds A's partitions, however slowly the hosts start.
    let events = 60_000 * rounds;
    let mut producer = group::produce(&broker, "trips", "trip", 13, events, "2024-05-01T08:00:00Z", Some(2000));
    let (a, b) = (weir_tests::free_addr(), weir_tests::free_addr());
    let mut host_a = group::host_at(&pipeline, &broker, "trips", &url, "zombie", &a, "3s");
    let mut host_b = group::host_at(&pipeline, &broker, "trips", &url, "zombie", &b, "3s");
    let mut fenced = 0;
    let mut recover = Duration::ZERO;
    for _ in 0..rounds {
        until(&mut host_b, Duration::from_secs(60), "both hosts holding partitions", || group::group_ready(&a, 2));
        let before = group::committed(&pg, "zombie");
        until(&mut host_b, Duration::from_secs(60), "a commit", || group::committed(&pg, "zombie") > before);
        weir_tests::services::signal(host_a.id(), "-STOP");
        // Past the 6 s session: the group hands A's partitions to B, which commits them.
        let frozen = Instant::now();
        until(&mut host_b, Duration::from_secs(60), "B holding every partition", || {
            group::status(&b).is_some_and(|s| s["lags"].as_array().is_some_and(|p| p.len() == 6))
        });
        let taken = group::committed(&pg, "zombie");
        until(&mut host_b, Duration::from_secs(60), "B committing", || group::committed(&pg, "zombie") > taken);
        recover = recover.max(frozen.elapsed());
        weir_tests::services::signal(host_a.id(), "-CONT");
        // A read records at 2,000 a second up to its freeze that it had not committed: its
        // next checkpoint, or the one its revocation makes, meets the fence.
        let (ok, _, log) = group::ended(host_a);
        assert!(!ok && log.contains("the sink holds offset"), "A ended otherwise: {log}");
        fenced += 1;
        host_a = group::host_at(&pipeline, &broker, "trips", &url, "zombie", &a, "3s");
    }
    assert!(producer.wait().unwrap().success(), "weir produce failed");
    group::finish(host_a, "A");
    group::finish(host_b, "B");
    let records = group::read_topic(&broker, "trips", events as usize);
    let tally = compare(&held_postgres(&pg, "zombie"), &truth(&records));
    record(Row {
        scenario: "host frozen past its session (zombie), 2 hosts",
        runs: rounds,
        events,
        tally: &tally,
        recover: Some(recover),
        note: format!("{fenced} of {rounds} resumed hosts stopped by the fence"),
    });
}

/// `[retention]` bounds weir's own records in both sinks: the dead letters to their newest
/// five, the late lane to nothing older than now, the checkpoint log to three rows, over
/// three runs that each add a third of the input; the windows are untouched.
#[test]
fn retention_bounds_the_lanes_and_the_checkpoint_log_in_both_sinks() {
    use weir_tests::lateness::{self, Shape};
    let _one = faults::serial();
    let input = lateness::random(23, 3000);
    let mut want = lateness::truth(&input, Shape::Tumbling, true);
    assert!(want.dead.len() > 5 && !want.late.is_empty(), "the input has dead letters and late events to expire");
    want.dead = want.dead.iter().rev().take(5).copied().collect();
    want.late.clear();
    let pg = Postgres::start();
    let postgres = pg.create_database("retention");
    for url in ["sqlite://out.db", postgres.as_str()] {
        let dir = lateness::setup_into(Shape::Tumbling, &input[..1000], url);
        let retention = "\n[retention]\ndead_letters = { rows = 5 }\nlate_events = { age = \"0ms\" }\n\
                         checkpoint_log = { rows = 3 }\nevery = \"1s\"\n";
        let mut text = std::fs::read_to_string(dir.path().join("p.toml")).unwrap();
        text.push_str(retention);
        std::fs::write(dir.path().join("p.toml"), text).unwrap();
        for part in [&input[..1000], &input[1000..2000], &input[2000..]] {
            if part[0].offset > 0 {
                let mut file = std::fs::OpenOptions::new().append(true).open(dir.path().join("input/trips.jsonl")).unwrap();
                std::io::Write::write_all(&mut file, lateness::file(part).as_bytes()).unwrap();
            }
            lateness::run(dir.path(), 64);
        }
        let (got, log) = if url.starts_with("sqlite") {
            let conn = rusqlite::Connection::open(dir.path().join("out.db")).unwrap();
            let log: i64 = conn.query_row("SELECT count(*) FROM weir_checkpoint_log", [], |r| r.get(0)).unwrap();
            (lateness::read(dir.path()), log)
        } else {
            let mut client = pg.client("retention");
            let log: i64 = client.query_one("SELECT count(*) FROM weir_checkpoint_log", &[]).unwrap().get(0);
            (lateness::read_postgres(&mut client), log)
        };
        lateness::assert_truth(&got, &want, url);
        assert_eq!(log, 3, "{url}: checkpoint log rows");
    }
}

/// A tmpfs of `mib` MiB mounted at `at`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(at).output();
        let out = out.expect("running mount");
        assert!(out.status.success(), "mounting a tmpfs (the suite runs as root): {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(at.to_path_buf())
    }

    fn grow(&self, mib: u32) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={mib}m")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "growing the tmpfs: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// SQLite on a full filesystem: the checkpoint that does not fit is refused by the disk,
/// `/readyz` says why, the host retries with backoff, and once there is room the run
/// ends exact.
#[test]
fn sqlite_on_a_full_disk_waits_for_room_and_loses_nothing() {
    use weir_tests::lateness::{self, Line, Shape};
    let _one = faults::serial();
    let mut input = lateness::random(29, 2000);
    // Dead letters keep their raw bytes: these fill a small disk.
    let mut offset = input.iter().map(|l| l.text.len() as i64).sum::<i64>();
    for _ in 0..40 {
        let text = format!("{{\"city\":\"{}\n", "x".repeat(100_000));
        input.push(Line { offset, text: text.clone(), event: None });
        offset += text.len() as i64;
    }
    let want = lateness::truth(&input, Shape::Tumbling, true);
    let dir = lateness::setup_into(Shape::Tumbling, &input, "sqlite://disk/out.db");
    let disk = Tmpfs::mount(&dir.path().join("disk"), 2);
    let text = std::fs::read_to_string(dir.path().join("p.toml")).unwrap();
    std::fs::write(dir.path().join("p.toml"), text.replace("path = \"input\"", "path = \"input\"\nfollow = true")).unwrap();
    let addr = weir_tests::free_addr();
    let mut host = Reaped(
        lateness::weir(dir.path(), &["run", "p.toml", "--until-idle", "2s", "--quiet", "--admin", &addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut why = String::new();
    until(&mut host, Duration::from_secs(60), "/readyz to say the disk is full", || {
        let (code, body) = if readyz(&addr) == 0 { (0, String::new()) } else { weir_tests::http_get(&addr, "/readyz") };
        why = body;
        code == 503
    });
    assert!(why.contains("full"), "{why}");
    let full = Instant::now();
    disk.grow(64);
    until(&mut host, Duration::from_secs(60), "/readyz to return", || readyz(&addr) == 200);
    let recovered = full.elapsed();
    let (ok, _, log) = group::ended(host);
    assert!(ok, "{log}");
    assert!(log.contains("retr"), "the retries are reported: {log}");
    let got = lateness::read(&dir.path().join("disk"));
    lateness::assert_truth(&got, &want, "after the disk had room");
    record(Row {
        scenario: "SQLite on a full filesystem (2 MiB tmpfs)",
        runs: 1,
        events: input.len() as u64,
        tally: &faults::Tally::default(),
        recover: Some(recovered),
        note: format!("/readyz: {}", why.trim()),
    });
}

/// Cuts weir's open connections, so that it connects again under what was just changed.
fn cut_etl(pg: &Postgres) {
    pg.client("postgres")
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'etl'")
        .unwrap();
}

#[test]
fn a_low_statement_timeout_is_retried_until_it_is_raised() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 30));
    let set = |pg: &Postgres, sql: &str| {
        pg.client("postgres").batch_execute(sql).unwrap();
        cut_etl(pg);
    };
    outage(
        "PostgreSQL statement_timeout = 1ms",
        hold,
        |_, pg| set(pg, "ALTER ROLE etl SET statement_timeout = '1ms'"),
        |_, pg| set(pg, "ALTER ROLE etl RESET statement_timeout"),
    );
}

#[test]
fn a_full_connection_table_is_waited_out() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 30));
    let fillers = std::cell::RefCell::new(Vec::new());
    outage(
        "PostgreSQL connection table full",
        hold,
        |_, pg| {
            let connect = || postgres::Client::connect(&pg.url("postgres"), postgres::NoTls);
            let mut fillers = fillers.borrow_mut();
            // Every slot but weir's taken, then weir's cut and its slot taken at once: weir
            // (waiting out its backoff) finds the table full.
            while let Ok(client) = connect() {
                fillers.push(client);
            }
            let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'etl'";
            fillers[0].batch_execute(terminate).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match connect() {
                    Ok(client) => break fillers.push(client),
                    Err(_) => assert!(Instant::now() < deadline, "no slot came free"),
                }
            }
        },
        |_, _| fillers.borrow_mut().clear(),
    );
}

/// Runs the rides files pipeline over `bytes` into SQLite; the wall time and the database.
fn run_file(bytes: &[u8]) -> (Duration, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::write(input.join("trips.jsonl"), bytes).unwrap();
    let pipeline = files_pipeline(dir.path(), &input, "sqlite://out.db");
    let text = std::fs::read_to_string(&pipeline).unwrap().replace("follow = true", "");
    // Most records are broken on purpose: the breaker (which would pause reading for its
    // cooldown, as it should on a real stream this bad) stays out of the way.
    let text = text.replace("interval = \"200ms\"", "interval = \"1s\"") + "\n[breaker]\ndead_letter_rate = 1.0\n";
    std::fs::write(&pipeline, text).unwrap();
    // Built (once) before the clock starts.
    let weir = weir_bin();
    let started = Instant::now();
    let out = Command::new(weir)
        .args(["run", pipeline.to_str().unwrap(), "--no-admin", "--quiet"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "the host must finish on fuzzed input: {}", String::from_utf8_lossy(&out.stderr));
    (took, dir)
}

/// Fuzzed records through the rides pipeline: each broken one is a dead letter at its own
/// offset with a reason (a blank line holds no record and is skipped), the clean ones are
/// windowed exactly, nothing crashes or stalls; the time against a clean file of as many
/// records is the figure.
#[test]
fn fuzzed_records_each_become_a_dead_letter_at_their_offset() {
    let _one = faults::serial();
    let (broken, clean, huge): (u64, u64, u64) = faults::size((30_000, 10_000, 1), (1_000_000, 250_000, 3));
    let fuzzed = weir_tests::fuzz::file(broken, clean, huge, 0xf022);
    let (fuzz_took, dir) = run_file(&fuzzed.bytes);
    let (clean_took, _) = run_file(&weir_tests::fuzz::file(0, broken + clean, 0, 0xc1ea).bytes);

    let db = rusqlite::Connection::open(dir.path().join("out.db")).unwrap();
    let mut letters = db.prepare("SELECT source_offset, reason FROM weir_dead_letters").unwrap();
    let letters: Vec<(i64, String)> =
        letters.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let mut tally = faults::Tally::default();
    let held: std::collections::BTreeSet<i64> = letters.iter().map(|(o, _)| *o).collect();
    tally.duplicated += (letters.len() - held.len()) as u64;
    tally.duplicated += held.difference(&fuzzed.broken).count() as u64;
    tally.lost += fuzzed.broken.difference(&held).count() as u64;
    if let Some((offset, _)) = letters.iter().find(|(_, reason)| reason.trim().is_empty()) {
        tally.differences.push(format!("the dead letter at {offset} gives no reason"));
    }
    let windows = held_sqlite(&dir.path().join("out.db")).windows;
    for (key, &(n, sum)) in &fuzzed.windows {
        let (m, s) = windows.get(key).copied().unwrap_or_default();
        tally.lost += (n - m).max(0) as u64;
        tally.duplicated += (m - n).max(0) as u64;
        if m == n && (s - sum as f64).abs() > 1e-6 {
            tally.differences.push(format!("window {key:?}: fare {s}, want {sum}"));
        }
    }
    tally.duplicated += windows.keys().filter(|k| !fuzzed.windows.contains_key(*k)).count() as u64;
    let kinds: Vec<String> = fuzzed.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    record(Row {
        scenario: "fuzzed records (13 kinds of damage) through the rides pipeline",
        runs: broken,
        events: broken + clean,
        tally: &tally,
        recover: None,
        note: format!(
            "{:.2}× the time of as many clean records ({} ms against {} ms); {}",
            fuzz_took.as_secs_f64() / clean_took.as_secs_f64(),
            fuzz_took.as_millis(),
            clean_took.as_millis(),
            kinds.join(", ")
        ),
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
    let killed =
        kills::kill_loop(kills, 0x5a4b, Duration::from_millis(1000), spawn, || faults::committed_sqlite(&db));
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
    assert!(kills > 0 && left < late_before, "the kills must land mid-replay: {kills} kills, {left} of {late_before} left");
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
        assert!(lateness::read(dir.path()).rows.len() > 0);
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
            if readyz(&addr) == 503 && weir_tests::http_get(&addr, "/readyz").1.contains("circuit breaker open") {
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

/// One of three hosts of a group SIGKILLed at a random moment, again and again, and
/// started again, while the producer goes on: the table ends exact.
#[test]
fn sigkills_of_one_of_three_hosts_lose_and_repeat_nothing() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let (broker, pg) = (Broker::start(), Postgres::start());
    let url = pg.create_database("three");
    let pipeline = group::pipeline(dir.path(), "");
    let (events, kills): (u64, u64) = faults::size((40_000, 2), (500_000, 20));
    // A kill costs the killed host's 6 s session, then a rebalance: about 12 s.
    let rate = (events / (kills * 12 + 10)).max(1000) as u32;
    let mut producer = group::produce(&broker, "trips", "none", 17, events, "2024-05-01T08:00:00Z", Some(rate));
    let addrs: Vec<String> = (0..3).map(|_| weir_tests::free_addr()).collect();
    let start = |i: usize| group::host_at(&pipeline, &broker, "trips", &url, "three", &addrs[i], "3s");
    let mut hosts: Vec<Reaped> = (0..3).map(start).collect();
    let mut rng = weir_tests::lateness::Rng(0x3405);
    let mut recover = Duration::ZERO;
    for _ in 0..kills {
        until(&mut hosts[0], Duration::from_secs(90), "three hosts holding partitions", || {
            addrs.iter().all(|a| group::group_ready(a, 3))
        });
        let before = group::committed(&pg, "three");
        until(&mut hosts[0], Duration::from_secs(60), "a commit", || group::committed(&pg, "three") > before);
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        let victim = rng.below(3) as usize;
        hosts[victim].kill().unwrap();
        hosts[victim].wait().unwrap();
        let killed = Instant::now();
        hosts[victim] = start(victim);
        let taken = group::committed(&pg, "three");
        let survivor = (victim + 1) % 3;
        until(&mut hosts[survivor], Duration::from_secs(90), "the group committing again", || {
            group::committed(&pg, "three") > taken && addrs.iter().all(|a| group::group_ready(a, 3))
        });
        recover = recover.max(killed.elapsed());
    }
    assert!(producer.wait().unwrap().success(), "weir produce failed");
    for (i, host) in hosts.into_iter().enumerate() {
        group::finish(host, &format!("host {i}"));
    }
    let records = group::read_topic(&broker, "trips", events as usize);
    let tally = compare(&held_postgres(&pg, "three"), &truth(&records));
    record(Row {
        scenario: "SIGKILL of one of three hosts (unkeyed topic)",
        runs: kills,
        events,
        tally: &tally,
        recover: Some(recover),
        note: "recovery: from the kill to all three hosts holding partitions and committing".into(),
    });
}

/// What `/proc` says of a process: resident memory (KiB), open files, threads.
fn footprint(pid: u32) -> Option<(u64, usize, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((field("VmRSS:")?, files, field("Threads:")?))
}

/// The soak: the rides pipeline on its built-in producer at 20,000 events a second into
/// SQLite, with a new parser version deployed every `swap_every`; its memory, open files
/// and threads sampled throughout. Resident memory must end within 10% of where it stood
/// after the warm-up (the first fifth, and at least 80 s), open files and threads must not grow, and every
/// event must be in a window, a dead letter or the late lane. `WEIR_SOAK_SECS` sets the
/// length (`cargo xtask soak` runs an hour); 2 min in the short version, 10 min in full.
#[test]
fn a_long_run_with_hot_swaps_stays_flat() {
    let _one = faults::serial();
    let secs: u64 = std::env::var("WEIR_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(faults::size(120, 600));
    let swap_every = Duration::from_secs(if secs >= 1800 { 300 } else { (secs / 8).max(10) });
    let rate = 20_000u64;
    let dir = tempfile::tempdir().unwrap();
    let events = rate * secs;
    let pipeline = weir_tests::rides_pipeline(
        dir.path(),
        &[("events = 1000000", &format!("events = {events}\npace = {rate}")), ("interval = \"1s\"", "interval = \"1s\"")],
    );
    let addr = weir_tests::free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .current_dir(dir.path())
            .args(["run", pipeline.to_str().unwrap(), "--until-idle", "3s", "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    until(&mut host, Duration::from_secs(60), "ready", || readyz(&addr) == 200);
    let started = Instant::now();
    let (mut samples, mut p99s, mut swaps) = (Vec::new(), Vec::new(), 0u64);
    let mut next_swap = started + swap_every;
    while started.elapsed() < Duration::from_secs(secs) {
        if let Some(sample) = footprint(host.id()) {
            samples.push((started.elapsed(), sample));
        }
        if let Some(p99) = group::status(&addr).and_then(|s| s["latency_ms"][1].as_u64()) {
            p99s.push((started.elapsed(), p99));
        }
        if Instant::now() >= next_swap {
            swaps += 1;
            let file = dir.path().join(format!("json_parser_v{swaps}.wasm"));
            std::fs::write(&file, weir_tests::marked(guests::JSON_PARSER, &format!("soak-{swaps}"))).unwrap();
            let (ok, _, why) =
                weir_tests::weir_cli(&addr, &["plugin", "deploy", "--pipeline", "rides", "--stage", "parser", file.to_str().unwrap()]);
            assert!(ok, "deploy {swaps}: {why}");
            next_swap += swap_every;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, _, log) = group::ended(host);
    assert!(ok, "{log}");

    // Warm: the open windows have filled the 10-minute watermark (30 s of wall time at 20
    // s of event time a second), the sink's caches have grown to their size (about 70 s
    // without swaps) and the first swaps (and the compiler's threads) are done.
    let warmed = (secs / 5).max(80).min(secs * 3 / 4);
    let warm = samples.iter().find(|(at, _)| *at >= Duration::from_secs(warmed)).expect("a sample after the warm-up").1;
    let last = samples.last().unwrap().1;
    let peak_rss = samples.iter().map(|(_, s)| s.0).max().unwrap();
    let third = |k: u64| -> u64 {
        let part: Vec<u64> = p99s
            .iter()
            .filter(|(at, _)| *at >= Duration::from_secs(secs * k / 3) && *at < Duration::from_secs(secs * (k + 1) / 3))
            .map(|(_, p)| *p)
            .collect();
        part.iter().copied().max().unwrap_or(0)
    };
    let db = rusqlite::Connection::open(dir.path().join("rides.db")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    let landed = count("SELECT coalesce(sum(trips), 0) FROM rides_city_minute")
        + count("SELECT count(*) FROM weir_dead_letters")
        + count("SELECT count(*) FROM weir_late_events");
    let mut tally = faults::Tally::default();
    tally.lost = events.saturating_sub(landed);
    tally.duplicated = landed.saturating_sub(events);
    let growth = last.0 as f64 / warm.0 as f64 - 1.0;
    if growth > 0.10 {
        tally.differences.push(format!("resident memory grew {:.1}% after the warm-up", growth * 100.0));
    }
    if last.1 > warm.1 + 2 || last.2 > warm.2 + 2 {
        tally.differences.push(format!("open files {} → {}, threads {} → {}", warm.1, last.1, warm.2, last.2));
    }
    record(Row {
        scenario: "soak: producer at 20k events/s into SQLite, hot swaps",
        runs: swaps,
        events,
        tally: &tally,
        recover: None,
        note: format!(
            "{secs} s; RSS {} MiB after warm-up, {} MiB at the end ({:+.1}%), peak {} MiB; open files {} → {}; threads {} → {}; \
             worst p99 by thirds {} / {} / {} ms",
            warm.0 / 1024,
            last.0 / 1024,
            growth * 100.0,
            peak_rss / 1024,
            warm.1,
            last.1,
            warm.2,
            last.2,
            third(0),
            third(1),
            third(2)
        ),
    });
}

/// librdkafka's mock cluster, for what Tansu cannot do: three brokers whose partition
/// leaders move, whose fetches time out, that answer slowly and go down, all while trips
/// arrive; one weir host reads them into PostgreSQL. The table ends exact.
#[test]
fn a_misbehaving_cluster_moves_leaders_times_out_and_lags_and_nothing_is_lost() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let _one = faults::serial();
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("trips", 3, 3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let pg = Postgres::start();
    let url = pg.create_database("mock");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "");
    let (events, rate): (u64, u64) = faults::size((40_000, 2_000), (200_000, 5_000));
    let producing = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let producer: BaseProducer =
                rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
            let mut trips = weir::rides::TripGenerator::new(weir::rides::TripOptions {
                seed: 19,
                late_share: 0.02,
                malformed_share: 0.01,
                ..Default::default()
            });
            let started = Instant::now();
            for i in 0..events {
                let payload = trips.next_event();
                let key = i.to_string();
                let mut record = BaseRecord::to("trips").payload(&payload).key(&key);
                // A full queue (a broker down) is waited out, never dropped.
                while let Err((_, back)) = producer.send(record) {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                producer.poll(Duration::ZERO);
                let due = started + Duration::from_secs_f64((i + 1) as f64 / rate as f64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            producer.flush(Duration::from_secs(120)).unwrap();
        })
    };
    let addr = weir_tests::free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--until-idle", "3s", "--batch", "2048", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("KAFKA_BROKERS", &bootstrap)
            .env("KAFKA_TOPIC", "trips")
            .env("KAFKA_GROUP", "mock")
            .env("DATABASE_URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    until(&mut host, Duration::from_secs(60), "a first commit", || group::committed(&pg, "mock") > 0);
    let mut faults_done = Vec::new();
    let step = |what: &str, faults_done: &mut Vec<String>| faults_done.push(what.to_string());
    // Leaders move round the three brokers, twice.
    for round in 1..=2 {
        for p in 0..3 {
            cluster.partition_leader("trips", p, Some(1 + (p + round) % 3)).unwrap();
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    step("leaders moved twice", &mut faults_done);
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 20];
    cluster.request_errors(RDKafkaApiKey::Fetch, &errors);
    std::thread::sleep(Duration::from_secs(3));
    step("20 fetch timeouts", &mut faults_done);
    for b in 1..=3 {
        cluster.broker_round_trip_time(b, Duration::from_millis(300)).unwrap();
    }
    std::thread::sleep(Duration::from_secs(4));
    for b in 1..=3 {
        cluster.broker_round_trip_time(b, Duration::ZERO).unwrap();
    }
    step("300 ms round trips for 4 s", &mut faults_done);
    cluster.broker_down(2).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    cluster.broker_up(2).unwrap();
    step("broker 2 down for 4 s", &mut faults_done);
    producing.join().unwrap();
    group::finish(host, "the host");
    let records = group::read_topic_at(&bootstrap, "trips", events as usize);
    let tally = compare(&held_postgres(&pg, "mock"), &truth(&records));
    record(Row {
        scenario: "librdkafka MockCluster: leaders move, fetch timeouts, latency, a broker down",
        runs: faults_done.len() as u64,
        events,
        tally: &tally,
        recover: None,
        note: faults_done.join("; "),
    });
}
