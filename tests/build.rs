//! Builds the reference plugins and the test fixtures as components and exposes their
//! paths as constants (`tests/src/lib.rs`), so a fixture no test uses fails to compile
//! and every test runs against freshly built guests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant, package, file stem)
const GUESTS: &[(&str, &str, &str)] = &[
    ("JSON_PARSER", "json-parser", "json_parser"),
    ("RULES_VALIDATOR", "rules-validator", "rules_validator"),
    ("WINDOW_STATS", "window-stats", "window_stats"),
    ("PROJECTION", "projection", "projection"),
    ("AVRO_PARSER", "avro-parser", "avro_parser"),
    ("ENRICH", "enrich", "enrich"),
    ("JSON_SCHEMA_PARSER", "json-schema-parser", "json_schema_parser"),
    ("HOSTILE", "fixture-hostile", "fixture_hostile"),
    ("WRONG_WORLD", "fixture-wrong-world", "fixture_wrong_world"),
    ("FUTURE_CONTRACT", "fixture-future-contract", "fixture_future_contract"),
    ("WANTS_SOCKETS", "fixture-wants-sockets", "fixture_wants_sockets"),
    ("TRAPPING_VALIDATOR", "fixture-trapping-validator", "fixture_trapping_validator"),
    ("STRICT_VALIDATOR", "fixture-strict-validator", "fixture_strict_validator"),
    ("COUNTER", "fixture-counter", "fixture_counter"),
    ("COUNTER_V2", "fixture-counter-v2", "fixture_counter_v2"),
    ("COUNTER_WIDE", "fixture-counter-wide", "fixture_counter_wide"),
    ("COUNTER_RENAMED", "fixture-counter-renamed", "fixture_counter_renamed"),
    ("ROGUE", "fixture-rogue", "fixture_rogue"),
];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("tests/ sits in the workspace").to_path_buf();
    for dir in ["wit", "sdk", "plugins", "tests/fixtures"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    // A target dir of its own: the outer cargo holds the lock on the main one.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("guests");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"]).arg(&target);
    for (_, package, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // Flags meant for the host build must not leak into the guest build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_PROFILE_RELEASE_DEBUG"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo to build the guests");
    assert!(
        status.success(),
        "building the wasm32-wasip2 guests failed; is the target installed? (`rustup target add wasm32-wasip2`, which `cargo xtask test` runs)"
    );
    let mut out = String::new();
    for (constant, _, stem) in GUESTS {
        let path = target.join("wasm32-wasip2/release").join(format!("{stem}.wasm"));
        assert!(Path::new(&path).exists(), "{} was not built", path.display());
        out.push_str(&format!(
            "/// The built `{stem}` component.\npub const {constant}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("guests.rs");
    std::fs::write(dest, out).expect("writing guests.rs");
}
