//! Sources of raw records. Each record carries its partition and offset; a source can
//! be positioned at any committed offset, which is how a restart resumes exactly.

mod files;
mod producer;

pub use files::FileSource;
pub use producer::ProducerSource;

use anyhow::Result;
use weir_sdk::RawBatch;

/// A source of raw records.
pub trait Source {
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
}
