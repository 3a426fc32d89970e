//! `weir bench plugins`: plugin throughput through WASM against native Rust.
//! `weir bench schemas`: Avro against JSON parsing, and a lookup enrichment's cost.
//! `weir bench languages`: the rides rules validator in Rust and in Python.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::bench::{plugin_throughput, RunFigures};
use crate::plugin::Limits;

/// Benchmarks.
#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The rides chain (parser → validator → aggregator), WASM with limits on vs native.
    Plugins(BenchArgs),
    /// Confluent-framed Avro against JSON on the same trips (avro-parser, json-parser), and
    /// what a lookup enrichment (enrich, two columns) costs per event against the rides chain.
    Schemas(BenchArgs),
    /// The rides rules validator natively, as the Rust component and as the Python one
    /// (plugins/rules-validator-py, built by `weir plugin build`), on the same parsed trips.
    Languages {
        #[command(flatten)]
        args: BenchArgs,
        /// The Python component.
        #[arg(long, default_value = "plugins/rules-validator-py/build/rules_validator_py.wasm")]
        python: PathBuf,
    },
}

/// What a benchmark runs on.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// The directory holding the built reference plugins.
    #[arg(long, default_value = "target/plugins", env = "WEIR_PLUGIN_DIR")]
    plugins: PathBuf,
    /// Events per run.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Records per plugin call.
    #[arg(long, default_value_t = 8192)]
    batch: usize,
}

fn line(label: &str, f: &RunFigures) {
    println!(
        "{label:<17} {:>12.0} events/s  {:>7.3} s   parse {:>6.3} s  validate {:>6.3} s  aggregate {:>6.3} s",
        f.events_per_second,
        f.elapsed.as_secs_f64(),
        f.times.parse.as_secs_f64(),
        f.times.validate.as_secs_f64(),
        f.times.aggregate.as_secs_f64()
    );
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Languages { args: BenchArgs { plugins, events, batch }, python } => {
            eprintln!("the rides rules over {events} parsed trips, {batch} per call, one core");
            let runs = crate::bench::validator_languages(&plugins, &python, events, batch)?;
            let rust = runs.iter().find(|r| r.label == "Rust, WASM").map_or(1.0, |r| r.events_per_second);
            for r in &runs {
                let size = r.size.map_or("-".into(), |b| format!("{:.1} MB", b as f64 / 1e6));
                let ms = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3));
                println!(
                    "{:<13} {:>12.0} events/s  {:>6.3}x Rust WASM  size {size:>8}  load {:>9}  instantiate {:>9}",
                    r.label,
                    r.events_per_second,
                    r.events_per_second / rust,
                    ms(r.load),
                    ms(r.instantiate)
                );
            }
            println!("checked: all found the same {} violations", runs[0].violations);
            Ok(())
        }
        BenchCommand::Schemas(BenchArgs { plugins, events, batch }) => {
            eprintln!("{events} trips, {batch} per call, one core, through the WASM components");
            let r = crate::bench::schema_bench(&plugins, events, batch)?;
            println!(
                "json-parser       {:>12.0} events/s  ({:.0} bytes/event)",
                r.json_eps,
                r.json_bytes as f64 / r.events as f64
            );
            println!(
                "avro-parser       {:>12.0} events/s  ({:.0} bytes/event, Confluent-framed)",
                r.avro_eps,
                r.avro_bytes as f64 / r.events as f64
            );
            println!("avro / json       {:.2}x  (target >= 1.0)", r.avro_ratio());
            println!("rides chain       {:>12.0} events/s", r.chain_eps);
            println!("enrich (lookup)   {:>12.0} events/s", r.enrich_eps);
            println!("lookup cost       {:.1}% of the chain per event  (target <= 10%)", 100.0 * r.lookup_share());
            println!("checked: both parsers produced identical columns for every trip");
            Ok(())
        }
        BenchCommand::Plugins(BenchArgs { plugins, events, batch }) => {
            let limits = Limits { max_memory_bytes: 256 * 1024 * 1024, deadline: Duration::from_secs(1) };
            eprintln!("rides chain over {events} events, {batch} per call, one core; limits: 256 MiB, 1 s deadline, epoch interruption on");
            let report = plugin_throughput(&plugins, events, batch, limits)?;
            line("native", &report.native);
            line("wasm", &report.wasm);
            line("wasm, no deadline", &report.wasm_no_deadline);
            println!("ratio             {:.2}x native (limits on)", report.ratio());
            println!(
                "deadline cost     {:.0}% (epoch interruption, from the run without it)",
                100.0 * (1.0 - report.wasm.events_per_second / report.wasm_no_deadline.events_per_second)
            );
            let s = &report.wasm.stats;
            println!(
                "checked: both runs computed identical windows ({} windowed, {} malformed, {} rejected)",
                s.aggregated, s.malformed, s.rejected
            );
            Ok(())
        }
    }
}
