//! One checkpoint out of the pipeline: the rows of the windows that changed or closed,
//! their states, the offsets, the lanes, the quality counts, and the shadow's rows.

use std::time::Instant;

use anyhow::{Context, Result};
use weir_sdk::EventBatch;

use super::build::Pipeline;
use super::keys::cell;
use crate::plugin::AggregatorStage;
use crate::sink::{Checkpoint, WindowRow, WindowState};
use crate::window::Window;

impl Pipeline {
    /// Builds one checkpoint and commits it with `commit`, which writes it to the sink in
    /// one transaction; an error is the run's (the checkpoint's contents count as written).
    pub fn checkpoint(
        &mut self,
        positions: Vec<(i32, i64)>,
        now_ms: i64,
        commit: impl FnOnce(&Checkpoint) -> Result<()>,
    ) -> Result<()> {
        let checkpoint = self.build_checkpoint(positions, now_ms)?;
        commit(&checkpoint).context("committing a checkpoint")
    }

    /// Takes one checkpoint: the rows of every changed or newly closed window, the
    /// source's `positions` (the next offset per partition, just after the records
    /// processed so far), the watermark, the open windows' state, dead letters and late
    /// events. From here on they count as written: the caller commits the checkpoint, or
    /// fails the run (a transient sink failure is retried with exactly these rows).
    pub fn build_checkpoint(&mut self, positions: Vec<(i32, i64)>, now_ms: i64) -> Result<Checkpoint> {
        let mark = self.tracker.advance(now_ms);
        let spec = self.spec;
        let closes = |w: &Window| mark.is_some_and(|m| spec.final_at(w) <= m);
        let emit: Vec<usize> = (0..self.windows.groups.len())
            .filter(|&g| {
                let group = &self.windows.groups[g];
                group.dirty || (closes(&group.window) && !group.is_final)
            })
            .collect();
        let states: Vec<Vec<u8>> = emit.iter().map(|&g| self.windows.groups[g].state.clone()).collect();
        // Merged in the sink from every partition's partial instead (see `sink/partials.rs`).
        let rows = if states.is_empty() || self.partials {
            EventBatch::default()
        } else {
            let started = Instant::now();
            let rows = self
                .aggregator
                .emit(&states)
                .map_err(|e| anyhow::anyhow!("aggregator {} failed to emit: {e}", self.aggregator.component().name))?;
            let last = self.measured.stages.len().saturating_sub(1);
            self.measured.call(last, started.elapsed(), 0, rows.len());
            rows
        };
        let mut checkpoint = Checkpoint {
            watermark: mark,
            plugins: self.plugin_versions(),
            deployments: std::mem::take(&mut self.deployments),
            new_table_version: self.table_changed.as_ref().is_some_and(|(_, new)| *new),
            table: self.table_changed.take().map(|(table, _)| table),
            lookups: self.lookups.as_ref().map(|l| l.versions()).unwrap_or_default(),
            lookup_versions: self.lookups.as_mut().map(|l| l.unstored()).unwrap_or_default(),
            source: self.source.clone(),
            replayed_late: std::mem::take(&mut self.replayed_late),
            replayed_dead: std::mem::take(&mut self.replayed_dead),
            partials: self.partials,
            outbox: self.outbox,
            ..Default::default()
        };
        for (i, &g) in emit.iter().enumerate() {
            let group = &mut self.windows.groups[g];
            let is_final = closes(&group.window);
            if group.is_final && group.dirty {
                // A window that was already final changed: a correction.
                group.revision += 1;
            }
            group.is_final |= is_final;
            let key = self.windows.keys[group.key as usize].clone();
            if !self.partials {
                let values = rows.columns.iter().map(|c| cell(c, i)).collect();
                checkpoint.rows.push(WindowRow {
                    window: group.window,
                    key: key.clone(),
                    values,
                    is_final: group.is_final,
                    revision: group.revision,
                });
            }
            checkpoint.states.push(WindowState {
                window: group.window,
                key,
                partition: group.partition,
                state: group.state.clone(),
                revision: group.revision,
                is_final: group.is_final,
            });
        }
        // The records after this checkpoint are enriched with what loaded meanwhile.
        if let Some(lookups) = &mut self.lookups {
            lookups.at_boundary();
        }
        checkpoint.retracted = std::mem::take(&mut self.retracted);
        checkpoint.retracted_partials = std::mem::take(&mut self.retracted_partials);
        checkpoint.labels = std::mem::take(&mut self.labels);
        checkpoint.offsets = positions;
        checkpoint.clocks = self.tracker.snapshot().0;
        checkpoint.dead_letters = std::mem::take(&mut self.dead_letters);
        checkpoint.late_events = std::mem::take(&mut self.late_events);
        self.held = Default::default();
        // Offsets are stored only in this transaction, together with the rows they
        // produced: after a crash the source resumes exactly where the sink stands.
        self.stats.dead_letters += checkpoint.dead_letters.len() as u64;
        for d in &checkpoint.dead_letters {
            let by_plugin = self.measured.dead_letters.entry(d.kind.name().to_string()).or_default();
            *by_plugin.entry(d.plugin.clone()).or_default() += 1;
        }
        self.stats.late += checkpoint.late_events.len() as u64;
        self.stats.checkpoints += 1;
        for &g in &emit {
            let group = &mut self.windows.groups[g];
            (group.dirty, group.stored) = (false, true);
        }
        // Closed windows leave memory; their final state stays in the sink. A replay
        // keeps them: a later record of the same window must correct it, not restart it.
        if !self.replaying {
            self.windows.take_closed(|g| g.is_final);
        }
        if let Some(meter) = self.meter.as_mut() {
            checkpoint.quality = meter.take(now_ms);
            let windows = checkpoint.rows.iter().map(|r| r.window).chain(checkpoint.states.iter().map(|s| s.window));
            checkpoint.output_check = meter.output_check(windows.map(|w| (w.start, w.end)));
        }
        checkpoint.shadow = self.shadow_checkpoint(checkpoint.offsets.clone(), now_ms);
        Ok(checkpoint)
    }
}
