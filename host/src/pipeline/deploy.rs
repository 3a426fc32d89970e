//! Deploying a new plugin version into a running pipeline. Everything slow happens here,
//! on the caller's thread (the admin API's, or the file watcher's), never on the run
//! loop's: compiling the component, checking that it fits the pipeline, and trying it on
//! recent input beside the running version. Only a version that passes is handed to the
//! run loop, which switches to it at its next checkpoint.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::build::Pipeline;
use super::stages::{self, short, StageId, StagePlan};
use super::swap::How;
use super::trial::{Sample, Trial};
use crate::admin::{DeployRequest, PluginControl};
use crate::config::PipelineConfig;
use crate::plugin::{Plugin, PluginRuntime};
use crate::sink::{Deployment, TableSchema};

/// The default limit on how much a new version may raise the dead-letter rate in its trial.
pub const MAX_ERROR_INCREASE: f64 = 0.01;

/// What the run loop is asked to change at its next checkpoint.
pub(super) enum Change {
    /// Switch a stage to a version that passed its checks.
    Switch { plan: StagePlan, plugin: Box<Plugin>, how: How },
    /// Switch a stage from baseline to optimized code of the same version.
    Optimize { plan: StagePlan, plugin: Box<Plugin> },
    /// Run a candidate in the shadow of its stage: the pipeline with it, assembled here.
    Shadow { plan: StagePlan, pipeline: Box<Pipeline> },
    /// Switch the shadowed stage to the candidate.
    Promote,
    /// End the shadow.
    Discard,
}

/// A change on its way to the run loop, and where to say how it went.
pub(super) struct Swap {
    pub(super) change: Change,
    pub(super) reply: Sender<Result<Switched, String>>,
}

/// Where a switch happened.
#[derive(Clone, Debug, Serialize)]
pub struct Switched {
    /// Checkpoints committed before it: the new version's records are in the next.
    pub after_checkpoint: u64,
    /// Each partition's first offset the new version processes.
    pub from_offsets: Vec<(i32, i64)>,
    /// How long the switch itself held the run loop, in µs.
    pub switch_us: u64,
}

/// A completed deployment.
#[derive(Clone, Debug, Serialize)]
pub struct DeployReport {
    /// The pipeline.
    pub pipeline: String,
    /// The stage.
    pub stage: StageId,
    /// How it came.
    pub how: How,
    /// The new version, `name@digest`.
    pub version: String,
    /// The version it replaced.
    pub replaced: String,
    /// The trial.
    pub trial: Trial,
    /// The switch.
    pub switched: Switched,
}

/// A shadow that started.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowReport {
    /// The pipeline.
    pub pipeline: String,
    /// The stage it shadows.
    pub stage: StageId,
    /// The version running live there.
    pub live: String,
    /// The candidate.
    pub candidate: String,
    /// Where its rows go.
    pub table: String,
    /// Where it started.
    pub started: Switched,
}

/// What runs now, and what ran before.
pub(super) struct Live {
    pub(super) plans: Vec<StagePlan>,
    table: TableSchema,
    pub(super) history: Vec<Deployment>,
    /// How many rows of the sink's history [`Deployer::follow`] has considered.
    pub(super) followed: usize,
    /// The switches this host recorded itself (stage, digest, when), so that it never
    /// follows its own: its latest may not be committed yet when it reads the history.
    pub(super) mine: Vec<(String, String, i64)>,
}

/// How many versions of each stage a host keeps the bytes of, for rollbacks: a long run
/// with a deploy every few minutes held every version it ever ran (the fault suite's soak).
const KEPT_BYTES: usize = 3;

/// Drops the bytes of all but each stage's newest [`KEPT_BYTES`] deployments; the sink
/// keeps them all (`weir_components`).
pub(super) fn forget_old_bytes(history: &mut [Deployment]) {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for d in history.iter_mut().rev() {
        let n = seen.entry(d.stage.clone()).or_default();
        *n += 1;
        if *n > KEPT_BYTES && !d.bytes.is_empty() {
            d.bytes = std::sync::Arc::new(Vec::new());
        }
    }
}

/// Deploys new plugin versions into one running pipeline.
pub struct Deployer {
    pub(super) config: PipelineConfig,
    runtime: PluginRuntime,
    pub(super) live: Mutex<Live>,
    pub(super) sample: Mutex<Sample>,
    swaps: Sender<Swap>,
    /// One deployment at a time: each is checked against what the previous one left.
    busy: Mutex<()>,
    /// Where a deploy asks the other hosts of the group first (set by the run loop).
    pub(super) council: std::sync::OnceLock<Arc<super::council::Council>>,
    /// Why the rollback under way was decided, for its record in `weir_deployments`.
    reason: Mutex<Option<String>>,
}

impl Deployer {
    /// A deployer for `pipeline`, whose deployment history so far is `history`. The run
    /// loop takes the versions to switch to from the receiver.
    pub(super) fn new(
        pipeline: &Pipeline,
        runtime: PluginRuntime,
        mut history: Vec<Deployment>,
    ) -> (Arc<Self>, Receiver<Swap>) {
        forget_old_bytes(&mut history);
        let (swaps, receiver) = mpsc::channel();
        let followed = history.len();
        let (plans, table) = (pipeline.plans().to_vec(), pipeline.table.clone());
        let live = Live { plans, table, history, followed, mine: Vec::new() };
        let deployer = Deployer {
            config: pipeline.config.clone(),
            runtime,
            live: Mutex::new(live),
            sample: Mutex::new(Sample::default()),
            swaps,
            busy: Mutex::new(()),
            council: std::sync::OnceLock::new(),
            reason: Mutex::new(None),
        };
        (Arc::new(deployer), receiver)
    }

    /// Records a switch the run loop made.
    pub(super) fn switched(&self, plan: StagePlan, record: Option<Deployment>, table: &TableSchema) {
        let mut live = self.live.lock().expect("live lock");
        live.table = table.clone();
        if let Some(slot) = live.plans.iter_mut().find(|p| p.id == plan.id) {
            *slot = plan;
        }
        if let Some(d) = &record {
            live.mine.push((d.stage.clone(), d.digest.clone(), d.at_ms));
        }
        live.history.extend(record);
        forget_old_bytes(&mut live.history);
    }

    pub(super) fn plan(&self, stage: StageId) -> Result<StagePlan> {
        let live = self.live.lock().expect("live lock");
        live.plans.iter().find(|p| p.id == stage).cloned().ok_or_else(|| {
            let names: Vec<String> = live.plans.iter().map(|p| p.id.to_string()).collect();
            anyhow!("pipeline {} has no stage {stage} (its stages: {})", self.config.name, names.join(", "))
        })
    }

    /// Deploys `bytes` into `stage`: compile, check, try, switch. Blocks until the run
    /// loop has switched, or says why not; the running version stays on any failure.
    pub fn deploy(
        &self,
        stage: StageId,
        name: &str,
        bytes: Vec<u8>,
        how: How,
        max_error_increase: f64,
    ) -> Result<DeployReport> {
        let _one = self.busy.lock().expect("deploy lock");
        let (running, candidate) = self.load(stage, name, bytes)?;
        let trial = self.trial(&candidate, max_error_increase).with_context(|| {
            format!("{stage}: {} was refused; {} keeps running", candidate.version(), running.version())
        })?;
        if matches!(how, How::Deploy | How::Rollback | How::Watch) {
            self.ask_group(stage, name, &candidate).with_context(|| {
                format!(
                    "{stage}: {} was refused by the group; {} keeps running",
                    candidate.version(),
                    running.version()
                )
            })?;
        }
        let plugin = candidate.start()?;
        let switched =
            self.ask(Change::Switch { plan: candidate.clone(), plugin: Box::new(plugin), how }).map_err(|e| {
                anyhow!(
                    "{stage}: the switch to {} failed; {} keeps running: {e}",
                    candidate.version(),
                    running.version()
                )
            })?;
        Ok(DeployReport {
            pipeline: self.config.name.clone(),
            stage,
            how,
            version: candidate.version(),
            replaced: running.version(),
            trial,
            switched,
        })
    }

    /// Moves the stages that started on baseline code to optimized code, on a thread of
    /// its own: compiles them (into the cache, so that the next start needs no compiler)
    /// and has the run loop switch them at its next checkpoint. The same bytes run, so
    /// there is nothing to try and nothing to record. Deployments wait meanwhile. Any
    /// failure is reported, and the stages keep running their baseline code.
    pub(super) fn optimize(self: &Arc<Self>) {
        let baseline: Vec<StagePlan> = {
            let live = self.live.lock().expect("live lock");
            live.plans.iter().filter(|p| !p.component.optimized()).cloned().collect()
        };
        if baseline.is_empty() {
            return;
        }
        let deployer = self.clone();
        let work = move || {
            let _one = deployer.busy.lock().expect("deploy lock");
            let mut asked = Vec::new();
            for plan in baseline {
                let optimized = plan
                    .with_bytes(&deployer.runtime, &plan.component.name, plan.bytes.to_vec())
                    .and_then(|optimized| Ok((optimized.start()?, optimized)));
                match optimized {
                    Ok((plugin, optimized)) => {
                        let (reply, answer) = mpsc::channel();
                        let change = Change::Optimize { plan: optimized, plugin: Box::new(plugin) };
                        if deployer.swaps.send(Swap { change, reply }).is_err() {
                            return; // the pipeline has stopped
                        }
                        asked.push((plan.id, answer));
                    }
                    Err(e) => eprintln!("\n{}: no optimized code ({e:#}); it stays on baseline code", plan.id),
                }
            }
            for (stage, answer) in asked {
                if let Ok(Err(e)) = answer.recv() {
                    eprintln!("\n{stage}: the switch to optimized code failed ({e}); it stays on baseline code");
                }
            }
        };
        if let Err(e) = std::thread::Builder::new().name("weir-optimize".into()).spawn(work) {
            eprintln!("\nno thread to compile optimized code ({e}); the plugins stay on baseline code");
        }
    }

    /// The running version of `stage`, and `bytes` loaded as its candidate.
    pub(super) fn load(&self, stage: StageId, name: &str, bytes: Vec<u8>) -> Result<(StagePlan, StagePlan)> {
        let running = self.plan(stage)?;
        let candidate = running
            .with_bytes(&self.runtime, name, bytes)
            .with_context(|| format!("{stage}: the new version was refused at load"))?;
        if candidate.component.digest == running.component.digest {
            bail!("{stage} already runs {}", running.version());
        }
        Ok((running, candidate))
    }

    /// What runs now with `candidate` in its stage, and the output table.
    pub(super) fn with_candidate(&self, candidate: &StagePlan) -> (Vec<StagePlan>, TableSchema) {
        let live = self.live.lock().expect("live lock");
        let plans = live.plans.iter().map(|p| if p.id == candidate.id { candidate.clone() } else { p.clone() });
        (plans.collect(), live.table.clone())
    }

    /// Hands `change` to the run loop and waits until it is made.
    fn ask(&self, change: Change) -> Result<Switched> {
        let (reply, answer) = mpsc::channel();
        self.swaps.send(Swap { change, reply }).map_err(|_| anyhow!("the pipeline has stopped"))?;
        answer.recv().map_err(|_| anyhow!("the pipeline stopped first"))?.map_err(|e| anyhow!(e))
    }

    /// Runs `bytes` in the shadow of `stage`, beside the running version, from the next
    /// checkpoint on. It is not tried first: the shadow is the trial.
    pub fn shadow(&self, stage: StageId, name: &str, bytes: Vec<u8>) -> Result<ShadowReport> {
        let _one = self.busy.lock().expect("deploy lock");
        let (running, candidate) = self.load(stage, name, bytes)?;
        let (plans, table) = self.with_candidate(&candidate);
        let refused =
            |e: anyhow::Error| e.context(format!("{stage}: {} cannot run in the shadow", candidate.version()));
        let pipeline =
            Pipeline::assemble(&self.config, plans).context("it does not fit the pipeline").map_err(refused)?;
        if let Err(why) = stages::table_change(&table, &pipeline.table).allowed(self.config.sink.versioned) {
            return Err(refused(anyhow!("it does not fit the pipeline: {why}")));
        }
        let started =
            self.ask(Change::Shadow { plan: candidate.clone(), pipeline: Box::new(pipeline) }).map_err(refused)?;
        Ok(ShadowReport {
            pipeline: self.config.name.clone(),
            stage,
            live: running.version(),
            candidate: candidate.version(),
            table: super::shadow::shadow_table(&table.name),
            started,
        })
    }

    /// Switches the shadowed stage to the candidate, at the next checkpoint.
    pub fn promote(&self) -> Result<Switched> {
        let _one = self.busy.lock().expect("deploy lock");
        self.ask(Change::Promote).context("the shadow was not promoted")
    }

    /// Ends the shadow at the next checkpoint; its table stays as it is.
    pub fn discard(&self) -> Result<Switched> {
        self.ask(Change::Discard).context("the shadow was not discarded")
    }

    /// Rolls `stage` back to the version that ran before the current one.
    pub fn rollback(&self, stage: StageId) -> Result<DeployReport> {
        let current = self.plan(stage)?;
        let previous = {
            let live = self.live.lock().expect("live lock");
            let name = stage.to_string();
            live.history
                .iter()
                .rev()
                .filter(|d| d.stage == name)
                .find(|d| d.digest != current.component.digest)
                .cloned()
                .ok_or_else(|| anyhow!("{stage} has run no other version than {}", current.version()))?
        };
        if previous.bytes.is_empty() {
            bail!(
                "{stage}'s previous version {}@{} is no longer held in memory (a host keeps its last {KEPT_BYTES} \
                 versions per stage); deploy it by file",
                previous.plugin,
                short(&previous.digest)
            );
        }
        self.deploy(stage, &previous.plugin, previous.bytes.to_vec(), How::Rollback, f64::INFINITY)
    }

    /// Rolls `stage` back because of `reason` (the canary's), which its record keeps.
    pub(super) fn rollback_because(&self, stage: StageId, reason: String) -> Result<DeployReport> {
        *self.reason.lock().expect("reason lock") = Some(reason);
        let outcome = self.rollback(stage);
        self.reason.lock().expect("reason lock").take();
        outcome
    }

    /// The reason of the rollback being switched in, if weir decided it.
    pub(super) fn take_reason(&self) -> Option<String> {
        self.reason.lock().expect("reason lock").take()
    }

    /// The stages, what runs in each, and every switch so far.
    pub fn list(&self) -> serde_json::Value {
        let live = self.live.lock().expect("live lock");
        let stages: Vec<_> = live
            .plans
            .iter()
            .map(|p| {
                serde_json::json!({
                    "stage": p.id,
                    "plugin": p.component.name,
                    "digest": p.component.digest,
                    "path": p.path,
                })
            })
            .collect();
        let history: Vec<_> = live
            .history
            .iter()
            .map(|d| {
                serde_json::json!({
                    "stage": d.stage,
                    "plugin": d.plugin,
                    "digest": d.digest,
                    "how": d.how,
                    "state_version": d.state_version,
                    "at": weir_sdk::time::format_iso8601(d.at_ms),
                    "from_offsets": d.from_offsets,
                    "reason": d.reason,
                })
            })
            .collect();
        serde_json::json!({ "pipeline": self.config.name, "stages": stages, "history": history })
    }

    /// Watches the files of stages configured with `watch = true`, and deploys each new
    /// version written there. Runs on a thread of its own until the process ends.
    pub(super) fn watch(self: &Arc<Self>) -> Result<()> {
        let watched: Vec<(StageId, std::path::PathBuf, String)> = {
            let live = self.live.lock().expect("live lock");
            live.plans
                .iter()
                .filter(|p| self.config.stage(p.id).is_some_and(|s| s.watch))
                .map(|p| (p.id, p.path.clone(), p.component.digest.clone()))
                .collect()
        };
        if watched.is_empty() {
            return Ok(());
        }
        let deployer = self.clone();
        std::thread::Builder::new().name("weir-watch".into()).spawn(move || {
            let mut seen: Vec<String> = watched.iter().map(|w| w.2.clone()).collect();
            loop {
                std::thread::sleep(Duration::from_secs(1));
                for ((stage, path, _), seen) in watched.iter().zip(seen.iter_mut()) {
                    // A file being written may be cut short: only a loadable one is new.
                    let Ok(bytes) = std::fs::read(path) else { continue };
                    let digest = crate::plugin::digest(&bytes);
                    if digest == *seen {
                        continue;
                    }
                    *seen = digest;
                    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    match deployer.deploy(*stage, &name, bytes, How::Watch, MAX_ERROR_INCREASE) {
                        Ok(report) => eprintln!(
                            "\n{stage}: {} changed; now running {} (was {})",
                            path.display(),
                            short(&report.version),
                            short(&report.replaced)
                        ),
                        Err(e) => eprintln!(
                            "\n{stage}: {} changed, but the new version was not deployed: {e:#}",
                            path.display()
                        ),
                    }
                }
            }
        })?;
        Ok(())
    }
}

impl Deployer {
    /// Refuses a request meant for another pipeline than this host's.
    fn runs(&self, pipeline: Option<&str>) -> Result<()> {
        match pipeline.filter(|p| *p != self.config.name) {
            Some(other) => bail!("this host runs pipeline {:?}, not {other:?}", self.config.name),
            None => Ok(()),
        }
    }
}

impl PluginControl for Deployer {
    fn deploy(&self, request: DeployRequest) -> Result<serde_json::Value> {
        self.runs(request.pipeline.as_deref())?;
        let stage: StageId = request.stage.parse()?;
        let max = request.max_error_increase.unwrap_or(MAX_ERROR_INCREASE);
        let name = request.name.unwrap_or_else(|| "plugin".into());
        Ok(serde_json::to_value(Deployer::deploy(self, stage, &name, request.bytes, How::Deploy, max)?)?)
    }

    fn rollback(&self, pipeline: Option<&str>, stage: &str) -> Result<serde_json::Value> {
        self.runs(pipeline)?;
        Ok(serde_json::to_value(Deployer::rollback(self, stage.parse()?)?)?)
    }

    fn list(&self) -> serde_json::Value {
        Deployer::list(self)
    }

    fn shadow(&self, request: DeployRequest) -> Result<serde_json::Value> {
        self.runs(request.pipeline.as_deref())?;
        let name = request.name.unwrap_or_else(|| "plugin".into());
        Ok(serde_json::to_value(Deployer::shadow(self, request.stage.parse()?, &name, request.bytes)?)?)
    }

    fn promote(&self, pipeline: Option<&str>) -> Result<serde_json::Value> {
        self.runs(pipeline)?;
        Ok(serde_json::to_value(Deployer::promote(self)?)?)
    }

    fn discard(&self, pipeline: Option<&str>) -> Result<serde_json::Value> {
        self.runs(pipeline)?;
        Ok(serde_json::to_value(Deployer::discard(self)?)?)
    }
}
