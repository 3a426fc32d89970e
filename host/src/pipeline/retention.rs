//! Removing weir's expired records (`[retention]`) on the sink thread: the checkpoint
//! log, the dead letters and the late lane, every `retention.every` while a run goes on
//! and once at its end. Deletes go in slices so that none holds the tables for long;
//! each host of a group expires the same rows, which deleting twice does not hurt.

use std::time::Instant;

use anyhow::Result;

use super::committer::Committer;
use crate::config::{Keep, RetentionConfig};
use crate::sink::{Kept, Sink};

/// How many rows one statement removes at most.
const SLICE: u64 = 10_000;

/// When expiry last ran, and what it keeps.
pub(super) struct Expiry {
    config: RetentionConfig,
    last: Instant,
}

impl Expiry {
    pub(super) fn new(config: &RetentionConfig) -> Self {
        Expiry { config: config.clone(), last: Instant::now() }
    }

    /// Expires, without waiting, if `every` has passed since the last time.
    pub(super) fn tick(&mut self, committer: &Committer, pipeline: &str) -> Result<()> {
        if self.last.elapsed() < self.config.every {
            return Ok(());
        }
        self.last = Instant::now();
        let (config, pipeline) = (self.config.clone(), pipeline.to_string());
        committer.run(move |sink| {
            if let Err(e) = expire(sink, &pipeline, &config, crate::pipeline::now_ms()) {
                tracing::warn!(pipeline, error = %format!("{e:#}"), "expiring old records failed; trying again later");
            }
        })
    }

    /// Expires once more and waits for it: the end of a run.
    pub(super) fn finish(&self, committer: &mut Committer, pipeline: &str) -> Result<u64> {
        let (config, pipeline) = (self.config.clone(), pipeline.to_string());
        committer.with(move |sink| expire(sink, &pipeline, &config, crate::pipeline::now_ms()))?
    }
}

/// Removes what each lane no longer keeps; returns how many rows went.
fn expire(sink: &mut dyn Sink, pipeline: &str, config: &RetentionConfig, now_ms: i64) -> Result<u64> {
    let lanes = [
        (Kept::CheckpointLog, config.checkpoint_log),
        (Kept::DeadLetters, config.dead_letters),
        (Kept::LateEvents, config.late_events),
    ];
    let mut total = 0;
    for (lane, Keep { age, rows }) in lanes {
        if age.is_none() && rows.is_none() {
            continue;
        }
        let before = age.map(|a| now_ms.saturating_sub(a.as_millis() as i64));
        let mut removed = 0;
        loop {
            let n = sink.expire(pipeline, lane, before, rows, SLICE)?;
            removed += n;
            if n < SLICE {
                break;
            }
        }
        if removed > 0 {
            tracing::info!(pipeline, table = lane.table().0, removed, "expired old records");
        }
        total += removed;
    }
    Ok(total)
}
