//! `weir replay`: late events or dead letters back through the current plugins into the
//! same sink. Each batch is one checkpoint that writes the corrected windows and removes
//! the replayed rows from their lane in the same transaction, so a replay — even one
//! interrupted and run again — counts every record exactly once. A late record is folded
//! into exactly the windows it was late for (a hopping event may have been on time for
//! others), and a session it extends or bridges is merged with it; a final window that
//! changes gets a new `revision`. Final windows are read back from the sink as records
//! reach them.

use std::path::Path;

use anyhow::{bail, Result};
use rustc_hash::FxHashMap;
use weir_sdk::RawBatch;

use super::build::PipelineOptions;
use super::committer::Committer;
use super::open::{open, Opened};
use super::run::now_ms;
use crate::config::SourceConfig;
use crate::plugin::RuntimeOptions;
use crate::sink::{Lane, Stored};
use crate::source::{FileOptions, FileSource, Rejected, Source};
use crate::window::Window;

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
    /// Of the records, folded into windows.
    pub events_windowed: u64,
    /// Folds into windows (a hopping record may fold into several).
    pub windowed: u64,
    /// Of the records, refused again (now in the dead-letter store anew).
    pub dead_letters: u64,
}

/// One record to replay, with every stored row it stands for.
struct Replayed {
    partition: i32,
    offset: i64,
    raw: Vec<u8>,
    ids: Vec<i64>,
    windows: Vec<Window>,
}

/// The late lane holds a row per (record, window): one record per partition and offset.
fn by_record(stored: Vec<Stored>) -> Vec<Replayed> {
    let mut out: Vec<Replayed> = Vec::new();
    let mut index: FxHashMap<(i32, i64), usize> = FxHashMap::default();
    for s in stored {
        let i = *index.entry((s.partition, s.offset)).or_insert_with(|| {
            out.push(Replayed {
                partition: s.partition,
                offset: s.offset,
                raw: s.raw,
                ids: Vec::new(),
                windows: Vec::new(),
            });
            out.len() - 1
        });
        out[i].ids.push(s.id);
        out[i].windows.extend(s.window);
    }
    out
}

/// Replays `selection` of the pipeline at `path` into its sink.
pub fn replay(
    path: &Path,
    selection: &ReplaySelection,
    options: &PipelineOptions,
    runtime_options: RuntimeOptions,
) -> Result<ReplaySummary> {
    let Opened { config, base, mut pipeline, mut sink, outputs, .. } = open(path, options, runtime_options, false)?;
    let partitions: Vec<i32> = sink.next_offsets(&config.name)?.into_iter().map(|(p, _)| p).collect();
    if partitions.is_empty() {
        bail!("{} holds no checkpoint of pipeline {:?}: nothing to replay", config.sink.url, config.name);
    }
    super::lease::acquire(sink.as_mut(), &config.name, &super::lease::lease("replay", None, now_ms()), false)?;
    let restored = sink.restore(&config.name, &partitions)?;
    pipeline.assign(&partitions, restored, now_ms())?;
    pipeline.replaying = true;
    pipeline.source = "replay".into();
    let stored: Vec<Stored> =
        sink.stored(&config.name, selection.lane)?.into_iter().filter(|r| selection.wants(r)).collect();
    let records = by_record(stored);
    // A CSV file's records are stored as read; the parser takes them as JSON objects,
    // typed by the columns the (perhaps fixed) parser now declares.
    let mut files = match &config.source {
        SourceConfig::Files { path, format, max_record_bytes, .. } => {
            let columns = pipeline.parser_columns();
            let options =
                FileOptions { format: *format, columns, max_record_bytes: *max_record_bytes, ..Default::default() };
            FileSource::open(&base.join(path), options).ok()
        }
        _ => None,
    };
    let mut committer = Committer::start(sink, outputs)?;
    pipeline.lookup = committer.window_lookup(config.name.clone());
    if let Some(merger) = pipeline.merger()? {
        committer.set_merger(merger)?;
    }

    let mut summary = ReplaySummary::default();
    for chunk in records.chunks(options.batch_size.max(1)) {
        let mut batch = RawBatch::default();
        let mut refused = Vec::new();
        for r in chunk {
            match files.as_mut().map_or_else(|| Ok(r.raw.clone()), |f| f.payload_of(r.partition, &r.raw)) {
                Ok(payload) => batch.push(&payload, b"", -1, r.partition, r.offset),
                Err(reason) => {
                    refused.push(Rejected { partition: r.partition, offset: r.offset, raw: r.raw.clone(), reason })
                }
            }
        }
        let (dead_from, late_from) = (pipeline.dead_letters.len(), pipeline.late_events.len());
        pipeline.reject(refused);
        let ids = chunk.iter().flat_map(|r| r.ids.iter().copied());
        match selection.lane {
            Lane::Late => {
                pipeline.replayed_late.extend(ids);
                let only = chunk.iter().map(|r| ((r.partition, r.offset), r.windows.clone())).collect();
                pipeline.replay_windows = Some(only);
            }
            Lane::DeadLetters => pipeline.replayed_dead.extend(ids),
        }
        let before = pipeline.stats.clone();
        pipeline.process(&batch, now_ms())?;
        // What fails again is stored as it was, not as the parser saw it.
        let as_read: FxHashMap<(i32, i64), &[u8]> =
            chunk.iter().map(|r| ((r.partition, r.offset), r.raw.as_slice())).collect();
        pipeline.keep_as_read(dead_from, late_from, |p, o| as_read.get(&(p, o)).map(|raw| raw.to_vec()));
        let name = config.name.clone();
        // No positions: a replay moves no source offset.
        let checkpoint = pipeline.build_checkpoint(Vec::new(), now_ms())?;
        committer.with(move |sink| {
            sink.commit(&name, &checkpoint)?;
            sink.renew(&name, &super::lease::lease("replay", None, now_ms()))
        })??;
        summary.records += chunk.len() as u64;
        summary.windowed += pipeline.stats.windowed - before.windowed;
        summary.events_windowed += pipeline.stats.events_windowed - before.events_windowed;
        summary.dead_letters += pipeline.stats.dead_letters - before.dead_letters;
        if options.progress {
            eprint!("\rreplayed {} of {}", summary.records, records.len());
        }
    }
    if options.progress && !records.is_empty() {
        eprintln!();
    }
    let name = config.name.clone();
    committer.with(move |sink| sink.give_up(&name, &super::lease::holder()))??;
    Ok(summary)
}
