//! A broker outage is visible: with the Tansu broker frozen (SIGSTOP), `/readyz` stops
//! saying ready and names the source, the lag is unknown rather than 0, and once the broker
//! goes on, the host is ready again and every record lands exactly once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::services::{repo_root, Broker, Postgres};
use weir_tests::{free_addr, http_get, plugin_dir, weir_bin, Reaped};

const EVENTS: u64 = 20_000;

/// `/readyz`, or code 0 while the admin API does not listen yet.
fn ready(addr: &str) -> (u16, String) {
    if std::net::TcpStream::connect(addr).is_err() {
        return (0, "not listening yet".into());
    }
    http_get(addr, "/readyz")
}

/// Waits up to `within` for `/readyz` to answer `code`; the body it gave.
fn wait_ready(addr: &str, host: &mut Reaped, code: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        assert!(host.0.try_wait().unwrap().is_none(), "weir run ended");
        let (got, body) = ready(addr);
        if got == code {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz stayed {got} ({body}) for {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_frozen_broker_makes_the_host_unready_and_its_lag_unknown_and_loses_nothing() {
    let broker = Broker::start();
    let pg = Postgres::start();
    let produce = Command::new(weir_bin())
        .args(["produce", "--brokers", &broker.brokers(), "--topic", "trips", "--partitions", "3", "--quiet"])
        .args(["--events", &EVENTS.to_string(), "--seed", "3"])
        .output()
        .unwrap();
    assert!(produce.status.success(), "{}", String::from_utf8_lossy(&produce.stderr));

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-kafka.toml")).unwrap();
    std::fs::write(dir.path().join("p.toml"), text.replace("interval = \"1s\"", "interval = \"200ms\"")).unwrap();
    let addr = free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .current_dir(dir.path())
            .args(["run", "p.toml", "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("KAFKA_BROKERS", broker.brokers())
            .env("KAFKA_TOPIC", "trips")
            .env("DATABASE_URL", pg.url("weir"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_ready(&addr, &mut host, 200, Duration::from_secs(60));

    broker.freeze();
    let why = wait_ready(&addr, &mut host, 503, Duration::from_secs(60));
    assert!(why.contains("the source cannot read"), "{why}");
    let (_, status) = http_get(&addr, "/api/status");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["lags"], serde_json::json!([]), "no lag is known while the broker is frozen: {status}");
    assert!(status["source_error"].is_string(), "{status}");

    broker.thaw();
    wait_ready(&addr, &mut host, 200, Duration::from_secs(90));
    let mut client = pg.client("weir");
    let deadline = Instant::now() + Duration::from_secs(60);
    let landed = loop {
        let mut count = |sql: &str| -> i64 { client.query_one(sql, &[]).map_or(0, |r| r.get(0)) };
        let landed = count("SELECT coalesce(sum(trips), 0)::bigint FROM rides_city_minute")
            + count("SELECT count(*) FROM weir_dead_letters")
            + count("SELECT count(*) FROM weir_late_events");
        if landed >= EVENTS as i64 || Instant::now() > deadline {
            break landed;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(landed, EVENTS as i64, "every record once: windowed, dead letter or late");
}
