//! A running pipeline: the plugin chain wired from the pipeline file, event-time
//! windows, and checkpoints into a transactional sink.

mod breaker;
mod build;
mod latency;
mod process;
mod replay;
mod retry;
mod run;
mod windows;

pub use build::{wire, Pipeline, PipelineOptions};
pub use replay::{replay, ReplaySelection, ReplaySummary};
pub use run::{now_ms, open_sink, process_start, run, RunSummary};
