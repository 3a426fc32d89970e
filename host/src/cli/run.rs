//! `weir run PIPELINE`.

use std::path::PathBuf;

use anyhow::Result;

use super::ChainArgs;
use crate::admin::AdminOptions;
use crate::config::parse_duration;
use crate::pipeline::run as run_pipeline;

/// Arguments of `weir run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Exit once the source is drained and has been idle this long (e.g. `5s`).
    #[arg(long, value_parser = parse_duration)]
    until_idle: Option<std::time::Duration>,
    /// Where the admin API listens (health, readiness, metrics, pause/resume). The
    /// default port falls back to a free one when taken; the URL is printed at start.
    #[arg(long, default_value = crate::admin::DEFAULT_BIND, env = "WEIR_ADMIN")]
    admin: std::net::SocketAddr,
    /// Serve no admin API.
    #[arg(long, conflicts_with = "admin")]
    no_admin: bool,
    /// The bearer token the admin API requires; required when bound beyond loopback.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[command(flatten)]
    chain: ChainArgs,
}

pub fn run(args: RunArgs) -> Result<()> {
    let mut options = args.chain.options(args.until_idle)?;
    if !args.no_admin {
        let explicit = args.admin.to_string() != crate::admin::DEFAULT_BIND;
        options.admin = Some(AdminOptions { bind: args.admin, explicit, token: args.admin_token.clone() });
    }
    let summary = run_pipeline(&args.pipeline, &options, args.chain.runtime.options())?;
    let s = &summary.stats;
    let mark = summary.watermark.map_or("-".to_string(), weir_sdk::time::format_iso8601);
    // Hopping windows count an event in several windows: say both.
    let folds =
        if s.windowed != s.events_windowed { format!(" ({} folds into windows)", s.windowed) } else { String::new() };
    let pairs =
        if s.late != s.late_records { format!(" ({} late (record, window) pairs)", s.late) } else { String::new() };
    // Every record read is windowed, a dead letter or late.
    println!(
        "{} events in {:.2}s: {} windowed{folds}, {} dead letters, {} late{pairs}; {} checkpoints; watermark {mark}",
        s.records,
        summary.elapsed.as_secs_f64(),
        s.events_windowed,
        s.dead_letters,
        s.late_records,
        s.checkpoints
    );
    let first = summary.first_commit.map_or("-".into(), |d| format!("{} ms", d.as_millis()));
    let latency = summary.latency.map_or("-".into(), |(p50, p99)| format!("p50 {p50} ms, p99 {p99} ms"));
    let rss = summary.peak_rss.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)));
    println!(
        "first to last record {:.2}s ({:.0} events/s); first checkpoint {first} after start; source-to-sink latency {latency}; peak RSS {rss}",
        summary.reading.as_secs_f64(),
        s.records as f64 / summary.reading.as_secs_f64().max(1e-9),
    );
    if s.swaps > 0 {
        let ms = |d: &std::time::Duration| d.as_secs_f64() * 1000.0;
        let quantiles = |gaps: &[std::time::Duration]| {
            let mut sorted: Vec<f64> = gaps.iter().map(ms).collect();
            sorted.sort_by(f64::total_cmp);
            let at = |q: f64| sorted.get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied();
            match (at(0.5), at(0.99), sorted.last()) {
                (Some(p50), Some(p99), Some(max)) => format!("p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"),
                _ => "-".into(),
            }
        };
        println!(
            "plugin switches {} ({} under load): processing gap around a switch {}; around a checkpoint {}",
            s.swaps,
            summary.swap_stalls.len(),
            quantiles(&summary.swap_stalls),
            quantiles(&summary.checkpoint_gaps)
        );
    }
    if s.breaker_trips > 0 {
        println!("the circuit breaker opened {} time(s); see the messages above for why", s.breaker_trips);
    }
    println!("results in {}", summary.sink);
    Ok(())
}
