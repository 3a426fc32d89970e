//! Deploying plugin versions into a running host (files → SQLite): an aggregator whose
//! state encoding changes carries every open window across the switch and back, a
//! restart resumes the deployed version, a watched plugin file deploys itself, and
//! versions that do not fit are refused while the running one keeps going. (The rides
//! pipeline on Kafka and PostgreSQL is swapped under load in `pipeline_postgres.rs`.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rusqlite::Connection;
use weir_tests::guests::{
    COUNTER, COUNTER_RENAMED, COUNTER_V2, COUNTER_WIDE, HOSTILE, JSON_PARSER, TRAPPING_VALIDATOR, WINDOW_STATS,
};
use weir_tests::{free_addr, wait_status, weir_bin, weir_cli};

/// Every record's payload length is its key; all event times are 0, so every window
/// stays open and its state lives in memory across the switches.
fn pipeline(dir: &Path, watch: bool) -> std::path::PathBuf {
    pipeline_into(dir, watch, "sqlite://out.db")
}

/// [`pipeline`] into the sink at `url`.
fn pipeline_into(dir: &Path, watch: bool, url: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::copy(HOSTILE, dir.join("hostile.wasm")).unwrap();
    std::fs::copy(COUNTER, dir.join("counter.wasm")).unwrap();
    let text = format!(
        r#"
name = "lengths"
[source]
kind = "files"
path = "in"
follow = true
[parser]
plugin = "hostile.wasm"
[aggregator]
plugin = "counter.wasm"
watch = {watch}
[window]
kind = "tumbling"
size = "1m"
key = ["len"]
[sink]
url = "{url}"
table = "lengths"
[checkpoint]
interval = "100ms"
"#
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Lines of lengths 1 to 9, `n` of them, starting at `from` so files differ.
fn lines(from: usize, n: usize) -> String {
    (from..from + n).map(|i| format!("{}\n", "x".repeat(1 + i % 9))).collect()
}

fn count_by_length(text: &str) -> BTreeMap<i64, i64> {
    let mut want = BTreeMap::new();
    for line in text.lines() {
        *want.entry(line.len() as i64).or_default() += 1;
    }
    want
}

fn start(pipeline: &Path, addr: &str) -> Child {
    Command::new(weir_bin())
        .args(["run", pipeline.to_str().unwrap(), "--quiet", "--admin", addr, "--until-idle", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Stops the host with SIGINT and returns its stderr.
fn stop(child: Child) -> String {
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "weir run: {stderr}");
    stderr
}

fn wait_records(addr: &str, child: &mut Child, n: u64) {
    wait_status(addr, child, Duration::from_secs(60), |s| {
        s["records"].as_u64() == Some(n) && s["checkpoints"].as_u64().is_some_and(|c| c > 0)
    });
}

fn deploy(addr: &str, stage: &str, file: &Path) -> (bool, String, String) {
    weir_cli(addr, &["plugin", "deploy", "--pipeline", "lengths", "--stage", stage, file.to_str().unwrap()])
}

fn table(db: &Path) -> BTreeMap<i64, i64> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT len, rows FROM lengths").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn an_aggregator_state_migrates_across_deploy_restart_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), false);
    let written = std::cell::RefCell::new(String::new());
    let add = |name: &str, text: String| {
        std::fs::write(dir.path().join("in").join(name), &text).unwrap();
        written.borrow_mut().push_str(&text);
    };
    add("a.jsonl", lines(0, 1000));
    let addr = free_addr();
    let mut host = start(&pipeline, &addr);
    wait_records(&addr, &mut host, 1000);

    // Broken versions are refused, and say why.
    let (ok, _, why) = deploy(&addr, "aggregator", Path::new(HOSTILE));
    assert!(!ok && why.contains("is a parser; this stage needs a aggregator"), "{why}");
    let (ok, _, why) = deploy(&addr, "parser", Path::new(JSON_PARSER));
    assert!(!ok && why.contains("does not fit the pipeline") && why.contains("refused its config"), "{why}");
    let (ok, _, why) = deploy(&addr, "sink", Path::new(COUNTER_V2));
    assert!(!ok && why.contains("stage \"sink\""), "{why}");
    let (ok, _, why) = deploy(&addr, "aggregator", Path::new(COUNTER));
    assert!(!ok && why.contains("already runs"), "{why}");

    // v2 encodes its state differently: the open windows are migrated at the switch.
    let (ok, report, why) = deploy(&addr, "aggregator", Path::new(COUNTER_V2));
    assert!(ok, "{why}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["trial"]["states_checked"], 9, "{report}");
    assert!(report["version"].as_str().unwrap().starts_with("fixture_counter_v2@sha256:"), "{report}");
    add("b.jsonl", lines(1000, 1000));
    wait_records(&addr, &mut host, 2000);
    stop(host);
    assert_eq!(table(&dir.path().join("out.db")), count_by_length(&written.borrow()));

    // A restart resumes v2 (the pipeline file still names v1), with its states.
    let mut host = start(&pipeline, &addr);
    add("c.jsonl", lines(2000, 500));
    wait_records(&addr, &mut host, 500);
    // Rolling back migrates them to v1's encoding again.
    let (ok, report, why) = weir_cli(&addr, &["plugin", "rollback", "--pipeline", "lengths", "--stage", "aggregator"]);
    assert!(ok, "{why}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["how"], "rollback", "{report}");
    assert!(report["version"].as_str().unwrap().starts_with("counter@sha256:"), "{report}");
    add("d.jsonl", lines(2500, 500));
    wait_records(&addr, &mut host, 1000);
    let (ok, list, _) = weir_cli(&addr, &["plugin", "list"]);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let stderr = stop(host);
    assert!(stderr.contains("aggregator runs fixture_counter_v2@"), "{stderr}");
    assert_eq!(table(&dir.path().join("out.db")), count_by_length(&written.borrow()));

    // The history: what ran in each stage, how it came, and where it took over.
    let conn = Connection::open(dir.path().join("out.db")).unwrap();
    let mut stmt = conn.prepare("SELECT stage, how, state_version FROM weir_deployments ORDER BY id").unwrap();
    let history: Vec<(String, String, Option<u32>)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    let aggregator: Vec<(&str, Option<u32>)> =
        history.iter().filter(|h| h.0 == "aggregator").map(|h| (h.1.as_str(), h.2)).collect();
    assert_eq!(aggregator, [("configured", Some(1)), ("deploy", Some(2)), ("rollback", Some(1))]);
    assert_eq!(list["history"].as_array().unwrap().len(), history.len(), "{list}");
    // Each checkpoint names the versions that processed it.
    let mut stmt = conn.prepare("SELECT plugins FROM weir_checkpoint_log ORDER BY id").unwrap();
    let versions: Vec<String> = stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    let mut runs: Vec<bool> = versions.iter().map(|v| v.contains("fixture_counter_v2@")).collect();
    runs.dedup();
    assert_eq!(runs, [false, true, false], "v1, then v2 across the restart, then v1: {versions:?}");
}

/// A version whose output adds a column is switched in, while files keep arriving, with
/// the column added to the table at its checkpoint; one that would drop or rename a
/// column is refused, saying so. In SQLite and in PostgreSQL.
#[test]
fn a_new_output_column_is_added_at_the_switch_and_a_dropped_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rows = adds_a_column(dir.path(), "sqlite://out.db");
    let conn = Connection::open(dir.path().join("out.db")).unwrap();
    let mut stmt = conn.prepare("SELECT len, rows, doubled FROM lengths").unwrap();
    let got: Vec<(i64, i64, Option<i64>)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert_added(&got, &rows);
    let how: Vec<String> = conn
        .prepare("SELECT how FROM weir_deployments WHERE stage = 'aggregator' ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(how, ["configured", "deploy"]);

    // The history: the aggregator's two versions, each with its schema, and the offsets
    // of each file partition split between them where the switch came.
    let out = Command::new(weir_bin())
        .args(["schema", "history", dir.path().join("pipeline.toml").to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let history: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = history["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "aggregator").unwrap()["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(runs.len(), 2, "{history}");
    assert!(runs[0]["version"].as_str().unwrap().starts_with("counter@sha256:"), "{history}");
    assert_eq!(runs[0]["schema"], "reads (len int64), outputs (rows int64), state version 1", "{history}");
    assert_eq!(
        (runs[1]["how"].as_str(), runs[1]["checkpoints"].as_u64().is_some_and(|n| n > 0)),
        (Some("deploy"), true)
    );
    assert!(runs[1]["schema"].as_str().unwrap().contains("outputs (rows int64, doubled int64?)"), "{history}");
    let spans = |run: &serde_json::Value| -> BTreeMap<String, (i64, i64)> {
        run["offsets"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(p, s)| (p.clone(), (s[0].as_i64().unwrap(), s[1].as_i64().unwrap())))
            .collect()
    };
    let (before, after) = (spans(&runs[0]), spans(&runs[1]));
    assert!(!after.is_empty(), "{history}");
    for (partition, (first, _)) in &after {
        if let Some((_, last)) = before.get(partition) {
            assert_eq!(*first, last + 1, "partition {partition}: the new version starts where the old one stopped");
        } else {
            assert_eq!(*first, 0, "partition {partition}: a file only the new version read");
        }
    }

    let pg = weir_tests::services::Postgres::start();
    let url = pg.create_database("lengths");
    let dir = tempfile::tempdir().unwrap();
    let rows = adds_a_column(dir.path(), &url);
    let got: Vec<(i64, i64, Option<i64>)> = pg
        .client("lengths")
        .query("SELECT len, rows, doubled FROM lengths", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_added(&got, &rows);
    // Each checkpoint's records went through one aggregator version: v1's, then the wide one's.
    let versions: Vec<String> = pg
        .client("lengths")
        .query("SELECT plugins FROM weir_checkpoint_log ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut runs: Vec<bool> = versions.iter().map(|v| v.contains("fixture_counter_wide@")).collect();
    runs.dedup();
    assert_eq!(runs, [false, true], "{versions:?}");
}

/// Runs the counter into `url`, refuses window_stats, deploys the wide counter while
/// files arrive, and returns the counts written.
fn adds_a_column(dir: &Path, url: &str) -> BTreeMap<i64, i64> {
    let pipeline = pipeline_into(dir, false, url);
    let mut written = lines(0, 900);
    std::fs::write(dir.join("in/a.jsonl"), &written).unwrap();
    let addr = free_addr();
    let mut host = start(&pipeline, &addr);
    wait_records(&addr, &mut host, 900);

    // window_stats, configured as the counter is (not at all), writes `count`, not `rows`.
    let (ok, _, why) = deploy(&addr, "aggregator", Path::new(WINDOW_STATS));
    assert!(!ok && why.contains("column rows (int64) would be dropped or renamed"), "{why}");
    assert!(
        why.contains("may only add output columns") && why.contains("versioned"),
        "says what a version may change: {why}"
    );

    // Files arrive during the deploy, and one more after it, so every window takes records
    // from the new version too.
    let arriving = {
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            (0..20)
                .map(|i| {
                    let text = lines(900 + i * 45, 45);
                    std::fs::write(dir.join(format!("in/b{i:02}.jsonl")), &text).unwrap();
                    std::thread::sleep(Duration::from_millis(25));
                    text
                })
                .collect::<String>()
        })
    };
    let (ok, _, why) = deploy(&addr, "aggregator", Path::new(COUNTER_WIDE));
    assert!(ok, "{why}");
    written.push_str(&arriving.join().unwrap());
    let last = lines(1800, 90);
    std::fs::write(dir.join("in/c.jsonl"), &last).unwrap();
    written.push_str(&last);
    wait_records(&addr, &mut host, 1890);
    stop(host);
    count_by_length(&written)
}

fn assert_added(got: &[(i64, i64, Option<i64>)], want: &BTreeMap<i64, i64>) {
    let counts: BTreeMap<i64, i64> = got.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(&counts, want, "the counts go on across the switch");
    assert!(got.iter().all(|(_, n, doubled)| *doubled == Some(2 * n)), "rows written by the new version: {got:?}");
}

/// With `[sink] versioned = true`, a version that renames the count column writes a new
/// table, `lengths_v2`; the old one becomes `lengths_v1`, and `lengths` a view in its
/// columns over both. A restart writes on into the newest version. In SQLite and PostgreSQL.
#[test]
fn a_breaking_version_writes_a_new_table_behind_a_view_of_the_old_name() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = renames_a_column(dir.path(), "sqlite://out.db");
    let conn = Connection::open(dir.path().join("out.db")).unwrap();
    let kind: String =
        conn.query_row("SELECT type FROM sqlite_master WHERE name = 'lengths'", [], |r| r.get(0)).unwrap();
    assert_eq!(kind, "view");
    let read = |sql: &str| -> BTreeMap<i64, Option<i64>> {
        conn.prepare(sql).unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
    };
    assert_versions(
        &before,
        &after,
        read("SELECT len, rows FROM lengths_v1"),
        read("SELECT len, count FROM lengths_v2"),
        read("SELECT len, rows FROM lengths"),
    );

    let pg = weir_tests::services::Postgres::start();
    let url = pg.create_database("lengths");
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = renames_a_column(dir.path(), &url);
    let mut client = pg.client("lengths");
    let mut read = |sql: &str| -> BTreeMap<i64, Option<i64>> {
        client.query(sql, &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let (v1, v2, view) = (
        read("SELECT len, rows FROM lengths_v1"),
        read("SELECT len, count FROM lengths_v2"),
        read("SELECT len, rows FROM lengths"),
    );
    assert_versions(&before, &after, v1, v2, view);
}

/// The counts at the switch and at the end, against what each table and the view hold.
fn assert_versions(
    before: &BTreeMap<i64, i64>,
    after: &BTreeMap<i64, i64>,
    v1: BTreeMap<i64, Option<i64>>,
    v2: BTreeMap<i64, Option<i64>>,
    view: BTreeMap<i64, Option<i64>>,
) {
    // v1 holds every window as the old version left it, never less than the count at
    // the switch; v2 holds the final counts (the state carried across); the view shows
    // each window once, from the newest table, in v1's columns: `rows` is not v2's.
    for (len, n) in before {
        assert!(v1[len].is_some_and(|m| m >= *n), "lengths_v1 {len}: {:?} < {n}", v1[len]);
    }
    assert_eq!(v2, after.iter().map(|(l, n)| (*l, Some(*n))).collect::<BTreeMap<_, _>>(), "v1 {v1:?}, view {view:?}");
    assert_eq!(view, after.keys().map(|l| (*l, None)).collect::<BTreeMap<_, _>>(), "each window once, from lengths_v2");
}

/// Runs the counter into `url` with a versioned sink, deploys the renamed counter, restarts
/// once, and returns the counts at the deploy and at the end.
fn renames_a_column(dir: &Path, url: &str) -> (BTreeMap<i64, i64>, BTreeMap<i64, i64>) {
    let pipeline = pipeline_into(dir, false, url);
    let text = std::fs::read_to_string(&pipeline)
        .unwrap()
        .replace("table = \"lengths\"", "table = \"lengths\"\nversioned = true");
    std::fs::write(&pipeline, text).unwrap();
    let mut written = lines(0, 900);
    std::fs::write(dir.join("in/a.jsonl"), &written).unwrap();
    let addr = free_addr();
    let mut host = start(&pipeline, &addr);
    wait_records(&addr, &mut host, 900);
    let before = count_by_length(&written);
    let (ok, _, why) = deploy(&addr, "aggregator", Path::new(COUNTER_RENAMED));
    assert!(ok, "{why}");
    let more = lines(900, 450);
    std::fs::write(dir.join("in/b.jsonl"), &more).unwrap();
    written.push_str(&more);
    wait_records(&addr, &mut host, 1350);
    stop(host);
    // A restart resumes the renamed version, into lengths_v2.
    let mut host = start(&pipeline, &addr);
    let more = lines(1350, 450);
    std::fs::write(dir.join("in/c.jsonl"), &more).unwrap();
    written.push_str(&more);
    wait_records(&addr, &mut host, 450);
    stop(host);
    (before, count_by_length(&written))
}

/// The trial holds against a new version only what the running one does not do too.
#[test]
fn a_version_failing_only_where_the_running_one_fails_is_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), false);
    std::fs::write(dir.path().join("in/a.jsonl"), lines(0, 300) + "panic\n").unwrap();
    let addr = free_addr();
    let mut host = start(&pipeline, &addr);
    wait_records(&addr, &mut host, 301);
    let (ok, _, why) = deploy(&addr, "parser", Path::new(TRAPPING_VALIDATOR));
    assert!(!ok && why.contains("is a validator"), "{why}");
    // The running parser (the hostile fixture) panics on "panic", and so does this copy.
    let marked = dir.path().join("hostile_again.wasm");
    std::fs::write(&marked, weir_tests::marked(HOSTILE, "2")).unwrap();
    let (ok, report, why) = deploy(&addr, "parser", &marked);
    assert!(ok, "the same behaviour is not a divergence: {why}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["trial"]["records"], 301, "{report}");
    stop(host);
}

#[test]
fn a_watched_plugin_file_deploys_each_new_version() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path(), true);
    let mut written = lines(0, 700);
    std::fs::write(dir.path().join("in/a.jsonl"), &written).unwrap();
    let addr = free_addr();
    let mut host = start(&pipeline, &addr);
    wait_records(&addr, &mut host, 700);
    // Written beside and renamed over, as a build would: the watcher never sees half a file.
    std::fs::copy(COUNTER_V2, dir.path().join("counter.wasm.new")).unwrap();
    std::fs::rename(dir.path().join("counter.wasm.new"), dir.path().join("counter.wasm")).unwrap();
    wait_status(&addr, &mut host, Duration::from_secs(30), |_| {
        let (_, list, _) = weir_cli(&addr, &["plugin", "list"]);
        list.contains("\"how\":\"watch\"")
    });
    let more = lines(700, 300);
    std::fs::write(dir.path().join("in/b.jsonl"), &more).unwrap();
    written.push_str(&more);
    wait_records(&addr, &mut host, 1000);
    stop(host);
    assert_eq!(table(&dir.path().join("out.db")), count_by_length(&written));
}
