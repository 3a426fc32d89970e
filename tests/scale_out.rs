//! Scale-out on real parts: a Tansu broker, a throwaway PostgreSQL and several `weir run`
//! processes in one consumer group. Whatever the topic's keying (none, or a key per
//! trip), and however hosts join, die and leave, the sink must hold exactly what one
//! uninterrupted host writes, and what the pipeline's rules make of the topic read back
//! independently (`weir_tests::group`).

use std::time::Duration;
use weir_tests::group::{self, assert_truth, finish, host, produce, read, read_topic, truth, wait_committed};

use weir_tests::services::{Broker, Postgres};
use weir_tests::{free_addr, wait_status};

const WARM_UP: u64 = 10_000;
const EVENTS: u64 = 100_000;
const START: &str = "2024-05-01T00:00:00Z";
const MAIN_START: &str = "2024-05-01T00:00:10Z";

/// Fills `topic` with the warm-up and the main stream, keyed by `key`.
fn fill(broker: &Broker, topic: &str, key: &str) {
    for (seed, events, start) in [(1, WARM_UP, START), (2, EVENTS, MAIN_START)] {
        let out = produce(broker, topic, key, seed, events, start, None).wait_with_output().unwrap();
        assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn any_keying_on_three_hosts_through_kills_and_joins_equals_one_host() {
    let broker = Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "");
    let total = (WARM_UP + EVENTS) as i64;
    for key in ["none", "trip"] {
        let topic = format!("trips-{key}");
        fill(&broker, &topic, key);
        let want = truth(&read_topic(&broker, &topic, total as usize));
        assert!(want.late.len() > 100 && want.malformed.len() > 100 && want.rejected.len() > 100, "{key}: every lane");

        let one = pg.create_database(&format!("one_{key}"));
        finish(host(&pipeline, &broker, &topic, &one, &format!("one-{key}")), "alone");
        let alone = read(&pg, &format!("one_{key}"));
        assert_truth(&alone, &want, &format!("{key}-keyed input on one host"));

        // a and b start together; c joins once they have committed; b is killed mid-stream
        // and comes back, while a and c wait for its partitions.
        let db = format!("three_{key}");
        let url = pg.create_database(&db);
        let group_id = format!("three-{key}");
        let mut a = host(&pipeline, &broker, &topic, &url, &group_id);
        let mut b = host(&pipeline, &broker, &topic, &url, &group_id);
        wait_committed(&pg, &db, 0, &mut a);
        let c = host(&pipeline, &broker, &topic, &url, &group_id);
        let at = wait_committed(&pg, &db, total / 3, &mut b);
        b.kill().unwrap(); // SIGKILL
        b.wait().unwrap();
        assert!(at < total, "{key}: the kill lands mid-stream ({at} of {total} committed)");
        let b2 = host(&pipeline, &broker, &topic, &url, &group_id);
        let stderr: Vec<String> =
            [(a, "a"), (c, "c"), (b2, "b again")].into_iter().map(|(h, name)| finish(h, name)).collect();
        for (err, name) in stderr.iter().zip(["a", "c", "b again"]) {
            assert!(err.contains("assigned partition"), "{key}: host {name} took part in the group: {err}");
        }
        // --until-idle ended every host only once the group had committed the whole topic.
        assert_eq!(group::committed(&pg, &db), total, "{key}: the group's committed offsets");
        let many = read(&pg, &db);
        assert_truth(&many, &want, &format!("{key}-keyed input on three hosts"));
        assert_truth(&many, &alone, &format!("{key}-keyed input: three hosts against one"));
    }
}

#[test]
fn going_from_one_host_to_three_and_back_to_two_while_events_flow_loses_and_repeats_nothing() {
    let broker = Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "");
    let topic = "trips-live";
    let total = (WARM_UP + EVENTS) as i64;
    let warm = produce(&broker, topic, "none", 1, WARM_UP, START, None).wait_with_output().unwrap();
    assert!(warm.status.success(), "weir produce: {}", String::from_utf8_lossy(&warm.stderr));
    let url = pg.create_database("live");
    let mut a = host(&pipeline, &broker, topic, &url, "live");
    wait_committed(&pg, "live", 0, &mut a);
    // The main stream arrives at 10,000 events/s of wall time while hosts come and go.
    let producer = produce(&broker, topic, "none", 2, EVENTS, MAIN_START, Some(10_000));
    let mut b = host(&pipeline, &broker, topic, &url, "live");
    let c_admin = free_addr();
    let mut c = group::host_at(&pipeline, &broker, topic, &url, "live", &c_admin, "3s");
    // c has joined, been given partitions and read from them.
    wait_status(&c_admin, &mut c, Duration::from_secs(60), |s| s["records"].as_u64().is_some_and(|n| n > 0));
    let at = wait_committed(&pg, "live", 0, &mut b);
    assert!(at < total, "c leaves mid-stream ({at} of {total} committed)");
    // c leaves cleanly (SIGTERM): it commits what it read and gives its partitions back.
    let _ = std::process::Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
    let c_err = finish(c, "c");
    assert!(c_err.contains("assigned partition"), "c took part: {c_err}");
    let produced = producer.wait_with_output().unwrap();
    assert!(produced.status.success(), "weir produce: {}", String::from_utf8_lossy(&produced.stderr));
    finish(a, "a");
    finish(b, "b");
    assert_eq!(group::committed(&pg, "live"), total, "the group's committed offsets");
    let want = truth(&read_topic(&broker, topic, total as usize));
    assert_truth(&read(&pg, "live"), &want, "1 → 3 → 2 hosts while producing");
}

#[test]
fn a_pipeline_declared_keyed_on_a_topic_that_is_not_is_stopped_with_the_reason() {
    let broker = Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "[scale]\nkeyed = true\n");
    let out = produce(&broker, "trips-by-trip", "trip", 1, 5_000, START, None).wait_with_output().unwrap();
    assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    let url = pg.create_database("keyed");
    let (ok, _, stderr) = group::ended(host(&pipeline, &broker, "trips-by-trip", &url, "keyed"));
    assert!(!ok, "the run must stop: {stderr}");
    assert!(stderr.contains("not keyed by the window key") && stderr.contains("[scale] keyed"), "{stderr}");
    // Nothing was written as if one partition's share of a window were all of it.
    let rows: i64 =
        pg.client("keyed").query_one(&format!("SELECT count(*) FROM {}", group::TABLE), &[]).unwrap().get(0);
    assert_eq!(rows, 0, "no window row was written");
}

/// What a host's dashboard shows, read in headless Chromium once it lists `hosts` hosts.
fn dashboard(admin: &str, hosts: usize) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard/group.mjs");
    let out = std::process::Command::new("node")
        .arg(script)
        .args([format!("http://{admin}/"), hosts.to_string()])
        .output()
        .expect("running node");
    assert!(out.status.success(), "the browser: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every row a dashboard shows against the sink: the same trips, and every row of the
/// window starts it shows.
fn assert_dashboard_matches_sink(shown: &serde_json::Value, pg: &Postgres, db: &str, what: &str) {
    let rows = shown["rows"].as_array().unwrap();
    let sink = read(pg, db);
    let starts: std::collections::BTreeSet<i64> = rows.iter().map(|r| r["start"].as_i64().unwrap()).collect();
    for r in rows {
        let key = (r["start"].as_i64().unwrap(), r["key"][0].as_str().unwrap().to_string());
        let (trips, _) = sink.windows.get(&key).unwrap_or_else(|| panic!("{what}: {key:?} is not in the sink"));
        assert_eq!(r["values"]["trips"].as_i64(), Some(*trips), "{what}: trips of {key:?}");
    }
    let in_sink = sink.windows.keys().filter(|(start, _)| starts.contains(start)).count();
    assert_eq!(rows.len(), in_sink, "{what}: every row of the windows shown");
}

#[test]
fn every_host_shows_the_whole_group_and_the_rows_any_host_committed() {
    let broker = Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "");
    let topic = "trips-shown";
    let out = produce(&broker, topic, "none", 3, 30_000, START, None).wait_with_output().unwrap();
    assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    let url = pg.create_database("shown");
    let (a_admin, b_admin) = (free_addr(), free_addr());
    let mut a = group::host_at(&pipeline, &broker, topic, &url, "shown", &a_admin, "120s");
    let mut b = group::host_at(&pipeline, &broker, topic, &url, "shown", &b_admin, "120s");
    // Both hosts see the same group: two hosts whose partitions together are the topic's six.
    let whole = |s: &serde_json::Value| {
        let hosts = s["group"]["hosts"].as_array().cloned().unwrap_or_default();
        let mut owned: Vec<i64> = hosts
            .iter()
            .flat_map(|h| h["partitions"].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()))
            .collect();
        owned.sort_unstable();
        hosts.len() == 2 && owned == (0..6).collect::<Vec<_>>() && s["group"]["lag"].as_u64() == Some(0)
    };
    wait_committed(&pg, "shown", 29_999, &mut a);
    let from_a = wait_status(&a_admin, &mut a, Duration::from_secs(60), whole);
    let from_b = wait_status(&b_admin, &mut b, Duration::from_secs(60), whole);
    let names = |s: &serde_json::Value| -> Vec<String> {
        s["group"]["hosts"].as_array().unwrap().iter().map(|h| h["holder"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&from_a), names(&from_b), "both hosts list the same group");
    // B's page shows both hosts and the rows merged from both hosts' partials.
    let shown = dashboard(&b_admin, 2);
    assert_eq!(shown["hosts"].as_array().unwrap().len(), 2, "{shown}");
    assert_dashboard_matches_sink(&shown, &pg, "shown", "host b's dashboard");
    for (host, name) in [(a, "a"), (b, "b")] {
        let _ = std::process::Command::new("kill").args(["-INT", &host.id().to_string()]).status();
        finish(host, name);
    }
    // A host started afterwards has read nothing itself, and shows the group's rows at once.
    let c_admin = free_addr();
    let c = group::host_at(&pipeline, &broker, topic, &url, "shown", &c_admin, "120s");
    let shown = dashboard(&c_admin, 1);
    assert_dashboard_matches_sink(&shown, &pg, "shown", "a restarted host's dashboard");
    let _ = std::process::Command::new("kill").args(["-INT", &c.id().to_string()]).status();
    finish(c, "c");
}

/// Session windows per driver on an unkeyed topic: a driver's trips arrive on every
/// partition, so one partition's sessions bridge another's, and the sink merges them.
#[test]
fn sessions_on_an_unkeyed_topic_are_the_same_on_one_host_and_on_three_with_a_kill() {
    let broker = Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::session_pipeline(dir.path(), "20s");
    let topic = "trips-sessions";
    let total = 60_000;
    for (seed, events, start) in [(1, 10_000, START), (2, 50_000, MAIN_START)] {
        let out = produce(&broker, topic, "none", seed, events, start, None).wait_with_output().unwrap();
        assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (want, late) = group::session_truth(&read_topic(&broker, topic, total), 20_000);
    assert!(late.len() > 100, "some trips are late");
    let bridged = want.values().filter(|&&n| n > 1).count();
    assert!(bridged > 1000, "many sessions hold several trips: {bridged}");

    let one = pg.create_database("sessions_one");
    finish(host(&pipeline, &broker, topic, &one, "sessions-one"), "alone");
    let (got, got_late) = group::read_sessions(&pg, "sessions_one");
    assert_eq!(got_late, late, "late records on one host");
    assert_eq!(got, want, "sessions on one host");

    let url = pg.create_database("sessions_three");
    let mut a = host(&pipeline, &broker, topic, &url, "sessions-three");
    let mut b = host(&pipeline, &broker, topic, &url, "sessions-three");
    wait_committed(&pg, "sessions_three", 0, &mut a);
    let c = host(&pipeline, &broker, topic, &url, "sessions-three");
    let at = wait_committed(&pg, "sessions_three", total as i64 / 3, &mut b);
    b.kill().unwrap();
    b.wait().unwrap();
    assert!(at < total as i64, "the kill lands mid-stream ({at} of {total})");
    let b2 = host(&pipeline, &broker, topic, &url, "sessions-three");
    for (h, name) in [(a, "a"), (c, "c"), (b2, "b again")] {
        finish(h, name);
    }
    let (got, got_late) = group::read_sessions(&pg, "sessions_three");
    assert_eq!(got_late, late, "late records on three hosts");
    let wrong: Vec<_> = want.iter().filter(|(k, n)| got.get(*k) != Some(n)).take(3).collect();
    assert!(
        wrong.is_empty(),
        "sessions on three hosts differ, e.g. {wrong:?} ({} rows, want {})",
        got.len(),
        want.len()
    );
    assert_eq!(got.len(), want.len(), "no other sessions");
}

/// A plugin version deployed through one host's admin API runs on every host of the group,
/// each switching at its own checkpoint; a rollback through the other host returns them
/// all. Nothing is lost or counted twice, and every checkpoint names one parser version.
#[test]
fn a_deploy_and_a_rollback_through_either_host_switch_the_whole_group() {
    use weir_tests::guests::JSON_PARSER;
    let broker = Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "");
    let topic = "trips-deploy";
    let total = 70_000;
    let warm = produce(&broker, topic, "none", 1, 10_000, START, None).wait_with_output().unwrap();
    assert!(warm.status.success(), "weir produce: {}", String::from_utf8_lossy(&warm.stderr));
    let url = pg.create_database("deploy");
    let (a_admin, b_admin) = (free_addr(), free_addr());
    let mut a = group::host_at(&pipeline, &broker, topic, &url, "deploy", &a_admin, "120s");
    let mut b = group::host_at(&pipeline, &broker, topic, &url, "deploy", &b_admin, "120s");
    let grouped = |s: &serde_json::Value| s["group"]["hosts"].as_array().is_some_and(|h| h.len() == 2);
    wait_status(&a_admin, &mut a, Duration::from_secs(60), grouped);
    wait_committed(&pg, "deploy", 9_999, &mut a);
    // The main stream arrives while the versions change: 60,000 events at 10,000 a second.
    let producer = produce(&broker, topic, "none", 2, 60_000, MAIN_START, Some(10_000));
    let parser_is = |digest: String| {
        move |s: &serde_json::Value| {
            s["measured"]["stages"][0]["version"].as_str().is_some_and(|v| v.ends_with(digest.as_str()))
        }
    };
    let v2 = dir.path().join("json_parser_v2.wasm");
    std::fs::write(&v2, weir_tests::marked(JSON_PARSER, "2")).unwrap();
    let deploy = ["plugin", "deploy", "--pipeline", "rides", "--stage", "parser", v2.to_str().unwrap()];
    let (ok, report, why) = weir_tests::weir_cli(&a_admin, &deploy);
    assert!(ok, "{why}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let (v1, v2) = (report["replaced"].as_str().unwrap().to_string(), report["version"].as_str().unwrap().to_string());
    let digest = |v: &str| v.rsplit_once('@').unwrap().1.to_string();
    wait_status(&b_admin, &mut b, Duration::from_secs(60), parser_is(digest(&v2)));
    // Rolled back through the other host: both return to the first version.
    let rollback = ["plugin", "rollback", "--pipeline", "rides", "--stage", "parser"];
    let (ok, _, why) = weir_tests::weir_cli(&b_admin, &rollback);
    assert!(ok, "{why}");
    wait_status(&a_admin, &mut a, Duration::from_secs(60), parser_is(digest(&v1)));
    let produced = producer.wait_with_output().unwrap();
    assert!(produced.status.success(), "weir produce: {}", String::from_utf8_lossy(&produced.stderr));
    wait_committed(&pg, "deploy", total - 1, &mut a);
    for (host, name) in [(a, "a"), (b, "b")] {
        let _ = std::process::Command::new("kill").args(["-INT", &host.id().to_string()]).status();
        let err = finish(host, name);
        assert!(name == "a" || err.contains("followed the group into parser"), "host {name}: {err}");
    }
    let want = truth(&read_topic(&broker, topic, total as usize));
    assert_truth(&read(&pg, "deploy"), &want, "a deploy and a rollback across the group");

    // Who switched how: a deploy on one host and a follow on the other, then the reverse.
    let mut client = pg.client("deploy");
    let rows = client
        .query(
            "SELECT how, digest FROM weir_deployments WHERE stage = 'parser' AND how <> 'configured' ORDER BY id",
            &[],
        )
        .unwrap();
    let hows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let (d1, d2) = (digest(&v1), digest(&v2));
    assert_eq!(
        hows,
        vec![
            ("deploy".into(), d2.clone()),
            ("follow".into(), d2.clone()),
            ("rollback".into(), d1.clone()),
            ("follow".into(), d1.clone())
        ],
        "{hows:?}"
    );
    // Per partition, the checkpoints' parser versions follow the switches in order: the
    // first version, the deployed one, the first again (a partition that received its
    // first records only after the deploy starts later in that order); never back and forth.
    let log = client.query("SELECT plugins, offsets FROM weir_checkpoint_log ORDER BY id", &[]).unwrap();
    let mut phases: std::collections::BTreeMap<i32, Vec<String>> = Default::default();
    for r in &log {
        let plugins: String = r.get(0);
        // The stages in order: the parser first.
        let parser = digest(plugins.split(',').next().unwrap());
        assert!(parser == d1 || parser == d2, "the parser ran one of the two versions: {plugins}");
        let offsets: Vec<(i32, i64)> = serde_json::from_str(r.get::<_, &str>(1)).unwrap();
        for (partition, _) in offsets {
            let seen = phases.entry(partition).or_default();
            if seen.last() != Some(&parser) {
                seen.push(parser.clone());
            }
        }
    }
    let order = [d1.clone(), d2.clone(), d1.clone()];
    assert_eq!(phases.len(), 6, "every partition was checkpointed: {phases:?}");
    for (partition, seen) in &phases {
        assert!(order.ends_with(seen), "partition {partition}: {seen:?}, not a suffix of {order:?}");
    }
    assert!(phases.values().any(|seen| seen.len() == 3), "some partition ran all three phases: {phases:?}");
}

/// A host that does not fit the group is refused before it reads anything, with a message
/// that names the host it conflicts with and what to change: other plugin versions, or
/// another consumer group writing the same pipeline into the same sink.
#[test]
fn a_host_that_does_not_fit_the_group_is_refused_with_the_reason() {
    use weir_tests::guests::JSON_PARSER;
    let broker = Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "");
    let out = produce(&broker, "trips-fit", "none", 1, 1_000, START, None).wait_with_output().unwrap();
    assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    let url = pg.create_database("fit");
    let admin = free_addr();
    let mut a = group::host_at(&pipeline, &broker, "trips-fit", &url, "fit", &admin, "120s");
    wait_status(&admin, &mut a, Duration::from_secs(60), |s| {
        s["group"]["hosts"].as_array().is_some_and(|h| h.len() == 1)
    });

    // Another parser file under the same pipeline name and sink.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("json_parser_v2.wasm"), weir_tests::marked(JSON_PARSER, "2")).unwrap();
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("plugin = \"json_parser\"", "plugin = \"json_parser_v2.wasm\"");
    let v2 = other.join("pipeline-kafka.toml");
    std::fs::write(&v2, text).unwrap();
    let (ok, _, stderr) = group::ended(host(&v2, &broker, "trips-fit", &url, "fit"));
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("runs plugins")
            && stderr.contains("weir plugin deploy")
            && stderr.contains(&format!(":{} (heartbeat", a.id())),
        "{stderr}"
    );

    // The same pipeline in another consumer group.
    let (ok, _, stderr) = group::ended(host(&pipeline, &broker, "trips-fit", &url, "another-group"));
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("consumer group \"fit\"") && stderr.contains("\"another-group\""), "{stderr}");

    let _ = std::process::Command::new("kill").args(["-INT", &a.id().to_string()]).status();
    finish(a, "a");
}

/// A version one host of the group cannot run is refused for the whole group: host A,
/// which has read nothing yet, would take a validator that traps on fares above 40;
/// host B tries it on its recent input, refuses, and nothing switches anywhere.
#[test]
fn a_version_one_host_cannot_run_is_refused_for_the_whole_group() {
    use weir_tests::guests::TRAPPING_VALIDATOR;
    let broker = Broker::start();
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "");
    let topic = "trips-refuse";
    let url = pg.create_database("refuse");
    let b_admin = free_addr();
    let mut b = group::host_at(&pipeline, &broker, topic, &url, "refuse", &b_admin, "120s");
    // Paced over 5 s, so that B keeps several batches of it for trials (a host samples
    // its input every 500 ms), among them fares above 40.
    let out = produce(&broker, topic, "none", 1, 10_000, START, Some(2_000)).wait_with_output().unwrap();
    assert!(out.status.success(), "weir produce: {}", String::from_utf8_lossy(&out.stderr));
    wait_committed(&pg, "refuse", 9_999, &mut b);
    let a_admin = free_addr();
    let mut a = group::host_at(&pipeline, &broker, topic, &url, "refuse", &a_admin, "120s");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !group::group_ready(&a_admin, 2) {
        assert!(std::time::Instant::now() < deadline, "the two hosts did not share the topic");
        assert!(a.try_wait().unwrap().is_none() && b.try_wait().unwrap().is_none(), "a host exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    let validator = |admin: &str| -> String {
        let (ok, status, why) = weir_tests::weir_cli(admin, &["pipeline", "status", "--json"]);
        assert!(ok, "{why}");
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        status["measured"]["stages"][1]["version"].as_str().unwrap().to_string()
    };
    let before = (validator(&a_admin), validator(&b_admin));
    let deploy = ["plugin", "deploy", "--pipeline", "rides", "--stage", "validators[0]", TRAPPING_VALIDATOR];
    let (ok, report, why) = weir_tests::weir_cli(&a_admin, &deploy);
    assert!(!ok, "the group refuses it: {report}");
    assert!(
        why.contains("refused by the group") && why.contains("cannot run it") && why.contains("fare above 40"),
        "{why}"
    );
    assert!(why.contains(&format!(":{} cannot run it", b.id())), "host B is named: {why}");
    assert_eq!((validator(&a_admin), validator(&b_admin)), before, "the old version runs on both");
    let deployed: i64 = pg
        .client("refuse")
        .query_one("SELECT count(*) FROM weir_deployments WHERE how <> 'configured'", &[])
        .unwrap()
        .get(0);
    assert_eq!(deployed, 0, "nothing was switched anywhere");
    for (host, name) in [(a, "a"), (b, "b")] {
        let _ = std::process::Command::new("kill").args(["-INT", &host.id().to_string()]).status();
        finish(host, name);
    }
}
