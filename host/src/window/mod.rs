//! Event time: which windows an event belongs to, and how far event time has
//! progressed (the watermark), per partition and for the pipeline.

pub mod session;
mod spec;
mod watermark;

pub use spec::{Window, WindowSpec};
pub use watermark::{PartitionClock, WatermarkTracker};
