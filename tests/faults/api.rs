//! SIGKILL loop of an API source (`[source] kind = "api"`): the API grows by a page or so
//! at a time while hosts are killed again and again; every record counts once.

use super::*;
use weir_tests::api::{api_host, api_pipeline, Api};

#[test]
fn sigkills_of_an_api_polling_run_lose_and_repeat_no_record() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("api.db");
    let (minutes, kills): (i64, u64) = faults::size((80, 5), (800, 30));
    let records: Vec<String> =
        weir_tests::quality::trips(0..minutes, (5.0, 40.0), None).lines().map(str::to_string).collect();
    let total = records.len();
    let api = Api::start(records[..1000].to_vec());
    {
        let mut state = api.state.lock().unwrap();
        state.throttle.extend([2_000, 9_000]);
        state.garble.extend([5_000]);
    }
    let pipeline = api_pipeline(dir.path(), &api.url, &format!("sqlite://{}", db.display()), "rides-api");
    // Spread over about a second a kill, so that the kills fall all over the run.
    let pace = Duration::from_secs_f64(kills as f64 * 1.0 / (total / 150) as f64);
    let growing = {
        let state = api.state.clone();
        let rest = records[1000..].to_vec();
        std::thread::spawn(move || {
            for chunk in rest.chunks(150) {
                // The schedule, not a synchronisation.
                std::thread::sleep(pace);
                state.lock().unwrap().records.extend(chunk.iter().cloned());
            }
        })
    };
    let log = HostLog::new(dir.path());
    // Killed, never idle: a host that caught up with the API must not end the loop.
    let spawn = || api_host(&pipeline, "10m", log.stderr());
    let killed = log.kill_loop(kills, 0xa91, Duration::from_millis(800), spawn, || faults::committed_sqlite(&db));
    growing.join().unwrap();
    let (ok, _, last) = group::ended(api_host(&pipeline, "3s", Stdio::piped()));
    assert!(ok, "the last run failed: {last}\n{}", log.text());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let counted: i64 = conn.query_row("SELECT sum(trips) FROM rides_city_minute", [], |r| r.get(0)).unwrap();
    let dead: i64 = conn.query_row("SELECT count(*) FROM weir_dead_letters", [], |r| r.get(0)).unwrap();
    let tally = faults::Tally {
        lost: (total as i64 - counted).max(0) as u64,
        duplicated: (counted - total as i64).max(0) as u64,
        differences: if dead == 1 { Vec::new() } else { vec![format!("{dead} dead letters for one garbled page")] },
    };
    record(Row {
        scenario: "SIGKILL loop, JSON API polling → SQLite",
        runs: killed.kills,
        events: total as u64,
        tally: &tally,
        recover: Some(killed.recover),
        note: format!("{} pages asked; a 429 and a garbled page on the way", api.answered(200)),
    });
}
