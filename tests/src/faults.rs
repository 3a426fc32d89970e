//! The fault suite's harness (`tests/faults.rs`, run in full by `cargo xtask faults`):
//! how big a run is, what a sink holds counted with its duplicates, how that compares
//! with the truth, and the table's rows.
//!
//! The truth is [`crate::group::truth`], computed from the input by the rides rules
//! without weir; what a sink holds is read back by SQL, never from weir's counters.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::group::{Truth, TABLE};
use crate::services::Postgres;

/// Whether this is the full suite (`WEIR_FAULTS=full`, set by `cargo xtask faults`) rather
/// than the short version that runs inside `cargo xtask test`.
pub fn full() -> bool {
    std::env::var("WEIR_FAULTS").is_ok_and(|v| v == "full")
}

/// `short` in the short version, `full` in the full suite.
pub fn size<T>(short: T, full: T) -> T {
    if self::full() {
        full
    } else {
        short
    }
}

/// One scenario at a time: each starts its own services and hosts, and two at once on
/// two cores would measure each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a sink holds: windows, and every dead letter and late event with its kind and
/// place, duplicates kept.
#[derive(Clone, Debug, Default)]
pub struct Held {
    pub windows: BTreeMap<(i64, String), (i64, f64)>,
    pub dead: Vec<(String, i32, i64)>,
    pub late: Vec<(i32, i64)>,
}

/// What a PostgreSQL database holds.
pub fn held_postgres(pg: &Postgres, db: &str) -> Held {
    let mut client = pg.client(db);
    let mut held = Held::default();
    let sql = format!(
        "SELECT (extract(epoch FROM window_start) * 1000)::bigint, city, trips, sum_fare FROM {TABLE} ORDER BY 1, 2"
    );
    for r in client.query(&sql, &[]).unwrap() {
        held.windows.insert((r.get(0), r.get(1)), (r.get(2), r.get(3)));
    }
    for r in client.query("SELECT kind, source_partition, source_offset FROM weir_dead_letters", &[]).unwrap() {
        held.dead.push((r.get(0), r.get(1), r.get(2)));
    }
    for r in client.query("SELECT source_partition, source_offset FROM weir_late_events", &[]).unwrap() {
        held.late.push((r.get(0), r.get(1)));
    }
    held
}

/// What a SQLite database holds.
pub fn held_sqlite(path: &Path) -> Held {
    let db = rusqlite::Connection::open(path).unwrap();
    let mut held = Held::default();
    let sql = format!("SELECT window_start, city, trips, sum_fare FROM {TABLE}");
    let mut windows = db.prepare(&sql).unwrap();
    // SQLite keeps times as ISO 8601 text.
    let ms = |text: String| weir_sdk::time::parse_iso8601(text.as_bytes()).expect("an ISO 8601 window start");
    let rows = windows.query_map([], |r| Ok(((ms(r.get(0)?), r.get(1)?), (r.get(2)?, r.get(3)?)))).unwrap();
    held.windows = rows.map(Result::unwrap).collect();
    let mut dead = db.prepare("SELECT kind, source_partition, source_offset FROM weir_dead_letters").unwrap();
    held.dead = dead.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let mut late = db.prepare("SELECT source_partition, source_offset FROM weir_late_events").unwrap();
    held.late = late.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    held
}

/// The sum of a SQLite sink's committed next offsets (0 before its first checkpoint).
pub fn committed_sqlite(path: &Path) -> i64 {
    let Ok(db) = rusqlite::Connection::open(path) else { return 0 };
    let _ = db.busy_timeout(Duration::from_secs(5));
    db.query_row("SELECT coalesce(sum(next_offset), 0) FROM weir_checkpoints", [], |r| r.get(0)).unwrap_or(0)
}

/// The source partition of each file a files sink has seen, by file name.
pub fn file_partitions(labels: Vec<(i32, String)>) -> BTreeMap<String, i32> {
    labels
        .into_iter()
        .map(|(p, label)| (Path::new(&label).file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect()
}

/// Events lost and duplicated against the truth, over windows, dead letters and the late
/// lane; and the first differences, to name in a failure.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub lost: u64,
    pub duplicated: u64,
    pub differences: Vec<String>,
}

impl Tally {
    pub fn exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.differences.is_empty()
    }

    fn note(&mut self, what: String) {
        if self.differences.len() < 5 {
            self.differences.push(what);
        }
    }

    /// Compares a lane: places wanted once each, places held with their repeats.
    fn lane(&mut self, name: &str, want: &BTreeSet<(i32, i64)>, held: &[(i32, i64)]) {
        let mut seen = BTreeSet::new();
        for at in held {
            if !seen.insert(*at) || !want.contains(at) {
                self.duplicated += 1;
                self.note(format!(
                    "{name}: {at:?} held {}",
                    if want.contains(at) { "twice" } else { "but not wanted" }
                ));
            }
        }
        for at in want.difference(&seen) {
            self.lost += 1;
            self.note(format!("{name}: {at:?} missing"));
        }
    }
}

/// Compares what a sink holds with the truth.
pub fn compare(held: &Held, want: &Truth) -> Tally {
    let mut tally = Tally::default();
    for (key, &(n, sum)) in &want.windows {
        let (m, s) = held.windows.get(key).copied().unwrap_or((0, 0.0));
        if m < n {
            tally.lost += (n - m) as u64;
        } else {
            tally.duplicated += (m - n) as u64;
        }
        if m != n || (s - sum).abs() > 1e-6 * sum.abs().max(1.0) {
            tally.note(format!("window {key:?}: want {n} trips, {sum} fare; held {m}, {s}"));
        }
    }
    for (key, &(m, _)) in held.windows.iter().filter(|(k, _)| !want.windows.contains_key(*k)) {
        tally.duplicated += m as u64;
        tally.note(format!("window {key:?} held with {m} trips, not wanted"));
    }
    let of = |malformed: bool| -> Vec<(i32, i64)> {
        held.dead.iter().filter(|(k, _, _)| (k == "malformed") == malformed).map(|(_, p, o)| (*p, *o)).collect()
    };
    tally.lane("malformed", &want.malformed, &of(true));
    tally.lane("rejected", &want.rejected, &of(false));
    tally.lane("late", &want.late, &held.late);
    tally
}

/// One row of the suite's table.
#[derive(Debug)]
pub struct Row<'a> {
    pub scenario: &'a str,
    /// Faults injected (kills, outages, hostile records).
    pub runs: u64,
    /// Input records.
    pub events: u64,
    pub tally: &'a Tally,
    /// The longest time from a fault's end to the pipeline being back (ready, or
    /// committing again), when the scenario measures one.
    pub recover: Option<Duration>,
    /// A figure of the scenario's own (peak lag, isolation time, ...).
    pub note: String,
}

/// Where the rows of this run go: `WEIR_FAULTS_REPORT`, else `target/faults.jsonl`.
pub fn report_path() -> PathBuf {
    std::env::var_os("WEIR_FAULTS_REPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::services::repo_root().join("target/faults.jsonl"))
}

/// Appends `row` to the report and prints it; then fails the test if the row is not exact.
pub fn record(row: Row<'_>) {
    let line = serde_json::json!({
        "scenario": row.scenario,
        "size": if full() { "full" } else { "short" },
        "runs": row.runs,
        "events": row.events,
        "lost": row.tally.lost,
        "duplicated": row.tally.duplicated,
        "recover_ms": row.recover.map(|d| d.as_millis() as u64),
        "note": row.note,
        "result": if row.tally.exact() { "pass" } else { "FAIL" },
    });
    eprintln!("fault suite: {line}");
    let path = report_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    writeln!(file, "{line}").unwrap();
    assert!(
        row.tally.exact(),
        "{}: {} lost, {} duplicated; {:?}",
        row.scenario,
        row.tally.lost,
        row.tally.duplicated,
        row.tally.differences
    );
}
