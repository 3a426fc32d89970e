//! A host cut off from PostgreSQL by a network partition while it keeps its Kafka partitions.

use super::*;
use weir_tests::island::Island;

/// The island's link to the broker (which also carries its admin API)...
const KAFKA: usize = 0;
/// ... and its link to PostgreSQL.
const PG: usize = 1;

/// Host A runs on an island (a network namespace) whose links reach the broker and
/// PostgreSQL; host B runs here; trips arrive throughout. A's link to PostgreSQL is cut
/// twice, its packets dropped with no reset, as in a real partition:
/// - until A notices (its TCP bounds, `postgres_connect.rs`: `/readyz` drops), well within
///   the group's patience (`max.poll.interval.ms`, 60 s here): A keeps its partitions and B
///   does not take them; healed, A reconnects, commits and catches up;
/// - until the group has given A's partitions to B and B has committed them: what A had
///   read and not committed must not land over B's checkpoints (the fence stops A, which
///   is started again). Should the cut catch A inside a transaction, the server ends it
///   after 60 s idle, or B could not commit those partitions at all.
///
/// The table ends exact.
#[test]
fn a_host_cut_off_from_postgres_keeps_its_place_and_cannot_write_over_its_successor() {
    let _one = faults::serial();
    let island = Island::new(2);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_advertising(&Island::outer(KAFKA));
    let pg = Postgres::start_reachable(&Island::outer(PG), &Island::cidr(PG));
    let url = pg.create_database("partition");
    let url_a = pg.url_at(&Island::outer(PG), "partition");
    let pipeline = group::pipeline(dir.path(), "");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    let patience = "\"session.timeout.ms\" = \"6000\", \"max.poll.interval.ms\" = \"60000\"";
    std::fs::write(&pipeline, text.replace("\"session.timeout.ms\" = \"6000\"", patience)).unwrap();
    // Enough trips at 1,000 a second to outlast both cuts, so both hosts always read.
    let events: u64 = 240_000;
    let mut producer = group::produce(&broker, "trips", "none", 29, events, "2024-05-01T08:00:00Z", Some(1000));
    // Beyond loopback, so with a token.
    let a = format!("island@{}:{}", Island::inner(KAFKA), weir_tests::services::free_port());
    let b = weir_tests::free_addr();
    let start_a = || group::island_host(&island, &pipeline, &broker, "trips", &url_a, "partition", &a);
    let mut host_a = start_a();
    let mut host_b = group::host_at(&pipeline, &broker, "trips", &url, "partition", &b, "3s");
    until(&mut host_a, Duration::from_secs(60), "both hosts holding partitions", || {
        group::group_ready(&a, 2) && group::group_ready(&b, 2)
    });
    let mut of_a = Vec::new();
    until(&mut host_a, Duration::from_secs(30), "A's partitions", || {
        of_a = partitions(&a);
        of_a.len() == 3
    });
    until(&mut host_a, Duration::from_secs(60), "a commit of A's", || stored(&pg, "partition", &of_a) > 0);

    // Round 1: cut until A notices, then heal.
    let cut = Instant::now();
    island.cut(PG);
    until(&mut host_a, Duration::from_secs(45), "A unready while cut off", || readyz(&a) == 503);
    let noticed = cut.elapsed();
    let reason = readiness(&a).1;
    assert!(reason.contains("the sink cannot commit"), "A unready for another reason: {reason}");
    // A's own status is published by its loop, which waits on the commit: B's is live.
    assert_eq!(held(&b), 3, "B took A's partitions while A was cut off from PostgreSQL alone");
    island.heal(PG);
    let healed = Instant::now();
    until(&mut host_a, Duration::from_secs(60), "A ready after the heal", || readyz(&a) == 200);
    let ready = healed.elapsed();
    let mut peak = 0;
    until(&mut host_a, Duration::from_secs(60), "A caught up", || {
        let Some(l) = lag(&a) else { return false };
        peak = peak.max(l);
        l < 2000
    });
    let caught_up = healed.elapsed();

    // Round 2: cut until B holds A's partitions and has committed them past where A left
    // them (A, cut off, cannot have), then heal.
    let cut = Instant::now();
    island.cut(PG);
    until(&mut host_b, Duration::from_secs(150), "B holding every partition", || held(&b) == 6);
    let left = stored(&pg, "partition", &of_a);
    until(&mut host_b, Duration::from_secs(150), "B committing A's partitions", || {
        stored(&pg, "partition", &of_a) > left
    });
    let taken = cut.elapsed();
    island.heal(PG);
    // A read on up to the cut and could not commit: the checkpoint it retries meets the
    // fence, and it stops.
    let deadline = Instant::now() + Duration::from_secs(90);
    while host_a.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "A did not stop at the fence within 90 s of the heal");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, _, log) = group::ended(host_a);
    assert!(!ok && log.contains("the sink holds offset"), "A ended otherwise: {log}");
    host_a = start_a();
    assert!(producer.wait().unwrap().success(), "weir produce failed");
    group::finish(host_a, "A");
    group::finish(host_b, "B");
    let records = group::read_topic(&broker, "trips", events as usize);
    let tally = compare(&held_postgres(&pg, "partition"), &truth(&records));
    record(Row {
        scenario: "host cut off from PostgreSQL (network partition), 2 hosts",
        runs: 2,
        events,
        tally: &tally,
        recover: Some(ready),
        note: format!(
            "cut while holding partitions: unready {:.1} s after the cut, ready {:.1} s and caught up {:.1} s \
             after the heal (peak lag {peak}); cut past the group's patience: B committed A's partitions \
             {:.1} s after the cut, and A stopped by the fence once healed (and started again)",
            noticed.as_secs_f64(),
            ready.as_secs_f64(),
            caught_up.as_secs_f64(),
            taken.as_secs_f64(),
        ),
    });
}
