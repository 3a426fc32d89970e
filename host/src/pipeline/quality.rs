//! The quality meter (`[quality]`): what became of each record of a batch, counted per
//! quality window of event time and source partition, for the next checkpoint to add to
//! `weir_quality`. A record without an event time (it did not parse) counts in the window
//! of its partition's latest event time, so counts follow partition order, not batches.

use rustc_hash::FxHashMap;
use weir_sdk::{EventBatch, RawBatch};

use crate::config::{QualityConfig, Range};
use crate::sink::{delay_bucket, OutputCheck, QualityRow, DELAY_BUCKETS};

/// What became of a record, in order of how far it got.
const UNPARSED: u8 = 0;
const PARSED: u8 = 1;
const ACCURATE: u8 = 2;
const LATE: u8 = 3;

/// Slices of a quality window that on-time records' event times are counted in, to tell
/// their delay at the commit within a sixtieth of the window.
const SLICES: usize = 60;

#[derive(Clone, Debug)]
struct Counts {
    records: i64,
    complete: i64,
    missing: i64,
    accurate: i64,
    on_time: i64,
    late: i64,
    /// On-time records by the slice of the window their event time falls in.
    slices: [u32; SLICES],
}

impl Default for Counts {
    fn default() -> Self {
        Counts { records: 0, complete: 0, missing: 0, accurate: 0, on_time: 0, late: 0, slices: [0; SLICES] }
    }
}

/// Counts a batch's records as they go through the stages, and hands them to a checkpoint.
pub struct Meter {
    window_ms: i64,
    /// Parser output columns of the sequence number and of its producer.
    sequence: Option<usize>,
    producer: Option<usize>,
    ranges: Vec<(String, Range)>,
    /// Each producer's last sequence number, by partition and the producer's value.
    last_seq: FxHashMap<(i32, String), i64>,
    /// Each partition's latest event time, for records that have none.
    clocks: FxHashMap<i32, i64>,
    cells: FxHashMap<(i64, i32), Counts>,
    status: Vec<u8>,
    times: Vec<i64>,
    seqs: Vec<Option<(String, i64)>>,
}

impl Meter {
    /// A meter for `config`; `parser_columns` are the parser's outputs, `window_ms` the
    /// span of a quality window.
    pub fn new(config: &QualityConfig, parser_columns: &[weir_sdk::ColumnDef], window_ms: i64) -> Self {
        let position =
            |name: &Option<String>| name.as_ref().and_then(|n| parser_columns.iter().position(|c| &c.name == n));
        Meter {
            window_ms: config.window.map_or(window_ms, |w| w.as_millis() as i64).max(1),
            sequence: position(&config.sequence),
            producer: position(&config.producer),
            ranges: config.ranges.iter().map(|(c, r)| (c.clone(), *r)).collect(),
            last_seq: FxHashMap::default(),
            clocks: FxHashMap::default(),
            cells: FxHashMap::default(),
            status: Vec::new(),
            times: Vec::new(),
            seqs: Vec::new(),
        }
    }

    /// Starts a batch of `len` records.
    pub fn begin(&mut self, len: usize) {
        self.status.clear();
        self.status.resize(len, UNPARSED);
        self.times.clear();
        self.times.resize(len, i64::MIN);
        self.seqs.clear();
        if self.sequence.is_some() {
            self.seqs.resize(len, None);
        }
    }

    /// The parser made `events`, row `i` from record `sources[i]` at event time `times[i]`.
    pub fn parsed(&mut self, events: &EventBatch, sources: &[u32], times: &[i64]) {
        for (row, (&record, &t)) in sources.iter().zip(times).enumerate() {
            self.status[record as usize] = PARSED;
            self.times[record as usize] = t;
            if let Some(sequence) = self.sequence {
                let Some(seq) = events.columns[sequence].values.i64_slice().and_then(|s| s.get(row).copied()) else {
                    continue;
                };
                if !events.columns[sequence].is_valid(row) {
                    continue;
                }
                let producer = self.producer.map(|p| format!("{:?}", super::keys::cell(&events.columns[p], row)));
                self.seqs[record as usize] = Some((producer.unwrap_or_default(), seq));
            }
        }
    }

    /// `records` passed every validator.
    pub fn accepted(&mut self, records: &[u32]) {
        for &r in records {
            self.status[r as usize] = ACCURATE;
        }
    }

    /// `record` became a dead letter after the validators (a null key, a time beyond
    /// `max_ahead`).
    pub fn refused(&mut self, record: u32) {
        self.status[record as usize] = PARSED;
    }

    /// `record` was late for every window it belongs to.
    pub fn late(&mut self, record: u32) {
        self.status[record as usize] = LATE;
    }

    /// Counts the batch's records, in partition order. A record that did not pass the
    /// validators counts where its partition's accepted event time stands (its own may
    /// be the garbage that failed it); before a partition has one, at the first this
    /// batch brings, or at `now_ms`.
    pub fn finish(&mut self, batch: &RawBatch, now_ms: i64) {
        // A batch holds runs of one partition and, mostly, one window: the maps are
        // touched once per run, not per record (they cost a tenth of the throughput).
        let mut seen = None;
        for r in 0..batch.len() {
            if self.status[r] >= ACCURATE && seen != Some(batch.partitions[r]) {
                seen = Some(batch.partitions[r]);
                self.clocks.entry(batch.partitions[r]).or_insert(self.times[r]);
            }
        }
        // A partition's accepted event time, if it has one yet.
        let mut clock: Option<(i32, Option<i64>)> = None;
        let mut cell: Option<((i64, i32), Counts)> = None;
        for r in 0..batch.len() {
            let partition = batch.partitions[r];
            if clock.is_some_and(|(p, _)| p != partition) {
                self.put_clock(clock.take());
            }
            let (_, at) = clock.get_or_insert_with(|| (partition, self.clocks.get(&partition).copied()));
            let status = self.status[r];
            let t = match status >= ACCURATE {
                false => at.unwrap_or(now_ms),
                true => {
                    let t = self.times[r];
                    *at = Some(at.map_or(t, |a| a.max(t)));
                    t
                }
            };
            let missing = match self.seqs.get_mut(r).and_then(Option::take) {
                Some((producer, seq)) => {
                    let last = self.last_seq.entry((partition, producer)).or_insert(seq - 1);
                    let gap = (seq - *last - 1).max(0);
                    *last = (*last).max(seq);
                    gap
                }
                None => 0,
            };
            let start = t.div_euclid(self.window_ms) * self.window_ms;
            if cell.as_ref().is_some_and(|(key, _)| *key != (start, partition)) {
                self.put_cell(cell.take());
            }
            let (_, c) = cell.get_or_insert_with(|| ((start, partition), Counts::default()));
            c.records += 1;
            c.missing += missing;
            c.complete += i64::from(status >= PARSED);
            c.accurate += i64::from(status >= ACCURATE);
            c.late += i64::from(status == LATE);
            if status == ACCURATE {
                c.on_time += 1;
                let slice = ((t - start) * SLICES as i64 / self.window_ms).clamp(0, SLICES as i64 - 1);
                c.slices[slice as usize] += 1;
            }
        }
        self.put_clock(clock);
        self.put_cell(cell);
    }

    fn put_clock(&mut self, clock: Option<(i32, Option<i64>)>) {
        if let Some((partition, Some(at))) = clock {
            self.clocks.insert(partition, at);
        }
    }

    fn put_cell(&mut self, cell: Option<((i64, i32), Counts)>) {
        let Some((key, c)) = cell else { return };
        let into = self.cells.entry(key).or_default();
        into.records += c.records;
        into.missing += c.missing;
        into.complete += c.complete;
        into.accurate += c.accurate;
        into.on_time += c.on_time;
        into.late += c.late;
        for (to, from) in into.slices.iter_mut().zip(c.slices) {
            *to += from;
        }
    }

    /// Records the source could not frame, from `partition`.
    pub fn unframed(&mut self, partition: i32, now_ms: i64) {
        let t = *self.clocks.get(&partition).unwrap_or(&now_ms);
        let start = t.div_euclid(self.window_ms) * self.window_ms;
        self.cells.entry((start, partition)).or_default().records += 1;
    }

    /// The counts since the last call, with on-time records' delays as of `now_ms`, the
    /// commit they are made visible by.
    pub fn take(&mut self, now_ms: i64) -> Vec<QualityRow> {
        let w = self.window_ms;
        let mut rows: Vec<QualityRow> = self
            .cells
            .drain()
            .map(|((start, partition), c)| {
                let mut delays = [0i64; DELAY_BUCKETS];
                for (slice, &n) in c.slices.iter().enumerate().filter(|(_, &n)| n > 0) {
                    let middle = start + (2 * slice as i64 + 1) * w / (2 * SLICES as i64);
                    delays[delay_bucket(now_ms - middle)] += i64::from(n);
                }
                QualityRow {
                    start,
                    end: start + w,
                    partition,
                    records: c.records,
                    complete: c.complete,
                    missing: c.missing,
                    accurate: c.accurate,
                    on_time: c.on_time,
                    late: c.late,
                    delays,
                }
            })
            .collect();
        rows.sort_by_key(|r| (r.start, r.partition));
        rows
    }

    /// The output windows among `windows` to recount against the ranges.
    pub fn output_check(&self, windows: impl Iterator<Item = (i64, i64)>) -> Option<OutputCheck> {
        let mut windows: Vec<(i64, i64)> = windows.collect();
        windows.sort_unstable();
        windows.dedup();
        // Without ranges there is nothing to judge: the recount would be a query for nothing.
        (!windows.is_empty() && !self.ranges.is_empty()).then(|| OutputCheck { ranges: self.ranges.clone(), windows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{Column, ColumnDef, ColumnType, ColumnValues};

    fn batch(partitions: Vec<i32>) -> RawBatch {
        let mut b = RawBatch::default();
        for (i, p) in partitions.into_iter().enumerate() {
            b.push(b"{}", b"", -1, p, i as i64);
        }
        b
    }

    #[test]
    fn each_record_counts_once_by_how_far_it_got_and_gaps_in_a_sequence_are_missing() {
        let config: QualityConfig = toml::from_str("sequence = \"seq\"").unwrap();
        let columns = [ColumnDef::new("seq", ColumnType::Int64)];
        let mut meter = Meter::new(&config, &columns, 60_000);
        let raw = batch(vec![0, 0, 0, 0, 0]);
        meter.begin(raw.len());
        // Records 0..4 parse (1 does not), with sequence numbers 1, 2, 5, 6.
        let events = EventBatch { len: 4, columns: vec![Column::new(ColumnValues::Int64(vec![1, 2, 5, 6]))] };
        meter.parsed(&events, &[0, 2, 3, 4], &[10_000, 20_000, 30_000, 70_000]);
        meter.accepted(&[0, 3, 4]);
        meter.late(4);
        meter.finish(&raw, 1_000_000);
        let rows = meter.take(90_000);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let first = &rows[0];
        assert_eq!((first.start, first.end, first.records), (0, 60_000, 4), "record 1 counts where its partition was");
        assert_eq!((first.complete, first.accurate, first.on_time, first.late), (3, 2, 2, 0));
        assert_eq!(first.missing, 2, "3 and 4 never came");
        // Delays at 90 s of events at 10 s and 30 s: 80 s and 60 s, in the 2 m and 1 m buckets.
        assert_eq!(first.delays[4] + first.delays[5], 2);
        let second = &rows[1];
        assert_eq!((second.records, second.late, second.on_time), (1, 1, 0));
        assert!(meter.take(0).is_empty(), "taken once");
    }

    #[test]
    fn a_record_refused_after_the_validators_counts_where_its_partition_stands() {
        let mut meter = Meter::new(&QualityConfig::default(), &[], 60_000);
        let raw = batch(vec![3, 3]);
        meter.begin(raw.len());
        let events = EventBatch { len: 2, columns: vec![] };
        // The second record's time is a century ahead: max_ahead makes it a dead letter.
        meter.parsed(&events, &[0, 1], &[10_000, 3_155_760_000_000]);
        meter.accepted(&[0, 1]);
        meter.refused(1);
        meter.finish(&raw, 0);
        let rows = meter.take(20_000);
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!((rows[0].start, rows[0].records, rows[0].accurate, rows[0].on_time), (0, 2, 1, 1));
    }
}
