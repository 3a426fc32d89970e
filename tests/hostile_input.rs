//! Hostile input into both sinks: a generated file of 120,000 records, one in ten of them
//! malformed or odd in one of many ways (truncated, wrong types, huge or NUL-laden keys,
//! deep nesting, invalid UTF-8, binary, bad escapes, odd numbers and times, CRLF, no final
//! newline). weir must finish on SQLite and on a real PostgreSQL with the same windows and
//! the same dead letters in each, and every record read is windowed, dead or late.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::Connection;
use weir_tests::lateness::{pipeline, Rng, Shape};
use weir_tests::services::Postgres;
use weir_tests::{plugin_dir, weir_bin};

const RECORDS: usize = 120_000;
const T0: i64 = 1_714_550_400_000;

/// One odd record of kind `k`, about a clean record at `time`.
fn odd(k: u64, time: &str, rng: &mut Rng) -> Vec<u8> {
    let city = ["Oslo", "Lima", "Pune"][rng.below(3) as usize];
    let text = match k {
        0 => format!("{{\"city\":\"{city}\",\"fare\":"),
        1 => format!("{{\"city\":\"{city}\",\"fare\":\"twelve\",\"event_time\":\"{time}\"}}"),
        2 => format!("{{\"city\":42,\"fare\":1,\"event_time\":\"{time}\"}}"),
        3 => format!("{{\"city\":\"{}\",\"fare\":1,\"event_time\":\"{time}\"}}", "x".repeat(5_000)),
        4 => format!("{{\"city\":\"Nul\\u0000City\",\"fare\":1,\"event_time\":\"{time}\"}}"),
        5 => format!(
            "{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"{time}\",\"deep\":{}1{}}}",
            "[".repeat(300),
            "]".repeat(300)
        ),
        6 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"{time}\",\"note\":\"\\q\"}}"),
        7 => format!("{{\"city\":\"{city}\",\"fare\":1e999,\"event_time\":\"{time}\"}}"),
        8 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"2024-02-30T00:00:00Z\"}}"),
        9 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"{}\"}}", time.replace('Z', "+99:99")),
        10 => format!("{{\"fare\":1,\"event_time\":\"{time}\"}}"),
        11 => format!("{{\"city\":\"{city}\",\"fare\":-5,\"event_time\":\"{time}\"}}"),
        12 => format!("[\"{city}\",1,\"{time}\"]"),
        13 => "null".to_string(),
        14 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"2030-01-01T00:00:00Z\"}}"),
        15 => {
            let mut bytes = format!("{{\"city\":\"Os").into_bytes();
            bytes.extend_from_slice(&[0xff, 0xfe]);
            bytes.extend_from_slice(format!("lo\",\"fare\":1,\"event_time\":\"{time}\"}}").as_bytes());
            return bytes;
        }
        16 => return (0..40).map(|_| rng.below(256) as u8).filter(|&b| b != b'\n').collect(),
        17 => {
            let mut bytes = format!("{{\"city\":\"Ra").into_bytes();
            bytes.push(0);
            bytes.extend_from_slice(format!("w\",\"fare\":1,\"event_time\":\"{time}\"}}").as_bytes());
            return bytes;
        }
        18 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"{time}\"}}\r"),
        _ => format!(
            "{{\"city\":\"{city}\",\"fare\":{},\"event_time\":\"{time}\",\"extra\":[1,2,{{\"a\":null}}]}}",
            rng.below(100)
        ),
    };
    text.into_bytes()
}

/// The file: clean trips a second apart, every tenth record odd; no final newline.
fn hostile_file() -> Vec<u8> {
    let mut rng = Rng(0x5eed_1234_5678_9abc);
    let mut out = Vec::new();
    for i in 0..RECORDS {
        let time = weir_sdk::time::format_iso8601(T0 + i as i64 * 1_000);
        if i % 10 == 9 {
            out.extend(odd(rng.below(20), &time, &mut rng));
        } else {
            let city = ["Oslo", "Lima", "Pune", "Kyiv"][rng.below(4) as usize];
            out.extend(
                format!("{{\"city\":\"{city}\",\"fare\":{},\"event_time\":\"{time}\"}}", 1 + rng.below(90)).bytes(),
            );
        }
        if i + 1 < RECORDS {
            out.push(b'\n');
        }
    }
    out
}

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
    let line = stdout.lines().next().unwrap().to_string();
    let number = |after: &str| -> u64 {
        let at = line.find(after).unwrap_or_else(|| panic!("no {after:?} in {line}"));
        line[..at].rsplit([' ', '(']).find(|w| !w.is_empty()).unwrap().parse().unwrap()
    };
    [number(" events in"), number(" windowed"), number(" dead letters"), number(" late")]
}

#[test]
fn a_hostile_file_gives_the_same_windows_and_dead_letters_in_both_sinks() {
    let file = hostile_file();
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
