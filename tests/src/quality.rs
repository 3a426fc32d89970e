//! Helpers of the data-quality tests (`tests/quality.rs`, `tests/canary.rs`): a webhook
//! receiver, the rides example with other sources and sections, a host with its admin
//! API, steady trips with one strange minute, and the example Grafana dashboard's quality
//! queries.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::{plugin_dir, rides_pipeline, weir_bin, Reaped};

/// What a receiver was posted: each post's path and JSON body.
pub type Posts = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

/// A webhook receiver: every POST's path and JSON body, answered 200 (but the first
/// `failing` posts, answered 503 and not kept).
pub fn receiver_failing(failing: usize) -> (String, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let posts: Posts = Arc::default();
    let kept = posts.clone();
    std::thread::spawn(move || {
        let mut failed = 0;
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            if failed < failing {
                failed += 1;
                let _ =
                    reader.get_mut().write_all(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            kept.lock().unwrap().push((path, json));
            let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, posts)
}

pub fn receiver() -> (String, Posts) {
    receiver_failing(0)
}

/// The alerts posted to `path` so far, as (status, labels).
pub fn alerts(posts: &Posts, path: &str) -> Vec<(String, serde_json::Value)> {
    let posts = posts.lock().unwrap();
    let bodies = posts.iter().filter(|(p, _)| p == path);
    let all = bodies.flat_map(|(_, body)| body["alerts"].as_array().cloned().unwrap_or_default());
    all.map(|a| (a["status"].as_str().unwrap_or_default().to_string(), a["labels"].clone())).collect()
}

/// The example Grafana dashboard's SQL over weir's quality tables (panels and the
/// anomaly annotations), by title, as Grafana would send it for pipeline `rides` with
/// every row in the panel's time range.
pub fn grafana_quality_sql() -> Vec<(String, String)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap().iter().flat_map(|p| {
        p["targets"].as_array().into_iter().flatten().map(move |t| (p["title"].as_str().unwrap_or_default(), t))
    });
    let annotations =
        dashboard["annotations"]["list"].as_array().into_iter().flatten().map(|a| ("annotations", &a["target"]));
    panels
        .chain(annotations)
        .filter_map(|(title, t)| Some((title.to_string(), t["rawSql"].as_str()?.to_string())))
        .filter(|(_, sql)| sql.contains("weir_"))
        .map(|(title, sql)| {
            let sql = sql.replace("$pipeline", "rides");
            let sql = sql.replace("$__timeFilter(window_start)", "window_start IS NOT NULL");
            (title, sql)
        })
        .collect()
}

/// Runs the Grafana query titled `title` against `db`.
pub fn grafana(db: &mut postgres::Client, title: &str) -> Vec<postgres::Row> {
    let (_, sql) =
        grafana_quality_sql().into_iter().find(|(t, _)| t == title).unwrap_or_else(|| panic!("no panel {title}"));
    db.query(&sql, &[]).unwrap_or_else(|e| panic!("{title}: {sql}: {e:?}"))
}

/// The rides example with `replace`, and `extra` sections appended.
pub fn rides_with(dir: &std::path::Path, replace: &[(&str, &str)], extra: &str) -> std::path::PathBuf {
    let pipeline = rides_pipeline(dir, replace);
    let text = std::fs::read_to_string(&pipeline).unwrap() + "\n" + extra;
    std::fs::write(&pipeline, text).unwrap();
    pipeline
}

/// The rides example reading (and following) the JSON-lines files of `input`, with
/// `replace` and `extra` as [`rides_with`]'s.
pub fn files_with(
    dir: &std::path::Path,
    input: &std::path::Path,
    replace: &[(&str, &str)],
    extra: &str,
) -> std::path::PathBuf {
    let source = format!("kind = \"files\"\npath = \"{}\"\nformat = \"jsonl\"\nfollow = true", input.display());
    let producer = [
        ("kind = \"producer\"", source.as_str()),
        ("events = 1000000", ""),
        ("rate = 1000", ""),
        ("seed = 42", ""),
        ("late_share = 0.02", ""),
        ("malformed_share = 0.01", ""),
    ];
    rides_with(dir, &[&producer[..], replace].concat(), extra)
}

/// `weir run PIPELINE --quiet --admin ADDR` and `args`, with the built plugins, its
/// stderr to `stderr`.
pub fn weir_host(pipeline: &std::path::Path, addr: &str, args: &[&str], stderr: Stdio) -> Reaped {
    Reaped(
        Command::new(weir_bin())
            .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", addr])
            .args(args)
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap(),
    )
}

/// Trips of `cities` for each minute of `minutes` as JSON lines: about 40 per city, fares
/// uniform in `fares` (deterministic), but for `spike`: Oslo's fares triple and Lima has
/// no trip at all.
pub fn trips(minutes: std::ops::Range<i64>, fares: (f64, f64), spike: Option<i64>) -> String {
    let cities = ["Oslo", "Lima", "Pune", "Austin", "Berlin", "Tokyo"];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ minutes.start as u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut out = String::new();
    for minute in minutes {
        for city in cities {
            if spike == Some(minute) && city == "Lima" {
                continue;
            }
            let n = 35 + (next() * 11.0) as i64;
            for i in 0..n {
                let mut fare = fares.0 + next() * (fares.1 - fares.0);
                if spike == Some(minute) && city == "Oslo" {
                    fare *= 3.0;
                }
                let at = weir_sdk::time::format_iso8601(1_714_521_600_000 + minute * 60_000 + i * 60_000 / n);
                out.push_str(&format!(
                    "{{\"trip_id\":\"t-{minute}-{city}-{i}\",\"city\":\"{city}\",\"driver_id\":\"d\",\"rider_id\":\"r\",\
                     \"fare\":{fare:.2},\"distance_km\":3.5,\"status\":\"completed\",\"event_time\":\"{at}\"}}\n"
                ));
            }
        }
    }
    out
}

/// Deploys the strict validator (it rejects every fare above 40) into the rides
/// pipeline's `validators[0]` at `addr`, past a lenient trial (`--max-error-increase
/// 100`) if `lenient`; panics if the deploy is refused.
pub fn deploy_strict(addr: &str, lenient: bool) {
    let mut args = vec!["plugin", "deploy", "--pipeline", "rides", "--stage", "validators[0]"];
    if lenient {
        args.extend(["--max-error-increase", "100"]);
    }
    args.push(crate::guests::STRICT_VALIDATOR);
    let (ok, _, why) = crate::weir_cli(addr, &args);
    assert!(ok, "{why}");
}
