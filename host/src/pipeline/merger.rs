//! The aggregator on the sink's side: when window rows are merged in the sink from
//! per-partition partial states (see `sink/partials.rs`), the sink thread needs an
//! instance of the aggregator of its own to `merge` and `emit` them.

use anyhow::{anyhow, Result};

use super::build::Pipeline;
use super::keys::cell;
use super::stages::StageId;
use crate::plugin::{AggregatorStage, Plugin};
use crate::sink::{Cell, Merger};
use crate::window::WindowSpec;

/// An aggregator instance that merges partial states into row values.
struct AggregatorMerger {
    plugin: Plugin,
    final_after_ms: i64,
    sessions: bool,
}

impl Merger for AggregatorMerger {
    fn rows(&mut self, partials: Vec<Vec<Vec<u8>>>) -> Result<Vec<Vec<Cell>>> {
        let name = self.plugin.component().name.clone();
        let mut merged = Vec::with_capacity(partials.len());
        for states in partials {
            let mut states = states.into_iter();
            let first = states.next().ok_or_else(|| anyhow!("a window to merge has no partial state"))?;
            let state = states.try_fold(first, |a, b| {
                self.plugin.merge(&a, &b).map_err(|e| anyhow!("aggregator {name} failed to merge partial states: {e}"))
            })?;
            merged.push(state);
        }
        let rows = self.plugin.emit(&merged).map_err(|e| anyhow!("aggregator {name} failed to emit: {e}"))?;
        Ok((0..rows.len()).map(|i| rows.columns.iter().map(|c| cell(c, i)).collect()).collect())
    }

    fn final_after_ms(&self) -> i64 {
        self.final_after_ms
    }

    fn sessions(&self) -> bool {
        self.sessions
    }
}

impl Pipeline {
    /// A fresh instance of the running aggregator version, for the sink to merge with;
    /// `None` unless rows are merged in the sink.
    pub(super) fn merger(&self) -> Result<Option<Box<dyn Merger>>> {
        if !self.partials {
            return Ok(None);
        }
        let plan = self.plans.iter().find(|p| p.id == StageId::Aggregator).ok_or_else(|| anyhow!("no aggregator"))?;
        let (final_after_ms, sessions) = match self.spec {
            WindowSpec::Session { gap_ms } => (gap_ms, true),
            _ => (0, false),
        };
        Ok(Some(Box::new(AggregatorMerger { plugin: plan.start()?, final_after_ms, sessions })))
    }
}
