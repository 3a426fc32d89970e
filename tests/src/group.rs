//! Several `weir run` processes in one consumer group, and what the rides pipeline must
//! make of a topic whatever its keying, computed here without weir: the topic is read
//! back partition by partition, and the lateness rule of `docs/PIPELINES.md` is applied
//! to each partition in offset order (a partition's clock is the largest event time of
//! its accepted records; an event is late for a window that ended at or before the clock
//! minus the lateness).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::services::{repo_root, Broker, Postgres};
use crate::{plugin_dir, weir_bin, Reaped};

/// The rides example's output table.
pub const TABLE: &str = "rides_city_minute";
const LATENESS_MS: i64 = 600_000;

/// The rides Kafka example with short checkpoints, and a session timeout short enough
/// that a killed host's partitions move on within seconds.
pub fn pipeline(dir: &Path, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-kafka.toml")).unwrap();
    let text = text.replace("interval = \"1s\"", "interval = \"200ms\"").replace(
        "group = \"${KAFKA_GROUP:-weir-rides}\"",
        "group = \"${KAFKA_GROUP:-weir-rides}\"\noptions = { \"session.timeout.ms\" = \"6000\" }",
    );
    let path = dir.join("pipeline-kafka.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

/// `weir run` as one host of `group`, into database `db`, until the group has committed
/// everything and this host has been idle for 3 s.
pub fn host(pipeline: &Path, broker: &Broker, topic: &str, db: &str, group: &str) -> Reaped {
    host_at(pipeline, broker, topic, db, group, "127.0.0.1:0", "3s")
}

/// [`host`] with its admin API at `admin`, until idle for `idle`.
pub fn host_at(
    pipeline: &Path,
    broker: &Broker,
    topic: &str,
    db: &str,
    group: &str,
    admin: &str,
    idle: &str,
) -> Reaped {
    spawn_host(Command::new(weir_bin()), pipeline, broker, topic, db, group, admin, idle)
}

/// [`host_at`] on `island`: `db` and the broker's advertised address must be reachable
/// from there, and so must `admin` from here: the island's end of a link, which is beyond
/// loopback, so `admin` is `TOKEN@host:port` (see [`admin_parts`]).
pub fn island_host(
    island: &crate::island::Island,
    pipeline: &Path,
    broker: &Broker,
    topic: &str,
    db: &str,
    group: &str,
    admin: &str,
) -> Reaped {
    let (addr, token) = admin_parts(admin);
    let mut cmd = island.command(weir_bin());
    cmd.env("WEIR_ADMIN_TOKEN", token.expect("an admin API beyond loopback needs a token"));
    spawn_host(cmd, pipeline, broker, topic, db, group, addr, "3s")
}

/// An admin address as the helpers here take it, `host:port` or `TOKEN@host:port`: the
/// address and the token.
pub fn admin_parts(admin: &str) -> (&str, Option<&str>) {
    match admin.split_once('@') {
        Some((token, addr)) => (addr, Some(token)),
        None => (admin, None),
    }
}

#[allow(clippy::too_many_arguments)]
fn spawn_host(
    mut cmd: Command,
    pipeline: &Path,
    broker: &Broker,
    topic: &str,
    db: &str,
    group: &str,
    admin: &str,
    idle: &str,
) -> Reaped {
    let child = cmd
        .args(["run", pipeline.to_str().unwrap(), "--until-idle", idle, "--batch", "2048", "--admin", admin])
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .env("KAFKA_BROKERS", broker.brokers())
        .env("KAFKA_TOPIC", topic)
        .env("KAFKA_GROUP", group)
        .env("DATABASE_URL", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed if the test fails first, so that no host outlives it.
    Reaped(child)
}

/// Waits for a host to exit; returns whether it succeeded, its stdout and its stderr.
pub fn ended(mut host: Reaped) -> (bool, String, String) {
    use std::io::Read;
    let (mut stdout, mut stderr) = (String::new(), String::new());
    // weir writes a few lines to stdout: reading stderr to its end first cannot block it.
    host.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    host.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    (host.wait().unwrap().success(), stdout, stderr)
}

/// Waits for a host to exit cleanly; returns its stderr.
pub fn finish(host: Reaped, name: &str) -> String {
    let (ok, stdout, stderr) = ended(host);
    assert!(ok, "host {name} failed\nstdout: {stdout}\nstderr: {stderr}");
    stderr
}

/// `weir produce` of `events` trips with `seed` into `topic` (6 partitions), keyed by `key`.
pub fn produce(
    broker: &Broker,
    topic: &str,
    key: &str,
    seed: u64,
    events: u64,
    start: &str,
    rate: Option<u32>,
) -> Child {
    let mut cmd = Command::new(weir_bin());
    cmd.args(["produce", "--brokers", &broker.brokers(), "--topic", topic, "--partitions", "6", "--quiet"])
        .args(["--key", key, "--seed", &seed.to_string(), "--events", &events.to_string(), "--start", start])
        .args(["--late-share", "0.02", "--malformed-share", "0.01"]);
    if let Some(rate) = rate {
        cmd.args(["--rate", &rate.to_string(), "--event-rate", "1000"]);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Every record of `topic`, `(partition, offset, payload)`, once `count` have been read.
pub fn read_topic(broker: &Broker, topic: &str, count: usize) -> Vec<(i32, i64, Vec<u8>)> {
    read_topic_at(&broker.brokers(), topic, count)
}

/// [`read_topic`] from the brokers at `bootstrap`.
pub fn read_topic_at(bootstrap: &str, topic: &str, count: usize) -> Vec<(i32, i64, Vec<u8>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("truth-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut records = Vec::with_capacity(count);
    let deadline = Instant::now() + Duration::from_secs(120);
    while records.len() < count {
        assert!(Instant::now() < deadline, "read {} of {count} records of {topic}", records.len());
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            records.push((m.partition(), m.offset(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    records.sort_by_key(|(p, o, _)| (*p, *o));
    records
}

/// What the sink must hold: trips and fare sum per (window start, city); the dead letters
/// by kind; the late events by partition and offset.
#[derive(Debug, Default, PartialEq)]
pub struct Truth {
    pub windows: BTreeMap<(i64, String), (i64, f64)>,
    pub malformed: BTreeSet<(i32, i64)>,
    pub rejected: BTreeSet<(i32, i64)>,
    pub late: BTreeSet<(i32, i64)>,
}

/// Applies the rides pipeline to `records` (sorted by partition and offset).
pub fn truth(records: &[(i32, i64, Vec<u8>)]) -> Truth {
    let mut want = Truth::default();
    let mut clocks: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, offset, raw) in records {
        let at = (*partition, *offset);
        let Ok(serde_json::Value::Object(e)) = serde_json::from_slice::<serde_json::Value>(raw) else {
            want.malformed.insert(at);
            continue;
        };
        let Some(fare) = e.get("fare").and_then(serde_json::Value::as_f64) else {
            want.malformed.insert(at);
            continue;
        };
        let ms = weir_sdk::time::parse_iso8601(e["event_time"].as_str().unwrap().as_bytes()).unwrap();
        let Some(city) = e.get("city").and_then(|c| c.as_str()).filter(|_| (0.0..=10_000.0).contains(&fare)) else {
            want.rejected.insert(at);
            continue;
        };
        let start = ms.div_euclid(60_000) * 60_000;
        let clock = clocks.entry(*partition).or_insert(i64::MIN / 2);
        if start + 60_000 <= *clock - LATENESS_MS {
            want.late.insert(at);
        } else {
            let entry = want.windows.entry((start, city.to_string())).or_default();
            entry.0 += 1;
            entry.1 += fare;
        }
        *clock = (*clock).max(ms);
    }
    want
}

/// What database `db` holds, in the shape of [`Truth`].
pub fn read(pg: &Postgres, db: &str) -> Truth {
    let mut client = pg.client(db);
    let mut got = Truth::default();
    let sql = format!(
        "SELECT (extract(epoch FROM window_start) * 1000)::bigint, city, trips, sum_fare FROM {TABLE} ORDER BY 1, 2"
    );
    for r in client.query(&sql, &[]).unwrap() {
        got.windows.insert((r.get(0), r.get(1)), (r.get(2), r.get(3)));
    }
    for r in client.query("SELECT kind, source_partition, source_offset FROM weir_dead_letters", &[]).unwrap() {
        let kind: String = r.get(0);
        let lane = if kind == "malformed" { &mut got.malformed } else { &mut got.rejected };
        assert!(lane.insert((r.get(1), r.get(2))), "one dead letter per record");
    }
    for r in client.query("SELECT source_partition, source_offset FROM weir_late_events", &[]).unwrap() {
        assert!(got.late.insert((r.get(0), r.get(1))), "one late event per record (tumbling windows)");
    }
    got
}

/// Compares what a run left with the truth, naming the first difference.
pub fn assert_truth(got: &Truth, want: &Truth, what: &str) {
    assert_eq!(got.malformed, want.malformed, "{what}: malformed dead letters");
    assert_eq!(got.rejected, want.rejected, "{what}: rejected dead letters");
    assert_eq!(got.late, want.late, "{what}: late events");
    let wrong: Vec<_> = want
        .windows
        .iter()
        .filter(|(k, (n, sum))| got.windows.get(*k).is_none_or(|(m, s)| m != n || (s - sum).abs() > 1e-6))
        .take(3)
        .map(|(k, w)| format!("{k:?}: want {w:?}, got {:?}", got.windows.get(k)))
        .collect();
    assert!(wrong.is_empty(), "{what}: {} windows differ, e.g. {wrong:?}", wrong.len());
    assert_eq!(got.windows.len(), want.windows.len(), "{what}: number of windows");
}

/// The sum of the committed next offsets: records the group has committed.
pub fn committed(pg: &Postgres, db: &str) -> i64 {
    let Ok(mut client) = postgres::Client::connect(&pg.url(db), postgres::NoTls) else { return 0 };
    client
        .query_one("SELECT coalesce(sum(next_offset), 0)::bigint FROM weir_checkpoints", &[])
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
}

/// Waits until the group has committed more than `n` records; panics if `host` exits first.
pub fn wait_committed(pg: &Postgres, db: &str, n: i64, host: &mut Child) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let at = committed(pg, db);
        if at > n {
            return at;
        }
        if let Ok(Some(status)) = host.try_wait() {
            panic!("a host exited with {status} before the group committed {n} records");
        }
        assert!(Instant::now() < deadline, "the group committed {at}, not more than {n}, in two minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The rides pipeline with session windows per driver (`gap`), into `driver_sessions`.
pub fn session_pipeline(dir: &Path, gap: &str) -> PathBuf {
    let path = pipeline(dir, "");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace(
            "kind = \"tumbling\"\nsize = \"1m\"\nkey = [\"city\"]",
            &format!("kind = \"session\"\ngap = \"{gap}\"\nkey = [\"driver_id\"]"),
        )
        .replace("table = \"rides_city_minute\"", "table = \"driver_sessions\"");
    assert!(text.contains("kind = \"session\"") && text.contains("driver_sessions"), "{text}");
    std::fs::write(&path, text).unwrap();
    path
}

/// Trips per session: `(driver, start, end) → trips`.
pub type Sessions = BTreeMap<(String, i64, i64), i64>;

/// The sessions the rides pipeline must make of `records` (sorted by partition and
/// offset), per driver: `(driver, start, end) → trips`, and the late records. A record is
/// late when its own span `[t, t + gap)` ended at or before its partition's clock minus
/// the lateness; the others merge into sessions, in any order, when their spans overlap.
pub fn session_truth(records: &[(i32, i64, Vec<u8>)], gap: i64) -> (Sessions, BTreeSet<(i32, i64)>) {
    let mut clocks: BTreeMap<i32, i64> = BTreeMap::new();
    let mut events: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut late = BTreeSet::new();
    for (partition, offset, raw) in records {
        let Ok(serde_json::Value::Object(e)) = serde_json::from_slice::<serde_json::Value>(raw) else { continue };
        let Some(fare) = e.get("fare").and_then(serde_json::Value::as_f64) else { continue };
        if e.get("city").and_then(|c| c.as_str()).is_none() || !(0.0..=10_000.0).contains(&fare) {
            continue;
        }
        let Some(driver) = e.get("driver_id").and_then(|d| d.as_str()) else { continue };
        let ms = weir_sdk::time::parse_iso8601(e["event_time"].as_str().unwrap().as_bytes()).unwrap();
        let clock = clocks.entry(*partition).or_insert(i64::MIN / 2);
        if ms + gap <= *clock - LATENESS_MS {
            late.insert((*partition, *offset));
        } else {
            events.entry(driver.to_string()).or_default().push(ms);
        }
        *clock = (*clock).max(ms);
    }
    let mut sessions = BTreeMap::new();
    for (driver, mut times) in events {
        times.sort_unstable();
        let (mut start, mut end, mut n) = (times[0], times[0] + gap, 0);
        for t in times {
            if t >= end {
                sessions.insert((driver.clone(), start, end), n);
                (start, n) = (t, 0);
            }
            end = end.max(t + gap);
            n += 1;
        }
        sessions.insert((driver, start, end), n);
    }
    (sessions, late)
}

/// The sessions database `db` holds, and its late records.
pub fn read_sessions(pg: &Postgres, db: &str) -> (Sessions, BTreeSet<(i32, i64)>) {
    let mut client = pg.client(db);
    let sql = "SELECT driver_id, (extract(epoch FROM window_start) * 1000)::bigint, \
               (extract(epoch FROM window_end) * 1000)::bigint, trips FROM driver_sessions";
    let sessions = client.query(sql, &[]).unwrap().iter().map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3))).collect();
    let late = client
        .query("SELECT source_partition, source_offset FROM weir_late_events", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    (sessions, late)
}

/// `GET /api/status` of the host at `admin`, or `None` while it does not answer (it may be
/// starting, or gone).
pub fn status(admin: &str) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let (addr, token) = admin_parts(admin);
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(stream, "GET /api/status HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// Whether the host whose admin API is at `admin` sees a group of `hosts` hosts that
/// each hold partitions (false while it does not answer yet).
pub fn group_ready(admin: &str, hosts: usize) -> bool {
    let Some(status) = status(admin) else { return false };
    let members = status["group"]["hosts"].as_array().cloned().unwrap_or_default();
    members.len() == hosts && members.iter().all(|h| h["partitions"].as_array().is_some_and(|p| !p.is_empty()))
}
