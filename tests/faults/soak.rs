//! The soak: a long run with hot swaps, its memory, open files and threads sampled.

use super::*;

/// What `/proc` says of a process: resident memory (KiB), open files, threads.
fn footprint(pid: u32) -> Option<(u64, usize, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    let files = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    Some((field("VmRSS:")?, files, field("Threads:")?))
}

/// The soak: the rides pipeline on its built-in producer at 20,000 events a second into
/// SQLite, with a new parser version deployed every `swap_every`; its memory, open files
/// and threads sampled throughout. Resident memory must end within 10% of where it stood
/// after the warm-up (the first fifth, and at least 80 s), open files and threads must not grow, and every
/// event must be in a window, a dead letter or the late lane. `WEIR_SOAK_SECS` sets the
/// length (`cargo xtask soak` runs an hour); 2 min in the short version, 6 min in the full
/// suite, which must end within the hour.
#[test]
fn a_long_run_with_hot_swaps_stays_flat() {
    let _one = faults::serial();
    let secs: u64 = std::env::var("WEIR_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(faults::size(120, 360));
    let swap_every = Duration::from_secs(if secs >= 1800 { 300 } else { (secs / 8).max(10) });
    let rate = 20_000u64;
    let dir = tempfile::tempdir().unwrap();
    let events = rate * secs;
    let pipeline = weir_tests::rides_pipeline(
        dir.path(),
        &[
            ("events = 1000000", &format!("events = {events}\npace = {rate}")),
            ("interval = \"1s\"", "interval = \"1s\""),
        ],
    );
    let addr = weir_tests::free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            .current_dir(dir.path())
            .args(["run", pipeline.to_str().unwrap(), "--until-idle", "3s", "--quiet", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    until(&mut host, Duration::from_secs(60), "ready", || readyz(&addr) == 200);
    let started = Instant::now();
    let (mut samples, mut p99s, mut swaps) = (Vec::new(), Vec::new(), 0u64);
    let mut next_swap = started + swap_every;
    while started.elapsed() < Duration::from_secs(secs) {
        if let Some(sample) = footprint(host.id()) {
            samples.push((started.elapsed(), sample));
        }
        if let Some(p99) = group::status(&addr).and_then(|s| s["latency_ms"][1].as_u64()) {
            p99s.push((started.elapsed(), p99));
        }
        if Instant::now() >= next_swap {
            swaps += 1;
            let file = dir.path().join(format!("json_parser_v{swaps}.wasm"));
            std::fs::write(&file, weir_tests::marked(guests::JSON_PARSER, &format!("soak-{swaps}"))).unwrap();
            let (ok, _, why) = weir_tests::weir_cli(
                &addr,
                &["plugin", "deploy", "--pipeline", "rides", "--stage", "parser", file.to_str().unwrap()],
            );
            assert!(ok, "deploy {swaps}: {why}");
            next_swap += swap_every;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (ok, _, log) = group::ended(host);
    assert!(ok, "{log}");

    // Warm: the open windows have filled the 10-minute watermark (30 s of wall time at 20
    // s of event time a second), the sink's caches have grown to their size (about 70 s
    // without swaps) and the first swaps (and the compiler's threads) are done.
    let warmed = (secs / 5).max(80).min(secs * 3 / 4);
    let warm = samples.iter().find(|(at, _)| *at >= Duration::from_secs(warmed)).expect("a sample after the warm-up").1;
    let last = samples.last().unwrap().1;
    let peak_rss = samples.iter().map(|(_, s)| s.0).max().unwrap();
    let third = |k: u64| -> u64 {
        let part: Vec<u64> = p99s
            .iter()
            .filter(|(at, _)| *at >= Duration::from_secs(secs * k / 3) && *at < Duration::from_secs(secs * (k + 1) / 3))
            .map(|(_, p)| *p)
            .collect();
        part.iter().copied().max().unwrap_or(0)
    };
    let db = rusqlite::Connection::open(dir.path().join("rides.db")).unwrap();
    let count = |sql: &str| db.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64;
    let landed = count("SELECT coalesce(sum(trips), 0) FROM rides_city_minute")
        + count("SELECT count(*) FROM weir_dead_letters")
        + count("SELECT count(*) FROM weir_late_events");
    let mut tally = faults::Tally {
        lost: events.saturating_sub(landed),
        duplicated: landed.saturating_sub(events),
        ..Default::default()
    };
    let growth = last.0 as f64 / warm.0 as f64 - 1.0;
    if growth > 0.10 {
        tally.differences.push(format!("resident memory grew {:.1}% after the warm-up", growth * 100.0));
    }
    if last.1 > warm.1 + 2 || last.2 > warm.2 + 2 {
        tally.differences.push(format!("open files {} → {}, threads {} → {}", warm.1, last.1, warm.2, last.2));
    }
    record(Row {
        scenario: "soak: producer at 20k events/s into SQLite, hot swaps",
        runs: swaps,
        events,
        tally: &tally,
        recover: None,
        note: format!(
            "{secs} s; RSS {} MiB after warm-up, {} MiB at the end ({:+.1}%), peak {} MiB; open files {} → {}; threads {} → {}; \
             worst p99 by thirds {} / {} / {} ms",
            warm.0 / 1024,
            last.0 / 1024,
            growth * 100.0,
            peak_rss / 1024,
            warm.1,
            last.1,
            warm.2,
            last.2,
            third(0),
            third(1),
            third(2)
        ),
    });
}
