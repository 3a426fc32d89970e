//! Sources of raw records. Each record carries its partition and offset; a source can
//! be positioned at any committed offset, which is how a restart resumes exactly.

mod api;
mod cdc;
mod cdc_changes;
mod cdc_setup;
pub(crate) mod csv;
mod files;
mod inbox;
mod inbox_postgres;
mod kafka;
mod kafka_context;
mod kafka_held;
mod kafka_queue;
mod kafka_reader;
mod pg_poll;
mod pg_replication;
mod pg_stream;
mod pgoutput;
mod producer;
mod records;

pub use api::ApiOptions;
pub use cdc::CdcSource;
pub use files::{FileOptions, FileSource};
pub use inbox::{open as open_inbox, Inbox, InboxSource, Stored};
pub use kafka::KafkaSource;
pub use pg_poll::PollSource;
pub use producer::ProducerSource;

use anyhow::Result;
use weir_sdk::RawBatch;

/// A source of raw records.
pub trait Source {
    /// What the offsets are offsets of, stored with each checkpoint so that a pipeline
    /// pointed at another source does not resume at offsets that mean nothing there.
    fn describe(&self) -> String;
    /// How a partition is named to the user.
    fn label(&self, partition: i32) -> String {
        format!("partition {partition}")
    }
    /// The partitions this source reads now.
    fn partitions(&self) -> Vec<i32>;
    /// Positions each listed partition at its next offset.
    fn seek(&mut self, offsets: &[(i32, i64)]) -> Result<()>;
    /// The next offset to read, per partition, just after the records polled so far.
    /// This is what a checkpoint stores: a record's own offset plus one is not the next
    /// offset for every source (a file's offsets are byte positions).
    fn positions(&self) -> Vec<(i32, i64)>;
    /// Up to `max` records. An empty batch means none are ready now; `None` means the
    /// source is exhausted for good.
    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>>;
    /// Takes back a polled batch the caller is done with, for the source to fill again.
    /// Filling a fresh batch on every poll grew it by doubling, copying its payloads about
    /// once more, and paid the page faults of new memory.
    fn recycle(&mut self, _batch: RawBatch) {}
    /// A change of assignment waiting to be carried out. Until it is [`complete`](Self::complete)d,
    /// `poll` returns nothing and the source keeps its partitions.
    fn rebalance(&mut self) -> Option<Rebalance> {
        None
    }
    /// Carries out the pending rebalance: an assignment starts each partition at its
    /// offset in `offsets` (from the sink), or at the beginning; a revocation lets go.
    fn complete(&mut self, _offsets: &[(i32, i64)]) -> Result<()> {
        Ok(())
    }
    /// A checkpoint at `positions` is in the sink.
    fn committed(&mut self, _positions: &[(i32, i64)]) {}
    /// The partitions whose event time holds the watermark back, when not all of them
    /// do: files are read one after another, so only the one being read counts.
    fn active(&self) -> Option<Vec<i32>> {
        None
    }
    /// Stops reading `partitions` until [`resume`](Self::resume)d; nothing is skipped.
    fn pause(&mut self, _partitions: &[i32]) -> Result<()> {
        Ok(())
    }
    /// Reads `partitions` again from where they stopped, whether paused or held.
    fn resume(&mut self, _partitions: &[i32]) -> Result<()> {
        Ok(())
    }
    /// Holds back `partitions`, which run ahead of the others in event time, until
    /// [`release`](Self::release)d or resumed. Unlike a pause it is meant to be brief and
    /// frequent: a source may keep what it has already fetched for them, but delivers none
    /// of it until released, so that which events are late never depends on prefetch.
    fn hold(&mut self, partitions: &[i32]) -> Result<()> {
        self.pause(partitions)
    }
    /// Reads held `partitions` again.
    fn release(&mut self, partitions: &[i32]) -> Result<()> {
        self.resume(partitions)
    }
    /// Waits about `wait` without reading, keeping the source alive (a consumer group
    /// must still be served, or it would hand the partitions to another host).
    fn idle(&mut self, wait: std::time::Duration) -> Result<()> {
        std::thread::sleep(wait);
        Ok(())
    }
    /// Whether the input is bounded: once `poll` says the source is exhausted, the run
    /// ends (files without `follow`). The producer is not: it is a demo and a load
    /// generator whose host stays up, serving its dashboard, until stopped or idle.
    fn bounded(&self) -> bool {
        false
    }
    /// Whether `poll` itself waits for records when none are ready, so the caller need not.
    fn waits(&self) -> bool {
        false
    }
    /// A record's bytes as read, when the payload handed to the parser is a conversion of
    /// them (a CSV row becomes a JSON object): what dead letters and late events keep, so
    /// that nothing of the row is lost and a fixed pipeline can read it again.
    fn as_read(&mut self, _partition: i32, _offset: i64) -> Option<Vec<u8>> {
        None
    }
    /// The payload for the parser of a stored record `raw` (as [`as_read`](Self::as_read)
    /// gave it), for a replay; the error says why it cannot be converted.
    fn payload_of(&mut self, _partition: i32, raw: &[u8]) -> Result<Vec<u8>, String> {
        Ok(raw.to_vec())
    }
    /// Records the source itself could not frame (a CSV row with the wrong number of
    /// fields), taken once each, for the dead-letter store.
    fn rejected(&mut self) -> Vec<Rejected> {
        Vec::new()
    }
    /// Why the source cannot read now, if it cannot: a broker out of reach, no partition
    /// assigned. Readiness reports it.
    fn trouble(&mut self) -> Option<String> {
        None
    }
    /// Where every partition of a source that several hosts share begins and ends now
    /// (`(partition, low, high)`), asked of the broker: `--until-idle` waits until the
    /// group has committed up to them. `None` for a source one host reads alone.
    fn group_ends(&mut self) -> Option<Result<Vec<(i32, i64, i64)>>> {
        None
    }
    /// Partitions read to their end, as far as the source knows without asking: nothing of
    /// theirs is waiting, so watermark alignment holds no one back for them.
    fn drained(&mut self) -> Vec<i32> {
        Vec::new()
    }
    /// Records not yet read per partition, if the source can tell (without blocking).
    fn lags(&mut self) -> Option<Vec<(i32, u64)>> {
        None
    }
    /// Records not yet read, if the source can tell.
    fn lag(&mut self) -> Option<u64> {
        self.lags().map(|lags| lags.iter().map(|(_, n)| n).sum())
    }
}

/// A change of the partitions a source reads, decided by its consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rebalance {
    /// These partitions are now this host's.
    Assigned(Vec<i32>),
    /// These partitions go elsewhere.
    Revoked(Vec<i32>),
}

/// A record the source could not frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its bytes, as read.
    pub raw: Vec<u8>,
    /// Why.
    pub reason: String,
}
