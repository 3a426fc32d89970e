//! `weir replay`: late events or dead letters back through the current plugins into the
//! same sink. Each batch is one checkpoint that writes the corrected windows and removes
//! the replayed rows from their lane in the same transaction, so a replay — even one
//! interrupted and run again — counts every record exactly once. A closed window that
//! receives a record gets a new `revision`.

use std::path::Path;

use anyhow::{bail, Result};
use weir_sdk::RawBatch;

use super::build::PipelineOptions;
use super::process::encode_cells;
use super::run::{now_ms, open, Opened};
use crate::plugin::RuntimeOptions;
use crate::sink::{Lane, Stored};

/// Which records to replay.
#[derive(Clone, Debug)]
pub struct ReplaySelection {
    /// The lane.
    pub lane: Lane,
    /// Dead letters of this kind only.
    pub kind: Option<String>,
    /// Dead letters whose reason contains this text only.
    pub reason: Option<String>,
}

impl ReplaySelection {
    fn wants(&self, record: &Stored) -> bool {
        self.kind.as_ref().is_none_or(|k| &record.kind == k)
            && self.reason.as_ref().is_none_or(|r| record.reason.contains(r.as_str()))
    }
}

/// What a replay did.
#[derive(Clone, Debug, Default)]
pub struct ReplaySummary {
    /// Records replayed.
    pub records: u64,
    /// Of those, folded into windows.
    pub windowed: u64,
    /// Of those, refused again (now in the dead-letter store anew).
    pub dead_letters: u64,
}

/// Replays `selection` of the pipeline at `path` into its sink.
pub fn replay(
    path: &Path,
    selection: &ReplaySelection,
    options: &PipelineOptions,
    runtime_options: RuntimeOptions,
) -> Result<ReplaySummary> {
    let Opened { config, mut pipeline, mut sink, .. } = open(path, options, runtime_options, false)?;
    let partitions = sink.stored_partitions(&config.name)?;
    if partitions.is_empty() {
        bail!("{} holds no checkpoint of pipeline {:?}: nothing to replay", config.sink.url, config.name);
    }
    let restored = sink.restore(&config.name, &partitions)?;
    pipeline.assign(&partitions, restored, now_ms())?;
    for state in sink.all_windows(&config.name)?.into_iter().filter(|s| s.is_final) {
        pipeline.windows.restore(state, encode_cells);
    }
    pipeline.replaying = true;
    pipeline.source = "replay".into();

    let records: Vec<Stored> =
        sink.stored(&config.name, selection.lane)?.into_iter().filter(|r| selection.wants(r)).collect();
    let mut summary = ReplaySummary::default();
    for chunk in records.chunks(options.batch_size.max(1)) {
        let mut batch = RawBatch::default();
        for r in chunk {
            batch.push(&r.raw, b"", -1, r.partition, r.offset);
        }
        let ids = chunk.iter().map(|r| r.id);
        match selection.lane {
            Lane::Late => pipeline.replayed_late.extend(ids),
            Lane::DeadLetters => pipeline.replayed_dead.extend(ids),
        }
        let before = pipeline.stats.clone();
        pipeline.process(&batch, now_ms())?;
        let name = config.name.clone();
        // No positions: a replay moves no source offset.
        pipeline.checkpoint(Vec::new(), now_ms(), |checkpoint| sink.commit(&name, checkpoint))?;
        summary.records += chunk.len() as u64;
        summary.windowed += pipeline.stats.windowed - before.windowed;
        summary.dead_letters += pipeline.stats.dead_letters - before.dead_letters;
        if options.progress {
            eprint!("\rreplayed {} of {}", summary.records, records.len());
        }
    }
    if options.progress && !records.is_empty() {
        eprintln!();
    }
    Ok(summary)
}
