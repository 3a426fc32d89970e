//! SIGKILL loop of an HTTP ingest pipeline: clients push trips (`POST /ingest/PIPELINE`)
//! with an `Idempotency-Key` each, and send a request again until it is acknowledged,
//! while the host is killed again and again. Every request must count exactly once.

use super::*;
use weir_tests::ingest::{post, requests};

#[test]
fn sigkills_of_an_http_ingest_run_lose_and_repeat_no_request() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ingest.db");
    let text = std::fs::read_to_string(repo_root().join("examples/rides/pipeline-files.toml")).unwrap();
    let start = text.find("[source]").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let text = format!("{}[source]\nkind = \"http\"{}", &text[..start], &text[end..])
        .replace("${DATABASE_URL}", &format!("sqlite://{}", db.display()))
        .replace("interval = \"1s\"", "interval = \"200ms\"");
    let pipeline = dir.path().join("pipeline-http.toml");
    std::fs::write(&pipeline, text).unwrap();
    let addr = weir_tests::free_addr();
    let (events, kills): (usize, u64) = faults::size((20_000, 5), (200_000, 30));
    let minutes = (events / 240 + 1) as i64;
    let bodies: Vec<String> = requests(&weir_tests::quality::trips(0..minutes, (5.0, 40.0), None), 100)
        .into_iter()
        .take(events / 100)
        .collect();
    let sent: usize = bodies.iter().map(|b| b.lines().count()).sum();
    // Spread over about 1.2 s a kill, so that the kills fall all over the run.
    let pace = Duration::from_secs_f64(kills as f64 * 1.2 / bodies.len() as f64);
    let client = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut retries = 0u64;
            let started = Instant::now();
            for (i, body) in bodies.iter().enumerate() {
                // The schedule, not a synchronisation.
                std::thread::sleep((started + pace * i as u32).saturating_duration_since(Instant::now()));
                // Until acknowledged: a killed host, a host starting, or a full inbox.
                while post(&addr, "rides-files", Some(&format!("request-{i}")), body.as_bytes()).code != 200 {
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            retries
        })
    };
    let spawn = || files_host_at(&pipeline, "--admin", &addr);
    let killed = kills::kill_loop(kills, 0x1e57, Duration::from_millis(800), spawn, || faults::committed_sqlite(&db));
    // The last host takes what the clients still send, and ends once they stop.
    let last = files_host_at(&pipeline, "--admin", &addr);
    let retries = client.join().unwrap();
    let (ok, _, log) = group::ended(last);
    assert!(ok, "the last run failed: {log}");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let counted: i64 = conn.query_row("SELECT sum(trips) FROM rides_city_minute", [], |r| r.get(0)).unwrap();
    let keys: i64 = conn.query_row("SELECT count(*) FROM weir_ingest_keys", [], |r| r.get(0)).unwrap();
    let tally = faults::Tally {
        lost: (sent as i64 - counted).max(0) as u64,
        duplicated: (counted - sent as i64).max(0) as u64,
        differences: if keys as usize == sent / 100 { Vec::new() } else { vec![format!("{keys} keys stored")] },
    };
    record(Row {
        scenario: "SIGKILL loop, HTTP ingest → SQLite",
        runs: killed.kills,
        events: sent as u64,
        tally: &tally,
        recover: Some(killed.recover),
        note: format!("{retries} requests sent again by the clients"),
    });
}
