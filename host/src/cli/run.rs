//! `weir run PIPELINE`.

use std::path::PathBuf;

use anyhow::Result;

use super::RuntimeArgs;
use crate::config::parse_duration;
use crate::pipeline::{run as run_pipeline, PipelineOptions};

/// Arguments of `weir run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Exit once the source is drained and has been idle this long (e.g. `5s`).
    #[arg(long, value_parser = parse_duration)]
    until_idle: Option<std::time::Duration>,
    /// Where plugins named without a path are found.
    #[arg(long, default_value = "target/plugins", env = "WEIR_PLUGIN_DIR")]
    plugins: PathBuf,
    /// Records per batch.
    #[arg(long, default_value_t = 8192)]
    batch: usize,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let options = PipelineOptions {
        plugin_dir: args.plugins,
        until_idle: args.until_idle,
        batch_size: args.batch.max(1),
        progress: !args.quiet,
    };
    let summary = run_pipeline(&args.pipeline, &options, args.runtime.options())?;
    let s = &summary.stats;
    let mark = summary.watermark.map_or("-".to_string(), weir_sdk::time::format_iso8601);
    println!(
        "{} events in {:.2}s: {} windowed, {} dead letters, {} late; {} checkpoints; watermark {mark}",
        s.records,
        summary.elapsed.as_secs_f64(),
        s.windowed,
        s.dead_letters,
        s.late,
        s.checkpoints
    );
    println!("results in {}", summary.sink);
    Ok(())
}
