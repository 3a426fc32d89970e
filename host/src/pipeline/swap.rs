//! Switching one stage to another plugin version inside a running pipeline. The run loop
//! calls [`Pipeline::switch`] right after taking a checkpoint, so every offset before it
//! was processed by the old version and every offset after it by the new one.
//! The switch is recorded in the next checkpoint, in the same transaction as the first
//! records the new version processed: a crash before that commit replays them with the
//! old version, as if the switch had not happened.

use anyhow::{anyhow, bail, Result};

use super::build::Pipeline;
use super::stages::{self, short, StageId, StagePlan};
use crate::plugin::{AggregatorStage, Plugin};
use crate::sink::Deployment;

/// How a version came to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum How {
    /// The file the pipeline names, at start.
    Configured,
    /// `weir plugin deploy` or the admin API.
    Deploy,
    /// `weir plugin rollback`.
    Rollback,
    /// The watched plugin file changed.
    Watch,
    /// A shadow was promoted.
    Promote,
    /// Another host of the group switched to it: this host followed.
    Follow,
}

impl How {
    /// The name stored in `weir_deployments`.
    pub fn name(self) -> &'static str {
        match self {
            How::Configured => "configured",
            How::Deploy => "deploy",
            How::Rollback => "rollback",
            How::Watch => "watch",
            How::Promote => "promote",
            How::Follow => "follow",
        }
    }
}

/// The aggregator's state version.
pub(super) fn state_version(plugin: &Plugin) -> u32 {
    AggregatorStage::info(plugin).state_version
}

impl Pipeline {
    /// The index of `stage` in `plans`, or why there is no such stage.
    pub(super) fn stage_index(&self, stage: StageId) -> Result<usize> {
        self.plans.iter().position(|p| p.id == stage).ok_or_else(|| {
            let names: Vec<String> = self.plans.iter().map(|p| p.id.to_string()).collect();
            anyhow!("pipeline {} has no stage {stage} (its stages: {})", self.name, names.join(", "))
        })
    }

    /// What runs in each stage.
    pub fn plans(&self) -> &[StagePlan] {
        &self.plans
    }

    fn plugin_mut(&mut self, stage: StageId) -> &mut Plugin {
        match stage {
            StageId::Parser => &mut self.parser,
            StageId::Validator(i) => &mut self.validators[i].0,
            StageId::Transform(i) => &mut self.transforms[i].0,
            StageId::Aggregator => &mut self.aggregator,
        }
    }

    fn plugins(&self) -> Vec<&Plugin> {
        std::iter::once(&self.parser)
            .chain(self.validators.iter().map(|(p, _)| p))
            .chain(self.transforms.iter().map(|(p, _)| p))
            .chain(std::iter::once(&self.aggregator))
            .collect()
    }

    /// Runs `plugin` (an instance of `plan`) in `plan`'s stage from the next batch on.
    /// An aggregator's open window states are migrated to its state version. Nothing
    /// changes if the new version does not fit. `from` is where it takes over: the
    /// offsets of the checkpoint just taken. With `how` set, the switch is recorded in the next checkpoint.
    pub fn switch(&mut self, plan: StagePlan, plugin: Plugin, how: Option<How>, from: Vec<(i32, i64)>) -> Result<()> {
        let index = self.stage_index(plan.id)?;
        if self.partials
            && plan.id == StageId::Aggregator
            && state_version(self.plugin_mut(plan.id)) != state_version(&plugin)
        {
            // Other hosts' partials stay in the old encoding, and merge only with their own kind.
            bail!(
                "the aggregator's state version changes from {} to {}, and rows are merged from partial states \
                 ([scale] keyed = false): the stored partials of the old version could not be merged with new ones",
                state_version(self.plugin_mut(plan.id)),
                state_version(&plugin)
            );
        }
        let old = std::mem::replace(self.plugin_mut(plan.id), plugin);
        let fits = stages::wiring(&self.config, &self.plugins()).and_then(|wiring| {
            match stages::table_change(&self.table, &wiring.table).allowed(self.config.sink.versioned) {
                Err(why) => bail!("{why}"),
                Ok(()) => Ok(wiring),
            }
        });
        let migrated = fits.and_then(|wiring| {
            let states = if plan.id == StageId::Aggregator { Some(self.migrate_states(&old)?) } else { None };
            Ok((wiring, states))
        });
        let (wiring, states) = match migrated {
            Ok(done) => done,
            Err(e) => {
                *self.plugin_mut(plan.id) = old;
                return Err(e);
            }
        };
        if let Some((states, empty)) = states {
            for (group, state) in self.windows.groups.iter_mut().zip(states) {
                group.state = state;
                // Written again in the new encoding at the next checkpoint.
                group.dirty = true;
            }
            self.empty_state = empty;
        }
        self.time_column = wiring.time_column;
        for ((_, columns), wired) in self.validators.iter_mut().zip(wiring.validators) {
            *columns = wired;
        }
        for ((_, columns), wired) in self.transforms.iter_mut().zip(wiring.transforms) {
            *columns = wired;
        }
        self.aggregator_columns = wiring.aggregator;
        self.key_columns = wiring.keys;
        match stages::table_change(&self.table, &wiring.table) {
            stages::TableChange::Adds(added) => {
                let names: Vec<&str> = added.iter().map(|c| c.name.as_str()).collect();
                tracing::info!(table = %wiring.table.name, columns = ?names, "the output table gains columns at this switch");
                self.table = wiring.table.clone();
                // Added in the transaction of the next checkpoint, which records the switch.
                self.table_changed = Some((wiring.table, false));
            }
            stages::TableChange::Breaks(why) => {
                tracing::info!(table = %wiring.table.name, "a new version of the output table at this switch: {why}");
                self.table = wiring.table.clone();
                self.table_changed = Some((wiring.table, true));
            }
            stages::TableChange::Same | stages::TableChange::Rekeys(_) => {}
        }
        if let Some(how) = how {
            self.deployments.push(self.deployment(&plan, how, from));
            let why = if how == How::Promote { "promoted" } else { "a new version was switched in" };
            self.end_shadow(why);
        }
        self.merger_stale |= plan.id == StageId::Aggregator;
        self.plans[index] = plan;
        Ok(())
    }

    /// The open windows' states, migrated from `old`'s state version to the current
    /// aggregator's, and the new empty state. Fails without changing anything.
    pub(super) fn migrate_states(&mut self, old: &Plugin) -> Result<(Vec<Vec<u8>>, Vec<u8>)> {
        let name = self.aggregator.component().name.clone();
        let empty = self.aggregator.create().map_err(|e| anyhow!("aggregator {name} failed to create a state: {e}"))?;
        let (from, to) = (state_version(old), state_version(&self.aggregator));
        if from == to {
            return Ok((self.windows.groups.iter().map(|g| g.state.clone()).collect(), empty));
        }
        let states = self
            .windows
            .groups
            .iter()
            .map(|g| self.aggregator.migrate(from, &g.state))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow!("aggregator {name} failed to migrate an open window's state from version {from} to {to}: {e}")
            })?;
        Ok((states, empty))
    }

    /// The record of `plan` switched in at `from`.
    fn deployment(&self, plan: &StagePlan, how: How, from: Vec<(i32, i64)>) -> Deployment {
        let configured = self.configured.get(&plan.id).cloned().unwrap_or_default();
        Deployment {
            stage: plan.id.to_string(),
            plugin: plan.component.name.clone(),
            digest: plan.component.digest.clone(),
            how: how.name().to_string(),
            state_version: (plan.id == StageId::Aggregator).then(|| state_version(&self.aggregator)),
            configured_digest: configured,
            from_offsets: from,
            at_ms: super::now_ms(),
            bytes: plan.bytes.clone(),
            reason: None,
        }
    }

    /// Resumes what the sink's deployment history says ran last: a stage runs the
    /// version last switched in, unless the file the pipeline names for it changed since
    /// (then the file wins, and is recorded). Returns what it did, a line per stage.
    pub fn resume_deployments(
        &mut self,
        history: &[Deployment],
        runtime: &crate::plugin::PluginRuntime,
    ) -> Result<Vec<String>> {
        let mut said = Vec::new();
        self.stored_state_version =
            history.iter().rev().find(|d| d.stage == "aggregator").and_then(|d| d.state_version);
        for plan in self.plans.clone() {
            let stage = plan.id.to_string();
            let last = history.iter().rev().find(|d| d.stage == stage);
            let configured = &plan.component.digest;
            match last {
                Some(d) if d.digest == *configured => {}
                Some(d) if d.configured_digest == *configured => {
                    let deployed = plan.with_bytes(runtime, &d.plugin, d.bytes.to_vec()).map_err(|e| {
                        anyhow!("{stage}: loading the deployed version {}@{}: {e:#}", d.plugin, d.digest)
                    })?;
                    let plugin = deployed.start()?;
                    self.switch(deployed, plugin, None, Vec::new()).map_err(|e| {
                        anyhow!("{stage}: resuming the deployed version {}@{}: {e:#}", d.plugin, d.digest)
                    })?;
                    said.push(format!(
                        "{stage} runs {}@{} ({} at {})",
                        d.plugin,
                        short(&d.digest),
                        d.how,
                        weir_sdk::time::format_iso8601(d.at_ms)
                    ));
                }
                _ => {
                    if let Some(d) = last {
                        said.push(format!(
                            "{stage}: {} changed since {}@{} was deployed; running the file",
                            plan.path.display(),
                            d.plugin,
                            short(&d.digest)
                        ));
                    }
                    // Where it starts is in the checkpoint log; the pipeline has not read yet.
                    self.deployments.push(self.deployment(&plan, How::Configured, Vec::new()));
                }
            }
        }
        Ok(said)
    }
}
