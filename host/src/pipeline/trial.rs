//! A new version's trial: the run loop's recent input and some open window states,
//! sampled as it runs, and the candidate tried on them beside the running version before
//! a deploy may switch to it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use weir_sdk::RawBatch;

use super::build::Pipeline;
use super::deploy::Deployer;
use super::stages::{self, StageId, StagePlan};
use super::swap::state_version;
use crate::plugin::{AggregatorStage, Plugin};
use crate::sink::DeadLetterKind;

/// How much recent input a trial runs on.
const SAMPLE_RECORDS: usize = 16_384;
/// How often the run loop's input is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(500);
/// How many open window states an aggregator's trial migrates.
const SAMPLE_STATES: usize = 256;
/// What a new version did on recent input, beside the running one.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Trial {
    /// Records tried.
    pub records: usize,
    /// Dead letters the running version made of them.
    pub running_dead_letters: usize,
    /// Dead letters the new version made of them.
    pub new_dead_letters: usize,
    /// Open window states migrated to the new state version (or read by it).
    pub states_checked: usize,
    /// Anything worth saying, e.g. that there was no recent input.
    pub note: Option<String>,
}

/// Recent input and open states, sampled from the run loop.
#[derive(Default)]
pub(super) struct Sample {
    batches: VecDeque<RawBatch>,
    records: usize,
    taken: Option<Instant>,
    states: Vec<Vec<u8>>,
    state_version: u32,
}

impl Deployer {
    /// Keeps a copy of recent input, and of some open window states, for trials. Cheap
    /// on most calls: it samples at most every [`SAMPLE_EVERY`].
    pub(super) fn observe(&self, batch: &RawBatch, pipeline: &Pipeline) {
        let mut sample = self.sample.lock().expect("sample lock");
        if sample.taken.is_some_and(|t| t.elapsed() < SAMPLE_EVERY) {
            return;
        }
        sample.taken = Some(Instant::now());
        sample.records += batch.len();
        sample.batches.push_back(batch.clone());
        while sample.records > SAMPLE_RECORDS && sample.batches.len() > 1 {
            let dropped = sample.batches.pop_front().map_or(0, |b| b.len());
            sample.records -= dropped;
        }
        sample.states = pipeline.windows.groups.iter().take(SAMPLE_STATES).map(|g| g.state.clone()).collect();
        sample.state_version = state_version(&pipeline.aggregator);
    }

    /// Checks that `candidate` fits the pipeline and behaves on recent input no worse
    /// than the running version.
    pub(super) fn trial(&self, candidate: &StagePlan, max_error_increase: f64) -> Result<Trial> {
        let running = self.live.lock().expect("live lock").plans.clone();
        let (with_candidate, table) = self.with_candidate(candidate);
        let mut new = Pipeline::assemble(&self.config, with_candidate).context("it does not fit the pipeline")?;
        if let Err(why) = stages::table_change(&table, &new.table).allowed(self.config.sink.versioned) {
            bail!("it does not fit the pipeline: {why}");
        }
        let (batches, states, from_version) = {
            let sample = self.sample.lock().expect("sample lock");
            (sample.batches.clone(), sample.states.clone(), sample.state_version)
        };
        let mut trial = Trial::default();
        if candidate.id == StageId::Aggregator {
            trial.states_checked = check_states(&mut new.aggregator, &states, from_version)?;
        }
        if batches.is_empty() {
            trial.note = Some("no recent input to try it on".into());
            return Ok(trial);
        }
        let mut old = Pipeline::assemble(&self.config, running)?;
        let now = super::now_ms();
        for batch in &batches {
            trial.records += batch.len();
            old.process(batch, now)?;
            new.process(batch, now)?;
        }
        trial.running_dead_letters = old.dead_letters.len();
        trial.new_dead_letters = new.dead_letters.len();
        // A record the running version fails on too is not held against the new one.
        let failed = |p: &Pipeline| -> std::collections::HashSet<(i32, i64)> {
            p.dead_letters
                .iter()
                .filter(|d| d.kind == DeadLetterKind::PluginFailure)
                .map(|d| (d.partition, d.offset))
                .collect()
        };
        let old_failed = failed(&old);
        let digest = &candidate.component.digest;
        let failures: Vec<_> = new
            .dead_letters
            .iter()
            .filter(|d| d.kind == DeadLetterKind::PluginFailure && &d.digest == digest)
            .filter(|d| !old_failed.contains(&(d.partition, d.offset)))
            .collect();
        if let Some(first) = failures.first() {
            bail!(
                "it failed on {} of {} recent records (first: partition {} offset {}: {})",
                failures.len(),
                trial.records,
                first.partition,
                first.offset,
                first.reason
            );
        }
        let rate = |n: usize| n as f64 / trial.records as f64;
        if rate(trial.new_dead_letters) > rate(trial.running_dead_letters) + max_error_increase {
            bail!(
                "on {} recent records its dead-letter rate is {:.2}% against {:.2}% for the running version \
                 (more than {:.2} points higher)",
                trial.records,
                100.0 * rate(trial.new_dead_letters),
                100.0 * rate(trial.running_dead_letters),
                100.0 * max_error_increase
            );
        }
        Ok(trial)
    }
}

/// Checks that the new aggregator reads the running version's open window states: it
/// migrates them if its state version differs, and emits rows from them.
fn check_states(aggregator: &mut Plugin, states: &[Vec<u8>], from_version: u32) -> Result<usize> {
    if states.is_empty() {
        return Ok(0);
    }
    let to = state_version(aggregator);
    let states = if from_version == to {
        states.to_vec()
    } else {
        states.iter().map(|s| aggregator.migrate(from_version, s)).collect::<Result<Vec<_>, _>>().map_err(|e| {
            anyhow!("it cannot migrate the open windows' state from version {from_version} to {to}: {e}")
        })?
    };
    aggregator.emit(&states).map_err(|e| anyhow!("it cannot read the open windows' state (version {to}): {e}"))?;
    Ok(states.len())
}
