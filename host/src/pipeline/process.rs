//! One batch through the pipeline; assigning, releasing and holding partitions. A
//! checkpoint out of it is `checkpoint.rs`.

use std::time::Instant;

use anyhow::Result;
use weir_sdk::{EventBatch, RawBatch, Severity};

use super::build::Pipeline;
use crate::plugin::{AggregatorStage, ParserStage, Plugin, RecordFailure, TransformStage, ValidatorStage};
use crate::sink::{DeadLetter, DeadLetterKind, LateEvent, Restored};
use crate::source::Rejected;
use crate::window::{Window, WindowSpec};

/// Records `record` of `batch` as a dead letter refused by `plugin`.
pub(super) fn push_dead(
    out: &mut Vec<DeadLetter>,
    batch: &RawBatch,
    record: u32,
    kind: DeadLetterKind,
    plugin: &Plugin,
    reason: String,
) {
    let (name, digest) = (&plugin.component().name, &plugin.component().digest);
    out.push(dead_letter(batch, record, kind, name, digest, reason));
}

/// Records `record` of `batch` as a rejected dead letter from the host's own `stage`.
pub(super) fn push_dead_from(out: &mut Vec<DeadLetter>, batch: &RawBatch, record: u32, stage: &str, reason: String) {
    out.push(dead_letter(batch, record, DeadLetterKind::Rejected, stage, "", reason));
}

fn dead_letter(
    batch: &RawBatch,
    record: u32,
    kind: DeadLetterKind,
    plugin: &str,
    digest: &str,
    reason: String,
) -> DeadLetter {
    let r = record as usize;
    DeadLetter {
        kind,
        reason,
        plugin: plugin.into(),
        digest: digest.into(),
        partition: batch.partitions[r],
        offset: batch.offsets[r],
        raw: batch.payloads.get(r).to_vec(),
    }
}

/// Records the rows a plugin failed on; `records` maps the stage's rows to raw records.
fn push_failures(
    out: &mut Vec<DeadLetter>,
    batch: &RawBatch,
    failures: Vec<RecordFailure>,
    records: &[u32],
    plugin: &Plugin,
) {
    for f in failures {
        push_dead(out, batch, records[f.index as usize], DeadLetterKind::PluginFailure, plugin, f.failure.to_string());
    }
}

impl Pipeline {
    /// Records what the source could not frame as malformed dead letters.
    pub fn reject(&mut self, rejected: Vec<Rejected>) {
        // A record the source could not frame was read all the same: it counts.
        self.stats.records += rejected.len() as u64;
        if let Some(meter) = self.meter.as_mut().filter(|_| !self.replaying) {
            let now = super::now_ms();
            rejected.iter().for_each(|r| meter.unframed(r.partition, now));
        }
        self.dead_letters.extend(rejected.into_iter().map(|r| DeadLetter {
            kind: DeadLetterKind::Malformed,
            reason: r.reason,
            plugin: "source".into(),
            digest: String::new(),
            partition: r.partition,
            offset: r.offset,
            raw: r.raw,
        }));
    }

    /// Gives the dead letters from `dead_from` on (but the source's own, which are as
    /// read already) and the late events from `late_from` on the bytes `as_read` finds
    /// for their record, where the parser saw a conversion of them (a CSV row as JSON).
    pub(super) fn keep_as_read(
        &mut self,
        dead_from: usize,
        late_from: usize,
        mut as_read: impl FnMut(i32, i64) -> Option<Vec<u8>>,
    ) {
        for d in self.dead_letters.iter_mut().skip(dead_from).filter(|d| d.plugin != "source") {
            if let Some(raw) = as_read(d.partition, d.offset) {
                d.raw = raw;
            }
        }
        for l in self.late_events.iter_mut().skip(late_from) {
            if let Some(raw) = as_read(l.partition, l.offset) {
                l.raw = raw;
            }
        }
    }

    /// The first critical rule violation since the last call, if any.
    pub fn take_critical(&mut self) -> Option<String> {
        self.critical.take()
    }

    /// Runs one batch: parse, validate, transform, assign windows, fold. `now_ms` is
    /// processing time, for partition idleness.
    pub fn process(&mut self, batch: &RawBatch, now_ms: i64) -> Result<()> {
        self.stats.records += batch.len() as u64;
        for &partition in &batch.partitions {
            self.tracker.touch(partition, now_ms);
        }

        if let Some(fetcher) = &mut self.schemas {
            fetcher.prepare(batch)?;
        }
        let started = Instant::now();
        let parsed = self.parser.parse(batch);
        self.measured.call(0, started.elapsed(), batch.len(), parsed.output.events.len());
        for e in parsed.output.errors {
            push_dead(&mut self.dead_letters, batch, e.index, DeadLetterKind::Malformed, &self.parser, e.reason);
        }
        let identity: Vec<u32> = (0..batch.len() as u32).collect();
        push_failures(&mut self.dead_letters, batch, parsed.failures, &identity, &self.parser);
        let mut events = parsed.output.events;
        let metering = !self.replaying && self.meter.is_some();
        // The rows of `events` still in play, once a validator has dropped some. Taking
        // them out of every column copied columns no later stage reads.
        let mut rows: Option<Vec<u32>> = None;
        let mut records = parsed.output.sources;
        // Event time moves only with the records every stage accepted: see `judge`.
        let mut times: Vec<i64> =
            events.columns[self.time_column].values.i64_slice().map(<[i64]>::to_vec).unwrap_or_default();
        if let Some(meter) = self.meter.as_mut().filter(|_| metering) {
            meter.begin(batch.len());
            meter.parsed(&events, &records, &times);
        }

        for i in 0..self.validators.len() {
            let input = events.select(&self.validators[i].1, rows.as_deref());
            let started = Instant::now();
            let validated = self.validators[i].0.validate(&input);
            let took = started.elapsed();
            let mut reasons: Vec<Option<String>> = vec![None; input.len()];
            for v in &validated.violations {
                if v.severity == Severity::Critical && self.critical.is_none() {
                    let r = records[v.row as usize] as usize;
                    self.critical = Some(format!(
                        "{} ({}) on the record at partition {} offset {}: {}",
                        v.rule,
                        self.validators[i].0.component().name,
                        batch.partitions[r],
                        batch.offsets[r],
                        v.message
                    ));
                }
                if v.severity >= Severity::Reject {
                    let reason = reasons[v.row as usize].get_or_insert_with(String::new);
                    if !reason.is_empty() {
                        reason.push_str("; ");
                    }
                    reason.push_str(&format!("{}: {}", v.rule, v.message));
                }
            }
            let failed: Vec<u32> = validated.failures.iter().map(|f| f.index).collect();
            push_failures(&mut self.dead_letters, batch, validated.failures, &records, &self.validators[i].0);
            for (row, reason) in reasons.iter().enumerate() {
                if let Some(reason) = reason {
                    let plugin = &self.validators[i].0;
                    push_dead(
                        &mut self.dead_letters,
                        batch,
                        records[row],
                        DeadLetterKind::Rejected,
                        plugin,
                        reason.clone(),
                    );
                }
            }
            let kept: Vec<u32> =
                (0..input.len() as u32).filter(|&r| reasons[r as usize].is_none() && !failed.contains(&r)).collect();
            self.measured.call(1 + i, took, input.len(), kept.len());
            if kept.len() != input.len() {
                rows = Some(kept.iter().map(|&r| rows.as_ref().map_or(r, |rows| rows[r as usize])).collect());
                records = kept.iter().map(|&r| records[r as usize]).collect();
                times = kept.iter().map(|&r| times[r as usize]).collect();
            }
        }

        if let Some(meter) = self.meter.as_mut().filter(|_| metering) {
            meter.accepted(&records);
        }
        for i in 0..self.transforms.len() {
            let input = events.select(&self.transforms[i].1, rows.take().as_deref());
            let started = Instant::now();
            let out = self.transforms[i].0.apply(&input);
            let stage = 1 + self.validators.len() + i;
            self.measured.call(stage, started.elapsed(), input.len(), out.output.events.len());
            for e in out.output.errors {
                let plugin = &self.transforms[i].0;
                push_dead(
                    &mut self.dead_letters,
                    batch,
                    records[e.index as usize],
                    DeadLetterKind::Rejected,
                    plugin,
                    e.reason,
                );
            }
            push_failures(&mut self.dead_letters, batch, out.failures, &records, &self.transforms[i].0);
            records = out.output.sources.iter().map(|&s| records[s as usize]).collect();
            times = out.output.sources.iter().map(|&s| times[s as usize]).collect();
            events = out.output.events;
        }

        self.fold(batch, &events, rows.as_deref(), &records, &times, now_ms)?;
        if let Some(meter) = self.meter.as_mut().filter(|_| metering) {
            meter.finish(batch, now_ms);
        }
        if let Some(why) = &self.miskeyed {
            // Before a checkpoint writes one partition's share of a window as the whole of it.
            anyhow::bail!("{why}");
        }
        // The pipeline watermark decides only when windows are written as final.
        self.tracker.advance(now_ms);
        self.shadow_process(batch, now_ms);
        Ok(())
    }

    /// Folds the rows of `events` at `rows` (all of them if `None`), which came from
    /// `records` of `batch` and have event times `times`. Each row is judged late or not
    /// by its own partition's watermark as its record left it (see `judge`).
    fn fold(
        &mut self,
        batch: &RawBatch,
        events: &EventBatch,
        rows: Option<&[u32]>,
        records: &[u32],
        times: &[i64],
        now_ms: i64,
    ) -> Result<()> {
        // Each row's key id; a record whose key is null or unstorable is a dead letter, marked `NO_KEY`.
        const NO_KEY: u32 = u32::MAX;
        let at = |row: usize| rows.map_or(row, |rows| rows[row] as usize);
        let mut keys = self.window_keys(batch, events, rows, records, NO_KEY);
        let marks = self.judge(batch, records, times, &mut keys, now_ms, NO_KEY);
        let spec = self.spec;
        let replaying = self.replaying;
        // For sessions, lateness is judged on the event's own span `[t, t + gap)`.
        let judged = |row: usize, window: &Window| match spec {
            WindowSpec::Session { gap_ms } => Window { start: times[row], end: times[row].saturating_add(gap_ms) },
            _ => *window,
        };
        let late = |row: usize, window: &Window| !replaying && spec.is_late(&judged(row, window), marks[row]);
        self.reopen(&keys, times, late, NO_KEY)?;
        let sessions = match spec {
            WindowSpec::Session { gap_ms } => Some(self.sessions(&keys, times, gap_ms, late, NO_KEY)?),
            _ => None,
        };

        let mut fold_rows: Vec<u32> = Vec::with_capacity(records.len());
        let mut fold_records: Vec<u32> = Vec::with_capacity(records.len());
        let mut groups: Vec<u32> = Vec::with_capacity(records.len());
        let mut touched: Vec<usize> = Vec::new();
        let mut local_of = rustc_hash::FxHashMap::<usize, u32>::default();
        let mut windows = Vec::new();
        for (row, &key) in keys.iter().enumerate() {
            if key == NO_KEY {
                // A dead letter after all (no key, or a time beyond max_ahead): not accurate,
                // and its time, perhaps far off, must not place it.
                if let Some(meter) = self.meter.as_mut().filter(|_| !replaying) {
                    meter.refused(records[row]);
                }
                continue;
            }
            let record = records[row];
            let r = record as usize;
            match &sessions {
                Some(sessions) => {
                    windows.clear();
                    windows.push(sessions[row]);
                }
                None => self.spec.windows_of(times[row], &mut windows),
            }
            let mut late_for = 0;
            for &window in &windows {
                if late(row, &window) {
                    late_for += 1;
                    self.late_events.push(LateEvent {
                        partition: batch.partitions[r],
                        offset: batch.offsets[r],
                        event_ms: times[row],
                        window: judged(row, &window),
                        raw: batch.payloads.get(r).to_vec(),
                    });
                    continue;
                }
                if let Some(only) = self.replay_windows.as_ref().filter(|_| sessions.is_none()) {
                    // A late record is folded again into exactly the windows it was late for.
                    if !only.get(&(batch.partitions[r], batch.offsets[r])).is_some_and(|w| w.contains(&window)) {
                        continue;
                    }
                }
                let partition = batch.partitions[r];
                let group = self.windows.group(window, key, partition, &self.empty_state);
                let local = *local_of.entry(group).or_insert_with(|| {
                    touched.push(group);
                    touched.len() as u32 - 1
                });
                fold_rows.push(at(row) as u32);
                fold_records.push(record);
                groups.push(local);
            }
            if late_for == windows.len() && late_for > 0 {
                self.stats.late_records += 1;
                if let Some(meter) = self.meter.as_mut().filter(|_| !replaying) {
                    meter.late(record);
                }
            }
        }
        if fold_rows.is_empty() {
            return Ok(());
        }
        let identity = fold_rows.len() == events.len() && fold_rows.iter().enumerate().all(|(i, &r)| i as u32 == r);
        let input = events.select(&self.aggregator_columns, (!identity).then_some(&fold_rows[..]));
        let mut states: Vec<Vec<u8>> =
            touched.iter().map(|&g| std::mem::take(&mut self.windows.groups[g].state)).collect();
        let started = Instant::now();
        let failures = self.aggregator.fold(&mut states, &input, &groups);
        let last = self.measured.stages.len().saturating_sub(1);
        self.measured.call(last, started.elapsed(), fold_rows.len(), 0);
        self.stats.windowed += (fold_rows.len() - failures.len()) as u64;
        // A row's folds are consecutive in `fold_rows`; it counts once unless one of them failed.
        let failed: rustc_hash::FxHashSet<u32> = failures.iter().map(|f| fold_rows[f.index as usize]).collect();
        let starts = fold_rows.iter().enumerate().filter(|&(i, r)| i == 0 || fold_rows[i - 1] != *r);
        self.stats.events_windowed += starts.filter(|(_, r)| !failed.contains(r)).count() as u64;
        push_failures(&mut self.dead_letters, batch, failures, &fold_records, &self.aggregator);
        for (g, state) in touched.into_iter().zip(states) {
            let group = &mut self.windows.groups[g];
            group.state = state;
            group.dirty = true;
        }
        Ok(())
    }

    /// Takes `partitions` on at processing time `now_ms`, resuming whatever the sink
    /// stored for them: clocks, watermark and open windows.
    pub fn assign(&mut self, partitions: &[i32], restored: Option<Restored>, now_ms: i64) -> Result<()> {
        let restored = restored.unwrap_or_default();
        if restored.states.is_empty() {
            // New partitions (a new file, an unread Kafka partition): the shadow takes them on too.
            if let Some(shadow) = self.shadow.as_mut() {
                shadow.pipeline.assign(partitions, Some(restored.clone()), now_ms)?;
            }
        } else {
            self.end_shadow("partitions with open windows were assigned to this host");
        }
        self.tracker.restore(&restored.clocks, restored.watermark);
        self.stored_watermark = self.stored_watermark.max(restored.latest_watermark);
        for &p in partitions {
            self.tracker.assign(p, now_ms);
        }
        let to = super::swap::state_version(&self.aggregator);
        for mut state in restored.states.into_iter().filter(|s| !s.is_final) {
            if let Some(from) = self.stored_state_version.filter(|&v| v != to) {
                state.state = self.aggregator.migrate(from, &state.state).map_err(|e| {
                    anyhow::anyhow!(
                        "aggregator {} failed to migrate a stored window state from version {from} to {to}: {e}",
                        self.aggregator.component().name
                    )
                })?;
            }
            let encoded = self.state_key(&state);
            self.windows.restore(state, &encoded);
        }
        Ok(())
    }

    /// Lets `partitions` go, after a checkpoint has written everything of theirs.
    pub fn release(&mut self, partitions: &[i32]) {
        if let Some(shadow) = self.shadow.as_mut() {
            shadow.pipeline.release(partitions);
        }
        for &p in partitions {
            self.tracker.revoke(p);
        }
        self.windows.take_closed(|g| partitions.contains(&g.partition));
    }

    /// Makes exactly `partitions` hold the pipeline watermark back; every partition keeps
    /// its clock. Windows are not touched: the partitions are still this host's.
    pub fn hold(&mut self, partitions: &[i32], now_ms: i64) {
        self.tracker.hold(partitions, now_ms);
        self.shadow_hold(partitions, now_ms);
    }
}
