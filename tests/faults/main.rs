//! The fault suite: weir against kills, outages, hostile input and hostile plugins, each
//! scenario compared with a truth computed without weir (`weir_tests::faults`). Short
//! here, inside `cargo xtask test`; full counts with `cargo xtask faults`, which prints
//! the table that `docs/RELIABILITY.md` records.

pub(crate) use std::collections::BTreeMap;
pub(crate) use std::path::Path;
pub(crate) use std::process::{Command, Stdio};
pub(crate) use std::time::{Duration, Instant};

pub(crate) use weir::plugin::{FailureKind, Limits, ParserStage, Plugin, PluginKind, Policy};
pub(crate) use weir_sdk::RawBatch;
pub(crate) use weir_tests::faults::{self, compare, held_postgres, held_sqlite, record, Row};
pub(crate) use weir_tests::group::{self, truth, Truth};
pub(crate) use weir_tests::services::{repo_root, Broker, Postgres};
pub(crate) use weir_tests::{guests, kills, plugin_dir, runtime, weir_bin, Reaped};

mod api;
mod cdc;
mod group_hosts;
mod ingest;
mod input;
mod kills_loops;
mod moments;
mod outages;
mod outputs;
mod partition;
mod plugins;
mod soak;

/// One log that a scenario's hosts append their stderr to, shown when the scenario fails.
struct HostLog(std::path::PathBuf);

impl HostLog {
    fn new(dir: &Path) -> HostLog {
        HostLog(dir.join("hosts.log"))
    }

    /// A host's stderr, appended to the log.
    fn stderr(&self) -> Stdio {
        Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(&self.0).unwrap())
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    /// [`kills::kill_loop`], showing what the hosts said if it fails.
    fn kill_loop(
        &self,
        kills: u64,
        seed: u64,
        within: Duration,
        spawn: impl FnMut() -> Reaped,
        committed: impl Fn() -> i64,
    ) -> kills::Killed {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            kills::kill_loop(kills, seed, within, spawn, committed)
        }))
        .unwrap_or_else(|_| panic!("the kill loop failed; the hosts said:\n{}", self.text()))
    }
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

/// `/readyz` of the host at `addr`: its code, or 0 while it does not answer.
fn readyz(addr: &str) -> u16 {
    readiness(addr).0
}

/// `/readyz` of the host at `addr` (which may carry a token: `group::admin_parts`): its
/// code and reason, or 0 while it does not answer (it may be starting, or have just ended).
fn readiness(addr: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = group::admin_parts(addr).0;
    let answer = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        write!(stream, "GET /readyz HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    };
    let Ok(text) = answer() else { return (0, String::new()) };
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

/// The sum of the lags the host at `addr` reports, or none while it does not answer.
fn lag(addr: &str) -> Option<u64> {
    let status = group::status(addr)?;
    Some(status["lags"].as_array().map_or(0, |l| l.iter().filter_map(|p| p[1].as_u64()).sum()))
}

/// The partitions the host at `addr` holds (none while it does not answer).
fn partitions(addr: &str) -> Vec<i64> {
    let Some(status) = group::status(addr) else { return Vec::new() };
    let label = |p: &serde_json::Value| p[0].as_str()?.strip_prefix("partition ")?.parse().ok();
    status["lags"].as_array().map_or(Vec::new(), |l| l.iter().filter_map(label).collect())
}

fn held(addr: &str) -> usize {
    partitions(addr).len()
}

/// The sum of the next offsets the sink (database `db`) holds of partitions `of`.
fn stored(pg: &Postgres, db: &str, of: &[i64]) -> i64 {
    let of: Vec<i32> = of.iter().map(|&p| p as i32).collect();
    let Ok(mut client) = postgres::Client::connect(&pg.url(db), postgres::NoTls) else { return 0 };
    client
        .query_one(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM weir_checkpoints WHERE source_partition = ANY($1)",
            &[&of],
        )
        .map_or(0, |r| r.get(0))
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
