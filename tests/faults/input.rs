//! Fuzzed input through the rides pipeline, and retention of weir's own records.

use super::*;

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
/// records is the figure. `broken` records among `clean` ones, at most `huge` of them over
/// the record limit.
fn fuzzed(scenario: &'static str, (broken, clean, huge): (u64, u64, u64)) {
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
        scenario,
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

/// A million fuzzed records in a stream of ten million: the share of bad input the hostile
/// benchmark uses (docs/BENCHMARKS.md), and the measure of the 2× target.
#[test]
fn fuzzed_records_one_in_ten_each_become_a_dead_letter_at_their_offset() {
    let _one = faults::serial();
    fuzzed(
        "fuzzed records, 1 in 10 (13 kinds of damage)",
        faults::size((30_000, 270_000, 1), (1_000_000, 9_000_000, 3)),
    );
}

/// The worst case: four records in five broken, so that the dead letters' rows dominate.
#[test]
fn fuzzed_records_four_in_five_each_become_a_dead_letter_at_their_offset() {
    let _one = faults::serial();
    fuzzed("fuzzed records, 4 in 5 (13 kinds of damage)", faults::size((30_000, 7_500, 1), (1_000_000, 250_000, 3)));
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
                let mut file =
                    std::fs::OpenOptions::new().append(true).open(dir.path().join("input/trips.jsonl")).unwrap();
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
