//! One writer at a time: a process that folds into a pipeline's windows holds a lease in
//! the sink (`weir_hosts`: who, in which role, its admin API, a heartbeat). A replay is
//! refused while a run of the pipeline is alive, and a run while a replay is: two
//! processes folding into the same windows would each overwrite the other's rows with
//! absolute values computed from different states, and records would be lost. Several
//! runs of one Kafka pipeline share it through their consumer group (each owns its
//! partitions' windows); runs of any other source may not overlap.

use anyhow::{bail, Result};

use crate::sink::{Lease, Sink};

/// A lease not renewed for this long belongs to a process that is gone (killed, or its
/// machine lost): it no longer blocks anyone.
pub const LEASE_TIMEOUT_MS: i64 = 10_000;

/// How often a holder renews its lease.
pub const RENEW_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// This process's name in `weir_hosts`.
pub fn holder() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// Whether `holder` may still be running: a process of this machine that has exited
/// (killed with SIGKILL, say) is known to be gone without waiting for its lease to lapse.
pub(super) fn may_run(holder: &str) -> bool {
    match holder.rsplit_once(':') {
        Some((host, pid)) if host == hostname() => std::path::Path::new("/proc").join(pid).exists(),
        _ => true,
    }
}

/// This process's lease in `role` at processing time `now_ms`.
pub fn lease(role: &str, admin: Option<String>, now_ms: i64) -> Lease {
    Lease {
        holder: holder(),
        role: role.into(),
        admin,
        heartbeat_ms: now_ms,
        version: env!("CARGO_PKG_VERSION").into(),
        ..Lease::default()
    }
}

/// Takes the lease of `mine` on `pipeline`, unless a live holder excludes it: any live
/// holder for a replay, and a live replay (or, unless `shared`, a live run) for a run.
pub fn acquire(sink: &mut dyn Sink, pipeline: &str, mine: &Lease, shared: bool) -> Result<()> {
    let live: Vec<Lease> = sink
        .leases(pipeline)?
        .into_iter()
        .filter(|l| l.holder != mine.holder && mine.heartbeat_ms - l.heartbeat_ms < LEASE_TIMEOUT_MS)
        .filter(|l| may_run(&l.holder))
        .collect();
    let blocking = live.iter().find(|l| mine.role == "replay" || l.role == "replay" || !shared);
    if let Some(other) = blocking {
        let ago = (mine.heartbeat_ms - other.heartbeat_ms).max(0) as f64 / 1000.0;
        let admin = other.admin.as_ref().map(|a| format!(", admin API http://{a}")).unwrap_or_default();
        let what = if other.role == "replay" { "a replay" } else { "weir run" };
        bail!(
            "pipeline {pipeline:?} is being processed by {what} on {} (last heartbeat {ago:.1}s ago{admin}); \
             two processes folding into the same windows would lose records. Stop it first{}; a lease not \
             renewed for {}s is taken over",
            other.holder,
            if other.role == "replay" {
                ", or wait for the replay to end"
            } else {
                " (SIGINT/SIGTERM checkpoints and exits)"
            },
            LEASE_TIMEOUT_MS / 1000
        );
    }
    sink.renew(pipeline, mine)
}
