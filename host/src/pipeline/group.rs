//! The group's control plane, kept in the sink rather than in a protocol of weir's own:
//! each host records itself in `weir_hosts` with every heartbeat (what it owns, reads and
//! lags, and the versions it runs), reads the whole group back for its status page and
//! dashboard, refuses to join a group it does not fit, and tells when the group, not only
//! this host, has committed the whole topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};

use super::build::Pipeline;
use super::committer::Committer;
use super::council::Council;
use super::deploy::Deployer;
use super::lease::LEASE_TIMEOUT_MS;
use crate::admin::{GroupView, Shared};
use crate::sink::{Lease, Sink};
use crate::source::Source;

/// This host's record at `now_ms`: its lease, and what the group's pages show of it.
pub(super) fn record(
    pipeline: &Pipeline,
    source: &mut dyn Source,
    admin: Option<String>,
    events_per_s: f64,
    following: &Following,
    now_ms: i64,
) -> Lease {
    let (proposal, verdict) = following.council.shown();
    Lease {
        proposal,
        verdict,
        group: pipeline.consumer_group(),
        plugins: pipeline.plugin_versions(),
        partitions: source.partitions(),
        records: pipeline.stats.records,
        lag: source.lag(),
        events_per_s,
        ..super::lease::lease("run", admin, now_ms)
    }
}

/// Refuses to join a group whose live hosts run another weir version, read in another
/// consumer group (two groups would each count every event into the same rows), or run
/// other plugin versions.
pub(super) fn check_fit(sink: &mut dyn Sink, pipeline: &str, mine: &Lease) -> Result<()> {
    let hosts = sink.leases(pipeline)?;
    let live = hosts.iter().filter(|h| {
        h.holder != mine.holder && h.role == "run" && mine.heartbeat_ms - h.heartbeat_ms < LEASE_TIMEOUT_MS
    });
    // A process of this machine that has exited (killed) is not in the group any more.
    let live = live.filter(|h| super::lease::may_run(&h.holder));
    for other in live {
        let at = format!("host {} (heartbeat {} ms ago)", other.holder, mine.heartbeat_ms - other.heartbeat_ms);
        if other.version != mine.version {
            bail!(
                "{at} runs pipeline {pipeline:?} with weir {}, and this is weir {}: run one weir version per group \
                 (stop the group's hosts, or this one, and start them on the same release)",
                other.version,
                mine.version
            );
        }
        if other.group != mine.group {
            bail!(
                "{at} runs pipeline {pipeline:?} into this sink in consumer group {:?}, and this host is in {:?}: \
                 two groups would each count every event into the same rows. Use one source.group per pipeline \
                 and sink, or another pipeline name",
                other.group.as_deref().unwrap_or("-"),
                mine.group.as_deref().unwrap_or("-")
            );
        }
        if !other.plugins.is_empty() && other.plugins != mine.plugins {
            bail!(
                "{at} runs plugins {}, and this host would run {}: a group runs one version per stage. Start this \
                 host with the group's pipeline file and plugins, or deploy the new version to the group with \
                 `weir plugin deploy`",
                other.plugins,
                mine.plugins
            );
        }
    }
    Ok(())
}

/// The group (`hosts`, as just read) for `admin`, with the latest committed rows when rows
/// are merged in the sink (a host's own commits then hold only its partials).
fn show(sink: &mut dyn Sink, hosts: Vec<Lease>, admin: &Shared, rows_from_sink: bool) -> Result<()> {
    let (rows, committed) = sink.latest_rows()?;
    let view = GroupView::of(hosts, committed, super::now_ms(), LEASE_TIMEOUT_MS);
    admin.group(view, rows_from_sink.then_some(rows));
    Ok(())
}

/// How this host follows the plugin versions the group switches to: any host's deploy,
/// rollback or promote is recorded in `weir_deployments`, which every host looks at with
/// its heartbeat, and switches to at its own next checkpoint.
pub(super) struct Following {
    deployer: Arc<Deployer>,
    /// The latest deployment this host has seen (its own included).
    seen: Mutex<Option<i64>>,
    /// Where this host asks the group before a switch, and answers others.
    council: Arc<Council>,
}

impl Following {
    /// Follows the group's deployments after `seen`, with `deployer`, which asks the
    /// group before it switches.
    pub(super) fn new(deployer: Arc<Deployer>, seen: Option<i64>) -> Arc<Self> {
        let council = Arc::new(Council::default());
        deployer.consult(council.clone());
        Arc::new(Following { deployer, seen: Mutex::new(seen), council })
    }

    /// Answers the proposals of other hosts: each is loaded and tried here, on a thread
    /// of its own (compiling takes a while), and the answer shown with the next heartbeat.
    fn judge(&self, sink: &mut dyn Sink, hosts: &[Lease], me: &str) -> Result<()> {
        for (proposal, bytes) in self.council.after_beat(sink, hosts, me)? {
            let (deployer, council) = (self.deployer.clone(), self.council.clone());
            std::thread::Builder::new()
                .name("weir-judge".into())
                .spawn(move || council.answer(&proposal.id, deployer.judge(&proposal, bytes)))?;
        }
        Ok(())
    }

    /// On the sink thread: hands deployments recorded since the last look to the
    /// deployer, on a thread of their own, since a switch waits for the run loop, which
    /// may be waiting for this very thread.
    fn look(&self, sink: &mut dyn Sink, pipeline: &str) -> Result<()> {
        let last = sink.last_deployment(pipeline)?;
        let mut seen = self.seen.lock().expect("following lock");
        if last <= *seen {
            return Ok(());
        }
        *seen = last;
        let history = sink.deployments(pipeline)?;
        let deployer = self.deployer.clone();
        std::thread::Builder::new().name("weir-follow".into()).spawn(move || deployer.follow(history))?;
        Ok(())
    }
}

/// Renews this host's record through the sink thread, without waiting, reads the group
/// back for `admin`, and looks for versions the group switched to; failures only warn,
/// since the next heartbeat follows soon.
pub(super) fn heartbeat(
    committer: &Committer,
    pipeline: String,
    mine: Lease,
    admin: Option<Arc<Shared>>,
    rows_from_sink: bool,
    following: Arc<Following>,
) -> Result<()> {
    committer.run(move |sink| {
        let beat = following.council.before_beat(sink).and_then(|()| sink.renew(&pipeline, &mine));
        // The group's rows, read once: for the status page, and for proposals to answer.
        let beat = beat.and_then(|()| sink.leases(&pipeline)).and_then(|hosts| {
            following.judge(sink, &hosts, &mine.holder)?;
            match &admin {
                Some(admin) => show(sink, hosts, admin, rows_from_sink),
                None => Ok(()),
            }
        });
        let beat = beat.and_then(|()| following.look(sink, &pipeline));
        if let Err(e) = beat {
            tracing::warn!(pipeline, error = %format!("{e:#}"), "the heartbeat failed");
        }
    })
}

/// What the group has not committed yet of a source several hosts share, as text, or
/// `None` once every partition of the topic is committed up to its end (the broker's end
/// offsets against the sink's checkpoints, and this host's own positions).
pub(super) fn unread(committer: &mut Committer, source: &mut dyn Source, pipeline: &str) -> Result<Option<String>> {
    let Some(ends) = source.group_ends() else { return Ok(None) };
    let ends = ends?;
    let name = pipeline.to_string();
    let mut done: HashMap<i32, i64> = committer.with(move |sink| sink.next_offsets(&name))??.into_iter().collect();
    for (p, o) in source.positions() {
        let at = done.entry(p).or_insert(o);
        *at = (*at).max(o);
    }
    let unread: Vec<String> = ends
        .iter()
        .filter_map(|&(p, low, high)| {
            let left = high - done.get(&p).copied().unwrap_or(0).max(low);
            (left > 0).then(|| format!("{left} records of partition {p}"))
        })
        .collect();
    Ok((!unread.is_empty()).then(|| unread.join(", ")))
}
