//! `weir run`: poll the source, process batches, checkpoint on an interval, show
//! progress, and stop cleanly on SIGINT/SIGTERM or once idle.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use super::breaker::Breaker;
use super::build::{Pipeline, PipelineOptions, RunStats};
use super::committer::Committer;
use super::deploy::{Deployer, Swap};
use super::latency::Latency;
use super::open::{open, open_source, Opened};
use super::report::{publish, show};
use super::switch::switch;
use crate::admin::{Command, Shared};
use crate::config::SourceConfig;
use crate::plugin::RuntimeOptions;
use crate::sink::Restored;
use crate::source::{Rebalance, Source};

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The counters.
    pub stats: RunStats,
    /// The final watermark.
    pub watermark: Option<i64>,
    /// How long it ran.
    pub elapsed: Duration,
    /// Where the results are: the sink URL and table.
    pub sink: String,
    /// From process start to the first committed checkpoint.
    pub first_commit: Option<Duration>,
    /// From the first record read to the last.
    pub reading: Duration,
    /// Source timestamp to commit, p50 and p99, in ms (sources with timestamps only).
    pub latency: Option<(u64, u64)>,
    /// Peak resident memory in bytes, if the platform tells.
    pub peak_rss: Option<u64>,
    /// For each plugin switch made while events flowed, the time processing stood still
    /// around it: from the end of the last batch to the next read, checkpoint included.
    pub swap_stalls: Vec<Duration>,
    /// The same gap around ordinary checkpoints.
    pub checkpoint_gaps: Vec<Duration>,
}

/// The process's peak resident set (VmHWM), from /proc.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Timing of a run, and where it is reported, kept beside the loop.
#[derive(Default)]
pub(super) struct Timing {
    pub(super) latency: Latency,
    first_commit: Option<Duration>,
    pub(super) last_commit_ms: Option<i64>,
    /// How many pending latency samples the commit in flight holds.
    committing: usize,
    /// How long commits took on the sink thread, from hand-over to landing.
    pub(super) commits: super::metrics::Histogram,
    admin: Option<Arc<Shared>>,
    /// When the last batch was done.
    processed: Option<Instant>,
    /// A checkpoint (and maybe a switch) came after that batch: the time until the loop
    /// reads again is measured.
    gap: Option<(Instant, bool)>,
    /// For each switch under load: from the end of the old version's last batch until the
    /// loop reads the new one's first, the checkpoint between them included.
    stalls: Vec<Duration>,
    /// The same gap around ordinary checkpoints, to compare with.
    checkpoint_gaps: Vec<Duration>,
    /// The quality watch, which judges the final rows of each commit (`[quality]`).
    watch: Option<Arc<super::watch::Watch>>,
}

/// How long `--until-idle` waits for a consumer group's first assignment.
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(30);

/// Wall-clock time in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Takes a checkpoint and hands it to the sink thread, once the previous one has landed.
/// The source's positions stand just after the last processed batch.
fn checkpoint(
    pipeline: &mut Pipeline,
    committer: &mut Committer,
    source: &mut dyn Source,
    stop: &Arc<AtomicBool>,
    timing: &mut Timing,
) -> Result<()> {
    settle(committer, source, timing, true)?;
    if std::mem::take(&mut pipeline.merger_stale) {
        if let Some(merger) = pipeline.merger()? {
            committer.set_merger(merger)?;
        }
    }
    let checkpoint = pipeline.build_checkpoint(source.positions(), now_ms())?;
    timing.committing = timing.latency.mark();
    committer.commit(pipeline.name.clone(), checkpoint, stop.clone(), timing.admin.clone(), timing.watch.clone())
}

/// Notes the commit in flight once it has landed (waiting for it if `wait`): the source
/// may acknowledge its offsets, and its records' latency is known.
fn settle(committer: &mut Committer, source: &mut dyn Source, timing: &mut Timing, wait: bool) -> Result<()> {
    if let Some(done) = committer.settle(wait)? {
        source.committed(&done.positions);
        let now = now_ms();
        timing.latency.committed(std::mem::take(&mut timing.committing), now);
        timing.last_commit_ms = Some(now);
        timing.first_commit.get_or_insert_with(|| process_start().elapsed());
        timing.commits.observe(done.sent.elapsed());
    }
    Ok(())
}

/// Watermark alignment: holds back partitions whose event time runs more than `max_skew`
/// ahead of the slowest active one, and releases them once it has caught up to within a
/// quarter of that. Without it a consumer may read one partition to its end before another
/// starts, and which events count as late would depend on fetch order instead of on the
/// stream. Released at `max_skew` itself, a partition was held again a batch later: each
/// hold strands what it prefetched, and the Kafka benchmark read 19% slower.
fn align(pipeline: &mut Pipeline, source: &mut dyn Source, held_back: &mut Vec<i32>, max_skew: i64) -> Result<()> {
    let now = now_ms();
    for &p in held_back.iter() {
        pipeline.tracker.touch(p, now);
    }
    let drained = source.drained();
    let ahead = pipeline.tracker.ahead(max_skew, now, &drained);
    let still = pipeline.tracker.ahead(max_skew / 4, now, &drained);
    let release: Vec<i32> = held_back.iter().copied().filter(|p| !still.contains(p)).collect();
    let hold: Vec<i32> = ahead.iter().copied().filter(|p| !held_back.contains(p)).collect();
    if !release.is_empty() {
        source.release(&release)?;
    }
    if !hold.is_empty() {
        source.hold(&hold)?;
    }
    held_back.retain(|p| still.contains(p));
    held_back.extend(hold);
    Ok(())
}

/// Refuses offsets the sink holds for another source under the same pipeline name.
fn same_source(restored: Option<&Restored>, pipeline: &str, source: &str) -> Result<()> {
    match restored.and_then(|r| r.sources.iter().find(|s| *s != source)) {
        Some(other) => bail!(
            "the sink holds a checkpoint of pipeline {pipeline:?} for {other}, but this pipeline reads {source}; \
             give the pipeline another `name` (or use another sink) rather than resume at offsets of a different source"
        ),
        None => Ok(()),
    }
}

/// Carries out a consumer-group rebalance: a revocation is checkpointed before the
/// partitions go; an assignment resumes each partition from the sink.
fn rebalance(
    change: Rebalance,
    pipeline: &mut Pipeline,
    committer: &mut Committer,
    source: &mut dyn Source,
    stop: &Arc<AtomicBool>,
    timing: &mut Timing,
) -> Result<()> {
    match change {
        Rebalance::Revoked(partitions) => {
            checkpoint(pipeline, committer, source, stop, timing)
                .and_then(|()| settle(committer, source, timing, true))
                .context("checkpointing revoked partitions")?;
            pipeline.release(&partitions);
            source.complete(&[])?;
            eprintln!("\nreleased {} after checkpointing them", labels(source, &partitions));
        }
        Rebalance::Assigned(partitions) => {
            let (name, wanted) = (pipeline.name.clone(), partitions.clone());
            let restored = committer.with(move |sink| sink.restore(&name, &wanted))??;
            same_source(restored.as_ref(), &pipeline.name, &pipeline.source)?;
            let offsets = restored.as_ref().map(|r| r.offsets.clone()).unwrap_or_default();
            pipeline.assign(&partitions, restored, now_ms())?;
            pipeline.labels.extend(partitions.iter().map(|&p| (p, source.label(p))));
            source.complete(&offsets)?;
            let at: Vec<String> = offsets.iter().map(|(p, o)| format!("{} at {o}", source.label(*p))).collect();
            let at = if at.is_empty() { "the beginning".to_string() } else { at.join(", ") };
            eprintln!("\nassigned {}; resuming from {at}", labels(source, &partitions));
        }
    }
    Ok(())
}

fn labels(source: &dyn Source, partitions: &[i32]) -> String {
    partitions.iter().map(|&p| source.label(p)).collect::<Vec<_>>().join(", ")
}

/// When the process started, as near as the library can tell: the first call.
pub fn process_start() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Runs the pipeline at `path` until stopped or idle.
pub fn run(path: &Path, options: &PipelineOptions, runtime_options: RuntimeOptions) -> Result<RunSummary> {
    let Opened { config, base, mut pipeline, mut sink, runtime, mut history, registry, outputs } =
        open(path, options, runtime_options, true)?;
    let stored = history.len();
    history.extend(pipeline.deployments.iter().cloned());
    let (deployer, swaps) = Deployer::new(&pipeline, runtime, history);
    deployer.followed_from(stored);
    deployer.watch()?;
    let shared = matches!(config.source, SourceConfig::Kafka { .. });
    let mine = crate::sink::Lease {
        group: pipeline.consumer_group(),
        plugins: pipeline.plugin_versions(),
        ..super::lease::lease("run", None, now_ms())
    };
    super::group::check_fit(sink.as_mut(), &config.name, &mine)?;
    super::lease::acquire(sink.as_mut(), &config.name, &mine, shared)?;
    let mut source = open_source(&config, &base, &pipeline)?;
    pipeline.source = source.describe();
    let partitions = source.partitions();
    if !partitions.is_empty() {
        let restored = sink.restore(&config.name, &partitions)?;
        same_source(restored.as_ref(), &config.name, &pipeline.source)?;
        if let Some(restored) = &restored {
            // The sink's offsets are the truth: resume exactly after the last committed record.
            let at: Vec<String> =
                restored.offsets.iter().map(|(p, o)| format!("{} at {o}", source.label(*p))).collect();
            eprintln!(
                "resuming pipeline {} from its checkpoint in {}: {}",
                config.name,
                config.sink.url,
                at.join(", ")
            );
            source.seek(&restored.offsets)?;
        }
        pipeline.assign(&partitions, restored, now_ms())?;
        pipeline.labels.extend(partitions.iter().map(|&p| (p, source.label(p))));
    }

    let mut committer = Committer::start(sink, outputs)?;
    pipeline.lookup = committer.window_lookup(pipeline.name.clone());
    let mut pending: Option<Swap> = None;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second handler cannot be installed in the same process (tests run several pipelines).
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    if let Some(fetcher) = &mut pipeline.schemas {
        fetcher.stop = stop.clone();
    }

    let max_skew = config.watermark.max_skew.as_millis() as i64;
    let mut timing = Timing::default();
    let mut first_record: Option<Instant> = None;
    let mut last_record: Option<Instant> = None;
    let mut held_back: Vec<i32> = Vec::new();
    let started = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut last_progress = (Instant::now(), 0u64);
    let mut idle_since: Option<Instant> = None;
    let mut breaker = Breaker::new(config.breaker.clone());
    let mut canary = config.deploy.clone().map(super::canary::Canary::new);
    let (mut operator_paused, mut resume_requested, mut held) = (false, false, None::<String>);
    let mut optimizing = false;
    let mut last_publish = Instant::now();
    let mut renewed = (Instant::now(), 0u64);
    let mut admin_addr = None;
    if matches!(config.source, crate::config::SourceConfig::Http { .. }) && options.admin.is_none() {
        bail!(
            "source.kind = \"http\": records arrive on the admin port (POST /ingest/{}); drop --no-admin",
            config.name
        );
    }
    if let Some(admin) = &options.admin {
        let token = if admin.token.is_some() { "?token=<admin token>" } else { "" };
        let admin = crate::admin::start(admin)?;
        eprintln!(
            "dashboard: http://{0}/{token}\nadmin API on http://{0}: /healthz, /readyz, /metrics, /api/status, /api/plugins, \
             POST /api/pipeline/pause|resume",
            admin.addr
        );
        admin_addr = Some(admin.addr.to_string());
        admin.shared.attach(deployer.clone());
        admin.shared.show(&pipeline.table);
        if let crate::config::SourceConfig::Http { max_waiting } = &config.source {
            let inbox = crate::source::open_inbox(&config.sink.url, &base)?;
            let ingest = crate::admin::ingest::Ingest {
                pipeline: config.name.clone(),
                max_waiting: *max_waiting,
                inbox: std::sync::Mutex::new(inbox),
            };
            let _ = admin.shared.ingest.set(Arc::new(ingest));
            eprintln!("HTTP ingest on http://{}/ingest/{} (JSON lines or an array)", admin.addr, config.name);
        }
        if let Some(registry) = &registry {
            let _ = admin.shared.registry.set(registry.clone());
            eprintln!("schema registry (Confluent API) on http://{}: /subjects, /schemas/ids/ID, /config", admin.addr);
        }
        if let Some(fetcher) = &mut pipeline.schemas {
            let shared = admin.shared.clone();
            fetcher.trouble = Arc::new(move |trouble| shared.trouble("registry", trouble));
        }
        if let Some(lookups) = &mut pipeline.lookups {
            let shared = admin.shared.clone();
            lookups.trouble = Arc::new(move |trouble| shared.trouble("lookups", trouble));
        }
        timing.admin = Some(admin.shared);
    }
    let timing_admin = timing.admin.clone();
    committer.deliver_pending(pipeline.name.clone(), stop.clone(), timing.admin.clone())?;
    let watch = super::watch::Watch::start(&config, &pipeline.table, timing.admin.clone())?;
    timing.watch.clone_from(&watch);
    let name = pipeline.name.clone();
    let seen = committer.with(move |sink| sink.last_deployment(&name))??;
    let following = super::group::Following::new(deployer.clone(), seen);
    let beat = |pipeline: &Pipeline,
                source: &mut dyn Source,
                committer: &Committer,
                renewed: &mut (Instant, u64),
                up: bool| {
        let rate =
            pipeline.stats.records.saturating_sub(renewed.1) as f64 / renewed.0.elapsed().as_secs_f64().max(1e-3);
        *renewed = (Instant::now(), pipeline.stats.records);
        let mine = super::group::record(pipeline, source, admin_addr.clone(), rate, &following, now_ms());
        let following = following.clone();
        super::group::heartbeat(
            committer,
            pipeline.name.clone(),
            mine,
            timing_admin.clone(),
            pipeline.partials,
            following,
        )?;
        match &watch {
            Some(watch) => {
                let watch = watch.clone();
                committer.run(move |sink| watch.judge(sink, now_ms(), up))
            }
            None => Ok(()),
        }
    };
    beat(&pipeline, source.as_mut(), &committer, &mut renewed, true)?;
    let mut expiry = super::retention::Expiry::new(&config.retention);
    while !stop.load(Ordering::SeqCst) {
        if renewed.0.elapsed() >= super::lease::RENEW_EVERY {
            let up = breaker.open().is_none() && !operator_paused;
            beat(&pipeline, source.as_mut(), &committer, &mut renewed, up)?;
            expiry.tick(&committer, &pipeline.name)?;
        }
        if let Some(change) = source.rebalance() {
            // A new assignment starts unheld; what is held back is decided afresh.
            held_back.retain(|p| !matches!(&change, Rebalance::Revoked(gone) if gone.contains(p)));
            rebalance(change, &mut pipeline, &mut committer, source.as_mut(), &stop, &mut timing)?;
            align(&mut pipeline, source.as_mut(), &mut held_back, max_skew)?;
            last_checkpoint = Instant::now();
            continue;
        }
        match timing.admin.as_ref().and_then(|a| a.take_command()) {
            Some(Command::Pause) if !operator_paused => {
                operator_paused = true;
                checkpoint(&mut pipeline, &mut committer, source.as_mut(), &stop, &mut timing)?;
                last_checkpoint = Instant::now();
                source.pause(&source.partitions())?;
                eprintln!("\npaused by the admin API; reading stops until resumed");
            }
            Some(Command::Resume) => resume_requested = true,
            _ => {}
        }
        if breaker.open().is_some() || operator_paused {
            let cooled = !operator_paused && breaker.cooled(Instant::now());
            if !(cooled || resume_requested) {
                // Held: not idle, and nothing is read.
                idle_since = None;
                held = Some(match breaker.open() {
                    Some(open) if !operator_paused => format!("circuit breaker open: {}", open.reason),
                    _ => "paused by the admin API".to_string(),
                });
                if let Some(swap) = pending.take().or_else(|| swaps.try_recv().ok()) {
                    // Nothing is read while held: the switch need not wait for the interval.
                    checkpoint(&mut pipeline, &mut committer, source.as_mut(), &stop, &mut timing)?;
                    last_checkpoint = Instant::now();
                    switch(&mut pipeline, swap, &deployer, source.positions());
                }
                source.idle(Duration::from_millis(100))?;
                if let Some(admin) = &timing.admin {
                    publish(admin, &pipeline, source.as_mut(), &breaker, &held, &timing);
                }
                if options.progress && last_progress.0.elapsed() >= Duration::from_secs(1) {
                    show(&pipeline, source.as_mut(), started, &mut last_progress, &breaker);
                }
                continue;
            }
            let how = if resume_requested { "on command" } else { "after its cooldown" };
            match breaker.close() {
                Some(open) => eprintln!(
                    "\ncircuit breaker closed {how} ({:?} cooldown); reading again (it opened because {})",
                    config.breaker.cooldown, open.reason
                ),
                None => eprintln!("\nresumed by the admin API; reading again"),
            }
            (operator_paused, held) = (false, None);
            source.resume(&source.partitions())?;
            held_back.clear();
            align(&mut pipeline, source.as_mut(), &mut held_back, max_skew)?;
        }
        resume_requested = false;
        if let Some((since, switched)) = timing.gap.take() {
            // Up to the next read: waiting for input is not a stall.
            let gaps = if switched { &mut timing.stalls } else { &mut timing.checkpoint_gaps };
            gaps.push(since.elapsed());
        }
        let (dead_before, late_before) = (pipeline.dead_letters.len(), pipeline.late_events.len());
        let polled = source.poll(options.batch_size)?;
        let rejected = source.rejected();
        if !rejected.is_empty() {
            idle_since = None;
            pipeline.reject(rejected);
        }
        match &polled {
            Some(batch) if !batch.is_empty() => {
                idle_since = None;
                first_record.get_or_insert_with(Instant::now);
                last_record = Some(Instant::now());
                timing.latency.processed(&batch.timestamps);
                if let Some(active) = source.active() {
                    pipeline.hold(&active, now_ms());
                }
                pipeline.process(batch, now_ms())?;
                pipeline.keep_as_read(dead_before, late_before, |p, o| source.as_read(p, o));
                timing.processed = Some(Instant::now());
                deployer.observe(batch, &pipeline);
                let dead = pipeline.dead_letters.len().saturating_sub(dead_before) as u64;
                if let Some(condemned) =
                    canary.as_mut().and_then(|c| c.observe(Instant::now(), batch.len() as u64, dead))
                {
                    super::canary::roll_back(&deployer, condemned, timing.admin.clone(), watch.clone());
                }
                let critical = pipeline.take_critical().or_else(|| watch.as_ref().and_then(|w| w.rules.take_stop()));
                if let Some(open) = breaker.observe(Instant::now(), batch.len() as u64, dead, critical) {
                    eprintln!(
                        "\ncircuit breaker open: {}. Reading is paused for breaker.cooldown = {:?}; \
                         the records so far are checkpointed and nothing is skipped.",
                        open.reason, config.breaker.cooldown
                    );
                    pipeline.stats.breaker_trips = breaker.trips;
                    checkpoint(&mut pipeline, &mut committer, source.as_mut(), &stop, &mut timing)?;
                    last_checkpoint = Instant::now();
                    source.pause(&source.partitions())?;
                    continue;
                }
                align(&mut pipeline, source.as_mut(), &mut held_back, max_skew)?;
            }
            // A bounded input (files without `follow`) is done at its end, as Spark's
            // availableNow and Flink's bounded sources are: the final checkpoint follows.
            None if source.bounded() => break,
            // A consumer group takes seconds to hand out partitions, and a watched
            // directory may start empty: a source that has none yet has not been
            // drained, unless the wait itself is unreasonably long.
            _ if source.partitions().is_empty() && started.elapsed() < ASSIGNMENT_WAIT => {
                if !source.waits() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            _ if !held_back.is_empty() => {
                // Held partitions wait for the others; that is not idleness.
                align(&mut pipeline, source.as_mut(), &mut held_back, max_skew)?;
            }
            _ => {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if options.until_idle.is_some_and(|limit| since.elapsed() >= limit) {
                    match super::group::unread(&mut committer, source.as_mut(), &pipeline.name) {
                        Ok(None) => break,
                        // The broker or the sink is out of reach: what is left is unknown, so
                        // the host waits (readiness says why) rather than ending in error.
                        Err(e) => {
                            tracing::warn!("cannot tell whether the group has read everything: {e:#}");
                            idle_since = None;
                        }
                        Ok(Some(unread)) => {
                            // Another host's partitions: it is still at work, or it died and the
                            // group hands them over once its session times out.
                            if options.progress {
                                eprintln!("\nidle here; the group has not committed {unread}: waiting");
                            }
                            idle_since = None;
                        }
                    }
                }
                if polled.is_none() || !source.waits() {
                    // Nothing to read and the source does not block: wait rather than spin.
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        if let Some(batch) = polled {
            source.recycle(batch);
        }
        settle(&mut committer, source.as_mut(), &mut timing, false)?;
        if !optimizing && timing.first_commit.is_some() {
            // Only now, so that compiling does not compete with the first results.
            optimizing = true;
            deployer.optimize();
        }
        // The first results are committed as soon as there are any; then on the interval,
        // or sooner if bad input piles up (see `build::Held`).
        let first = pipeline.stats.checkpoints == 0 && pipeline.stats.records > 0;
        let due = last_checkpoint.elapsed();
        let over = pipeline.held_bytes() > super::build::HELD_BYTES;
        if first || due >= config.checkpoint.interval || over {
            if pending.is_none() {
                pending = swaps.try_recv().ok();
            }
            // A switch waits (up to one more interval) for a checkpoint that need not wait
            // for the previous commit, so that the stall around it stays short.
            let postpone = pending.is_some() && committer.busy() && due < 2 * config.checkpoint.interval && !over;
            if postpone {
                continue;
            }
            checkpoint(&mut pipeline, &mut committer, source.as_mut(), &stop, &mut timing)?;
            last_checkpoint = Instant::now();
            let mut switched = false;
            while let Some(swap) = pending.take().or_else(|| swaps.try_recv().ok()) {
                let before = pipeline.deployments.len();
                switched |= switch(&mut pipeline, swap, &deployer, source.positions());
                if let (Some(canary), Some(d)) = (canary.as_mut(), pipeline.deployments.get(before)) {
                    if let Some(condemned) = canary.switched(d, timing.admin.as_deref())? {
                        super::canary::roll_back(&deployer, condemned, timing.admin.clone(), watch.clone());
                    }
                }
            }
            // Gaps are measured only while batches follow each other closely.
            timing.gap = timing.processed.filter(|t| t.elapsed() < Duration::from_secs(1)).map(|t| (t, switched));
        }
        if options.progress && last_progress.0.elapsed() >= Duration::from_secs(1) {
            show(&pipeline, source.as_mut(), started, &mut last_progress, &breaker);
        }
        if let Some(admin) = timing.admin.as_ref().filter(|_| last_publish.elapsed() >= Duration::from_millis(200)) {
            publish(admin, &pipeline, source.as_mut(), &breaker, &held, &timing);
            last_publish = Instant::now();
        }
    }
    checkpoint(&mut pipeline, &mut committer, source.as_mut(), &stop, &mut timing)
        .and_then(|()| settle(&mut committer, source.as_mut(), &mut timing, true))
        .context("writing the final checkpoint")?;
    expiry.finish(&mut committer, &pipeline.name).context("expiring old records")?;
    let name = pipeline.name.clone();
    committer.with(move |sink| sink.give_up(&name, &super::lease::holder()))??;
    if options.progress {
        show(&pipeline, source.as_mut(), started, &mut last_progress, &breaker);
        eprintln!();
    }
    let sink = format!("table {} of {} (relative to {})", config.sink.table, config.sink.url, base.display());
    let latency = timing.latency.quantile(0.5).zip(timing.latency.quantile(0.99));
    Ok(RunSummary {
        stats: pipeline.stats.clone(),
        watermark: pipeline.watermark(),
        elapsed: started.elapsed(),
        sink,
        first_commit: timing.first_commit,
        reading: first_record.zip(last_record).map_or(Duration::ZERO, |(a, b)| b - a),
        latency,
        peak_rss: peak_rss(),
        swap_stalls: timing.stalls,
        checkpoint_gaps: timing.checkpoint_gaps,
    })
}
