//! Plugins written in Python (`sdk/python`, componentize-py): built by `weir plugin build`,
//! run in the rides pipeline with the Rust plugin's results, and held by the sandbox like
//! any plugin: an exception, an endless loop, a 1 GiB allocation and runaway recursion
//! each cost the one record, with the reason named.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use weir::plugin::{FailureKind, Limits, Plugin, PluginKind, Policy, ValidatorStage};
use weir_sdk::{Column, ColumnValues, EventBatch};
use weir_tests::services::repo_root;
use weir_tests::{plugin_dir, rides_pipeline, runtime, weir_bin};

fn weir(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(weir_bin())
        .args(args)
        .env("WEIR_PLUGIN_DIR", plugin_dir())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Builds the Python project at `project` (relative to the repository) with `weir plugin
/// build`, in a copy so the source tree stays clean; returns the component.
fn build(project: &str) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    for entry in std::fs::read_dir(repo_root().join(project)).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let out = weir(&["plugin", "build", dir.to_str().unwrap()], &dir);
    assert!(out.status.success(), "weir plugin build {project}: {}", String::from_utf8_lossy(&out.stderr));
    let wasm = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(wasm.starts_with(dir.join("build")), "the component lands in the project's build/: {}", wasm.display());
    wasm
}

fn rules_validator_py() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("plugins/rules-validator-py"))
}

/// `(window_start, city, trips, avg_fare, sum_fare)` and `(partition, offset, reason)` of
/// the dead letters, from a rides run into SQLite.
type Held = (Vec<(String, String, i64, f64, f64)>, Vec<(i64, i64, String)>);

fn rides_with(validator: &str) -> Held {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = rides_pipeline(
        dir.path(),
        &[("events = 1000000", "events = 30000"), ("plugin = \"rules_validator\"", &format!("plugin = {validator:?}"))],
    );
    let out = weir(&["run", pipeline.to_str().unwrap(), "--until-idle", "2s", "--quiet", "--no-admin"], dir.path());
    assert!(out.status.success(), "weir run with {validator}: {}", String::from_utf8_lossy(&out.stderr));
    let conn = rusqlite::Connection::open(dir.path().join("rides.db")).unwrap();
    let mut rows = conn
        .prepare("SELECT window_start, city, trips, avg_fare, sum_fare FROM rides_city_minute ORDER BY 1, 2")
        .unwrap();
    let rows = rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))).unwrap();
    let mut dead =
        conn.prepare("SELECT source_partition, source_offset, reason FROM weir_dead_letters ORDER BY 1, 2").unwrap();
    let dead = dead.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
    (rows.map(Result::unwrap).collect(), dead.map(Result::unwrap).collect())
}

#[test]
fn the_python_rules_validator_gives_the_rust_ones_results_in_the_rides_pipeline() {
    let python = rules_validator_py().to_str().unwrap().to_string();
    let out = weir(&["plugin", "inspect", &python], repo_root());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("weir:plugin/validator-plugin"), "inspect reads the Python component: {shown}");
    assert!(!shown.contains("wasi:"), "the component imports no WASI at all: {shown}");

    let (rust_rows, rust_dead) = rides_with("rules_validator");
    let (py_rows, py_dead) = rides_with(&python);
    assert!(rust_dead.iter().any(|(_, _, r)| r.contains("fare-non-negative")), "the run has rule violations");
    assert_eq!(py_dead, rust_dead, "the same records dead-lettered, for the same reasons");
    assert!(rust_rows.len() > 10, "the run wrote windows: {}", rust_rows.len());
    assert_eq!(py_rows, rust_rows, "the same windows");
}

#[test]
fn a_python_config_error_names_the_key() {
    let component = runtime().load(rules_validator_py(), &Policy::none()).unwrap();
    let config = r#"{"rules": [{"field": "fare", "min": 0, "severity": "fatal"}]}"#;
    let err = Plugin::new(component, PluginKind::Validator, config, Limits::default()).err().unwrap();
    assert!(format!("{err:#}").contains("config.rules[0].severity: 'fatal' is not warn"), "{err:#}");
}

fn hostile() -> Plugin {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let path = BUILT.get_or_init(|| build("tests/python-plugins/hostile-validator"));
    let limits = Limits { max_memory_bytes: 256 << 20, deadline: Duration::from_millis(500) };
    let component = runtime().load(path, &Policy::none()).unwrap();
    Plugin::new(component, PluginKind::Validator, "{}", limits).unwrap()
}

/// Validates eight fares with `bad` at row 5 (and a negative one at row 2): returns the
/// failure's reason after checking that only row 5 failed and the rest were judged.
fn survives(bad: f64, kind: FailureKind) -> String {
    let mut plugin = hostile();
    let fares = vec![10.0, 1.0, -4.0, 12.0, 30.0, bad, 8.0, 9.0];
    let events = EventBatch { len: 8, columns: vec![Column::new(ColumnValues::Float64(fares))] };
    let judged = plugin.validate(&events);
    assert_eq!(judged.failures.len(), 1, "{:?}", judged.failures);
    let failure = &judged.failures[0];
    assert_eq!((failure.index, failure.failure.kind()), (5, kind), "{}", failure.failure);
    let rows: Vec<u32> = judged.violations.iter().map(|v| v.row).collect();
    assert_eq!(rows, vec![2], "the other rows are judged, once");
    let next = plugin.validate(&EventBatch { len: 1, columns: vec![Column::new(ColumnValues::Float64(vec![-1.0]))] });
    assert!(next.failures.is_empty() && next.violations.len() == 1, "the next batch runs in a fresh instance");
    failure.failure.to_string()
}

#[test]
fn a_python_exception_costs_its_record_and_keeps_its_message() {
    let reason = survives(13.0, FailureKind::Trap);
    assert!(reason.contains("raised ValueError: unlucky fare 13.0 (at hostile_validator.py:19)"), "{reason}");
}

#[test]
fn a_python_endless_loop_is_cut_off_at_its_deadline() {
    survives(66.0, FailureKind::Timeout);
}

#[test]
fn a_python_1_gib_allocation_is_denied() {
    survives(77.0, FailureKind::Memory);
}

#[test]
fn python_runaway_recursion_costs_its_record() {
    let reason = survives(99.0, FailureKind::Trap);
    assert!(reason.contains("RecursionError"), "{reason}");
}

/// `weir plugin new --lang python` of each kind: its unit test passes in CPython, it
/// builds, and `weir plugin test` runs its sample through the component.
#[test]
fn a_new_python_project_of_each_kind_tests_builds_and_runs_its_sample() {
    let dir = tempfile::tempdir().unwrap();
    let expected = [
        ("validator", "3 events: 1 violations, 0 plugin failures"),
        ("transform", "2 events in, 1 out, 0 plugin failures"),
        ("parser", "3 records: 2 events, 1 errors, 0 plugin failures"),
        ("aggregator", "3 events folded into one group, 0 plugin failures"),
    ];
    for (kind, summary) in expected {
        let name = format!("fares-{kind}");
        let out = weir(&["plugin", "new", &name, "--kind", kind, "--lang", "python"], dir.path());
        assert!(out.status.success(), "plugin new {kind}: {}", String::from_utf8_lossy(&out.stderr));
        let project = dir.path().join(&name);
        let unit = Command::new("python3")
            .args(["-m", "unittest"])
            .env("PYTHONPATH", repo_root().join("sdk/python"))
            .current_dir(&project)
            .output()
            .unwrap();
        assert!(unit.status.success(), "{kind}'s unit test: {}", String::from_utf8_lossy(&unit.stderr));
        let out = weir(&["plugin", "build"], &project);
        assert!(out.status.success(), "plugin build {kind}: {}", String::from_utf8_lossy(&out.stderr));
        let wasm = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let out = weir(&["plugin", "test", &wasm, "--input", "sample.jsonl"], &project);
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && text.contains(summary), "plugin test {kind}: {text}");
    }
}

/// A project that does not compile fails the build with Python's message, the file and
/// the line; without componentize-py, the build names the command that installs it.
#[test]
fn a_broken_python_project_or_a_missing_toolchain_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = weir(&["plugin", "new", "broken", "--kind", "validator", "--lang", "python"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let project = dir.path().join("broken");
    let source = project.join("broken.py");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, text.replace("def validate(self, batch):", "def validate(self, batch:")).unwrap();
    let out = weir(&["plugin", "build"], &project);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a syntax error fails the build");
    assert!(err.contains(&format!("File \"{}\", line 9", source.display())), "names the file and line: {err}");
    assert!(err.contains("SyntaxError"), "{err}");

    let out = Command::new(weir_bin())
        .args(["plugin", "build"])
        .env("PATH", "/nonexistent")
        .current_dir(&project)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pip install componentize-py==0.25.0"), "{err}");
}
