//! `weir validate PIPELINE`: everything `weir run` would check before reading a record,
//! without reading one or changing anything (no table is created, no group joined).
//! Every problem is reported, not only the first.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use super::RuntimeArgs;
use crate::config::{PipelineConfig, SourceConfig};
use crate::pipeline::{inspect_sink, Pipeline, PipelineOptions};
use crate::plugin::PluginRuntime;
use crate::source::{FileOptions, FileSource, KafkaSource};

/// Arguments of `weir validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Where plugins named without a path are found.
    #[arg(long, default_value = "target/plugins", env = "WEIR_PLUGIN_DIR")]
    plugins: PathBuf,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn source(config: &PipelineConfig, base: &Path) -> Result<String> {
    Ok(match &config.source {
        SourceConfig::Kafka { brokers, topic, options, .. } => {
            let partitions = KafkaSource::check(brokers, topic, options)?;
            format!("kafka topic {topic} on {brokers}: {partitions} partitions")
        }
        SourceConfig::Files { path, format, follow, .. } => {
            use crate::source::Source;
            let options = FileOptions { format: *format, follow: *follow, ..FileOptions::default() };
            let files = FileSource::open(&base.join(path), options)?;
            let watching = if *follow { ", watched for new files" } else { "" };
            format!("{}: {} {format:?} file(s){watching}", base.join(path).display(), files.partitions().len())
        }
        SourceConfig::Producer { events, seed, .. } => {
            let events = events.map_or("endless".to_string(), |n| n.to_string());
            format!("the built-in producer: {events} events, seed {seed}")
        }
        SourceConfig::Postgres {
            url, table, mode: crate::config::PostgresMode::Poll, cursor, lag, interval, ..
        } => {
            let cursor = cursor.as_deref().expect("checked: polling names its cursor");
            use crate::source::Source;
            let polled = crate::source::PollSource::open(url, table, cursor, *lag, *interval)?;
            format!("{}, every {interval:?} once caught up, rows {lag:?} old", polled.describe())
        }
        SourceConfig::Postgres { url, table, snapshot, .. } => {
            let (slot, publication) = config.cdc_names().expect("a postgres source");
            crate::source::CdcSource::check(url, table, &slot, &publication, *snapshot)?
        }
        SourceConfig::Api { url, records, next, interval, .. } => format!(
            "the JSON API at {url}: records {}, next page by {next:?}, asked again every {interval:?} once caught up; \
             kept in weir_inbox in the sink",
            if records.is_empty() { "the page's array".to_string() } else { format!("in {records:?}") }
        ),
        SourceConfig::Http { max_waiting } => format!(
            "HTTP ingest: POST /ingest/{} on the admin port, kept in weir_inbox in the sink; 429 beyond \
             {max_waiting} waiting records",
            config.name
        ),
    })
}

/// The reader schema, the registry, and the subject's versions, each checked readable
/// with the reader schema.
fn schemas(config: &PipelineConfig, base: &Path) -> Result<String> {
    use crate::schemas::{can_read, parse, Registry, SchemaDb, SchemaSource, SchemaType};
    let Some(schemas) = &config.schemas else { return Ok(String::new()) };
    let subject = config.schema_subject().unwrap_or_default();
    let reader = match &schemas.reader {
        Some(path) => {
            let text = std::fs::read_to_string(base.join(path))
                .map_err(|e| anyhow::anyhow!("schemas.reader {}: {e}", base.join(path).display()))?;
            let ty = SchemaType::of_file(&base.join(path));
            let parsed = parse(ty, &text).map_err(|e| anyhow::anyhow!("schemas.reader: {e}"))?;
            // As written, on one line: the canonical form would drop its defaults and aliases.
            let compact = serde_json::from_str::<serde_json::Value>(&text).map(|v| v.to_string()).unwrap_or(text);
            Some((format!("{}: {compact}", path.display()), parsed))
        }
        None => None,
    };
    let mut lines = Vec::new();
    match &reader {
        Some((described, _)) => lines.push(format!("reader schema {described}")),
        None => lines.push("no reader schema ([schemas] reader): the parser's config must give one".into()),
    }
    let versions = match schemas.external() {
        Some(url) => {
            lines.push(format!("registry {url}"));
            crate::schemas::Remote::new(url).versions(&subject).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => {
            lines.push("registry: weir's own, in the sink, served on the admin port".into());
            match SchemaDb::inspect(&config.sink.url, base)? {
                Some(db) => Registry::new(db).versions(&subject)?,
                None => Vec::new(),
            }
        }
    };
    if versions.is_empty() {
        lines.push(format!("subject {subject}: no versions registered yet"));
    }
    let mut unreadable = Vec::new();
    for v in &versions {
        let verdict = match (&reader, parse(v.ty, &v.text)) {
            (_, Err(e)) => Err(e),
            (Some((_, reader)), Ok(writer)) => can_read(&writer, reader),
            (None, Ok(_)) => Ok(()),
        };
        let at = if v.registered_at.is_empty() { String::new() } else { format!(", registered {}", v.registered_at) };
        match verdict {
            Ok(()) => lines.push(format!("subject {subject} version {} (id {}{at}): readable", v.version, v.id)),
            Err(e) => {
                lines.push(format!("subject {subject} version {} (id {}{at}): NOT readable: {e}", v.version, v.id));
                unreadable.push(v.version);
            }
        }
    }
    if !unreadable.is_empty() {
        bail!("the reader schema cannot read version(s) {unreadable:?} of {subject}:\n  {}", lines.join("\n  "));
    }
    Ok(lines.join("\n        "))
}

/// How several hosts share the pipeline, and why.
fn scale_mode(config: &PipelineConfig) -> String {
    if config.merges_partials() {
        "any number of hosts in the consumer group, for any keying of the topic: each keeps a partial state per \
         window, key and partition, and the sink merges them into the row (set [scale] keyed = true if every event \
         of a window key arrives on one partition, to write whole rows from memory)"
            .into()
    } else if config.scale.keyed {
        "any number of hosts in the consumer group: [scale] keyed = true says the topic is keyed by the window key, \
         so each host writes whole rows from memory (a window key seen on two partitions stops the run)"
            .into()
    } else {
        "one host: this source is not shared by a consumer group, and a second `weir run` is refused".into()
    }
}

pub fn run(args: ValidateArgs) -> Result<()> {
    let config = PipelineConfig::load(&args.pipeline)?;
    let base = crate::config::base_dir(&args.pipeline);
    let mut problems = 0;
    let mut report = |what: &str, outcome: Result<String>| match outcome {
        Ok(detail) => println!("ok      {what}: {detail}"),
        Err(e) => {
            problems += 1;
            println!("problem {what}: {e:#}");
        }
    };
    report("file", Ok(format!("{} parses; pipeline {:?}", args.pipeline.display(), config.name)));

    let options = PipelineOptions {
        plugin_dir: args.plugins.clone(),
        until_idle: None,
        batch_size: 1,
        progress: false,
        admin: None,
        sharing: args.runtime.sharing()?,
        lookups_as_of: None,
    };
    let built = PluginRuntime::new(args.runtime.options()).and_then(|runtime| {
        crate::pipeline::read_reader_schema(&config, &base, &runtime)?;
        crate::lookup::Lookups::start(&config, &base, runtime.resources().clone())?;
        Pipeline::build(&config, &base, &runtime, &options, false)
    });
    let table = match built {
        Ok(pipeline) => {
            let t = pipeline.table.clone();
            let columns = |cols: &[weir_sdk::ColumnDef]| {
                cols.iter().map(|c| format!("{} {}", c.name, c.ty.name())).collect::<Vec<_>>().join(", ")
            };
            report(
                "plugins and wiring",
                Ok(format!(
                    "{}; table {} keyed by ({}) with ({})",
                    pipeline.plugin_versions(),
                    t.name,
                    columns(&t.keys),
                    columns(&t.values)
                )),
            );
            Some(t)
        }
        Err(e) => {
            report("plugins and wiring", Err(e));
            None
        }
    };

    if config.schemas.is_some() {
        report("schemas", schemas(&config, &base));
    }
    report("source", source(&config, &base));
    report("scale-out", Ok(scale_mode(&config)));

    // Validation changes nothing: not even the SQLite file is created.
    let sink = inspect_sink(&config, &base).and_then(|sink| match (sink, &table) {
        (None, Some(table)) => {
            Ok(format!("{}: does not exist yet; `weir run` will create it with table {}", config.sink.url, table.name))
        }
        (None, None) => Ok(format!("{}: does not exist yet; `weir run` will create it", config.sink.url)),
        (Some(mut sink), Some(table)) => {
            let plan = sink.plan(table)?;
            Ok(if plan.is_empty() {
                format!("{}: table {} fits", config.sink.url, table.name)
            } else {
                format!("{}: `weir run` will run: {}", config.sink.url, plan.join("; "))
            })
        }
        (Some(_), None) => {
            Ok(format!("{}: reachable (the table is not checked without a wired pipeline)", config.sink.url))
        }
    });
    report("sink", sink);
    if config.sink.delta.is_some() || config.sink.redis.is_some() {
        // Named, not reached: `weir run` creates or checks them when it starts.
        let outputs = config.open_outputs(&base).map(|outputs| {
            let named: Vec<String> = outputs.iter().map(|o| o.describe()).collect();
            format!("{}: each checkpoint's rows delivered exactly once through the sink's outbox", named.join(", "))
        });
        report("outputs", outputs);
    }

    if problems > 0 {
        bail!("{} has {problems} problem(s)", args.pipeline.display());
    }
    println!("{} is ready to run", args.pipeline.display());
    Ok(())
}
