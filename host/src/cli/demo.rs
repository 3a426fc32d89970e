//! `weir demo`: the rides plugin chain over generated trips, printing per-city
//! 1-minute windows. The streaming pipeline (`weir run`) supersedes it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use super::RuntimeArgs;
use crate::bench::{rides_batches, wasm_chain};
use crate::plugin::{Limits, PluginRuntime};
use crate::rides::RidesChainConfig;

/// Arguments of `weir demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// The directory holding json_parser.wasm, rules_validator.wasm and window_stats.wasm.
    #[arg(long, default_value = "target/plugins", env = "WEIR_PLUGIN_DIR")]
    plugins: PathBuf,
    /// How many trip events to generate (1000 per second of event time).
    #[arg(long, default_value_t = 300_000)]
    events: usize,
    /// The generator's seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Records per plugin call.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: DemoArgs) -> Result<()> {
    let config = RidesChainConfig::builtin()?;
    let runtime = PluginRuntime::new(args.runtime.options())?;
    let mut chain = wasm_chain(&runtime, &args.plugins, &config, &Limits::default())?;
    let batches = rides_batches(args.events, args.batch.max(1), args.seed);
    let started = Instant::now();
    let total = batches.len();
    for (i, batch) in batches.iter().enumerate() {
        chain.process(batch);
        if (i + 1) % 16 == 0 || i + 1 == total {
            eprint!("\rprocessed {:>9} of {} events", chain.stats.records, args.events);
        }
    }
    let elapsed = started.elapsed();
    eprintln!();
    let (keys, rows, outputs) = chain.results()?;
    let trips = outputs.iter().position(|c| c.name == "trips");
    let avg = outputs.iter().position(|c| c.name == "avg_fare");
    println!("{:<24} {:<10} {:>7} {:>9}", "window_start", "city", "trips", "avg_fare");
    for (i, key) in keys.iter().enumerate() {
        let count = trips.and_then(|c| rows.columns[c].values.i64(i)).unwrap_or_default();
        let fare = avg.filter(|&c| rows.columns[c].is_valid(i)).and_then(|c| rows.columns[c].values.f64(i));
        let fare = fare.map_or("-".to_string(), |f| format!("{f:.2}"));
        println!("{:<24} {:<10} {count:>7} {fare:>9}", weir_sdk::time::format_iso8601(key.window_start), key.key);
    }
    let s = &chain.stats;
    println!(
        "\n{} events in {:.2}s ({:.0} events/s): {} windowed, {} malformed, {} rejected, {} warned, {} plugin failures",
        s.records,
        elapsed.as_secs_f64(),
        s.records as f64 / elapsed.as_secs_f64(),
        s.aggregated,
        s.malformed,
        s.rejected,
        s.warned,
        s.failed
    );
    Ok(())
}
