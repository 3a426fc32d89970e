//! What the host refuses at load, and what it remembers between loads.

use weir::plugin::{PluginKind, PluginRuntime, Policy, RuntimeOptions};
use weir_tests::{guests, runtime};

fn refusal(bytes: &[u8], name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    format!("{:#}", runtime().load(&path, &Policy::none()).unwrap_err())
}

#[test]
fn a_file_that_is_not_a_component_is_refused() {
    let err = refusal(b"{\"not\": \"wasm\"}", "notes.wasm");
    assert!(err.contains("plugin notes") && err.contains("not a WebAssembly component"), "{err}");
    // The smallest valid core module: a module, not a component.
    let err = refusal(b"\0asm\x01\0\0\0", "core.wasm");
    assert!(err.contains("plugin core") && err.contains("core WebAssembly module"), "{err}");
}

#[test]
fn a_component_of_another_world_is_refused() {
    let err = format!("{:#}", runtime().load(guests::WRONG_WORLD.as_ref(), &Policy::none()).unwrap_err());
    assert!(err.contains("fixture_wrong_world"), "names the plugin: {err}");
    assert!(err.contains("exports no weir plugin interface") && err.contains("example:greeter/greet"), "{err}");
}

#[test]
fn an_incompatible_contract_version_is_refused() {
    let err = format!("{:#}", runtime().load(guests::FUTURE_CONTRACT.as_ref(), &Policy::none()).unwrap_err());
    assert!(err.contains("fixture_future_contract") && err.contains("weir:plugin@0.3.0"), "{err}");
}

#[test]
fn an_ungranted_capability_is_refused_and_a_grant_admits_it() {
    let err = format!("{:#}", runtime().load(guests::WANTS_SOCKETS.as_ref(), &Policy::none()).unwrap_err());
    assert!(
        err.contains("fixture_wants_sockets") && err.contains("not granted") && err.contains("wasi:sockets/"),
        "{err}"
    );
    let grants = Policy::granting(vec!["wasi:sockets/*".into()]);
    let component = runtime().load(guests::WANTS_SOCKETS.as_ref(), &grants).expect("granted sockets load");
    assert_eq!(component.kind, PluginKind::Parser);
}

#[test]
fn reference_plugins_declare_their_world_and_import_nothing_dangerous() {
    for (path, kind) in [
        (guests::JSON_PARSER, PluginKind::Parser),
        (guests::RULES_VALIDATOR, PluginKind::Validator),
        (guests::WINDOW_STATS, PluginKind::Aggregator),
        (guests::PROJECTION, PluginKind::Transform),
    ] {
        let component = runtime().load(path.as_ref(), &Policy::none()).unwrap();
        assert_eq!(component.kind, kind, "{path}");
        assert_eq!(component.contract, weir::plugin::CONTRACT_VERSION);
        assert!(component.digest.starts_with("sha256:") && component.digest.len() == 71);
        for import in &component.imports {
            assert!(!import.starts_with("wasi:sockets") && !import.starts_with("wasi:http"), "{path} imports {import}");
        }
    }
}

#[test]
fn compiled_code_is_cached_by_digest() {
    let cache = tempfile::tempdir().unwrap();
    let options = || RuntimeOptions { cache_dir: Some(cache.path().to_path_buf()), ..Default::default() };
    let first = PluginRuntime::new(options()).unwrap().load(guests::PROJECTION.as_ref(), &Policy::none()).unwrap();
    assert!(!first.from_cache);
    let entries: Vec<_> =
        std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].starts_with(first.digest.as_str()), "{entries:?}");
    let second = PluginRuntime::new(options()).unwrap().load(guests::PROJECTION.as_ref(), &Policy::none()).unwrap();
    assert!(second.from_cache, "a restart reuses the compiled code");
    assert_eq!(second.digest, first.digest);
}
