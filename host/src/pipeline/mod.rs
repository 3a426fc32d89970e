//! A running pipeline: the plugin chain wired from the pipeline file, event-time
//! windows, and checkpoints into a transactional sink.

mod anomaly;
mod breaker;
mod build;
mod canary;
mod checkpoint;
mod committer;
mod council;
mod deploy;
mod follow;
mod group;
mod keys;
mod latency;
mod lateness;
mod lease;
mod merger;
mod metrics;
mod notify;
mod open;
mod process;
mod quality;
mod reopen;
mod replay;
mod report;
mod retention;
mod retry;
mod rules;
mod run;
mod sessions;
mod shadow;
mod stages;
mod swap;
mod switch;
mod watch;
mod windows;

pub use build::{Pipeline, PipelineOptions};
pub use deploy::{DeployReport, Deployer, Switched, Trial, MAX_ERROR_INCREASE};
pub use metrics::{Histogram, Measured, StageMetrics, BUCKETS};
pub use notify::Sent;
pub use open::{inspect_sink, open_sink, read_reader_schema};
pub use replay::{replay, ReplaySelection, ReplaySummary};
pub use rules::{SlaState, Verdict};
pub use run::{now_ms, process_start, run, RunSummary};
pub use shadow::shadow_table;
pub use stages::{wire, StageId, StagePlan};
pub use swap::How;
