//! A late-data workload shared by the SQLite and PostgreSQL tests: trips in one file with
//! late, early and malformed records, and what the lateness rule of `docs/PIPELINES.md`
//! makes of them, computed here without weir. The rule: a partition's clock is the
//! largest event time of its accepted records so far; an event is late for a window
//! (for sessions, for its own span `[t, t + gap)`) that ended at or before the clock
//! minus the lateness. Only accepted records move the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use rusqlite::Connection;

use crate::{plugin_dir, weir_bin};

/// The lateness every pipeline of this workload allows.
pub const LATENESS_MS: i64 = 2 * 60_000;
const MINUTE: i64 = 60_000;
const START: i64 = 1_714_550_400_000; // 2024-05-01T08:00:00Z

/// The window shapes the workload is run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// 1-minute tumbling windows.
    Tumbling,
    /// 5-minute windows every minute.
    Hopping,
    /// Sessions with a 4-minute gap.
    Session,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 3] = [Shape::Tumbling, Shape::Hopping, Shape::Session];

    /// The `[window]` section.
    pub fn section(self) -> &'static str {
        match self {
            Shape::Tumbling => "kind = \"tumbling\"\nsize = \"1m\"",
            Shape::Hopping => "kind = \"hopping\"\nsize = \"5m\"\nslide = \"1m\"",
            Shape::Session => "kind = \"session\"\ngap = \"4m\"",
        }
    }

    fn windows(self, t: i64) -> Vec<(i64, i64)> {
        match self {
            Shape::Tumbling => vec![(t.div_euclid(MINUTE) * MINUTE, t.div_euclid(MINUTE) * MINUTE + MINUTE)],
            Shape::Hopping => {
                let last = t.div_euclid(MINUTE) * MINUTE;
                (0..5).rev().map(|k| (last - k * MINUTE, last - k * MINUTE + 5 * MINUTE)).collect()
            }
            Shape::Session => vec![(t, t + 4 * MINUTE)],
        }
    }
}

/// The pipeline over `input/` into `trips`, with `shape` and the sink at `url`.
pub fn pipeline(shape: Shape, url: &str, checkpoint: &str) -> String {
    format!(
        r#"
name = "late-trips"

[source]
kind = "files"
path = "input"

[parser]
plugin = "json_parser"
config.event_time = "event_time"
config.fields = [
  {{ name = "city", type = "text" }},
  {{ name = "fare", type = "float64" }},
  {{ name = "event_time", type = "timestamp", format = "iso8601" }},
]

[aggregator]
plugin = "window_stats"
config.count = "trips"
config.metrics = [{{ column = "fare", stats = ["sum"] }}]

[window]
{}
key = ["city"]

[watermark]
lateness = "2m"

[sink]
url = "{url}"
table = "trips"

[checkpoint]
interval = "{checkpoint}"
"#,
        shape.section()
    )
}

/// One line of input: its byte offset, and the event if the record is accepted.
#[derive(Clone, Debug)]
pub struct Line {
    /// The bytes, with the newline.
    pub text: String,
    /// Where it starts in the file: its offset in the sink.
    pub offset: i64,
    /// City, whole-number fare (sums stay exact) and event time, if weir must accept it.
    pub event: Option<(String, i64, i64)>,
}

/// What a sink must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Truth {
    /// (window start, window end, city) → (trips, sum of fares).
    pub rows: BTreeMap<(i64, i64, String), (i64, i64)>,
    /// (offset, window start) of each late (record, window).
    pub late: BTreeSet<(i64, i64)>,
    /// Offsets of the dead letters.
    pub dead: BTreeSet<i64>,
}

/// A deterministic generator.
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Lays `events` out as lines with their offsets; `None` is a malformed record.
pub fn lines(events: &[Option<(&str, i64, i64)>]) -> Vec<Line> {
    let mut offset = 0;
    events
        .iter()
        .map(|e| {
            let text = match e {
                Some((city, fare, t)) => format!(
                    "{{\"city\":\"{city}\",\"fare\":{fare},\"event_time\":\"{}\"}}\n",
                    weir_sdk::time::format_iso8601(*t)
                ),
                None => "{\"city\":\"Oslo\",\"fare\":\n".to_string(),
            };
            let line = Line { offset, event: e.map(|(c, f, t)| (c.to_string(), f, t)), text };
            offset += line.text.len() as i64;
            line
        })
        .collect()
}

/// `n` random records: mostly in order a few seconds apart, some out of order within the
/// lateness, some 3 to 20 minutes late, some a minute or two early, some malformed, and
/// some without a city at a time far in the future (which must not move the clock).
pub fn random(seed: u64, n: usize) -> Vec<Line> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let cities = ["Oslo", "Lima", "Pune", "Kyiv"];
    let mut t = START;
    let mut lines = Vec::with_capacity(n);
    let mut offset = 0;
    for _ in 0..n {
        t += rng.below(8_000) as i64;
        let city = cities[rng.below(4) as usize];
        let fare = 1 + rng.below(90) as i64;
        let (text, event) = match rng.below(100) {
            0..=3 => ("{\"city\":\"Oslo\",\"fare\":\n".to_string(), None),
            // No city, or a city but a clock years ahead (beyond `max_ahead`): both dead letters.
            4 => (format!("{{\"fare\":{fare},\"event_time\":\"2030-01-01T00:00:00Z\"}}\n"), None),
            5 => (format!("{{\"city\":\"{city}\",\"fare\":{fare},\"event_time\":\"2030-01-01T00:00:00Z\"}}\n"), None),
            k => {
                let at = match k {
                    6..=15 => t - rng.below(LATENESS_MS as u64) as i64,
                    16..=23 => t - 3 * MINUTE - rng.below(17 * MINUTE as u64) as i64,
                    24..=27 => t + MINUTE + rng.below(MINUTE as u64) as i64,
                    _ => t,
                };
                let text = format!(
                    "{{\"city\":\"{city}\",\"fare\":{fare},\"event_time\":\"{}\"}}\n",
                    weir_sdk::time::format_iso8601(at)
                );
                (text, Some((city.to_string(), fare, at)))
            }
        };
        lines.push(Line { offset, text, event });
        offset += lines.last().map_or(0, |l: &Line| l.text.len() as i64);
    }
    lines
}

/// The file's contents.
pub fn file(lines: &[Line]) -> String {
    lines.iter().map(|l| l.text.as_str()).collect()
}

/// What the rule makes of `lines` (one partition) with `shape`; with `lateness` false,
/// the result of a run in which nothing is late (what a replay of the late lane must
/// reach).
pub fn truth(lines: &[Line], shape: Shape, lateness: bool) -> Truth {
    let mut out = Truth::default();
    let mut clock: Option<i64> = None;
    let mut on_time: Vec<(String, i64, i64)> = Vec::new();
    for line in lines {
        let Some((city, fare, t)) = &line.event else {
            out.dead.insert(line.offset);
            continue;
        };
        clock = Some(clock.map_or(*t, |c| c.max(*t)));
        let mark = clock.map(|c| c - LATENESS_MS).filter(|_| lateness);
        for (start, end) in shape.windows(*t) {
            if mark.is_some_and(|m| end <= m) {
                out.late.insert((line.offset, start));
            } else if shape == Shape::Session {
                on_time.push((city.clone(), *fare, *t));
            } else {
                let row = out.rows.entry((start, end, city.clone())).or_default();
                row.0 += 1;
                row.1 += fare;
            }
        }
    }
    if shape == Shape::Session {
        // Sort each city's events and split where the next starts a gap or more after the last.
        let gap = 4 * MINUTE;
        on_time.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
        let mut current: Option<(String, i64, i64, i64, i64)> = None; // city, first, last, trips, sum
        for (city, fare, t) in on_time {
            match &mut current {
                Some(s) if s.0 == city && t - s.2 < gap => {
                    s.2 = t;
                    s.3 += 1;
                    s.4 += fare;
                }
                _ => {
                    if let Some(s) = current.take() {
                        out.rows.insert((s.1, s.2 + gap, s.0), (s.3, s.4));
                    }
                    current = Some((city, t, t, 1, fare));
                }
            }
        }
        if let Some(s) = current {
            out.rows.insert((s.1, s.2 + gap, s.0), (s.3, s.4));
        }
    }
    out
}

// Running the workload: a directory holding `input/trips.jsonl` and `p.toml`.

/// A directory with the pipeline of `shape` over one file of `lines`, into SQLite.
pub fn setup(shape: Shape, lines: &[Line]) -> tempfile::TempDir {
    setup_into(shape, lines, "sqlite://out.db")
}

/// The same into the sink at `url`.
pub fn setup_into(shape: Shape, lines: &[Line], url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("input")).unwrap();
    std::fs::write(dir.path().join("input/trips.jsonl"), file(lines)).unwrap();
    std::fs::write(dir.path().join("p.toml"), pipeline(shape, url, "20ms")).unwrap();
    dir
}

/// `weir ARGS` in `dir`, with the built plugins.
pub fn weir(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(weir_bin());
    cmd.current_dir(dir).args(args).env("WEIR_PLUGIN_DIR", plugin_dir());
    cmd
}

fn run_args(batch: usize) -> Vec<String> {
    ["run", "p.toml", "--until-idle", "200ms", "--quiet", "--no-admin", "--batch"]
        .iter()
        .map(|s| s.to_string())
        .chain([batch.to_string()])
        .collect()
}

/// Runs the pipeline to the end with `batch`.
pub fn run(dir: &Path, batch: usize) {
    let args = run_args(batch);
    let out = weir(dir, &args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `weir replay p.toml --late` in `dir`; its summary.
pub fn replay_late(dir: &Path) -> String {
    let out = weir(dir, &["replay", "p.toml", "--late", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the sink holds, in the shape of [`Truth`].
pub fn read(dir: &Path) -> Truth {
    let conn = Connection::open(dir.join("out.db")).unwrap();
    let ms = |text: String| weir_sdk::time::parse_iso8601(text.as_bytes()).unwrap();
    let mut out = Truth::default();
    let mut stmt = conn.prepare("SELECT window_start, window_end, city, trips, sum_fare FROM trips").unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(((ms(r.get(0)?), ms(r.get(1)?), r.get::<_, String>(2)?), (r.get(3)?, r.get::<_, f64>(4)? as i64)))
        })
        .unwrap();
    for row in rows {
        let (key, value) = row.unwrap();
        assert!(out.rows.insert(key.clone(), value).is_none(), "two rows for {key:?}");
    }
    let mut stmt = conn.prepare("SELECT source_offset, window_start FROM weir_late_events").unwrap();
    for row in stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, ms(r.get(1)?)))).unwrap() {
        assert!(out.late.insert(row.unwrap()), "a late (record, window) stored twice");
    }
    let mut stmt = conn.prepare("SELECT source_offset FROM weir_dead_letters").unwrap();
    for row in stmt.query_map([], |r| r.get::<_, i64>(0)).unwrap() {
        assert!(out.dead.insert(row.unwrap()), "a dead letter stored twice");
    }
    out
}

/// Panics, naming the first differences, unless `got` is `want`.
pub fn assert_truth(got: &Truth, want: &Truth, what: &str) {
    assert_eq!(got.dead, want.dead, "{what}: dead letters");
    assert_eq!(got.late, want.late, "{what}: the late lane");
    let differ: Vec<_> = want
        .rows
        .iter()
        .filter(|(k, v)| got.rows.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k:?}: want {v:?}, got {:?}", got.rows.get(k)))
        .chain(got.rows.keys().filter(|k| !want.rows.contains_key(*k)).map(|k| format!("{k:?}: not wanted")))
        .take(10)
        .collect();
    assert!(differ.is_empty(), "{what}: {} rows differ, e.g. {differ:#?}", differ.len());
}

/// What a PostgreSQL sink holds, in the shape of [`Truth`].
pub fn read_postgres(client: &mut postgres::Client) -> Truth {
    let mut out = Truth::default();
    let ms = "(extract(epoch FROM window_start) * 1000)::bigint";
    let sql = format!("SELECT {ms}, (extract(epoch FROM window_end) * 1000)::bigint, city, trips, sum_fare FROM trips");
    for r in client.query(&sql, &[]).unwrap() {
        let key = (r.get(0), r.get(1), r.get(2));
        assert!(out.rows.insert(key, (r.get(3), r.get::<_, f64>(4) as i64)).is_none(), "two rows for a window");
    }
    for r in client.query(&format!("SELECT source_offset, {ms} FROM weir_late_events"), &[]).unwrap() {
        assert!(out.late.insert((r.get(0), r.get(1))), "a late (record, window) stored twice");
    }
    for r in client.query("SELECT source_offset FROM weir_dead_letters", &[]).unwrap() {
        assert!(out.dead.insert(r.get(0)), "a dead letter stored twice");
    }
    out
}

/// The four numbers of `weir run`'s summary: records read, windowed, dead letters, late.
pub fn summary_counts(stdout: &str) -> [u64; 4] {
    let line = stdout.lines().next().unwrap();
    let number = |after: &str| -> u64 {
        let at = line.find(after).unwrap_or_else(|| panic!("no {after:?} in {line}"));
        line[..at].rsplit([' ', '(']).find(|w| !w.is_empty()).unwrap().parse().unwrap()
    };
    [number(" events in"), number(" windowed"), number(" dead letters"), number(" late")]
}
