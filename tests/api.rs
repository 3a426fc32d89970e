//! The API source (`[source] kind = "api"`) with real parts: a JSON API served by the test
//! over TCP (`weir_tests::api`), a real `weir run` host, the windows in SQLite and in a real
//! PostgreSQL. The SIGKILL loop is in the fault suite (`tests/faults/api.rs`).

use std::process::{Command, Stdio};
use std::time::Duration;

use weir_tests::api::{api_host, api_pipeline, Api};
use weir_tests::quality::trips;
use weir_tests::services::Postgres;
use weir_tests::{plugin_dir, weir_bin};

/// Trips and dead letters in the sink at `url`.
fn counted(url: &str, pg: Option<&Postgres>) -> (i64, i64) {
    let trips = "SELECT coalesce(sum(trips), 0)::bigint FROM rides_city_minute";
    let dead = "SELECT count(*) FROM weir_dead_letters";
    match (url.strip_prefix("sqlite://"), pg) {
        (Some(path), _) => {
            let Ok(conn) = rusqlite::Connection::open(path) else { return (0, 0) };
            let one = |sql: &str| conn.query_row(&sql.replace("::bigint", ""), [], |r| r.get::<_, i64>(0)).unwrap_or(0);
            (one(trips), one(dead))
        }
        (None, Some(pg)) => {
            let mut client = pg.client("api");
            let one = |c: &mut postgres::Client, sql: &str| c.query_one(sql, &[]).map(|r| r.get(0)).unwrap_or(0);
            (one(&mut client, trips), one(&mut client, dead))
        }
        (None, None) => unreachable!("a PostgreSQL URL comes with its server"),
    }
}

/// Pages through 1,000 trips, one page first throttled (429) and one first garbled, then
/// 500 more trips that grow the last page and add pages; every trip counts once.
fn poll_and_count(url: &str, pg: Option<&Postgres>) {
    let records: Vec<String> = trips(0..10, (5.0, 40.0), None).lines().map(str::to_string).collect();
    assert!(records.len() >= 1500, "{} trips", records.len());
    let (first, later) = records.split_at(1000);
    let api = Api::start(first.to_vec());
    {
        let mut state = api.state.lock().unwrap();
        state.throttle.push(300);
        state.garble.push(500);
    }
    let dir = tempfile::tempdir().unwrap();
    let pipeline = api_pipeline(dir.path(), &api.url, url, "rides-api");
    let mut host = api_host(&pipeline, "3s", Stdio::piped());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while counted(url, pg).0 < 1000 {
        assert!(host.try_wait().unwrap().is_none(), "the host exited early");
        assert!(std::time::Instant::now() < deadline, "the first 1000 trips were not counted within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    api.push(later[..150].iter().cloned());
    api.push(later[150..500].iter().cloned());
    let (ok, _, log) = weir_tests::group::ended(host);
    assert!(ok, "{log}");
    let (trips, dead) = counted(url, pg);
    assert_eq!((trips, dead), (1500, 1), "every trip once, and the garbled page as one dead letter");
    assert_eq!(api.answered(401), 0, "the token came from the environment");
    assert!(api.answered(304) > 0, "caught up, the last page is asked with its ETag");
    // The throttled page was asked again only after the second it asked for.
    let log = api.state.lock().unwrap().log.clone();
    let at = |status: u16| log.iter().find(|(_, c, s)| *c == 300 && *s == status).unwrap().0;
    assert!(at(200) - at(429) >= Duration::from_millis(950), "Retry-After was not respected");
}

#[test]
fn an_api_is_paged_into_sqlite_with_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("api.db").display());
    poll_and_count(&url, None);
    let conn = rusqlite::Connection::open(dir.path().join("api.db")).unwrap();
    let (raw, reason): (Vec<u8>, String) =
        conn.query_row("SELECT raw, reason FROM weir_dead_letters", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!(raw, b"<html>upstream busy</html>", "the page itself is kept");
    assert!(reason.contains("/trips?cursor=500") && reason.contains("(cursor \"500\")"), "{reason}");
    assert!(reason.contains("not a JSON object"), "{reason}");
}

#[test]
fn an_api_is_paged_into_postgres_with_every_record_once() {
    let pg = Postgres::start();
    let url = pg.create_database("api");
    poll_and_count(&url, Some(&pg));
}

#[test]
fn validate_describes_the_api_and_refuses_a_bad_url() {
    let dir = tempfile::tempdir().unwrap();
    let sink = format!("sqlite://{}", dir.path().join("v.db").display());
    let pipeline = api_pipeline(dir.path(), "https://api.example.com/v1/trips", &sink, "rides-api");
    let validate = |path: &std::path::Path| {
        let out = Command::new(weir_bin())
            .args(["validate", path.to_str().unwrap()])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("API_TOKEN", "x")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, text) = validate(&pipeline);
    assert!(ok && text.contains("the JSON API at https://api.example.com/v1/trips: records in \"data\""), "{text}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&pipeline).unwrap().replace("https://api.example.com", "ftp://x"))
        .unwrap();
    let (ok, text) = validate(&bad);
    assert!(!ok && text.contains("source.url \"ftp://x/v1/trips\": use http(s)://"), "{text}");
}
