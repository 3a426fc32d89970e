//! A session-window workload shared by the SQLite and PostgreSQL tests: drivers' trips
//! that arrive out of order (within the lateness) in two halves, and the sessions a
//! sort-and-split computes from them, independently of weir.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::{plugin_dir, weir_bin};

/// The pipeline: JSON-lines files in `input/` into `driver_sessions`, 5-minute gap,
/// checkpointing after every batch so that sessions are retracted across checkpoints.
pub const PIPELINE: &str = r#"
name = "driver-sessions"

[source]
kind = "files"
path = "input"

[parser]
plugin = "json_parser"
config.event_time = "event_time"
config.fields = [
  { name = "driver_id", type = "text" },
  { name = "fare", type = "float64" },
  { name = "event_time", type = "timestamp", format = "iso8601" },
]

[aggregator]
plugin = "window_stats"
config.count = "trips"
config.metrics = [{ column = "fare", stats = ["sum"] }]

[window]
kind = "session"
gap = "5m"
key = ["driver_id"]

[watermark]
lateness = "10m"

[sink]
url = "${DATABASE_URL:-sqlite://sessions.db}"
table = "driver_sessions"

[checkpoint]
interval = "1ms"
"#;

/// One session row: start, end, driver, trips, sum of fares.
pub type Session = (i64, i64, String, i64, f64);

/// The two halves of the stream, as JSON lines, and the sessions they make.
pub struct Stream {
    /// The first half.
    pub first: String,
    /// The second half.
    pub second: String,
    /// The sessions, ordered by start and driver.
    pub want: Vec<Session>,
}

/// The stream. Per driver, trips 30 s to 4 min apart, now and then a break of 6 to 20
/// minutes; more than ten sessions have trips in both halves.
pub fn stream() -> Stream {
    const GAP: i64 = 5 * 60_000;
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut events: Vec<(i64, String, f64)> = Vec::new();
    for d in 0..30 {
        let mut t = 1_714_521_600_000 + next(600_000) as i64;
        for _ in 0..80 {
            t += if next(8) == 0 { 360_000 + next(840_000) } else { 30_000 + next(210_000) } as i64;
            events.push((t, format!("d{d:02}"), (100 + next(5_000)) as f64 / 100.0));
        }
    }
    // Out of order by up to 8 minutes: never behind the 10-minute lateness.
    let mut arrival: Vec<(i64, usize)> =
        events.iter().enumerate().map(|(i, e)| (e.0 + next(480_000) as i64, i)).collect();
    arrival.sort();
    let line = |&(_, i): &(i64, usize)| {
        let (t, driver, fare) = &events[i];
        format!(
            "{{\"driver_id\":\"{driver}\",\"fare\":{fare},\"event_time\":\"{}\"}}\n",
            weir_sdk::time::format_iso8601(*t)
        )
    };
    let (first, second) = arrival.split_at(arrival.len() / 2);
    let (first_text, second_text) = (first.iter().map(line).collect(), second.iter().map(line).collect());

    // The sessions, by sorting each driver's trips and splitting at the gap.
    let mut by_driver: BTreeMap<&str, Vec<(i64, f64, bool)>> = BTreeMap::new();
    for (n, &(_, i)) in arrival.iter().enumerate() {
        by_driver.entry(&events[i].1).or_default().push((events[i].0, events[i].2, n < first.len()));
    }
    let mut want: Vec<(i64, i64, String, i64, f64)> = Vec::new();
    let mut spanning = 0;
    for (driver, mut trips) in by_driver {
        trips.sort_by_key(|t| t.0);
        let mut session: Vec<(i64, f64, bool)> = Vec::new();
        let mut close = |session: &mut Vec<(i64, f64, bool)>| {
            if let (Some(a), Some(b)) = (session.first(), session.last()) {
                let sum: f64 = session.iter().map(|t| t.1).sum();
                want.push((a.0, b.0 + GAP, driver.to_string(), session.len() as i64, sum));
                spanning += usize::from(session.iter().any(|t| t.2) && session.iter().any(|t| !t.2));
            }
            session.clear();
        };
        for trip in trips {
            if session.last().is_some_and(|last| trip.0 - last.0 >= GAP) {
                close(&mut session);
            }
            session.push(trip);
        }
        close(&mut session);
    }
    want.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    assert!(spanning > 10, "sessions must span the restart: {spanning}");
    assert!(want.len() > 200, "drivers take breaks: {} sessions", want.len());

    Stream { first: first_text, second: second_text, want }
}

/// Runs the pipeline in `dir` over the first half, then again over both, with `env`.
pub fn run_in_two_halves(dir: &Path, env: &[(&str, String)]) {
    std::fs::create_dir_all(dir.join("input")).unwrap();
    let path = dir.join("sessions.toml");
    std::fs::write(&path, PIPELINE).unwrap();
    let weir = || {
        let out = Command::new(weir_bin())
            .args(["run", path.to_str().unwrap(), "--until-idle", "200ms", "--quiet", "--batch", "64"])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env_remove("DATABASE_URL")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let stream = stream();
    std::fs::write(dir.join("input/a.jsonl"), stream.first).unwrap();
    weir();
    std::fs::write(dir.join("input/b.jsonl"), stream.second).unwrap();
    weir();
}

/// Checks the table's sessions against `want`.
pub fn assert_sessions(mut got: Vec<Session>, want: &[Session]) {
    got.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
    assert_eq!(got.len(), want.len(), "sessions (a stale, unretracted one would add a row)");
    for (g, w) in got.iter().zip(want) {
        assert_eq!((g.0, g.1, &g.2, g.3), (w.0, w.1, &w.2, w.3), "session of {}", w.2);
        assert!((g.4 - w.4).abs() < 1e-6, "sum_fare of {w:?}: {} vs {}", g.4, w.4);
    }
}
