//! Opening what a pipeline file names: its source, its sink (for writing, or only to look),
//! and the pipeline itself wired and resumed on its deployments, shared by `weir run` and
//! `weir replay`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::build::{Pipeline, PipelineOptions};
use crate::config::{PipelineConfig, SourceConfig};
use crate::plugin::{PluginRuntime, RuntimeOptions};
use crate::rides::TripOptions;
use crate::sink::{Deployment, PostgresSink, Sink, SqliteSink};
use crate::source::{FileOptions, FileSource, KafkaSource, ProducerSource, Source};

/// The source the pipeline file names.
pub(super) fn open_source(config: &PipelineConfig, base: &Path, pipeline: &Pipeline) -> Result<Box<dyn Source>> {
    Ok(match &config.source {
        SourceConfig::Producer { events, rate, pace, seed, late_share, malformed_share } => {
            let options = TripOptions {
                seed: *seed,
                events_per_second: *rate,
                late_share: *late_share,
                malformed_share: *malformed_share,
                ..TripOptions::default()
            };
            Box::new(ProducerSource::new(options, *events).paced(*pace))
        }
        SourceConfig::Files { path, format, follow, max_record_bytes } => {
            let options = FileOptions {
                format: *format,
                follow: *follow,
                columns: pipeline.parser_columns(),
                max_record_bytes: *max_record_bytes,
            };
            Box::new(FileSource::open(&base.join(path), options)?)
        }
        SourceConfig::Kafka { brokers, topic, group, options } => {
            let group = group.clone().unwrap_or_else(|| format!("weir-{}", config.name));
            Box::new(KafkaSource::open(brokers, topic, &group, options)?)
        }
    })
}

/// Opens the sink named by `sink.url`.
pub fn open_sink(config: &PipelineConfig, base: &Path) -> Result<Box<dyn Sink + Send>> {
    let url = &config.sink.url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Ok(Box::new(SqliteSink::open(&base.join(path))?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(PostgresSink::open(url)?));
    }
    bail!("sink.url {url:?}: expected sqlite://PATH or postgres://USER@HOST/DB")
}

/// Opens the sink named by `sink.url` to look at, changing nothing: SQLite read-only, and
/// `None` while its file does not exist (opening it for writing would create the file and
/// weir's tables); PostgreSQL as [`open_sink`] does, which creates nothing.
pub fn inspect_sink(config: &PipelineConfig, base: &Path) -> Result<Option<Box<dyn Sink + Send>>> {
    match config.sink.url.strip_prefix("sqlite://") {
        Some(path) => Ok(SqliteSink::inspect(&base.join(path))?.map(|s| Box::new(s) as Box<dyn Sink + Send>)),
        None => open_sink(config, base).map(Some),
    }
}

/// A pipeline file loaded, its plugins wired, and its sink prepared.
pub(super) struct Opened {
    pub(super) config: PipelineConfig,
    /// The pipeline file's directory: relative paths in it are relative to this.
    pub(super) base: PathBuf,
    pub(super) pipeline: Pipeline,
    pub(super) sink: Box<dyn Sink + Send>,
    /// The plugin runtime, for deploying new versions.
    pub(super) runtime: PluginRuntime,
    /// Every version switched into a stage so far, as the sink recorded them.
    pub(super) history: Vec<Deployment>,
}

/// Loads the pipeline at `path`, wires it and prepares its sink; `quickly` as in [`Pipeline::build`].
pub(super) fn open(
    path: &Path,
    options: &PipelineOptions,
    runtime_options: RuntimeOptions,
    quickly: bool,
) -> Result<Opened> {
    let config = PipelineConfig::load(path)?;
    let base = crate::config::base_dir(path);
    let runtime = PluginRuntime::new(runtime_options)?;
    let mut pipeline = Pipeline::build(&config, &base, &runtime, options, quickly)
        .with_context(|| format!("pipeline {}", config.name))?;
    let mut sink = open_sink(&config, &base)?;
    sink.prepare(&pipeline.table)?;
    let history = sink.deployments(&config.name)?;
    for line in pipeline.resume_deployments(&history, &runtime).with_context(|| format!("pipeline {}", config.name))? {
        eprintln!("{line}");
    }
    Ok(Opened { config, base, pipeline, sink, runtime, history })
}
