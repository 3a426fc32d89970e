//! Sharing plugins through a real OCI registry (Debian's `docker-registry` on loopback):
//! push and pull by tag and by digest in the Wasm artifact layout, digest pinning, a
//! tampered blob, signatures a pipeline requires, a team's import allow-list, and a
//! running pipeline moved to a newly pushed version by a hot swap.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use weir_tests::guests::{JSON_PARSER, RULES_VALIDATOR, WANTS_SOCKETS, WINDOW_STATS};
use weir_tests::services::Registry;
use weir_tests::{free_addr, marked, rides_pipeline, wait_status, weir_bin, weir_cli, Reaped};

/// `weir` with a store of its own, so no test sees another's pulls.
struct Weir {
    dir: tempfile::TempDir,
}

impl Weir {
    fn new() -> Weir {
        Weir { dir: tempfile::tempdir().unwrap() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(weir_bin());
        cmd.args(args).current_dir(self.dir.path()).env("WEIR_CACHE_DIR", self.path("cache"));
        cmd.env_remove("WEIR_HOST_CONFIG");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `weir`, which must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "weir {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `weir`, which must fail; returns its stderr and stdout.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "weir {args:?} succeeded: {}", String::from_utf8_lossy(&out.stdout));
        format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout))
    }

    /// Pushes `file` to `reference` and returns the pinned reference it prints.
    fn push(&self, file: &str, reference: &str) -> String {
        let pinned = self.ok(&["plugin", "push", file, reference]).trim().to_string();
        assert!(pinned.starts_with(&format!("{reference}@sha256:")), "{pinned}");
        pinned
    }
}

fn sha256(bytes: &[u8]) -> String {
    weir::plugin::digest(bytes)
}

/// The manifest the registry serves for `reference` (`repo:tag` or `repo@digest`),
/// fetched with a plain HTTP request rather than weir's client.
fn manifest(registry: &Registry, repo: &str, reference: &str) -> (Vec<u8>, serde_json::Value) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(&registry.addr).unwrap();
    write!(
        stream,
        "GET /v2/{repo}/manifests/{reference} HTTP/1.0\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n",
        registry.addr
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = response[split..].to_vec();
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&response)));
    (body, json)
}

#[test]
fn push_then_pull_by_tag_and_by_digest_in_the_wasm_artifact_layout() {
    let registry = Registry::start();
    let weir = Weir::new();
    let original = std::fs::read(JSON_PARSER).unwrap();
    let tag = format!("oci://{}/rides/json-parser:v1", registry.addr);
    let pinned = weir.push(JSON_PARSER, &tag);
    let digest = pinned.rsplit_once('@').unwrap().1;

    // The layout wkg and wasmtime use, as the registry itself serves it.
    let (body, manifest) = manifest(&registry, "rides/json-parser", "v1");
    assert_eq!(sha256(&body), digest, "the printed digest is the manifest's");
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.wasm.config.v0+json");
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["mediaType"], "application/wasm");
    assert_eq!(layers[0]["digest"], sha256(&original));

    for reference in [tag.as_str(), &format!("oci://{}/rides/json-parser@{digest}", registry.addr)] {
        // A fresh store each time, so the bytes come from the registry.
        let puller = Weir::new();
        let out = puller.path("pulled.wasm");
        let printed = puller.ok(&["plugin", "pull", reference, "--output", out.to_str().unwrap()]);
        assert!(printed.trim().ends_with(&format!("@{digest}")), "{printed}");
        assert_eq!(std::fs::read(&out).unwrap(), original, "pulled by {reference}");
        // Compiled at pull, so the first run does not wait for Cranelift.
        let compiled = std::fs::read_dir(puller.path("cache")).unwrap().filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&sha256(&original)) && name.ends_with(".cwasm")
        });
        assert!(compiled, "pulling {reference} left no compiled component in the cache");
    }

    let inspected = weir.ok(&["plugin", "inspect", &pinned, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    assert_eq!(report["digest"], sha256(&original));
    assert_eq!(report["reference"], pinned);
    assert_eq!(report["world"], "weir:plugin/parser-plugin@0.2.0");
    assert_eq!(report["signature"]["status"], "unsigned");

    let missing = format!("oci://{}/rides/json-parser@sha256:{}", registry.addr, "0".repeat(64));
    let err = Weir::new().fails(&["plugin", "pull", &missing]);
    assert!(err.contains("pulling the manifest"), "{err}");
}

#[test]
fn a_tampered_blob_is_refused_in_the_registry_and_in_the_store() {
    let registry = Registry::start();
    let weir = Weir::new();
    let pinned = weir.push(RULES_VALIDATOR, &format!("oci://{}/rides/rules-validator:v1", registry.addr));
    let original = std::fs::read(RULES_VALIDATOR).unwrap();

    // The registry's copy of the component changes under it.
    let blob = registry.blob_path(&sha256(&original));
    let mut bytes = std::fs::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let puller = Weir::new();
    let err = puller.fails(&["plugin", "pull", &pinned]);
    assert!(err.contains(&sha256(&original)) && err.to_lowercase().contains("digest"), "{err}");
    assert!(!puller.path("cache/oci/blobs").exists(), "nothing refused is kept");

    // The pusher's store holds a good copy; changed on disk, it is refused at load.
    let dir = tempfile::tempdir().unwrap();
    let pipeline = rides_pipeline(dir.path(), &[("plugin = \"rules_validator\"", &format!("plugin = \"{pinned}\""))]);
    let plugins = weir_tests::plugin_dir().to_str().unwrap();
    weir.ok(&["validate", pipeline.to_str().unwrap(), "--plugins", plugins]);
    let stored = weir.path("cache/oci/blobs/sha256").join(sha256(&original).trim_start_matches("sha256:"));
    std::fs::write(&stored, &bytes).unwrap();
    let err = weir.fails(&["validate", pipeline.to_str().unwrap(), "--plugins", plugins]);
    assert!(err.contains("validators[0].plugin") && err.contains("changed on disk after it was pulled"), "{err}");
}

#[test]
fn a_pipeline_refuses_a_tag_unless_unpinned_references_are_allowed() {
    let registry = Registry::start();
    let weir = Weir::new();
    let tag = format!("oci://{}/rides/window-stats:v1", registry.addr);
    let pinned = weir.push(WINDOW_STATS, &tag);
    let dir = tempfile::tempdir().unwrap();
    let plugins = weir_tests::plugin_dir().to_str().unwrap();
    let pipeline = rides_pipeline(dir.path(), &[("plugin = \"window_stats\"", &format!("plugin = \"{tag}\""))]);
    let err = weir.fails(&["validate", pipeline.to_str().unwrap(), "--plugins", plugins]);
    assert!(err.contains("aggregator.plugin") && err.contains("names a tag, which can move"), "{err}");
    let out = weir.run(&["validate", pipeline.to_str().unwrap(), "--plugins", plugins, "--allow-unpinned"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("it names {pinned} now")));
}

/// Keys for teams `rides` and `other`, and a host config that trusts only `rides`, with
/// `allow` as the team's import allow-list when given.
fn trust(weir: &Weir, allow: Option<&str>) -> PathBuf {
    weir.ok(&["plugin", "keygen", "keys/rides"]);
    weir.ok(&["plugin", "keygen", "keys/other"]);
    let allow = allow.map(|a| format!("allow_imports = {a}\n")).unwrap_or_default();
    let host = weir.path("host.toml");
    std::fs::write(&host, format!("[teams.rides]\nkeys = [\"keys/rides.pub\"]\n{allow}")).unwrap();
    host
}

/// The rides pipeline with every plugin a file in `dir` and the trust section `trust`.
fn trusting_pipeline(dir: &Path, files: [&Path; 3], trust: &str) -> PathBuf {
    let path = rides_pipeline(
        dir,
        &[
            ("plugin = \"json_parser\"", &format!("plugin = {:?}", files[0])),
            ("plugin = \"rules_validator\"", &format!("plugin = {:?}", files[1])),
            ("plugin = \"window_stats\"", &format!("plugin = {:?}", files[2])),
            ("events = 1000000", "events = 20000"),
        ],
    );
    let text = std::fs::read_to_string(&path).unwrap() + "\n[trust]\n" + trust;
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_pipeline_that_requires_signatures_refuses_unsigned_foreign_and_tampered_plugins() {
    let weir = Weir::new();
    let host = trust(&weir, None);
    let host = host.to_str().unwrap();
    let copies: Vec<PathBuf> = [JSON_PARSER, RULES_VALIDATOR, WINDOW_STATS]
        .iter()
        .map(|p| {
            let to = weir.path(Path::new(p).file_name().unwrap().to_str().unwrap());
            std::fs::copy(p, &to).unwrap();
            to
        })
        .collect();
    let [parser, validator, aggregator] = [&copies[0], &copies[1], &copies[2]];
    let pipeline = trusting_pipeline(
        weir.dir.path(),
        [parser, validator, aggregator],
        "team = \"rides\"\nrequire_signatures = true\n",
    );
    let pipeline = pipeline.to_str().unwrap();
    let sign = |file: &Path, key: &str| weir.ok(&["plugin", "sign", file.to_str().unwrap(), "--key", key]);

    // Unsigned.
    let err = weir.fails(&["validate", pipeline, "--host-config", host]);
    assert!(err.contains("parser.plugin") && err.contains("it is not signed, and pipeline rides"), "{err}");

    // Signed by a key the team does not hold.
    for file in [parser, validator, aggregator] {
        sign(file, "keys/other.key");
    }
    let err = weir.fails(&["validate", pipeline, "--host-config", host]);
    assert!(err.contains("its signature is refused") && err.contains("which no trusted key matches"), "{err}");

    // Signed by the team, then changed.
    for file in [parser, validator, aggregator] {
        sign(file, "keys/rides.key");
    }
    let signed = std::fs::read(validator).unwrap();
    std::fs::write(validator, marked(validator.to_str().unwrap(), "after signing")).unwrap();
    let err = weir.fails(&["validate", pipeline, "--host-config", host]);
    assert!(err.contains("validators[0].plugin") && err.contains("changed after signing"), "{err}");

    // Signed by the team: it runs, and inspect names the signer.
    std::fs::write(validator, &signed).unwrap();
    let out = weir.ok(&["run", pipeline, "--host-config", host, "--until-idle", "1s", "--quiet"]);
    assert!(out.contains("20000 events in"), "{out}");
    let report = weir.ok(&["plugin", "inspect", validator.to_str().unwrap(), "--host-config", host, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(
        (report["signature"]["status"].as_str(), report["signature"]["team"].as_str()),
        (Some("verified"), Some("rides"))
    );
    assert_eq!(report["signature"]["key"], "rides");

    // Without the requirement, the same unsigned plugins run.
    let pipeline = trusting_pipeline(
        weir.dir.path(),
        [Path::new(JSON_PARSER), Path::new(RULES_VALIDATOR), Path::new(WINDOW_STATS)],
        "team = \"rides\"\n",
    );
    weir.ok(&["validate", pipeline.to_str().unwrap(), "--host-config", host]);
}

#[test]
fn a_team_allow_list_refuses_plugins_that_import_more_and_lists_the_imports() {
    let weir = Weir::new();
    let host = trust(&weir, Some("[\"weir:plugin/*\"]"));
    let host = host.to_str().unwrap();
    let pipeline = trusting_pipeline(
        weir.dir.path(),
        [Path::new(JSON_PARSER), Path::new(RULES_VALIDATOR), Path::new(WINDOW_STATS)],
        "team = \"rides\"\n",
    );
    // A host with teams runs no pipeline that does not name its team.
    let anonymous = std::fs::read_to_string(&pipeline).unwrap().replace("team = \"rides\"\n", "");
    std::fs::write(weir.path("anonymous.toml"), anonymous).unwrap();
    let err = weir.fails(&["validate", "anonymous.toml", "--host-config", host]);
    assert!(err.contains("trust.team: this host runs plugins for named teams only (rides)"), "{err}");

    // A std guest imports WASI; the team allows nothing but weir's own interfaces.
    let report = weir.ok(&["plugin", "inspect", JSON_PARSER, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let wasi: Vec<&str> = report["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.as_str())
        .filter(|i| i.starts_with("wasi:"))
        .collect();
    assert!(!wasi.is_empty());
    let err = weir.fails(&["validate", pipeline.to_str().unwrap(), "--host-config", host]);
    assert!(
        err.contains(&format!("imports what the allow_imports of team rides does not list: {}", wasi.join(", "))),
        "{err}"
    );

    // A pipeline's own list narrows further: sockets granted to the stage are still refused.
    std::fs::write(weir.path("host.toml"), "[teams.rides]\n").unwrap();
    let text = std::fs::read_to_string(&pipeline).unwrap().replace(
        &format!("plugin = {:?}", Path::new(JSON_PARSER)),
        &format!("plugin = {WANTS_SOCKETS:?}\ngrants = [\"wasi:sockets/*\"]"),
    ) + "allow_imports = [\"weir:plugin/*\", \"wasi:io/*\", \"wasi:cli/*\", \"wasi:clocks/*\", \"wasi:random/*\", \"wasi:filesystem/*\"]\n";
    std::fs::write(&pipeline, text).unwrap();
    let err = weir.fails(&["validate", pipeline.to_str().unwrap(), "--host-config", host]);
    assert!(err.contains("allow_imports of pipeline rides does not list: wasi:sockets/"), "{err}");
}

#[test]
fn a_running_pipeline_moves_to_a_newly_pushed_version_through_a_hot_swap() {
    let registry = Registry::start();
    let weir = Weir::new();
    let host = trust(&weir, None);
    let repo = format!("oci://{}/rides", registry.addr);
    let mut pinned = Vec::new();
    for (file, name) in
        [(JSON_PARSER, "json-parser"), (RULES_VALIDATOR, "rules-validator"), (WINDOW_STATS, "window-stats")]
    {
        let copy = weir.path(&format!("{name}.wasm"));
        std::fs::copy(file, &copy).unwrap();
        weir.ok(&["plugin", "sign", copy.to_str().unwrap(), "--key", "keys/rides.key"]);
        pinned.push(weir.push(copy.to_str().unwrap(), &format!("{repo}/{name}:v1")));
    }
    let dir = tempfile::tempdir().unwrap();
    let events = 60_000;
    let pipeline = rides_pipeline(
        dir.path(),
        &[
            ("plugin = \"json_parser\"", &format!("plugin = \"{}\"", pinned[0])),
            ("plugin = \"rules_validator\"", &format!("plugin = \"{}\"", pinned[1])),
            ("plugin = \"window_stats\"", &format!("plugin = \"{}\"", pinned[2])),
            ("events = 1000000", &format!("events = {events}\npace = 4000")),
            ("interval = \"1s\"", "interval = \"200ms\""),
        ],
    );
    std::fs::write(
        &pipeline,
        std::fs::read_to_string(&pipeline).unwrap() + "\n[trust]\nteam = \"rides\"\nrequire_signatures = true\n",
    )
    .unwrap();
    let addr = free_addr();
    let host = host.to_str().unwrap();
    let mut run = weir.command(&[
        "run",
        pipeline.to_str().unwrap(),
        "--host-config",
        host,
        "--admin",
        &addr,
        "--until-idle",
        "2s",
        "--quiet",
    ]);
    let log = weir.path("host.log");
    let mut child = Reaped(run.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap()).spawn().unwrap());
    wait_status(&addr, &mut child.0, Duration::from_secs(60), |s| s["records"].as_u64().unwrap_or(0) > 4_000);

    // v2: a rebuilt validator, signed and pushed; deployed by digest while events flow.
    let v2 = weir.path("rules-validator.wasm");
    std::fs::write(&v2, marked(v2.to_str().unwrap(), "v2")).unwrap();
    weir.ok(&["plugin", "sign", v2.to_str().unwrap(), "--key", "keys/rides.key"]);
    let v2_digest = sha256(&std::fs::read(&v2).unwrap());
    let v2_ref = weir.push(v2.to_str().unwrap(), &format!("{repo}/rules-validator:v2"));
    let (ok, report, err) =
        weir_cli(&addr, &["plugin", "deploy", "--pipeline", "rides", "--stage", "validators[0]", &v2_ref]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["version"], format!("rules-validator@{v2_digest}"));

    // An unsigned v3 is refused at swap; v2 keeps running.
    let v3 = weir.path("v3.wasm");
    std::fs::write(&v3, marked(RULES_VALIDATOR, "v3")).unwrap();
    let v3_ref = weir.push(v3.to_str().unwrap(), &format!("{repo}/rules-validator:v3"));
    let (ok, _, err) =
        weir_cli(&addr, &["plugin", "deploy", "--pipeline", "rides", "--stage", "validators[0]", &v3_ref]);
    assert!(!ok && err.contains("not signed"), "{err}");

    let (_, list, _) = weir_cli(&addr, &["plugin", "list"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let stage = list["stages"].as_array().unwrap().iter().find(|s| s["stage"] == "validators[0]").unwrap();
    assert_eq!(stage["digest"], v2_digest);
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&log).unwrap());

    // Every event once, across the swap: windowed, dead letter or late.
    let db = rusqlite::Connection::open(dir.path().join("rides.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    let landed = count("SELECT (SELECT sum(trips) FROM rides_city_minute) + (SELECT count(*) FROM weir_dead_letters) + (SELECT count(*) FROM weir_late_events)");
    assert_eq!(landed, events);
    assert_eq!(
        count(&format!("SELECT count(*) FROM weir_deployments WHERE digest = '{v2_digest}' AND how = 'deploy'")),
        1
    );
}
