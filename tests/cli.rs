//! The `weir` binary as a user drives it: scaffold, build and try a plugin of each
//! kind; inspect a component; try a hostile one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use weir_tests::{guests, weir_bin};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn weir(dir: &Path, args: &[&str]) -> Output {
    let cache = std::env::temp_dir().join("weir-cli-test-cache");
    Command::new(weir_bin()).current_dir(dir).args(args).env("WEIR_CACHE_DIR", cache).output().unwrap()
}

fn ok(output: Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "failed\nstdout: {stdout}\nstderr: {stderr}");
    stdout.into_owned()
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

#[test]
fn inspect_shows_world_digest_and_schemas() {
    let out = ok(weir(
        &root(),
        &[
            "plugin",
            "inspect",
            guests::WINDOW_STATS,
            "--config",
            r#"{"count":"trips","metrics":[{"column":"fare","stats":["avg"]}]}"#,
        ],
    ));
    let sha = Command::new("sha256sum").arg(guests::WINDOW_STATS).output().unwrap();
    let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap().to_string();
    assert!(out.contains(&format!("sha256:{sha}")), "{out}");
    assert!(out.contains("weir:plugin/aggregator-plugin@0.2.0"), "{out}");
    assert!(out.contains("outputs    trips int64, avg_fare float64?"), "{out}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(weir(&root(), &["plugin", "inspect", "--json", guests::JSON_PARSER]))).unwrap();
    assert_eq!(json["kind"], "parser");
    assert!(
        json["schemas"]["error"].as_str().unwrap().contains("invalid config"),
        "without a config the schema is unknown"
    );
}

#[test]
fn a_broken_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"not wasm").unwrap();
    let out = weir(dir.path(), &["plugin", "inspect", "broken.wasm"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plugin broken") && stderr.contains("not a WebAssembly component"), "{stderr}");
}

#[test]
fn plugin_test_reports_failures_and_keeps_going() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.jsonl"), "one\npanic\nthree\n").unwrap();
    let lines = json_lines(&ok(weir(dir.path(), &["plugin", "test", guests::HOSTILE, "--input", "in.jsonl"])));
    let events: Vec<_> =
        lines.iter().filter(|l| l.get("event").is_some()).map(|l| l["record"].as_u64().unwrap()).collect();
    assert_eq!(events, vec![0, 2]);
    let failure = lines.iter().find(|l| l.get("failure").is_some()).unwrap();
    assert_eq!((failure["record"].as_u64(), failure["failure"].as_str()), (Some(1), Some("trap")));
}

/// A fresh scaffold of `kind`, tested natively, built into a component and run over its sample.
fn scaffold_round_trip(kind: &str, extra_build_args: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("my-{kind}");
    ok(weir(dir.path(), &["plugin", "new", &name, "--kind", kind]));
    let crate_dir = dir.path().join(&name);
    // One target dir for all scaffolds, so their dependencies build once.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("scaffolds");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = Command::new(&cargo)
        .current_dir(&crate_dir)
        .args(["test", "-q"])
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    ok(test);
    let mut build = Command::new(weir_bin());
    build.current_dir(&crate_dir).args(["plugin", "build"]).args(extra_build_args).env("CARGO_TARGET_DIR", &target);
    let wasm = ok(build.output().unwrap()).trim().to_string();
    assert!(wasm.ends_with(&format!("{}.wasm", name.replace('-', "_"))), "{wasm}");
    json_lines(&ok(weir(&crate_dir, &["plugin", "test", &wasm, "--input", "sample.jsonl"])))
}

#[test]
fn a_new_plugin_of_each_kind_builds_and_runs() {
    let parser = scaffold_round_trip("parser", &["--no-cargo-component"]);
    assert_eq!(parser.iter().filter(|l| l.get("event").is_some()).count(), 2);
    assert_eq!(parser.iter().filter(|l| l.get("error").is_some()).count(), 1);

    let validator = scaffold_round_trip("validator", &[]);
    let verdicts: Vec<_> = validator.iter().map(|l| l["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, vec!["pass", "reject", "pass"]);

    let aggregator = scaffold_round_trip("aggregator", &[]);
    assert_eq!(aggregator[0]["output"], serde_json::json!({"count": 3, "total_fare": 42.5}));

    let transform = scaffold_round_trip("transform", &[]);
    assert_eq!(transform.len(), 1);
    assert_eq!(transform[0]["event"]["city"], "Lima");
}
