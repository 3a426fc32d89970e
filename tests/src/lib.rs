//! Shared harness for weir's end-to-end tests: the paths of the freshly built guest
//! components, and small helpers to load and configure them.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use weir::plugin::{Grants, Limits, Plugin, PluginComponent, PluginKind, PluginRuntime, RuntimeOptions};

/// Paths of the components built by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

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
    runtime().load(path.as_ref(), &Grants::none()).unwrap_or_else(|e| panic!("loading {path}: {e:#}"))
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
    if release {
        build.arg("--release");
    }
    assert!(build.status().expect("running cargo").success(), "building weir");
    // This binary is target/<profile>/deps/<name>-<hash>, wherever the target directory is.
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.ancestors().nth(3).expect("target dir");
    target.join(if release { "release" } else { "debug" }).join("weir")
}

/// The `weir` binary of this build, built once per test binary.
pub fn weir_bin() -> &'static std::path::Path {
    static BIN: OnceLock<std::path::PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_weir(false))
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
