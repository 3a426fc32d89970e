//! The deployment examples in `examples/deploy` are checked by the tools that will read
//! them (promtool, systemd-analyze), and the Kubernetes manifest's container is run as the
//! manifest says: its probes must answer without the token the admin API then requires.
//! The Grafana dashboard's queries run in `observability.rs` (Prometheus) and
//! `pipeline_postgres.rs` (PostgreSQL).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use weir_tests::{free_addr, http_get, plugin_dir, rides_pipeline, weir_bin, Reaped};
use yaml_rust2::{Yaml, YamlLoader};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy").join(name)
}

#[test]
fn the_prometheus_config_is_valid() {
    let out = Command::new("promtool")
        .args(["check", "config", "--syntax-only"])
        .arg(example("prometheus.yml"))
        .output()
        .expect("running promtool (Debian's prometheus package)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The single unit, and the template for several hosts of one group on one machine
/// (verified as its instance 1).
#[test]
fn the_systemd_units_verify_cleanly() {
    for (file, unit_name) in [("weir.service", "weir.service"), ("weir@.service", "weir@1.service")] {
        let unit = std::fs::read_to_string(example(file)).unwrap();
        assert!(unit.contains("ExecStart=/usr/local/bin/weir run "), "{unit}");
        // systemd-analyze checks that the command exists: point it at the built binary.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), unit.replace("/usr/local/bin/weir", weir_bin().to_str().unwrap()))
            .unwrap();
        let path = dir.path().join(unit_name);
        let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("running systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // An unknown key is only a warning: any output at all is a finding.
        assert!(out.status.success() && stderr.trim().is_empty(), "{file}: {stderr}");
    }
}

fn probe_path(container: &Yaml, probe: &str) -> (String, String) {
    let get = &container[probe]["httpGet"];
    (get["path"].as_str().unwrap().to_string(), get["port"].as_str().unwrap().to_string())
}

#[test]
fn the_kubernetes_container_runs_as_written_and_its_probes_need_no_token() {
    let docs = YamlLoader::load_from_str(&std::fs::read_to_string(example("kubernetes.yaml")).unwrap()).unwrap();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
    let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
    let port = container["ports"][0]["containerPort"].as_i64().unwrap();
    assert_eq!(container["ports"][0]["name"].as_str(), Some("admin"));
    assert_eq!(docs[1]["spec"]["ports"][0]["targetPort"].as_str(), Some("admin"));
    let (live, live_port) = probe_path(container, "livenessProbe");
    let (ready, ready_port) = probe_path(container, "readinessProbe");
    assert_eq!((live_port.as_str(), ready_port.as_str()), ("admin", "admin"));
    let env: Vec<&str> = container["env"].as_vec().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(env.contains(&"WEIR_ADMIN_TOKEN"), "bound beyond loopback, the host needs a token: {env:?}");

    // The container's arguments, with the rides example for its pipeline and a free port
    // for its own: beyond loopback, with the token from the environment.
    let args: Vec<String> =
        container["args"].as_vec().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert!(args.contains(&format!("0.0.0.0:{port}")), "the admin API listens on the probed port: {args:?}");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = rides_pipeline(dir.path(), &[("events = 1000000", "events = 20000")]);
    let addr = free_addr();
    let any = addr.replace("127.0.0.1", "0.0.0.0");
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.as_str() {
            "/etc/weir/pipeline.toml" => pipeline.to_str().unwrap().to_string(),
            a if a == format!("0.0.0.0:{port}") => any.clone(),
            a => a.to_string(),
        })
        .collect();
    let mut host = Reaped(
        Command::new(weir_bin())
            .args(&args)
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("WEIR_ADMIN_TOKEN", "k8s-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The token the manifest gives the host is demanded, and accepted.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "the admin API never listened on {addr}");
        assert!(host.0.try_wait().unwrap().is_none(), "the host exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(&addr, &live).0, 200, "{live} answers without the token");
    assert_eq!(http_get(&addr, "/metrics").0, 401, "beyond loopback /metrics needs the token");
    assert_eq!(http_get(&addr, "/metrics?token=k8s-secret").0, 200);
    loop {
        assert!(std::time::Instant::now() < deadline, "the host did not read its 20000 events");
        assert!(host.0.try_wait().unwrap().is_none(), "the host exited");
        let (code, body) = http_get(&addr, "/api/status?token=k8s-secret");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        if status["records"] == 20000 && status["held"].is_null() && status["sink_error"].is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(&addr, &ready).0, 200, "{ready} answers without the token");
}
