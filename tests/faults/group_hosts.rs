//! Several hosts and misbehaving brokers: one of three killed, one frozen past its session,
//! librdkafka's mock cluster.

use super::*;

/// One of two hosts frozen (SIGSTOP) past its group session, while the other takes its
/// partitions and commits past it; then let go on. Whatever it had not committed must
/// not land over the newer checkpoints: the sink refuses it (fence.rs) and the host
/// stops, naming the partition. The table ends exact.
#[test]
fn a_host_frozen_past_its_session_cannot_write_over_its_successor() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let (broker, pg) = (Broker::start(), Postgres::start());
    let url = pg.create_database("zombie");
    let pipeline = group::pipeline(dir.path(), "");
    let rounds: u64 = faults::size(1, 10);
    // Input for the whole of each round (about 30 s at 2,000 a second): B must still have
    // records to commit once it holds A's partitions, however slowly the hosts start.
    let events = 60_000 * rounds;
    let mut producer = group::produce(&broker, "trips", "trip", 13, events, "2024-05-01T08:00:00Z", Some(2000));
    let (a, b) = (weir_tests::free_addr(), weir_tests::free_addr());
    let mut host_a = group::host_at(&pipeline, &broker, "trips", &url, "zombie", &a, "3s");
    let mut host_b = group::host_at(&pipeline, &broker, "trips", &url, "zombie", &b, "3s");
    let mut fenced = 0;
    let mut recover = Duration::ZERO;
    for _ in 0..rounds {
        until(&mut host_b, Duration::from_secs(60), "both hosts holding partitions", || group::group_ready(&a, 2));
        let before = group::committed(&pg, "zombie");
        until(&mut host_b, Duration::from_secs(60), "a commit", || group::committed(&pg, "zombie") > before);
        let mut of_a = Vec::new();
        until(&mut host_b, Duration::from_secs(30), "A's partitions", || {
            of_a = partitions(&a);
            of_a.len() == 3
        });
        weir_tests::services::signal(host_a.id(), "-STOP");
        // Past the 6 s session: the group hands A's partitions to B, which commits them.
        let frozen = Instant::now();
        until(&mut host_b, Duration::from_secs(60), "B holding every partition", || held(&b) == 6);
        // B must have moved A's partitions on: had it only rewritten where A left them, A's
        // checkpoint would still be on top of the sink, and B the one to stop. A frozen
        // inside a commit holds their rows' locks until the server ends its idle
        // transaction (60 s, postgres_connect.rs): B may wait that long.
        let left = stored(&pg, "zombie", &of_a);
        until(&mut host_b, Duration::from_secs(120), "B committing A's partitions", || {
            stored(&pg, "zombie", &of_a) > left
        });
        recover = recover.max(frozen.elapsed());
        weir_tests::services::signal(host_a.id(), "-CONT");
        // A read records at 2,000 a second up to its freeze that it had not committed: its
        // next checkpoint, or the one its revocation makes, meets the fence.
        let (ok, _, log) = group::ended(host_a);
        assert!(!ok && log.contains("the sink holds offset"), "A ended otherwise: {log}");
        fenced += 1;
        host_a = group::host_at(&pipeline, &broker, "trips", &url, "zombie", &a, "3s");
    }
    assert!(producer.wait().unwrap().success(), "weir produce failed");
    group::finish(host_a, "A");
    group::finish(host_b, "B");
    let records = group::read_topic(&broker, "trips", events as usize);
    let tally = compare(&held_postgres(&pg, "zombie"), &truth(&records));
    record(Row {
        scenario: "host frozen past its session (zombie), 2 hosts",
        runs: rounds,
        events,
        tally: &tally,
        recover: Some(recover),
        note: format!("{fenced} of {rounds} resumed hosts stopped by the fence"),
    });
}

/// One of three hosts of a group SIGKILLed at a random moment, again and again, and
/// started again, while the producer goes on: the table ends exact.
#[test]
fn sigkills_of_one_of_three_hosts_lose_and_repeat_nothing() {
    let _one = faults::serial();
    let dir = tempfile::tempdir().unwrap();
    let (broker, pg) = (Broker::start(), Postgres::start());
    let url = pg.create_database("three");
    let pipeline = group::pipeline(dir.path(), "");
    let (events, kills): (u64, u64) = faults::size((40_000, 2), (500_000, 20));
    // A kill costs the killed host's 6 s session, then a rebalance: 12 to 15 s. Paced for
    // 20 s a kill, the producer outlasts the kills, so the survivors always have records.
    let rate = (events / (kills * 20 + 10)).max(1000) as u32;
    let mut producer = group::produce(&broker, "trips", "none", 17, events, "2024-05-01T08:00:00Z", Some(rate));
    let addrs: Vec<String> = (0..3).map(|_| weir_tests::free_addr()).collect();
    let start = |i: usize| group::host_at(&pipeline, &broker, "trips", &url, "three", &addrs[i], "3s");
    let mut hosts: Vec<Reaped> = (0..3).map(start).collect();
    let mut rng = weir_tests::lateness::Rng(0x3405);
    let mut recover = Duration::ZERO;
    for _ in 0..kills {
        until(&mut hosts[0], Duration::from_secs(90), "three hosts holding partitions", || {
            addrs.iter().all(|a| group::group_ready(a, 3))
        });
        let before = group::committed(&pg, "three");
        until(&mut hosts[0], Duration::from_secs(60), "a commit", || group::committed(&pg, "three") > before);
        std::thread::sleep(Duration::from_millis(rng.below(1500)));
        let victim = rng.below(3) as usize;
        hosts[victim].kill().unwrap();
        hosts[victim].wait().unwrap();
        let killed = Instant::now();
        hosts[victim] = start(victim);
        let taken = group::committed(&pg, "three");
        let survivor = (victim + 1) % 3;
        until(&mut hosts[survivor], Duration::from_secs(90), "the group committing again", || {
            group::committed(&pg, "three") > taken && addrs.iter().all(|a| group::group_ready(a, 3))
        });
        recover = recover.max(killed.elapsed());
    }
    assert!(producer.wait().unwrap().success(), "weir produce failed");
    for (i, host) in hosts.into_iter().enumerate() {
        group::finish(host, &format!("host {i}"));
    }
    let records = group::read_topic(&broker, "trips", events as usize);
    let tally = compare(&held_postgres(&pg, "three"), &truth(&records));
    record(Row {
        scenario: "SIGKILL of one of three hosts (unkeyed topic)",
        runs: kills,
        events,
        tally: &tally,
        recover: Some(recover),
        note: "recovery: from the kill to all three hosts holding partitions and committing".into(),
    });
}

/// librdkafka's mock cluster, for what Tansu cannot do: three brokers whose partition
/// leaders move, whose fetches time out, that answer slowly and go down, all while trips
/// arrive; one weir host reads them into PostgreSQL. The table ends exact.
#[test]
fn a_misbehaving_cluster_moves_leaders_times_out_and_lags_and_nothing_is_lost() {
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let _one = faults::serial();
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("trips", 3, 3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let pg = Postgres::start();
    let url = pg.create_database("mock");
    let dir = tempfile::tempdir().unwrap();
    let pipeline = group::pipeline(dir.path(), "");
    // The truth is read back from the mock cluster, which serves a consumer at a few
    // hundred records a second: the full count stays within what it reads in two minutes.
    let (events, rate): (u64, u64) = faults::size((40_000, 2_000), (60_000, 2_000));
    let producing = {
        let bootstrap = bootstrap.clone();
        std::thread::spawn(move || {
            let producer: BaseProducer =
                rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
            let mut trips = weir::rides::TripGenerator::new(weir::rides::TripOptions {
                seed: 19,
                late_share: 0.02,
                malformed_share: 0.01,
                ..Default::default()
            });
            let started = Instant::now();
            for i in 0..events {
                let payload = trips.next_event();
                let key = i.to_string();
                let mut record = BaseRecord::to("trips").payload(&payload).key(&key);
                // A full queue (a broker down) is waited out, never dropped.
                while let Err((_, back)) = producer.send(record) {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                producer.poll(Duration::ZERO);
                let due = started + Duration::from_secs_f64((i + 1) as f64 / rate as f64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            producer.flush(Duration::from_secs(120)).unwrap();
        })
    };
    let addr = weir_tests::free_addr();
    let mut host = Reaped(
        Command::new(weir_bin())
            // No --until-idle: a producer held up by the faults below leaves nothing to read
            // for a while, and an idle host would end before the rest arrived (twice seen:
            // about 3,000 records "lost" that weir had never been given). The host is
            // stopped once it has committed every record produced.
            .args(["run", pipeline.to_str().unwrap(), "--batch", "2048", "--admin", &addr])
            .env("WEIR_PLUGIN_DIR", plugin_dir())
            .env("KAFKA_BROKERS", &bootstrap)
            .env("KAFKA_TOPIC", "trips")
            .env("KAFKA_GROUP", "mock")
            .env("DATABASE_URL", &url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    until(&mut host, Duration::from_secs(60), "a first commit", || group::committed(&pg, "mock") > 0);
    let mut faults_done = Vec::new();
    let step = |what: &str, faults_done: &mut Vec<String>| faults_done.push(what.to_string());
    // Leaders move round the three brokers, twice.
    for round in 1..=2 {
        for p in 0..3 {
            cluster.partition_leader("trips", p, Some(1 + (p + round) % 3)).unwrap();
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    step("leaders moved twice", &mut faults_done);
    let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT; 20];
    cluster.request_errors(RDKafkaApiKey::Fetch, &errors);
    std::thread::sleep(Duration::from_secs(3));
    step("20 fetch timeouts", &mut faults_done);
    for b in 1..=3 {
        cluster.broker_round_trip_time(b, Duration::from_millis(300)).unwrap();
    }
    std::thread::sleep(Duration::from_secs(4));
    for b in 1..=3 {
        cluster.broker_round_trip_time(b, Duration::ZERO).unwrap();
    }
    step("300 ms round trips for 4 s", &mut faults_done);
    cluster.broker_down(2).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    cluster.broker_up(2).unwrap();
    step("broker 2 down for 4 s", &mut faults_done);
    producing.join().unwrap();
    // Every offset committed: a record weir skipped would still be missing from the sink.
    group::wait_committed(&pg, "mock", events as i64 - 1, &mut host.0);
    weir_tests::services::signal(host.0.id(), "-TERM");
    group::finish(host, "the host");
    let records = group::read_topic_at(&bootstrap, "trips", events as usize);
    let tally = compare(&held_postgres(&pg, "mock"), &truth(&records));
    record(Row {
        scenario: "librdkafka MockCluster: leaders move, fetch timeouts, latency, a broker down",
        runs: faults_done.len() as u64,
        events,
        tally: &tally,
        recover: None,
        note: faults_done.join("; "),
    });
}
