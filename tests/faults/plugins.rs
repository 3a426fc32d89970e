//! Hostile plugins: the raw-WIT rogue parser around one record of 3,000, and the cost of
//! isolating a looping record.

use super::*;

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
    let letters: BTreeMap<i64, (String, String)> =
        letters.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?)))).unwrap().map(Result::unwrap).collect();
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
        if let Some((kind, _)) = rogue.dead {
            let lane = if kind == "malformed" { &mut want.malformed } else { &mut want.rejected };
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
        note: format!(
            "isolated in {} ms at most, with a {} ms deadline (target: 2 deadlines)",
            worst.as_millis(),
            deadline.as_millis()
        ),
    });
}
