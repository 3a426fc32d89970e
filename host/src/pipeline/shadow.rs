//! Shadow deployments: a candidate version runs beside the live one on the same records
//! and writes its rows to a table of its own (`<table>__shadow`), in the same transaction
//! as the live checkpoint. It starts right after a checkpoint, from a copy of the live
//! open windows (migrated if its aggregator encodes state differently), so its table
//! holds what the live table would hold had the candidate been switched in then. Its dead
//! letters and late events are counted, not stored. New partitions (a new file, an unread
//! Kafka partition) and released ones are mirrored into it. A switch, a restart, or the
//! assignment of a partition with open windows ends it; promoting it is a switch of the
//! live stage to the candidate.

use anyhow::Result;

use super::build::Pipeline;
use super::stages::{StageId, StagePlan};
use crate::sink::{ShadowRows, TableSchema};

/// A candidate running in the shadow of a live stage.
pub(super) struct Shadow {
    /// The pipeline with the candidate in its stage.
    pub(super) pipeline: Pipeline,
    /// What runs in the shadowed stage.
    pub(super) plan: StagePlan,
    /// The live version it shadows, `name@digest`.
    live: String,
    table: TableSchema,
    fresh: bool,
    started_ms: i64,
    /// Its dead letters and late events so far.
    pub(super) dead_letters: u64,
    pub(super) late: u64,
}

/// The shadow table's name for `table`.
pub fn shadow_table(table: &str) -> String {
    format!("{table}__shadow")
}

impl Pipeline {
    /// Starts `shadow` (this pipeline with `plan` in its stage, assembled off the loop)
    /// beside this one. Called right after a checkpoint: it begins from the same open windows.
    pub(super) fn start_shadow(&mut self, plan: StagePlan, mut shadow: Pipeline) -> Result<()> {
        if self.partials {
            // Its rows would be one host's partials; comparing them needs the group's merge.
            anyhow::bail!(
                "a shadow compares whole window rows, and this pipeline's rows are merged in the sink from \
                 every host's partial states ([scale] keyed = false); deploy with a trial instead"
            );
        }
        let index = self.stage_index(plan.id)?;
        let live = self.plans[index].version();
        shadow.windows = self.windows.clone();
        shadow.tracker = self.tracker.clone();
        shadow.source.clone_from(&self.source);
        // The live pipeline counts the records' quality; the shadow's counts would go nowhere.
        shadow.meter = None;
        if plan.id == StageId::Aggregator {
            let (states, empty) = shadow.migrate_states(&self.aggregator)?;
            for (group, state) in shadow.windows.groups.iter_mut().zip(states) {
                group.state = state;
            }
            shadow.empty_state = empty;
        }
        let table = TableSchema { name: shadow_table(&self.table.name), ..self.table.clone() };
        self.shadow = Some(Box::new(Shadow {
            pipeline: shadow,
            plan,
            live,
            table,
            fresh: true,
            started_ms: super::now_ms(),
            dead_letters: 0,
            late: 0,
        }));
        Ok(())
    }

    /// Ends the shadow, if one runs, saying why on the terminal.
    pub(super) fn end_shadow(&mut self, why: &str) -> Option<Box<Shadow>> {
        let shadow = self.shadow.take()?;
        eprintln!("\nthe shadow of {} ({}) ended: {why}", shadow.plan.id, super::stages::short(&shadow.plan.version()));
        Some(shadow)
    }

    /// Runs the shadow on a batch the live pipeline has processed; a failure of the
    /// host's (not of the plugin's, which is a dead letter) ends the shadow, not the run.
    pub(super) fn shadow_process(&mut self, batch: &weir_sdk::RawBatch, now_ms: i64) {
        let Some(shadow) = self.shadow.as_mut() else { return };
        if let Err(e) = shadow.pipeline.process(batch, now_ms) {
            self.end_shadow(&format!("{e:#}"));
        }
    }

    /// Mirrors [`hold`](Pipeline::hold) into the shadow, so both judge lateness alike.
    pub(super) fn shadow_hold(&mut self, partitions: &[i32], now_ms: i64) {
        if let Some(shadow) = self.shadow.as_mut() {
            shadow.pipeline.hold(partitions, now_ms);
        }
    }

    /// The shadow's part of a checkpoint at `positions`.
    pub(super) fn shadow_checkpoint(&mut self, positions: Vec<(i32, i64)>, now_ms: i64) -> Option<ShadowRows> {
        let shadow = self.shadow.as_mut()?;
        match shadow.pipeline.build_checkpoint(positions, now_ms) {
            Ok(taken) => {
                shadow.dead_letters += taken.dead_letters.len() as u64;
                shadow.late += taken.late_events.len() as u64;
                Some(ShadowRows {
                    table: shadow.table.clone(),
                    stage: shadow.plan.id.to_string(),
                    live: shadow.live.clone(),
                    candidate: shadow.plan.version(),
                    fresh: std::mem::take(&mut shadow.fresh),
                    started_ms: shadow.started_ms,
                    rows: taken.rows,
                })
            }
            Err(e) => {
                self.end_shadow(&format!("{e:#}"));
                None
            }
        }
    }

    /// What runs in the shadow, if anything does.
    pub(super) fn shadow_plan(&self) -> Option<StagePlan> {
        self.shadow.as_ref().map(|s| s.plan.clone())
    }
}
