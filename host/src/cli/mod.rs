//! The command line. Pipeline meaning lives in files; process behaviour in flags.

mod alerts;
mod bench;
mod lanes;
mod pipeline;
mod plugin_build;
mod plugin_deploy;
mod plugin_inspect;
mod plugin_new;
mod plugin_python;
mod plugin_share;
mod plugin_test;
mod produce;
mod replay;
mod run;
mod schema;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::plugin::{PluginKind, RuntimeOptions};

/// weir: streaming ETL with WebAssembly plugins.
#[derive(Parser)]
#[command(name = "weir", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Author, build, inspect and try plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Run a pipeline until SIGINT/SIGTERM (or until idle), checkpointing into its sink.
    Run(run::RunArgs),
    /// Run late events or dead letters through the current plugins into the same sink, exactly once.
    Replay(replay::ReplayArgs),
    /// The dead-letter store: list, show or purge what was refused and why.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// The late lane: list the events that came later than the lateness allows.
    #[command(subcommand)]
    Late(LateCommand),
    /// Check a pipeline file: plugins, wiring and schemas, source and sink; report every problem.
    Validate(validate::ValidateArgs),
    /// Talk to a running host through its admin API: status, pause, resume.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Produce synthetic trip events into a Kafka topic, keyed by city.
    Produce(produce::ProduceArgs),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Schemas over time: each stage's versions and the offsets each processed.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Alerting: a Prometheus rules file for a pipeline's health.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// One line per dead letter (id, kind, plugin, when, where, reason), oldest first.
    List(lanes::ListArgs),
    /// One dead letter whole, with its raw bytes.
    Show {
        #[command(flatten)]
        filter: lanes::Filter,
        /// Its id, as `list` shows it.
        id: i64,
    },
    /// Delete dead letters for good (to fix and reprocess them, use `weir replay --dead-letters`).
    Purge {
        #[command(flatten)]
        filter: lanes::Filter,
        /// Every dead letter of the pipeline, when no filter is given.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum LateCommand {
    /// One line per late (event, window): id, event time, window, where; `--since`/`--until` filter by event time.
    List(lanes::ListArgs),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Scaffold a plugin crate that builds and passes its own test.
    New(plugin_new::NewArgs),
    /// Build a plugin crate into a component.
    Build(plugin_build::BuildArgs),
    /// Show a plugin's digest, signature and signer, world, contract version, schemas and imports.
    Inspect(plugin_inspect::InspectArgs),
    /// Run a plugin over input lines and print events, verdicts and errors.
    Test(plugin_test::TestArgs),
    /// Deploy a new version into a stage of a running pipeline, without a restart.
    Deploy(plugin_deploy::DeployArgs),
    /// Return a stage of a running pipeline to its previous version.
    Rollback(plugin_deploy::StageArgs),
    /// List a running pipeline's stages, versions and deployment history.
    List(plugin_deploy::ListArgs),
    /// Run a candidate version beside the live one, writing to a shadow table.
    Shadow(plugin_deploy::ShadowArgs),
    /// Show the windows where the shadow's results differ from the live ones.
    Diff(plugin_deploy::DiffArgs),
    /// Switch the shadowed stage to the candidate, ending the shadow.
    Promote(plugin_deploy::PipelineArgs),
    /// End the shadow; the live version runs on.
    Discard(plugin_deploy::PipelineArgs),
    /// Push a component to an OCI registry; prints the reference pinned by digest.
    Push(plugin_share::PushArgs),
    /// Pull a plugin from an OCI registry into the local store and compile it for this host;
    /// prints the pinned reference.
    Pull(plugin_share::PullArgs),
    /// Sign a component with an ed25519 key (the signature travels inside it).
    Sign(plugin_share::SignArgs),
    /// Create an ed25519 key pair for signing plugins.
    Keygen(plugin_share::KeygenArgs),
}

/// A plugin kind as a CLI value.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum KindArg {
    Parser,
    Validator,
    Aggregator,
    Transform,
}

impl From<KindArg> for PluginKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Parser => PluginKind::Parser,
            KindArg::Validator => PluginKind::Validator,
            KindArg::Aggregator => PluginKind::Aggregator,
            KindArg::Transform => PluginKind::Transform,
        }
    }
}

/// Flags shared by commands that load plugins.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct RuntimeArgs {
    /// Where compiled plugins are cached (default: $WEIR_CACHE_DIR or ~/.cache/weir).
    #[arg(long, env = "WEIR_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not read or write the compiled-plugin cache.
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    sharing: SharingArgs,
}

/// Flags of commands that take plugins from registries or check their signatures.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct SharingArgs {
    /// The host config: teams, their signing keys and import allow-lists, registries.
    #[arg(long, env = "WEIR_HOST_CONFIG")]
    host_config: Option<PathBuf>,
    /// Accept registry references that name a tag but no digest.
    #[arg(long)]
    allow_unpinned: bool,
}

impl SharingArgs {
    /// The store under `cache_dir` (or the default cache), and the host config loaded.
    pub(crate) fn sharing(&self, cache_dir: Option<PathBuf>) -> anyhow::Result<crate::share::Sharing> {
        let host = match &self.host_config {
            Some(path) => crate::share::HostConfig::load(path)?,
            None => crate::share::HostConfig::default(),
        };
        Ok(crate::share::Sharing::new(cache_dir, std::sync::Arc::new(host), self.allow_unpinned))
    }
}

impl RuntimeArgs {
    pub(crate) fn options(&self) -> RuntimeOptions {
        let mut options = RuntimeOptions::default();
        if self.no_cache {
            options.cache_dir = None;
        } else if let Some(dir) = &self.cache_dir {
            options.cache_dir = Some(dir.clone());
        }
        options
    }

    /// Registry references and trust, with the store beside the compiled-code cache.
    pub(crate) fn sharing(&self) -> anyhow::Result<crate::share::Sharing> {
        self.sharing.sharing(self.cache_dir.clone())
    }
}

/// Flags of commands that run a pipeline file's chain into its sink (`run`, `replay`).
#[derive(clap::Args)]
pub(crate) struct ChainArgs {
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

impl ChainArgs {
    pub(crate) fn options(
        &self,
        until_idle: Option<std::time::Duration>,
    ) -> anyhow::Result<crate::pipeline::PipelineOptions> {
        Ok(crate::pipeline::PipelineOptions {
            plugin_dir: self.plugins.clone(),
            until_idle,
            batch_size: self.batch.max(1),
            progress: !self.quiet,
            admin: None,
            sharing: self.runtime.sharing()?,
            lookups_as_of: None,
        })
    }
}

/// Reads a plugin config given as inline JSON, or as a path to a `.json` or `.toml` file.
pub(crate) fn read_config(config: Option<&str>) -> anyhow::Result<String> {
    use anyhow::Context;
    let Some(config) = config else { return Ok("{}".into()) };
    let trimmed = config.trim_start();
    if trimmed.starts_with('{') {
        serde_json::from_str::<serde_json::Value>(config).context("--config is not valid JSON")?;
        return Ok(config.to_string());
    }
    let text = std::fs::read_to_string(config).with_context(|| format!("reading config file {config}"))?;
    if config.ends_with(".toml") {
        let table: toml::Table = toml::from_str(&text).with_context(|| format!("parsing {config}"))?;
        Ok(serde_json::to_string(&table)?)
    } else {
        serde_json::from_str::<serde_json::Value>(&text).with_context(|| format!("parsing {config} as JSON"))?;
        Ok(text)
    }
}

/// Parses the arguments, runs the command, and reports an error with its causes.
pub fn main() -> ExitCode {
    crate::pipeline::process_start();
    // Rust ignores SIGPIPE, so printing into a closed pipe (`weir run … | head -1`)
    // panicked. With the default action a closed stdout ends the process quietly, as it
    // does any Unix tool; every command prints its results after its last commit.
    // SAFETY: called first thing, before any thread starts; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Plugin(PluginCommand::New(args)) => plugin_new::run(args),
        Command::Plugin(PluginCommand::Build(args)) => plugin_build::run(args),
        Command::Plugin(PluginCommand::Inspect(args)) => plugin_inspect::run(args),
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::run(args),
        Command::Plugin(PluginCommand::Deploy(args)) => plugin_deploy::deploy(args),
        Command::Plugin(PluginCommand::Rollback(args)) => plugin_deploy::rollback(args),
        Command::Plugin(PluginCommand::List(args)) => plugin_deploy::list(args),
        Command::Plugin(PluginCommand::Shadow(args)) => plugin_deploy::shadow(args),
        Command::Plugin(PluginCommand::Diff(args)) => plugin_deploy::diff(args),
        Command::Plugin(PluginCommand::Promote(args)) => plugin_deploy::end_shadow(args, "promote"),
        Command::Plugin(PluginCommand::Discard(args)) => plugin_deploy::end_shadow(args, "discard"),
        Command::Plugin(PluginCommand::Push(args)) => plugin_share::push(args),
        Command::Plugin(PluginCommand::Pull(args)) => plugin_share::pull(args),
        Command::Plugin(PluginCommand::Sign(args)) => plugin_share::sign(args),
        Command::Plugin(PluginCommand::Keygen(args)) => plugin_share::keygen(args),
        Command::Run(args) => run::run(args),
        Command::Pipeline(command) => pipeline::run(command),
        Command::Produce(args) => produce::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Replay(args) => replay::run(args),
        Command::DeadLetters(DeadLetterCommand::List(args)) => lanes::list(&args, crate::sink::Lane::DeadLetters),
        Command::DeadLetters(DeadLetterCommand::Show { filter, id }) => lanes::show(&filter, id),
        Command::DeadLetters(DeadLetterCommand::Purge { filter, all }) => {
            lanes::purge(&filter, crate::sink::Lane::DeadLetters, all)
        }
        Command::Late(LateCommand::List(args)) => lanes::list(&args, crate::sink::Lane::Late),
        Command::Bench(command) => bench::run(command),
        Command::Schema(command) => schema::run(command),
        Command::Alerts(command) => alerts::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
