//! Outages of the sink and the broker: each must drop `/readyz`, be waited out, and leave
//! the run exact.

use super::*;

/// A Kafka → PostgreSQL run at a steady rate with `fault` for `hold`, then `heal`:
/// `/readyz` must drop and come back, and the run must end exact. Figures: the time
/// from the heal to ready, to caught up, and the peak lag.
fn outage(
    scenario: &str,
    hold: Duration,
    fault: impl FnOnce(&Broker, &Postgres),
    heal: impl FnOnce(&Broker, &Postgres),
) {
    let dir = tempfile::tempdir().unwrap();
    // A server that keeps what it acknowledged: see `Postgres::start_durable`. weir connects
    // as an ordinary role, which limits and full connection tables bind (a superuser's not).
    let (broker, pg) = (Broker::start(), Postgres::start_durable());
    let mut admin = pg.client("postgres");
    admin.batch_execute("CREATE ROLE etl LOGIN").unwrap();
    admin.batch_execute("CREATE DATABASE outage OWNER etl").unwrap();
    let url = pg.url("outage").replace("weir@", "etl@");
    let pipeline = group::pipeline(dir.path(), "");
    // Input for the whole outage and a while after, at 2,000 events/s.
    let events = (hold.as_secs() + 20) * 2000;
    let mut producer = group::produce(&broker, "trips", "trip", 11, events, "2024-05-01T08:00:00Z", Some(2000));
    let addr = weir_tests::free_addr();
    let mut host = group::host_at(&pipeline, &broker, "trips", &url, "outage", &addr, "3s");
    until(&mut host, Duration::from_secs(60), "ready", || readyz(&addr) == 200);
    until(&mut host, Duration::from_secs(60), "a first commit", || group::committed(&pg, "outage") > 0);

    fault(&broker, &pg);
    let struck = Instant::now();
    until(&mut host, Duration::from_secs(60), "/readyz to drop", || readyz(&addr) == 503);
    let dropped = struck.elapsed();
    let mut peak = 0;
    while struck.elapsed() < hold {
        peak = peak.max(lag(&addr).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(100));
    }
    heal(&broker, &pg);
    let healed = Instant::now();
    until(&mut host, Duration::from_secs(120), "/readyz to return", || {
        peak = peak.max(lag(&addr).unwrap_or(0));
        readyz(&addr) == 200
    });
    let ready = healed.elapsed();
    // Caught up: less than a second of input left to read, as the host reports its lag.
    until(&mut host, Duration::from_secs(120), "catching up", || {
        let Some(now) = lag(&addr) else { return false };
        peak = peak.max(now);
        now < 2000 && readyz(&addr) == 200
    });
    let caught_up = healed.elapsed();
    assert!(producer.wait().unwrap().success(), "weir produce failed");
    let records = group::read_topic(&broker, "trips", events as usize);
    until(&mut host, Duration::from_secs(120), "the last commit", || group::committed(&pg, "outage") >= events as i64);
    group::finish(host, "the host");
    let tally = compare(&held_postgres(&pg, "outage"), &truth(&records));
    record(Row {
        scenario,
        runs: 1,
        events,
        tally: &tally,
        recover: Some(ready),
        note: format!(
            "unready {} ms after the fault; caught up {} ms after the heal; peak lag {peak}",
            dropped.as_millis(),
            caught_up.as_millis()
        ),
    });
}

#[test]
fn postgres_stopped_mid_run_is_waited_out_exactly() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 60));
    outage("PostgreSQL stopped (fast shutdown)", hold, |_, pg| pg.stop(), |_, pg| pg.restart());
}

#[test]
fn postgres_killed_mid_run_is_waited_out_exactly() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 60));
    outage("PostgreSQL killed (-m immediate)", hold, |_, pg| pg.kill(), |_, pg| pg.restart());
}

#[test]
fn a_broker_gone_mid_run_is_waited_out_exactly() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 30));
    outage("broker frozen (SIGSTOP)", hold, |broker, _| broker.freeze(), |broker, _| broker.thaw());
}

/// Cuts weir's open connections, so that it connects again under what was just changed.
fn cut_etl(pg: &Postgres) {
    pg.client("postgres")
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'etl'")
        .unwrap();
}

#[test]
fn a_low_statement_timeout_is_retried_until_it_is_raised() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 30));
    let set = |pg: &Postgres, sql: &str| {
        pg.client("postgres").batch_execute(sql).unwrap();
        cut_etl(pg);
    };
    outage(
        "PostgreSQL statement_timeout = 1ms",
        hold,
        |_, pg| set(pg, "ALTER ROLE etl SET statement_timeout = '1ms'"),
        |_, pg| set(pg, "ALTER ROLE etl RESET statement_timeout"),
    );
}

#[test]
fn a_full_connection_table_is_waited_out() {
    let _one = faults::serial();
    let hold = Duration::from_secs(faults::size(5, 30));
    let fillers = std::cell::RefCell::new(Vec::new());
    outage(
        "PostgreSQL connection table full",
        hold,
        |_, pg| {
            let connect = || postgres::Client::connect(&pg.url("postgres"), postgres::NoTls);
            let mut fillers = fillers.borrow_mut();
            // Every slot but weir's taken, then weir's cut and its slot taken at once: weir
            // (waiting out its backoff) finds the table full.
            while let Ok(client) = connect() {
                fillers.push(client);
            }
            let terminate = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'etl'";
            fillers[0].batch_execute(terminate).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match connect() {
                    Ok(client) => break fillers.push(client),
                    Err(_) => assert!(Instant::now() < deadline, "no slot came free"),
                }
            }
        },
        |_, _| fillers.borrow_mut().clear(),
    );
}

/// A tmpfs of `mib` MiB mounted at `at`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"]).arg(at).output();
        let out = out.expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs (the suite runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    fn grow(&self, mib: u32) {
        let out = Command::new("mount").args(["-o", &format!("remount,size={mib}m")]).arg(&self.0).output().unwrap();
        assert!(out.status.success(), "growing the tmpfs: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// SQLite on a full filesystem: the checkpoint that does not fit is refused by the disk,
/// `/readyz` says why, the host retries with backoff, and once there is room the run
/// ends exact.
#[test]
fn sqlite_on_a_full_disk_waits_for_room_and_loses_nothing() {
    use weir_tests::lateness::{self, Line, Shape};
    let _one = faults::serial();
    let mut input = lateness::random(29, 2000);
    // Dead letters keep their raw bytes: these fill a small disk.
    let mut offset = input.iter().map(|l| l.text.len() as i64).sum::<i64>();
    for _ in 0..40 {
        let text = format!("{{\"city\":\"{}\n", "x".repeat(100_000));
        input.push(Line { offset, text: text.clone(), event: None });
        offset += text.len() as i64;
    }
    let want = lateness::truth(&input, Shape::Tumbling, true);
    let dir = lateness::setup_into(Shape::Tumbling, &input, "sqlite://disk/out.db");
    let disk = Tmpfs::mount(&dir.path().join("disk"), 2);
    let text = std::fs::read_to_string(dir.path().join("p.toml")).unwrap();
    std::fs::write(dir.path().join("p.toml"), text.replace("path = \"input\"", "path = \"input\"\nfollow = true"))
        .unwrap();
    let addr = weir_tests::free_addr();
    let mut host = Reaped(
        lateness::weir(dir.path(), &["run", "p.toml", "--until-idle", "2s", "--quiet", "--admin", &addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut why = String::new();
    until(&mut host, Duration::from_secs(60), "/readyz to say the disk is full", || {
        let (code, body) = readiness(&addr);
        why = body;
        code == 503
    });
    assert!(why.contains("full"), "{why}");
    let full = Instant::now();
    disk.grow(64);
    until(&mut host, Duration::from_secs(60), "/readyz to return", || readyz(&addr) == 200);
    let recovered = full.elapsed();
    let (ok, _, log) = group::ended(host);
    assert!(ok, "{log}");
    assert!(log.contains("retr"), "the retries are reported: {log}");
    let got = lateness::read(&dir.path().join("disk"));
    lateness::assert_truth(&got, &want, "after the disk had room");
    record(Row {
        scenario: "SQLite on a full filesystem (2 MiB tmpfs)",
        runs: 1,
        events: input.len() as u64,
        tally: &faults::Tally::default(),
        recover: Some(recovered),
        note: format!("/readyz: {}", why.trim()),
    });
}
