//! Hostile plugins: an infinite loop, a 4 GiB allocation, runaway recursion and a
//! panic. In every case the host keeps running, the offending record comes back as a
//! failure of the right kind, the other records are parsed, and the next batch runs in
//! a fresh instance. Each holds for code from both compilers: `weir run` starts a plugin
//! never compiled on the machine on the baseline compiler's code.

use std::time::{Duration, Instant};

use weir::plugin::{FailureKind, Limits, ParserStage, Plugin, PluginKind, PluginRuntime, Policy};
use weir_sdk::RawBatch;
use weir_tests::{guests, runtime, TICK};

const DEADLINE: Duration = Duration::from_millis(200);

/// The optimizing and the baseline runtime.
fn runtimes() -> [PluginRuntime; 2] {
    [runtime().clone(), runtime().baseline().unwrap()]
}

fn hostile(runtime: &PluginRuntime) -> Plugin {
    let limits = Limits { max_memory_bytes: 64 * 1024 * 1024, deadline: DEADLINE };
    let component = runtime.load(guests::HOSTILE.as_ref(), &Policy::none()).unwrap();
    Plugin::new(component, PluginKind::Parser, "{}", limits).unwrap()
}

#[test]
fn each_runtime_runs_its_own_compilers_code() {
    let [optimizing, baseline] = runtimes();
    assert!(optimizing.load(guests::HOSTILE.as_ref(), &Policy::none()).unwrap().optimized());
    assert!(!baseline.load(guests::HOSTILE.as_ref(), &Policy::none()).unwrap().optimized());
}

/// Parses eight records with `bad` at index 5, and checks what survives, on each compiler's code.
fn survives(bad: &str, kind: FailureKind) -> Vec<String> {
    runtimes().iter().map(|runtime| survives_on(runtime, bad, kind)).collect()
}

fn survives_on(runtime: &PluginRuntime, bad: &str, kind: FailureKind) -> String {
    // A trap is pinned by halving: 0..8 fails, then 4..8, 4..6 and 5..6, each on a fresh
    // instance. A timeout is pinned row by row (each halving would cost a deadline): 0..8
    // times out, then 5 alone.
    let restarts = if kind == FailureKind::Timeout { 2 } else { 4 };
    let mut parser = hostile(runtime);
    let payloads = ["a", "bb", "ccc", "dddd", "eeeee", bad, "ggggggg", "hhhhhhhh"];
    let parsed = parser.parse(&RawBatch::from_payloads(payloads));
    assert_eq!(parsed.failures.len(), 1, "{:?}", parsed.failures);
    let failure = &parsed.failures[0];
    assert_eq!(failure.index, 5);
    assert_eq!(failure.failure.kind(), kind, "{}", failure.failure);
    assert_eq!(parsed.output.sources, vec![0, 1, 2, 3, 4, 6, 7], "every other record is parsed exactly once");
    assert_eq!(parsed.output.events.columns[0].values, weir_sdk::ColumnValues::Int64(vec![1, 2, 3, 4, 5, 7, 8]));
    // Each failed instance is dropped and the next call starts a fresh one: none is reused.
    assert_eq!(parser.restarts(), restarts, "a trapped instance is never entered again");

    // The next batch runs in the instance started after the last failure, and succeeds.
    let next = parser.parse(&RawBatch::from_payloads(["x", "yy"]));
    assert!(next.failures.is_empty());
    assert_eq!(next.output.sources, vec![0, 1]);
    assert_eq!(parser.restarts(), restarts);
    failure.failure.to_string()
}

#[test]
fn an_infinite_loop_is_cut_off_at_its_deadline() {
    for runtime in runtimes() {
        let mut parser = hostile(&runtime);
        let started = Instant::now();
        let parsed = parser.parse(&RawBatch::from_payloads(["loop"]));
        let took = started.elapsed();
        assert_eq!(parsed.failures[0].failure.kind(), FailureKind::Timeout);
        // Cut off within the deadline plus one epoch tick; the margin covers the ticker
        // thread being scheduled late on a loaded two-core machine.
        let margin = Duration::from_millis(40);
        assert!(took >= DEADLINE - TICK, "interrupted too early: {took:?}");
        assert!(took <= DEADLINE + TICK + margin, "interrupted too late: {took:?}");
    }
    survives("loop", FailureKind::Timeout);
}

#[test]
fn a_4_gib_allocation_is_denied() {
    for reason in survives("alloc", FailureKind::Memory) {
        assert!(reason.contains("67108864"), "{reason}");
    }
}

#[test]
fn deep_recursion_traps() {
    for reason in survives("recurse", FailureKind::Trap) {
        assert!(reason.contains("stack overflow"), "{reason}");
    }
}

#[test]
fn a_panic_traps_with_its_message() {
    for reason in survives("panic", FailureKind::Trap) {
        assert!(reason.contains("asked to panic"), "{reason}");
    }
}

#[test]
fn many_bad_records_in_one_batch_are_each_pinned() {
    for runtime in runtimes() {
        let mut parser = hostile(&runtime);
        let parsed = parser.parse(&RawBatch::from_payloads(["ok", "panic", "ok", "alloc", "panic", "ok"]));
        let failed: Vec<_> = parsed.failures.iter().map(|f| (f.index, f.failure.kind())).collect();
        assert_eq!(failed, vec![(1, FailureKind::Trap), (3, FailureKind::Memory), (4, FailureKind::Trap)]);
        assert_eq!(parsed.output.sources, vec![0, 2, 5]);
    }
}
