//! Opening what a pipeline file names: its source, its sink (for writing, or only to look),
//! and the pipeline itself wired and resumed on its deployments, shared by `weir run` and
//! `weir replay`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::build::{Pipeline, PipelineOptions};
use crate::config::{PipelineConfig, PostgresMode, SourceConfig};
use crate::plugin::{PluginRuntime, RuntimeOptions};
use crate::rides::TripOptions;
use crate::sink::{Deployment, PostgresSink, Sink, SqliteSink};
use crate::source::{CdcSource, FileOptions, FileSource, InboxSource, KafkaSource, PollSource, ProducerSource, Source};

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
        SourceConfig::Postgres { url, table, mode: PostgresMode::Poll, cursor, lag, interval, .. } => {
            let cursor = cursor.as_deref().expect("checked: polling names its cursor");
            Box::new(PollSource::open(url, table, cursor, *lag, *interval)?)
        }
        SourceConfig::Postgres { url, table, snapshot, .. } => {
            let (slot, publication) = config.cdc_names().expect("a postgres source");
            Box::new(CdcSource::open(url, table, &slot, &publication, *snapshot)?)
        }
        SourceConfig::Api { url, records, next, cursor_param, headers, interval, max_waiting } => {
            let options = crate::source::ApiOptions {
                url: url.clone(),
                records: records.clone(),
                next: next.clone(),
                cursor_param: cursor_param.clone(),
                headers: headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                interval: *interval,
                max_waiting: *max_waiting,
            };
            Box::new(InboxSource::polling(&config.sink.url, base, &config.name, options)?)
        }
        SourceConfig::Http { .. } => Box::new(InboxSource::open(&config.sink.url, base, &config.name)?),
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
    /// weir's own schema registry, when the pipeline keeps one (`[schemas]`).
    pub(super) registry: Option<crate::schemas::Registry>,
    /// Where the rows are delivered besides the sink's table, prepared.
    pub(super) outputs: Vec<Box<dyn crate::sink::Output>>,
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
    read_reader_schema(&config, &base, &runtime)?;
    let lookups = match options.lookups_as_of {
        None => crate::lookup::Lookups::start(&config, &base, runtime.resources().clone())?,
        Some(at) => {
            let mut sink = open_sink(&config, &base)?;
            sink.prepare_bookkeeping()?;
            let recorded = sink.lookups_as_of(&config.name, at).context("reading the recorded lookup versions")?;
            Some(crate::lookup::Lookups::recorded(&config, recorded, runtime.resources().clone())?)
        }
    };
    let mut pipeline = Pipeline::build(&config, &base, &runtime, options, quickly)
        .with_context(|| format!("pipeline {}", config.name))?;
    let mut sink = open_sink(&config, &base)?;
    sink.prepare_bookkeeping()?;
    let history = sink.deployments(&config.name)?;
    pipeline.lookups = lookups;
    let registry = match &config.schemas {
        Some(schemas) if schemas.external().is_none() => Some(crate::schemas::Registry::new(
            crate::schemas::SchemaDb::open(&config.sink.url, &base).context("opening the schema registry")?,
        )),
        _ => None,
    };
    pipeline.schemas = schema_source(&config, registry.as_ref())
        .map(|source| crate::schemas::Fetcher::new(source, runtime.resources().clone()));
    for line in pipeline.resume_deployments(&history, &runtime).with_context(|| format!("pipeline {}", config.name))? {
        eprintln!("{line}");
    }
    // The table is prepared for the versions that run now: a resumed version's columns
    // were added, or its table version made, when it was deployed.
    pipeline.table_changed = None;
    sink.prepare(&pipeline.table)?;
    let mut outputs = config.open_outputs(&base)?;
    for output in &mut outputs {
        output.prepare(&pipeline.table).with_context(|| format!("preparing {}", output.describe()))?;
    }
    pipeline.outbox = !outputs.is_empty();
    Ok(Opened { config, base, pipeline, sink, runtime, history, registry, outputs })
}

/// Where the pipeline's writer schemas come from: weir's registry or an external one.
pub(super) fn schema_source(
    config: &PipelineConfig,
    registry: Option<&crate::schemas::Registry>,
) -> Option<std::sync::Arc<dyn crate::schemas::SchemaSource>> {
    let schemas = config.schemas.as_ref()?;
    Some(match (schemas.external(), registry) {
        (Some(url), _) => std::sync::Arc::new(crate::schemas::Remote::new(url)),
        (None, Some(registry)) => std::sync::Arc::new(registry.clone()),
        (None, None) => return None,
    })
}

/// Reads `[schemas] reader` into the plugins' resources, so a parser's `init` can read it.
pub fn read_reader_schema(config: &PipelineConfig, base: &Path, runtime: &PluginRuntime) -> Result<()> {
    let Some(path) = config.schemas.as_ref().and_then(|s| s.reader.as_ref()) else { return Ok(()) };
    let path = base.join(path);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("schemas.reader: reading the reader schema {}", path.display()))?;
    let ty = crate::schemas::SchemaType::of_file(&path);
    crate::schemas::parse(ty, &text).map_err(|e| anyhow::anyhow!("schemas.reader: {}: {e}", path.display()))?;
    let subject = config.schema_subject().unwrap_or_default();
    let format = match ty {
        crate::schemas::SchemaType::Avro => weir_sdk::SchemaFormat::Avro,
        crate::schemas::SchemaType::Json => weir_sdk::SchemaFormat::Json,
    };
    let schema = weir_sdk::Schema { id: 0, subject, version: 0, format, text };
    runtime.resources().set_reader(Some(schema));
    Ok(())
}
