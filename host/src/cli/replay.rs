//! `weir replay PIPELINE --late | --dead-letters [--kind K] [--reason TEXT]`.

use std::path::PathBuf;

use anyhow::Result;

use super::ChainArgs;
use crate::pipeline::{replay, ReplaySelection};
use crate::sink::Lane;

/// Arguments of `weir replay`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("lane").required(true).args(["late", "dead_letters"])))]
pub struct ReplayArgs {
    /// The pipeline file (its current plugins and sink).
    pipeline: PathBuf,
    /// Replay the late lane (`weir_late_events`).
    #[arg(long)]
    late: bool,
    /// Replay the dead-letter store (`weir_dead_letters`).
    #[arg(long)]
    dead_letters: bool,
    /// Only dead letters of this kind: malformed, rejected or plugin_failure.
    #[arg(long, requires = "dead_letters", value_parser = ["malformed", "rejected", "plugin_failure"])]
    kind: Option<String>,
    /// Only dead letters whose reason contains this text (e.g. a rule name).
    #[arg(long, requires = "dead_letters")]
    reason: Option<String>,
    /// Enrich with the lookup table versions the last checkpoint at or before this time
    /// used (ISO 8601, e.g. a dead letter's time), as the sink recorded them, instead of
    /// loading the tables now: the replay does what the original run did.
    #[arg(long, value_name = "TIME")]
    lookups_as_of: Option<String>,
    /// Plugins, batch size (one sink transaction per batch), progress.
    #[command(flatten)]
    chain: ChainArgs,
}

pub fn run(args: ReplayArgs) -> Result<()> {
    let selection = ReplaySelection {
        lane: if args.late { Lane::Late } else { Lane::DeadLetters },
        kind: args.kind,
        reason: args.reason,
    };
    let mut options = args.chain.options(None)?;
    if let Some(at) = &args.lookups_as_of {
        let ms = weir_sdk::time::parse_iso8601(at.as_bytes())
            .ok_or_else(|| anyhow::anyhow!("--lookups-as-of {at:?}: not an ISO 8601 time (2024-05-01T12:00:00Z)"))?;
        options.lookups_as_of = Some(ms);
    }
    let summary = replay(&args.pipeline, &selection, &options, args.chain.runtime.options())?;
    let what = if args.late { "late events" } else { "dead letters" };
    println!(
        "replayed {} {what}: {} folded into their windows ({} folds), {} refused again (back in weir_dead_letters)",
        summary.records, summary.events_windowed, summary.windowed, summary.dead_letters
    );
    Ok(())
}
