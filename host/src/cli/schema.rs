//! `weir schema history PIPELINE`: each stage's versions as the checkpoint log records
//! them (which version processed which records), with the schema each declared, when it
//! went live, and the first and last offsets it processed; and the input subject's
//! registered versions.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::RuntimeArgs;
use crate::config::PipelineConfig;
use crate::plugin::{Limits, Plugin, PluginInfo, PluginRuntime, Policy};
use crate::sink::{Deployment, LogRow};

/// Schema commands.
#[derive(clap::Subcommand)]
pub enum SchemaCommand {
    /// Each stage's versions, what they declared, when each went live and which offsets it
    /// processed; and the registered versions of the input's subject.
    History(HistoryArgs),
}

/// Arguments of `weir schema history`.
#[derive(clap::Args)]
pub struct HistoryArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// One version's run in a stage.
#[derive(Debug, Serialize, PartialEq)]
pub struct Run {
    /// `name@sha256:…`.
    pub version: String,
    /// How it came: `configured`, `deploy`, `rollback`, … (or `unrecorded`).
    pub how: String,
    /// When it went live: its deployment, else its first checkpoint.
    pub live_since: String,
    /// Its checkpoints, and the last one's commit time.
    pub checkpoints: usize,
    pub last_checkpoint: String,
    /// Per partition, the first and the last offset it processed.
    pub offsets: BTreeMap<i32, (i64, i64)>,
    /// What it declared: its columns (and state version), or why that is unknown.
    pub schema: String,
}

/// A stage's runs, oldest first.
#[derive(Debug, Serialize)]
pub struct StageHistory {
    pub stage: String,
    pub runs: Vec<Run>,
}

/// Splits the log into each stage's runs of one version.
pub fn runs(stages: &[String], log: &[LogRow], deployments: &[Deployment]) -> Vec<StageHistory> {
    let mut out: Vec<StageHistory> =
        stages.iter().map(|s| StageHistory { stage: s.clone(), runs: Vec::new() }).collect();
    // Each partition's next offset before the checkpoint at hand: where its records began.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for row in log {
        let versions: Vec<&str> = row.plugins.split(',').collect();
        for (history, version) in out.iter_mut().zip(&versions) {
            let continues = history.runs.last().is_some_and(|r| r.version == *version);
            if !continues {
                let digest = version.rsplit_once('@').map_or("", |(_, d)| d);
                let deployed = deployments.iter().rev().find(|d| d.stage == history.stage && d.digest == digest);
                history.runs.push(Run {
                    version: version.to_string(),
                    how: deployed.map_or("unrecorded".into(), |d| d.how.clone()),
                    live_since: deployed.map_or(row.committed_at.clone(), |d| weir_sdk::time::format_iso8601(d.at_ms)),
                    checkpoints: 0,
                    last_checkpoint: String::new(),
                    offsets: BTreeMap::new(),
                    schema: String::new(),
                });
            }
            let run = history.runs.last_mut().expect("pushed above");
            run.checkpoints += 1;
            run.last_checkpoint = row.committed_at.clone();
            for &(partition, offset) in &row.offsets {
                let from = next.get(&partition).copied().unwrap_or(0);
                if offset > from {
                    let span = run.offsets.entry(partition).or_insert((from, offset - 1));
                    span.1 = offset - 1;
                }
            }
        }
        next.extend(row.offsets.iter().copied());
    }
    out
}

fn describe(info: &PluginInfo) -> String {
    let columns = |cols: &[weir_sdk::ColumnDef]| {
        cols.iter()
            .map(|c| format!("{} {}{}", c.name, c.ty.name(), if c.nullable { "?" } else { "" }))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match info {
        PluginInfo::Parser(i) => format!("outputs ({}), event time {}", columns(&i.outputs), i.event_time_column),
        PluginInfo::Validator(inputs) => format!("reads ({})", columns(inputs)),
        PluginInfo::Transform(i) => format!("reads ({}), outputs ({})", columns(&i.inputs), columns(&i.outputs)),
        PluginInfo::Aggregator(i) => format!(
            "reads ({}), outputs ({}), state version {}",
            columns(&i.inputs),
            columns(&i.outputs),
            i.state_version
        ),
    }
}

pub fn run(command: SchemaCommand) -> Result<()> {
    let SchemaCommand::History(args) = command;
    let config = PipelineConfig::load(&args.pipeline)?;
    let base = crate::config::base_dir(&args.pipeline);
    let Some(mut sink) = crate::pipeline::inspect_sink(&config, &base)? else {
        bail!("{}: the sink {} does not exist yet; nothing has run", args.pipeline.display(), config.sink.url);
    };
    let log = sink.checkpoint_log(&config.name).context("reading weir_checkpoint_log")?;
    let deployments = sink.deployments(&config.name).context("reading weir_deployments")?;
    let stages: Vec<String> = config.stages().map(|(id, _)| id.to_string()).collect();
    let mut history = runs(&stages, &log, &deployments);

    // What each version declared, with the stage's config as the pipeline file gives it.
    let runtime = PluginRuntime::new(args.runtime.options())?;
    crate::pipeline::read_reader_schema(&config, &base, &runtime)?;
    let _lookups = crate::lookup::Lookups::start(&config, &base, runtime.resources().clone())?;
    for ((id, stage), h) in config.stages().zip(&mut history) {
        for run in &mut h.runs {
            let digest = run.version.rsplit_once('@').map_or("", |(_, d)| d).to_string();
            let name = run.version.rsplit_once('@').map_or("plugin", |(n, _)| n).to_string();
            run.schema = (|| -> Result<String> {
                let bytes = sink.component(&digest)?.context("its component is not stored in the sink")?;
                let component = runtime.load_bytes(&name, &bytes, &Policy::granting(stage.grants.clone()))?;
                let plugin =
                    Plugin::new(component, id.kind(), &serde_json::to_string(&stage.config)?, Limits::default())?;
                Ok(describe(plugin.info()))
            })()
            .unwrap_or_else(|e| format!("unknown: {e:#}"));
        }
    }
    let subject = subject_versions(&config, &base);

    if args.json {
        let json = serde_json::json!({"pipeline": config.name, "stages": history, "subject": subject});
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!("pipeline {}: {} checkpoints in weir_checkpoint_log", config.name, log.len());
    for h in &history {
        println!("{}:", h.stage);
        for r in &h.runs {
            let offsets: Vec<String> = r.offsets.iter().map(|(p, (a, b))| format!("{p}: {a}..={b}")).collect();
            println!("  {} ({}, live since {})", r.version, r.how, r.live_since);
            println!("    {} checkpoints, the last at {}", r.checkpoints, r.last_checkpoint);
            println!("    offsets   {}", if offsets.is_empty() { "none".into() } else { offsets.join(", ") });
            println!("    schema    {}", r.schema);
        }
    }
    if let Some(subject) = subject {
        println!("input subject {}:", subject.0);
        for line in subject.1 {
            println!("  {line}");
        }
    }
    Ok(())
}

/// The registered versions of the input's subject, where the pipeline has `[schemas]`.
fn subject_versions(config: &PipelineConfig, base: &std::path::Path) -> Option<(String, Vec<String>)> {
    use crate::schemas::{Registry, SchemaDb, SchemaSource};
    let schemas = config.schemas.as_ref()?;
    let subject = config.schema_subject()?;
    let versions = match schemas.external() {
        Some(url) => crate::schemas::Remote::new(url).versions(&subject).map_err(|e| anyhow::anyhow!(e)),
        None => SchemaDb::inspect(&config.sink.url, base)
            .and_then(|db| db.map_or(Ok(Vec::new()), |db| Registry::new(db).versions(&subject))),
    };
    let lines = match versions {
        Ok(v) if v.is_empty() => vec!["no versions registered".to_string()],
        Ok(v) => v
            .iter()
            .map(|v| {
                let at = if v.registered_at.is_empty() {
                    String::new()
                } else {
                    format!(", registered {}", v.registered_at)
                };
                format!("version {} (id {}, {}{at})", v.version, v.id, v.ty.name())
            })
            .collect(),
        Err(e) => vec![format!("unknown: {e:#}")],
    };
    Some((subject, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(plugins: &str, offsets: &[(i32, i64)], at: &str) -> LogRow {
        LogRow { plugins: plugins.into(), offsets: offsets.to_vec(), committed_at: at.into() }
    }

    #[test]
    fn each_version_gets_the_offsets_its_checkpoints_covered() {
        let stages = ["parser".to_string(), "aggregator".to_string()];
        let log = [
            row("p@sha256:a,c@sha256:1", &[(0, 10), (1, 5)], "t1"),
            row("p@sha256:a,c@sha256:1", &[(0, 20)], "t2"),
            row("p@sha256:a,c@sha256:2", &[(0, 30), (1, 9)], "t3"),
            row("p@sha256:a,c@sha256:2", &[(1, 9)], "t4"),
        ];
        let history = runs(&stages, &log, &[]);
        assert_eq!(history[0].runs.len(), 1);
        assert_eq!(history[0].runs[0].offsets, BTreeMap::from([(0, (0, 29)), (1, (0, 8))]));
        let agg = &history[1].runs;
        assert_eq!(agg.iter().map(|r| r.version.as_str()).collect::<Vec<_>>(), ["c@sha256:1", "c@sha256:2"]);
        assert_eq!(agg[0].offsets, BTreeMap::from([(0, (0, 19)), (1, (0, 4))]));
        assert_eq!(agg[1].offsets, BTreeMap::from([(0, (20, 29)), (1, (5, 8))]));
        assert_eq!((agg[1].checkpoints, agg[1].live_since.as_str(), agg[1].last_checkpoint.as_str()), (2, "t3", "t4"));
    }
}
