//! HTTP push ingest (`[source] kind = "http"`, `POST /ingest/PIPELINE`) with real parts:
//! a real `weir run` host, requests over TCP, the inbox and the windows in SQLite and in a
//! real PostgreSQL. The SIGKILL loop is in the fault suite (`tests/faults/ingest.rs`).

use std::process::Stdio;

use weir_tests::ingest::{post, requests};
use weir_tests::quality::{rides_with, trips, weir_host};
use weir_tests::services::Postgres;
use weir_tests::{free_addr, http_get};

/// The rides example reading pushed records, into `url`, with `extra` appended.
fn http_pipeline(dir: &std::path::Path, url: &str, extra: &str) -> std::path::PathBuf {
    let replace = [
        ("kind = \"producer\"", "kind = \"http\""),
        ("events = 1000000", ""),
        ("rate = 1000", ""),
        ("seed = 42", ""),
        ("late_share = 0.02", ""),
        ("malformed_share = 0.01", ""),
        ("sqlite://./rides.db", url),
    ];
    rides_with(dir, &replace, extra)
}

/// Trips and dead letters in the sink at `url`: SQLite (`sqlite://PATH`) or PostgreSQL.
fn counted(url: &str, pg: Option<&Postgres>) -> (i64, i64) {
    let trips = "SELECT coalesce(sum(trips), 0)::bigint FROM rides_city_minute";
    let dead = "SELECT count(*) FROM weir_dead_letters";
    match (url.strip_prefix("sqlite://"), pg) {
        (Some(path), _) => {
            let conn = rusqlite::Connection::open(path).unwrap();
            let one = |sql: &str| conn.query_row(&sql.replace("::bigint", ""), [], |r| r.get::<_, i64>(0)).unwrap();
            (one(trips), one(dead))
        }
        (None, Some(pg)) => {
            let mut client = pg.client("ingest");
            (client.query_one(trips, &[]).unwrap().get(0), client.query_one(dead, &[]).unwrap().get(0))
        }
        (None, None) => unreachable!("a PostgreSQL URL comes with its server"),
    }
}

/// Pushes 40 requests of 100 trips (half JSON lines, half arrays), repeats, a broken
/// request and a reused key; the sink counts every trip once.
fn push_and_count(url: &str, pg: Option<&Postgres>) {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = http_pipeline(dir.path(), url, "");
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &["--until-idle", "2s"], Stdio::piped());
    weir_tests::wait_status(&addr, &mut host, std::time::Duration::from_secs(30), |_| true);
    let bodies = requests(&trips(0..20, (5.0, 40.0), None), 100);
    let mut sent = 0;
    let mut firsts = Vec::new();
    for (i, body) in bodies.iter().enumerate().take(40) {
        let body = if i % 2 == 0 { body.clone() } else { format!("[{}]", body.lines().collect::<Vec<_>>().join(",")) };
        let answer = post(&addr, "rides", Some(&format!("request-{i}")), body.as_bytes());
        assert_eq!(answer.code, 200, "{}", answer.body);
        let json = answer.json();
        assert_eq!((json["records"].as_u64(), json["duplicate"].as_bool()), (Some(100), Some(false)), "{json}");
        sent += 100;
        firsts.push((i, body, json["first_offset"].as_i64().unwrap()));
    }
    // A client that did not hear the answer sends the same request again.
    for (i, body, first) in firsts.iter().filter(|(i, ..)| i % 7 == 3) {
        let again = post(&addr, "rides", Some(&format!("request-{i}")), body.as_bytes()).json();
        assert_eq!(
            (again["duplicate"].as_bool(), again["first_offset"].as_i64()),
            (Some(true), Some(*first)),
            "{again}"
        );
    }
    let reused = post(&addr, "rides", Some("request-0"), bodies[41].as_bytes());
    assert_eq!(reused.code, 422, "a key reused for another body: {}", reused.body);
    let mut broken: Vec<&str> = bodies[42].lines().collect();
    broken[4] = "{\"trip_id\": \"t\", \"city\": ";
    let bad = post(&addr, "rides", Some("broken"), broken.join("\n").as_bytes());
    assert_eq!(bad.code, 400, "{}", bad.body);
    assert!(bad.json()["error"].as_str().unwrap().starts_with("record 5 (line 5)"), "{}", bad.body);
    assert_eq!(post(&addr, "other", None, bodies[43].as_bytes()).code, 404);

    assert!(host.wait().unwrap().success(), "the host ends well once idle");
    assert_eq!(counted(url, pg), (sent, 0), "every accepted trip counted once, nothing of the refused ones");
}

#[test]
fn pushed_records_into_sqlite_count_once_and_refused_requests_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    push_and_count(&format!("sqlite://{}", dir.path().join("ingest.db").display()), None);
}

#[test]
fn pushed_records_into_postgres_count_once_and_refused_requests_store_nothing() {
    let pg = Postgres::start();
    let url = pg.create_database("ingest");
    push_and_count(&url, Some(&pg));
}

#[test]
fn a_lagging_pipeline_answers_429_with_retry_after_and_takes_the_request_once_it_reads_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lag.db");
    let url = format!("sqlite://{}", db.display());
    let pipeline = http_pipeline(dir.path(), &url, "");
    let text =
        std::fs::read_to_string(&pipeline).unwrap().replace("kind = \"http\"", "kind = \"http\"\nmax_waiting = 250");
    std::fs::write(&pipeline, text).unwrap();
    let addr = free_addr();
    let mut host = weir_host(&pipeline, &addr, &[], Stdio::null());
    weir_tests::wait_status(&addr, &mut host, std::time::Duration::from_secs(30), |_| true);
    let (paused, _, err) = weir_tests::weir_cli(&addr, &["pipeline", "pause"]);
    assert!(paused, "{err}");
    let bodies = requests(&trips(0..5, (5.0, 40.0), None), 100);
    let accepted: Vec<u16> =
        (0..3).map(|i| post(&addr, "rides", Some(&format!("r{i}")), bodies[i].as_bytes()).code).collect();
    assert_eq!(accepted, [200, 200, 429], "two requests fit under max_waiting = 250, the third does not");
    let busy = post(&addr, "rides", Some("r2"), bodies[2].as_bytes());
    assert!(busy.headers.contains("retry-after: 1"), "{}", busy.headers);
    assert!(busy.json()["error"].as_str().unwrap().contains("200 records wait"), "{}", busy.body);

    let (resumed, _, err) = weir_tests::weir_cli(&addr, &["pipeline", "resume"]);
    assert!(resumed, "{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let answer = loop {
        let answer = post(&addr, "rides", Some("r2"), bodies[2].as_bytes());
        if answer.code != 429 || std::time::Instant::now() > deadline {
            break answer;
        }
        // Retry-After asks for a second; the test asks more often.
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(answer.code, 200, "taken once the pipeline reads again: {}", answer.body);
    assert_eq!(http_get(&addr, "/readyz").0, 200);
}
