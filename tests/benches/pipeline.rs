//! The pipeline benchmark: the rides example end to end into a real PostgreSQL, over
//! at least a million events, on the release build.
//!
//! - (a) files → weir → PostgreSQL;
//! - (b) Kafka (the test broker) → weir → PostgreSQL, each run right after a bare rdkafka
//!   consumer reading the same topic on the same broker: three such pairs, each pair's
//!   ratio and their median;
//! - latency from a record's Kafka timestamp to the commit that made it visible, at a
//!   steady 50k events/s;
//! - cold start to the first commit, with an empty and with a warm compile cache;
//! - the swap stall: the gap in processing around each of 24 parser switches at a steady
//!   50k events/s, beside the gap around an ordinary checkpoint in the same run (2M events);
//! - peak RSS of each run;
//! - scale-out: one host on an unkeyed topic (rows merged from partial states) against
//!   the same events keyed by the window key (`[scale] keyed = true`), and 1, 2 and 3
//!   hosts of one group on the unkeyed topic.
//!
//! - quality on against off: the files case with the rides example's `[quality]`
//!   (scores, ranges, anomaly flags, rules and an SLA) and a `[deploy]` canary, against
//!   without, three pairs back to back, each pair's ratio and their median.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p weir-tests --bench pipeline`; add
//! `-- swap` for the swap stall alone, `-- kafka` for case (b) alone, `-- scale` for
//! scale-out alone, or `-- quality` for quality on against off alone).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use weir_tests::services::{repo_root, Broker, Postgres};
use weir_tests::{plugin_dir, weir_release_bin};

const EVENTS: u64 = 1_000_000;
/// The swap-stall run's stream: 40 s at 50k/s, so that every switch falls under load.
const SWAP_EVENTS: u64 = 2 * EVENTS;
const PARTITIONS: i32 = 3;

/// What `weir run` reported about itself.
#[derive(Debug, Default)]
struct Report {
    events_per_s: f64,
    first_commit_ms: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    rss_mib: Option<f64>,
}

fn number_after(line: &str, marker: &str) -> Option<f64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn parse_report(stdout: &str) -> Report {
    let line = stdout.lines().find(|l| l.starts_with("first to last record")).unwrap_or_else(|| {
        panic!("weir run printed no timing line:\n{stdout}");
    });
    Report {
        events_per_s: number_after(line, "s (").unwrap_or(0.0),
        first_commit_ms: number_after(line, "first checkpoint "),
        p50_ms: number_after(line, "p50 "),
        p99_ms: number_after(line, "p99 "),
        rss_mib: number_after(line, "peak RSS "),
    }
}

/// `weir run`, exiting once the source has been idle for `idle`.
fn weir_run<V: AsRef<std::ffi::OsStr>>(pipeline: &Path, env: &[(&str, V)], cache: &Path, idle: &str) -> Command {
    weir(&["run", pipeline.to_str().unwrap(), "--until-idle", idle, "--quiet"], env, cache)
}

/// The release `weir` with `args`, the built plugins, compile cache `cache` and `env`.
fn weir<V: AsRef<std::ffi::OsStr>>(args: &[&str], env: &[(&str, V)], cache: &Path) -> Command {
    let mut cmd = Command::new(weir_release_bin());
    cmd.args(args).env("WEIR_PLUGIN_DIR", plugin_dir()).env("WEIR_CACHE_DIR", cache);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn finish(cmd: &mut Command, what: &str) -> Report {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{what}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    parse_report(&stdout)
}

/// A copy of an example pipeline with another checkpoint interval.
fn example(name: &str, dir: &Path, interval: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/rides").join(name)).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text.replace("interval = \"1s\"", &format!("interval = \"{interval}\""))).unwrap();
    path
}

fn produce(broker: &Broker, topic: &str, events: u64, rate: Option<u32>) -> Command {
    let mut cmd = Command::new(weir_release_bin());
    cmd.args(["produce", "--brokers", &broker.brokers(), "--topic", topic, "--quiet"]).args([
        "--partitions",
        &PARTITIONS.to_string(),
        "--events",
        &events.to_string(),
    ]);
    if let Some(rate) = rate {
        cmd.args(["--rate", &rate.to_string(), "--event-rate", &rate.to_string(), "--start", "now"]);
    }
    cmd
}

/// A bare rdkafka consumer reading every message of `topic`: events/s from first to last.
/// Reads the whole topic as fast as rdkafka can, touching each payload. `tuned` gives it
/// weir's 50 ms fetch wait and a 10 ms queue backoff (weir's is 2 ms; the bare consumer
/// keeps librdkafka's 64 MiB prefetch, so it seldom waits on it); without them it runs on
/// librdkafka's defaults.
fn bare_consumer(broker: &Broker, topic: &str, tuned: bool) -> f64 {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker.brokers()).set("group.id", "bare").set("enable.auto.commit", "false");
    if tuned {
        // Without fetch.queue.backoff.ms a full prefetch queue stalls fetching for a second.
        config.set("fetch.wait.max.ms", "50").set("fetch.queue.backoff.ms", "10");
    }
    let consumer: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while n < EVENTS {
        assert!(Instant::now() < deadline, "the bare consumer read only {n} messages");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.unwrap();
            first.get_or_insert_with(Instant::now);
            bytes += rdkafka::message::Message::payload(&message).map_or(0, <[u8]>::len);
            n += 1;
        }
    }
    assert!(bytes > 0);
    n as f64 / first.unwrap().elapsed().as_secs_f64()
}

fn row(what: &str, r: &Report) {
    let opt = |v: Option<f64>, unit: &str| v.map_or("-".to_string(), |v| format!("{v:.0} {unit}"));
    println!(
        "{what:<40} {:>10.0} events/s   first commit {:>8}   p50 {:>7}   p99 {:>7}   peak RSS {:>9}",
        r.events_per_s,
        opt(r.first_commit_ms, "ms"),
        opt(r.p50_ms, "ms"),
        opt(r.p99_ms, "ms"),
        r.rss_mib.map_or("-".into(), |m| format!("{m:.1} MiB")),
    );
}

/// Hostile against clean input: the same 1,000,000 trips into PostgreSQL, once clean and
/// once with one record in ten malformed or odd (`weir_tests::hostile`), two pairs back to
/// back; prints each run and the ratio of hostile to clean throughput.
fn hostile_case(pg: &Postgres, dir: &Path, cache: &Path) {
    let mut ratios = Vec::new();
    // Pair 0 compiles the plugins into the cache; it runs, unreported.
    for pair in 0..3 {
        let mut rates = [0.0; 2];
        for (k, hostile) in [false, true].into_iter().enumerate() {
            let run_dir = dir.join(format!("hostile-{pair}-{k}"));
            std::fs::create_dir_all(run_dir.join("input")).unwrap();
            let bytes = weir_tests::hostile::file(EVENTS as usize, hostile);
            std::fs::write(run_dir.join("input/trips.jsonl"), bytes).unwrap();
            let url = pg.create_database(&format!("hostile_{pair}_{k}"));
            let text = weir_tests::lateness::pipeline(weir_tests::lateness::Shape::Tumbling, &url, "1s");
            std::fs::write(run_dir.join("p.toml"), text).unwrap();
            let mut run = weir_run(&run_dir.join("p.toml"), &[] as &[(&str, &str)], cache, "0ms");
            let report = finish(run.current_dir(&run_dir), "hostile");
            let what = if hostile {
                "files → PostgreSQL, 10% hostile records"
            } else {
                "files → PostgreSQL, clean records"
            };
            if pair > 0 {
                row(what, &report);
            }
            rates[k] = report.events_per_s;
        }
        if pair > 0 {
            println!("{:<40} {:>10.2}×", "hostile / clean", rates[1] / rates[0]);
            ratios.push(rates[1] / rates[0]);
        }
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "{:<40} {:>10.2}× (target: at least 0.5×, within 2× of clean)",
        "hostile / clean, lower of two pairs", ratios[0]
    );
}

fn main() {
    let pg = Postgres::start();
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let warm_cache = dir.path().join("cache");
    if std::env::args().any(|a| a == "hostile") {
        // `-- hostile`: hostile against clean input alone.
        return hostile_case(&pg, dir.path(), &warm_cache);
    }
    if std::env::args().any(|a| a == "swap") {
        // `cargo bench -p weir-tests --bench pipeline -- swap`: the swap stall alone.
        return swap_stall(&broker, &pg, dir.path(), &warm_cache);
    }
    if std::env::args().any(|a| a == "scale") {
        return scale_case(&broker, &pg, dir.path(), &warm_cache);
    }
    if std::env::args().any(|a| a == "quality") {
        let input = dir.path().join("input");
        write_trips(&input);
        return quality_case(&pg, dir.path(), &input, &warm_cache);
    }
    if std::env::args().any(|a| a == "kafka") {
        // `-- kafka`: case (b) alone, after `weir validate` has filled the plugin cache.
        let kafka = example("pipeline-kafka.toml", dir.path(), "1s");
        let out = produce(&broker, "bench", 0, None).output().unwrap(); // creates the topic
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let env = kafka_env(&broker, pg.create_database("validate"), "bench");
        let out = weir(&["validate", kafka.to_str().unwrap()], &env, &warm_cache).output().unwrap();
        assert!(out.status.success(), "weir validate: {}", String::from_utf8_lossy(&out.stdout));
        return kafka_case(&broker, &pg, dir.path(), &warm_cache);
    }

    // (a) files → PostgreSQL.
    let input = dir.path().join("input");
    write_trips(&input);
    let files = example("pipeline-files.toml", dir.path(), "1s");
    let input_dir = input.to_str().unwrap();
    let mut runs = Vec::new();
    // The first run compiles the plugins into the empty cache; the others load them from it.
    for i in 0..3 {
        let db = pg.create_database(&format!("files{i}"));
        let env = [("INPUT_DIR", input_dir), ("DATABASE_URL", db.as_str())];
        runs.push(finish(&mut weir_run(&files, &env, &warm_cache, "2s"), "files"));
    }
    println!("weir pipeline benchmark: rides example, {EVENTS} events, release build");
    row("(a) files → PostgreSQL, empty plugin cache", &runs[0]);
    row("(a) files → PostgreSQL, warm plugin cache", &runs[1]);
    row("(a) files → PostgreSQL, warm plugin cache", &runs[2]);

    hostile_case(&pg, dir.path(), &warm_cache);
    quality_case(&pg, dir.path(), &input, &warm_cache);
    kafka_case(&broker, &pg, dir.path(), &warm_cache);

    // Latency at a steady 50k events/s, checkpointing every 100 ms.
    let child = paced_host(&broker, &pg, dir.path(), &warm_cache, "paced", &[]);
    let out = produce(&broker, "paced", EVENTS, Some(50_000)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    row("Kafka → PostgreSQL at 50k events/s", &parse_report(&String::from_utf8_lossy(&out.stdout)));

    swap_stall(&broker, &pg, dir.path(), &warm_cache);
    scale_case(&broker, &pg, dir.path(), &warm_cache);
}

/// The rides generator's first million trips (1% malformed, 2% out of order) in `dir`.
fn write_trips(dir: &Path) {
    weir_tests::kills::write_trips(dir, EVENTS);
}

/// The files case with everything of issue 22 on (the rides example's `[quality]`, and a
/// `[deploy]` canary) against off, three pairs back to back after a run that warms the
/// cache and the page cache: each pair's ratio, and their median. Checkpoints every
/// 100 ms, so that the quality tables' writes fall inside the run; the ratio is of whole
/// runs, from start to exit, as well as of the reading span.
fn quality_case(pg: &Postgres, dir: &Path, input: &Path, cache: &Path) {
    let off = example("pipeline-files.toml", dir, "100ms");
    let rides = std::fs::read_to_string(repo_root().join("examples/rides/pipeline.toml")).unwrap();
    let quality = &rides[rides.find("[quality.ranges]").expect("the rides example has [quality]")..];
    let on = dir.join("pipeline-files-quality.toml");
    let text = std::fs::read_to_string(&off).unwrap() + "\n" + quality + "\n[deploy]\ncanary = \"2m\"\n";
    std::fs::write(&on, text).unwrap();
    let input = input.to_str().unwrap();
    let (mut spans, mut wholes) = (Vec::new(), Vec::new());
    for pair in 0..4 {
        let mut rates = [(0.0, 0.0); 2];
        for (k, pipeline) in [&off, &on].into_iter().enumerate() {
            let db = pg.create_database(&format!("quality_{pair}_{k}"));
            let env = [("INPUT_DIR", input), ("DATABASE_URL", db.as_str())];
            let started = Instant::now();
            let report = finish(&mut weir_run(pipeline, &env, cache, "0ms"), "quality");
            let whole = EVENTS as f64 / started.elapsed().as_secs_f64();
            if pair > 0 {
                row(if k == 0 { "files → PostgreSQL, quality off" } else { "files → PostgreSQL, quality on" }, &report);
                println!("{:<40} {whole:>10.0} events/s", "  start to exit");
            }
            rates[k] = (report.events_per_s, whole);
        }
        if pair > 0 {
            let (span, whole) = (rates[1].0 / rates[0].0, rates[1].1 / rates[0].1);
            println!("{:<40} {span:>10.2}× reading span, {whole:.2}× start to exit", "quality on / off");
            spans.push(span);
            wholes.push(whole);
        }
    }
    spans.sort_by(f64::total_cmp);
    wholes.sort_by(f64::total_cmp);
    println!(
        "{:<40} {:>10.2}× reading span, {:.2}× start to exit (target: at least 0.95×)",
        "quality on / off, median of three pairs", spans[1], wholes[1]
    );
}

/// How many events the scale-out case reads: several seconds of reading even for three hosts.
const SCALE_EVENTS: u64 = 4 * EVENTS;

/// The mean time a host's checkpoints took to commit (the group's lock included), and
/// how many, from its `/api/status`; `None` while it does not answer yet.
fn commit_times(admin: &str) -> Option<(f64, u64)> {
    let status = weir_tests::group::status(admin)?;
    let checkpoints = &status["measured"]["checkpoints"];
    let count = checkpoints["count"].as_u64()?;
    Some((checkpoints["sum"].as_f64()? * 1000.0 / count.max(1) as f64, count))
}

/// `hosts` hosts of one group read `topic` (`SCALE_EVENTS` records) into a fresh database.
/// Returns the group's events/s, from the first commit to the commit that completes the
/// topic as the sink's offsets show it (polled every 20 ms; checkpoints every 200 ms),
/// each host's own report, and each host's mean commit time in ms.
fn group_rate(
    pg: &Postgres,
    broker: &Broker,
    pipeline: &Path,
    cache: &Path,
    topic: &str,
    hosts: usize,
) -> (f64, Vec<Report>, Vec<(f64, u64)>) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("scale_{run}_{hosts}");
    let db = pg.create_database(&name);
    let mut env = kafka_env(broker, db, topic);
    env.push(("KAFKA_GROUP", name.clone()));
    let admins: Vec<String> = (0..hosts).map(|_| weir_tests::free_addr()).collect();
    let children: Vec<Child> = admins
        .iter()
        .map(|admin| {
            let mut cmd = weir_run(pipeline, &env, cache, "2s");
            cmd.args(["--admin", admin]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let mut commits = vec![(0.0, 0); hosts];
    let mut polled = Instant::now();
    let mut client = pg.client(&name);
    let committed = |client: &mut postgres::Client| -> i64 {
        // Before the first host has prepared the sink the table does not exist: nothing committed.
        let sum = client.query_one("SELECT coalesce(sum(next_offset), 0)::bigint FROM weir_checkpoints", &[]);
        sum.map_or(0, |r| r.get(0))
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    loop {
        let n = committed(&mut client);
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        if n >= SCALE_EVENTS as i64 {
            break;
        }
        if polled.elapsed() >= Duration::from_millis(250) {
            polled = Instant::now();
            for (admin, last) in admins.iter().zip(&mut commits) {
                *last = commit_times(admin).unwrap_or(*last);
            }
        }
        assert!(Instant::now() < deadline, "{topic}: {hosts} host(s) committed {n} of {SCALE_EVENTS} in 10 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (at, from) = first.unwrap();
    let rate = (SCALE_EVENTS as i64 - from) as f64 / at.elapsed().as_secs_f64();
    let reports = children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{topic}: {}", String::from_utf8_lossy(&out.stderr));
            parse_report(&String::from_utf8_lossy(&out.stdout))
        })
        .collect();
    (rate, reports, commits)
}

/// Scale-out: rows merged from partial states (any keying) against whole rows from memory
/// (a topic keyed by the window key), on one host; then 1, 2 and 3 hosts of one group on
/// the unkeyed topic. Six partitions; 2 cores run the hosts, the broker and PostgreSQL.
fn scale_case(broker: &Broker, pg: &Postgres, dir: &Path, cache: &Path) {
    for (topic, key) in [("scale-city", "city"), ("scale-none", "none")] {
        let out = Command::new(weir_release_bin())
            .args(["produce", "--brokers", &broker.brokers(), "--topic", topic, "--quiet", "--partitions", "6"])
            .args(["--events", &SCALE_EVENTS.to_string(), "--key", key])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let partials = example("pipeline-kafka.toml", dir, "200ms");
    let keyed = dir.join("keyed.toml");
    std::fs::write(&keyed, std::fs::read_to_string(&partials).unwrap() + "\n[scale]\nkeyed = true\n").unwrap();
    println!(
        "scale-out: {SCALE_EVENTS} events over 6 partitions, release build, 2 cores shared with the broker and PostgreSQL"
    );
    let mut one_host = Vec::new();
    for (what, pipeline, topic) in [
        ("keyed by city, [scale] keyed = true", &keyed, "scale-city"),
        ("keyed by city, partials merged in sink", &partials, "scale-city"),
        ("unkeyed, partials merged in sink", &partials, "scale-none"),
    ] {
        let (_, reports, commits) = group_rate(pg, broker, pipeline, cache, topic, 1);
        row(&format!("1 host, {what}"), &reports[0]);
        println!("{:<40} {:>10.1} ms mean over {} checkpoints", "  its commits", commits[0].0, commits[0].1);
        one_host.push(reports[0].events_per_s);
    }
    println!("{:<40} {:>10.2}×", "1 host: unkeyed partials / keyed whole", one_host[2] / one_host[0]);
    let mut group = Vec::new();
    for hosts in 1..=3 {
        let (rate, reports, commits) = group_rate(pg, broker, &partials, cache, "scale-none", hosts);
        for (i, (r, (mean, n))) in reports.iter().zip(&commits).enumerate() {
            row(&format!("  host {} of {hosts}, its own reading", i + 1), r);
            println!("{:<40} {mean:>10.1} ms mean over {n} checkpoints", "  its commits");
        }
        println!("{:<40} {rate:>10.0} events/s", format!("{hosts} host(s), unkeyed: the group"));
        group.push(rate);
    }
    println!("{:<40} {:>10.2}×", "2 hosts / 1 host (group, unkeyed)", group[1] / group[0]);
    println!("{:<40} {:>10.2}×", "3 hosts / 1 host (group, unkeyed)", group[2] / group[0]);
    live_group(broker, pg, dir, cache);
}

/// Three hosts of one group on an unkeyed topic fed live at a steady 50,000 events/s,
/// checkpointing every second: what each checkpoint costs in the sink (its commit, the
/// group's lock included) and the latency from a record's timestamp to its commit.
fn live_group(broker: &Broker, pg: &Postgres, dir: &Path, cache: &Path) {
    let topic = "scale-live";
    let out = Command::new(weir_release_bin())
        .args(["produce", "--brokers", &broker.brokers(), "--topic", topic, "--quiet", "--partitions", "6"])
        .args(["--events", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pipeline = example("pipeline-kafka.toml", dir, "1s");
    let mut env = kafka_env(broker, pg.create_database("scale_live"), topic);
    env.push(("KAFKA_GROUP", "scale-live".into()));
    let admins: Vec<String> = (0..3).map(|_| weir_tests::free_addr()).collect();
    let mut hosts: Vec<Child> = admins
        .iter()
        .map(|admin| {
            let mut cmd = weir_run(&pipeline, &env, cache, "10s");
            cmd.args(["--admin", admin]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    // Produce once every host holds partitions, so that joining is not counted as latency.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !weir_tests::group::group_ready(&admins[0], 3) {
        assert!(Instant::now() < deadline, "the three hosts did not share the topic within two minutes");
        assert!(hosts.iter_mut().all(|h| h.try_wait().unwrap().is_none()), "a host exited before the stream");
        std::thread::sleep(Duration::from_millis(100));
    }
    let produced = Command::new(weir_release_bin())
        .args(["produce", "--brokers", &broker.brokers(), "--topic", topic, "--quiet", "--key", "none"])
        .args(["--events", &EVENTS.to_string(), "--rate", "50000", "--event-rate", "50000", "--start", "now"])
        .output()
        .unwrap();
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));
    let commits: Vec<(f64, u64)> = admins.iter().map(|a| commit_times(a).unwrap_or((0.0, 0))).collect();
    println!("live: 3 hosts, unkeyed, {EVENTS} events at 50,000 events/s, 1 s checkpoints");
    for (i, (host, (mean, n))) in hosts.into_iter().zip(commits).enumerate() {
        let out = host.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        row(&format!("  host {} of 3", i + 1), &parse_report(&String::from_utf8_lossy(&out.stdout)));
        println!("{:<40} {mean:>10.1} ms mean over {n} checkpoints", "  its commits");
    }
}

/// How many times case (b) pairs a bare consumer with weir. The two share a machine with
/// the broker, and one pair's ratio moved by ±0.1 between runs of one build; the median of
/// several pairs, each measured back to back, moves less.
const KAFKA_PAIRS: usize = 3;

/// Case (b): Kafka → PostgreSQL, beside a bare consumer of the same topic, on a warm cache.
fn kafka_case(broker: &Broker, pg: &Postgres, dir: &Path, warm_cache: &Path) {
    let out = produce(broker, "bench", EVENTS, None).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kafka = example("pipeline-kafka.toml", dir, "1s");
    let mut pairs = Vec::new();
    for pair in 0..KAFKA_PAIRS {
        let bare = bare_consumer(broker, "bench", true);
        let env = kafka_env(broker, pg.create_database(&format!("kafka{pair}")), "bench");
        let weir = finish(&mut weir_run(&kafka, &env, warm_cache, "2s"), "kafka");
        println!("{:<40} {bare:>10.0} events/s", format!("bare rdkafka consumer, same topic ({})", pair + 1));
        row(&format!("(b) Kafka → PostgreSQL ({})", pair + 1), &weir);
        println!("{:<40} {:>10.2}×", format!("(b) weir / bare consumer ({})", pair + 1), weir.events_per_s / bare);
        pairs.push((weir.events_per_s / bare, bare));
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (median, bare) = pairs[pairs.len() / 2];
    println!("{:<40} {median:>10.2}×", "(b) weir / bare consumer, median");
    let bare_defaults = bare_consumer(broker, "bench", false);
    println!("{:<40} {bare_defaults:>10.0} events/s", "same, librdkafka's default settings");
    // The same without watermark alignment: what holding partitions costs on this broker.
    let unaligned = dir.join("unaligned.toml");
    let text = std::fs::read_to_string(&kafka).unwrap();
    std::fs::write(&unaligned, text.replace("idle_timeout = \"30s\"", "idle_timeout = \"30s\"\nmax_skew = \"100h\""))
        .unwrap();
    let env = kafka_env(broker, pg.create_database("unaligned"), "bench");
    let weir_unaligned = finish(&mut weir_run(&unaligned, &env, warm_cache, "2s"), "kafka unaligned");
    row("(b) same, alignment off (max_skew 100h)", &weir_unaligned);
    println!("{:<40} {:>10.2}×", "(b) unaligned weir / median pair's bare", weir_unaligned.events_per_s / bare);
}

/// The environment of the Kafka example: `topic` on the test broker into database URL `db`.
fn kafka_env(broker: &Broker, db: String, topic: &str) -> Vec<(&'static str, String)> {
    vec![("KAFKA_BROKERS", broker.brokers()), ("KAFKA_TOPIC", topic.to_string()), ("DATABASE_URL", db)]
}

/// `weir run` of the Kafka example with 100 ms checkpoints, reading `topic` into database
/// `topic`, returned once it holds its partitions: produce only then, so that group-join
/// time counts neither as latency nor as stall.
fn paced_host(broker: &Broker, pg: &Postgres, dir: &Path, cache: &Path, topic: &str, args: &[&str]) -> Child {
    let paced = example("pipeline-kafka.toml", dir, "100ms");
    let env = kafka_env(broker, pg.create_database(topic), topic);
    let out = produce(broker, topic, 0, None).output().unwrap(); // creates the topic
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut child =
        // Idle counts from the assignment, and the producer is started only after it: give
        // it time to come up (its idempotent init alone takes about 0.5 s on Tansu).
        weir_run(&paced, &env, cache, "10s").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("assigned partition") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "weir run exited before joining its group");
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

/// 24 parser switches, alternating two builds of the same parser, while 2M events arrive
/// at 50k/s (40 s, so that every switch falls under load); every record must be accounted
/// for exactly once.
fn swap_stall(broker: &Broker, pg: &Postgres, dir: &Path, cache: &Path) {
    const SWAPS: usize = 24;
    let addr = weir_tests::free_addr();
    let child = paced_host(broker, pg, dir, cache, "swaps", &["--admin", &addr]);
    let mut producer = produce(broker, "swaps", SWAP_EVENTS, Some(50_000)).spawn().unwrap();
    let builds = [dir.join("json_parser_b.wasm"), dir.join("json_parser_a.wasm")];
    std::fs::write(&builds[0], weir_tests::marked(weir_tests::guests::JSON_PARSER, "b")).unwrap();
    std::fs::copy(weir_tests::guests::JSON_PARSER, &builds[1]).unwrap();
    std::thread::sleep(Duration::from_secs(2)); // let the stream reach its pace
    for i in 0..SWAPS {
        let file = builds[i % 2].to_str().unwrap();
        let (ok, _, why) =
            weir_tests::weir_cli(&addr, &["plugin", "deploy", "--pipeline", "rides", "--stage", "parser", file]);
        assert!(ok, "deploy {i}: {why}");
    }
    assert!(producer.wait().unwrap().success(), "weir produce");
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("plugin switches")).expect("a switch line");
    println!("{:<40} {line}", "swap stall at 50k events/s");
    let mut client = pg.client("swaps");
    let mut count = |sql: &str| -> i64 { client.query_one(sql, &[]).unwrap().get(0) };
    let accounted = count("SELECT coalesce(sum(trips), 0)::bigint FROM rides_city_minute")
        + count("SELECT count(*) FROM weir_dead_letters")
        + count("SELECT count(*) FROM weir_late_events");
    println!("{:<40} {accounted} of {SWAP_EVENTS} records accounted for, each once", "swap stall: records");
    assert_eq!(accounted, SWAP_EVENTS as i64, "a record was lost or duplicated around the switches");
}
