//! Hostile input into both sinks: a generated file of 120,000 records, one in ten of them
//! malformed or odd in one of many ways (truncated, wrong types, huge or NUL-laden keys,
//! deep nesting, invalid UTF-8, binary, bad escapes, odd numbers and times, CRLF, no final
//! newline). weir must finish on SQLite and on a real PostgreSQL with the same windows and
//! the same dead letters in each, and every record read is windowed, dead or late.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::Connection;
use weir_tests::lateness::{pipeline, summary_counts, Shape};
use weir_tests::services::Postgres;
use weir_tests::{plugin_dir, weir_bin};

const RECORDS: usize = 120_000;

/// Runs the pipeline into `url`; the summary's records, windowed, dead letters and late.
fn run(dir: &Path, url: &str) -> [u64; 4] {
    std::fs::write(dir.join("p.toml"), pipeline(Shape::Tumbling, url, "1s")).unwrap();
    let out = std::process::Command::new(weir_bin())
        .current_dir(dir)
        .args(["run", "p.toml", "--quiet", "--no-admin"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    summary_counts(&stdout)
}

#[test]
fn a_hostile_file_gives_the_same_windows_and_dead_letters_in_both_sinks() {
    let file = weir_tests::hostile::file(RECORDS, true);
    let lite = tempfile::tempdir().unwrap();
    let pgdir = tempfile::tempdir().unwrap();
    for dir in [&lite, &pgdir] {
        std::fs::create_dir(dir.path().join("input")).unwrap();
        std::fs::write(dir.path().join("input/trips.jsonl"), &file).unwrap();
    }
    let pg = Postgres::start();
    let url = pg.create_database("hostile");

    let counts = run(lite.path(), "sqlite://out.db");
    assert_eq!(counts, run(pgdir.path(), &url), "the summaries of the two sinks");
    let [records, windowed, dead, late] = counts;
    assert_eq!(records, RECORDS as u64);
    assert_eq!(records, windowed + dead + late);
    assert!(dead >= (RECORDS / 10 / 2) as u64, "most odd records are refused: {dead}");

    let conn = Connection::open(lite.path().join("out.db")).unwrap();
    let ms = |text: String| weir_sdk::time::parse_iso8601(text.as_bytes()).unwrap();
    let mut stmt = conn.prepare("SELECT window_start, city, trips, sum_fare FROM trips").unwrap();
    let sqlite_rows: BTreeSet<(i64, String, i64, i64)> = stmt
        .query_map([], |r| Ok((ms(r.get(0)?), r.get(1)?, r.get(2)?, r.get::<_, f64>(3)? as i64)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut stmt = conn.prepare("SELECT source_offset, kind, plugin FROM weir_dead_letters").unwrap();
    let sqlite_dead: BTreeSet<(i64, String, String)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();

    let mut client = pg.client("hostile");
    let pg_rows: BTreeSet<(i64, String, i64, i64)> = client
        .query("SELECT (extract(epoch FROM window_start) * 1000)::bigint, city, trips, sum_fare FROM trips", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, f64>(3) as i64))
        .collect();
    let pg_dead: BTreeSet<(i64, String, String)> = client
        .query("SELECT source_offset, kind, plugin FROM weir_dead_letters", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(sqlite_rows.len(), pg_rows.len());
    assert!(sqlite_rows == pg_rows, "the windows differ between the sinks");
    assert_eq!(sqlite_dead.len() as u64, dead);
    assert!(sqlite_dead == pg_dead, "the dead letters differ between the sinks");
}

/// Broken records read faster than the sink stores them do not pile up for a whole
/// checkpoint interval: past 64 MiB of raw records waiting, the run checkpoints early, so
/// reading waits for the sink instead of filling memory.
#[test]
fn a_flood_of_large_broken_records_is_checkpointed_before_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("input")).unwrap();
    // 200 records of 1 MiB that are not JSON (under max_record_bytes, 4 MiB): 200 MiB.
    let mut file = Vec::with_capacity(201 << 20);
    for _ in 0..200 {
        file.extend(std::iter::repeat_n(b'x', 1 << 20));
        file.push(b'\n');
    }
    std::fs::write(dir.path().join("input/trips.jsonl"), &file).unwrap();
    // An hour's interval: the first checkpoint and the final one are all it would take.
    std::fs::write(dir.path().join("p.toml"), pipeline(Shape::Tumbling, "sqlite://out.db", "1h")).unwrap();
    let out = std::process::Command::new(weir_bin())
        .current_dir(dir.path())
        .args(["run", "p.toml", "--quiet", "--no-admin"])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let conn = Connection::open(dir.path().join("out.db")).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT count(*) FROM weir_dead_letters WHERE length(raw) = 1048576"), 200);
    let checkpoints = count("SELECT count(*) FROM weir_checkpoint_log");
    assert!(checkpoints >= 4, "200 MiB of dead letters in {checkpoints} checkpoints: at most 64 MiB waits");
}
