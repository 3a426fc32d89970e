//! Shared harness for weir's end-to-end tests: the paths of the freshly built guest
//! components, and small helpers to load and configure them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use weir::plugin::{Limits, Plugin, PluginComponent, PluginKind, PluginRuntime, Policy, RuntimeOptions};

/// Paths of the components built by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

pub mod api;
pub mod faults;
pub mod fuzz;
pub mod group;
pub mod hostile;
pub mod ingest;
pub mod island;
pub mod kills;
pub mod lateness;
pub mod outputs;
pub mod quality;
pub mod s3;
pub mod services;
pub mod sessions;

/// The epoch tick the tests run with.
pub const TICK: Duration = Duration::from_millis(10);

/// One runtime per test binary, with the compile cache in a temporary directory so
/// tests never read a cache another run wrote.
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<(PluginRuntime, tempfile::TempDir)> = OnceLock::new();
    &RUNTIME
        .get_or_init(|| {
            let cache = tempfile::tempdir().expect("temporary cache dir");
            let options =
                RuntimeOptions { epoch_tick: TICK, cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
            (PluginRuntime::new(options).expect("plugin runtime"), cache)
        })
        .0
}

/// Loads a built guest with no extra grants.
pub fn load(path: &str) -> Arc<PluginComponent> {
    runtime().load(path.as_ref(), &Policy::none()).unwrap_or_else(|e| panic!("loading {path}: {e:#}"))
}

/// Loads and configures a guest.
pub fn plugin(path: &str, kind: PluginKind, config: &serde_json::Value, limits: Limits) -> Plugin {
    Plugin::new(load(path), kind, &config.to_string(), limits).unwrap_or_else(|e| panic!("starting {path}: {e:#}"))
}

fn build_weir(release: bool) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.current_dir(&root).args(["build", "-q", "-p", "weir", "--bin", "weir"]);
    // Cargo sets these for the test; a build script that watches them (ring's) would
    // otherwise build again, with all that depends on it, whenever weir is built outside a test.
    let per_package =
        ["CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"];
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_") || name.starts_with("CARGO_BIN_") || per_package.contains(&name.as_ref()) {
            build.env_remove(name.as_ref());
        }
    }
    if release {
        build.arg("--release");
    }
    assert!(build.status().expect("running cargo").success(), "building weir");
    // This binary is target/<profile>/deps/<name>-<hash>, wherever the target directory is.
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.ancestors().nth(3).expect("target dir");
    target.join(if release { "release" } else { "debug" }).join("weir")
}

/// The `weir` binary of this build, built once per test binary: the release build when
/// `WEIR_TEST_RELEASE` is set (`cargo xtask faults` runs the full suite's millions of
/// events against what users run).
pub fn weir_bin() -> &'static std::path::Path {
    static BIN: OnceLock<std::path::PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_weir(std::env::var_os("WEIR_TEST_RELEASE").is_some()))
}

/// The release build of `weir`, for benchmarks.
pub fn weir_release_bin() -> &'static std::path::Path {
    static BIN: OnceLock<std::path::PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_weir(true))
}

/// The directory of the built reference plugins.
pub fn plugin_dir() -> &'static std::path::Path {
    std::path::Path::new(guests::JSON_PARSER).parent().expect("guests live in a directory")
}

/// The rides example (`examples/rides/pipeline.toml`) written into `dir` with its data
/// beside it, unpaced, with each `(from, to)` replaced; panics if `from` is not in it, so
/// a changed example cannot silently stop a test from configuring what it means to.
pub fn rides_pipeline(dir: &std::path::Path, replace: &[(&str, &str)]) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rides/pipeline.toml");
    let mut text = std::fs::read_to_string(path).expect("reading the rides example");
    let standard = [("${WEIR_DATA_DIR:-.weir}", "."), ("pace = 20000", "")];
    for (from, to) in standard.iter().chain(replace) {
        assert!(text.contains(from), "the rides example has no {from:?}");
        text = text.replace(from, to);
    }
    let pipeline = dir.join("pipeline.toml");
    std::fs::write(&pipeline, text).expect("writing the pipeline");
    pipeline
}

/// A child process that is killed when dropped, so that a failing test leaves no host
/// or browser running behind it.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

/// A free loopback address for a host's admin API.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").to_string()
}

/// The component at `path` with a custom section appended: a different artifact (and
/// digest) that behaves exactly like the original, as a rebuilt version would.
pub fn marked(path: &str, marker: &str) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let name = b"weir-test-version";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(marker.as_bytes());
    bytes.push(0); // custom section
    let mut len = payload.len();
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    bytes.extend_from_slice(&payload);
    bytes
}

/// `weir <args>` against a running host at `addr`: whether it succeeded, its stdout
/// (the JSON report) and its stderr (the reason of a refusal).
pub fn weir_cli(addr: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(weir_bin()).args(args).args(["--admin", addr]).output().expect("running weir");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `GET /api/status` of the host at `addr` until `done` holds for it, or panics
/// after `within`; fails early if the host exited.
pub fn wait_status(
    addr: &str,
    child: &mut std::process::Child,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the host exited with {status} while waiting");
        }
        let (ok, out, _) = weir_cli(addr, &["pipeline", "status", "--json"]);
        if ok {
            if let Ok(status) = serde_json::from_str::<serde_json::Value>(&out) {
                if done(&status) {
                    return status;
                }
            }
        }
        assert!(std::time::Instant::now() < deadline, "the host did not get there within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A plain HTTP GET on loopback: the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    // HTTP/1.0: the whole body, never chunked.
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}
