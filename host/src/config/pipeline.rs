//! The pipeline file's structure. Each field's `///` comment is its user documentation.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::duration::{optional_duration, serde_duration};
use super::SourceConfig;
use crate::window::WindowSpec;

/// A pipeline: a source, a plugin chain, a window, a sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The pipeline's name; it tags checkpoints, dead letters and metrics.
    pub name: String,
    /// Where raw records come from.
    #[serde(deserialize_with = "super::sections::source_by_kind")]
    pub source: SourceConfig,
    /// Turns raw records into typed events.
    #[serde(deserialize_with = "super::sections::section")]
    pub parser: StageConfig,
    /// Judge events, in order.
    #[serde(default)]
    pub validators: Vec<StageConfig>,
    /// Map, filter or flat-map events, in order, after the validators.
    #[serde(default)]
    pub transforms: Vec<StageConfig>,
    /// Folds events into per-window state.
    #[serde(deserialize_with = "super::sections::section")]
    pub aggregator: StageConfig,
    /// How events are grouped in time and by key.
    #[serde(deserialize_with = "super::sections::section")]
    pub window: WindowConfig,
    /// How late events may be.
    #[serde(default, deserialize_with = "super::sections::section")]
    pub watermark: WatermarkConfig,
    /// Where window rows, offsets, dead letters and late events are written.
    #[serde(deserialize_with = "super::sections::section")]
    pub sink: SinkConfig,
    /// How often state and offsets are committed.
    #[serde(default, deserialize_with = "super::sections::section")]
    pub checkpoint: CheckpointConfig,
    /// When bad data pauses consumption.
    #[serde(default, deserialize_with = "super::sections::section")]
    pub breaker: BreakerConfig,
    /// Whose plugins the pipeline runs, and what they may do.
    #[serde(default, deserialize_with = "super::sections::section")]
    pub trust: TrustConfig,
    /// How several hosts in one consumer group share a Kafka topic.
    #[serde(default, deserialize_with = "super::sections::section")]
    pub scale: ScaleConfig,
    /// How long the checkpoint log, the dead letters and the late lane are kept.
    #[serde(default, deserialize_with = "super::sections::section")]
    pub retention: super::RetentionConfig,
    /// Where writer schemas are registered, and the reader schema.
    #[serde(default, deserialize_with = "optional_section")]
    pub schemas: Option<super::SchemasConfig>,
    /// Reference tables plugins look keys up in (`[[lookup]]`).
    #[serde(default)]
    pub lookup: Vec<super::LookupConfig>,
    /// Quality scores, valid ranges, anomaly flags, rules and SLAs (off without the section).
    #[serde(default, deserialize_with = "optional_section")]
    pub quality: Option<super::QualityConfig>,
    /// Webhooks weir posts quality alerts to.
    #[serde(default, deserialize_with = "optional_section")]
    pub alerts: Option<super::AlertsConfig>,
    /// How a new plugin version is watched, and rolled back if it does worse.
    #[serde(default, deserialize_with = "optional_section")]
    pub deploy: Option<super::DeployConfig>,
}

fn optional_section<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    super::sections::section(deserializer).map(Some)
}

/// How several hosts share the work. Only a Kafka source is read by several hosts.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleConfig {
    /// Whether the topic is keyed by the window key, so that every event of a window key
    /// arrives on one partition (default false). Then each host writes whole windows from
    /// memory. Otherwise (any keying, or none) each host keeps a partial state per window,
    /// key and source partition, and the sink merges the partials of a window into its
    /// row in the transaction that writes them.
    #[serde(default)]
    pub keyed: bool,
}

impl PipelineConfig {
    /// Whether window rows are merged in the sink from per-partition partial states: a
    /// Kafka source not declared `[scale] keyed`.
    pub fn merges_partials(&self) -> bool {
        matches!(self.source, SourceConfig::Kafka { .. }) && !self.scale.keyed
    }

    /// The subject whose versions the pipeline reads: `[schemas] subject`, else the
    /// topic's value subject (Confluent's default naming), else the pipeline's.
    pub fn schema_subject(&self) -> Option<String> {
        let schemas = self.schemas.as_ref()?;
        Some(schemas.subject.clone().unwrap_or_else(|| match &self.source {
            SourceConfig::Kafka { topic, .. } => format!("{topic}-value"),
            _ => format!("{}-value", self.name),
        }))
    }
}

/// Whose plugins a pipeline runs: signatures and import allow-lists.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// The team, as the host config names it: its keys check signatures, and its
    /// `allow_imports` applies to every plugin of the pipeline.
    pub team: Option<String>,
    /// Refuse any plugin not signed by a key of `team`.
    #[serde(default)]
    pub require_signatures: bool,
    /// Import patterns every plugin of this pipeline must stay within, on top of the
    /// team's, e.g. `["weir:plugin/*", "wasi:io/*"]`.
    pub allow_imports: Option<Vec<String>>,
}

/// One plugin in the chain.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// A component file (a path ending in `.wasm`, relative to the pipeline file), a
    /// name looked up as `<name>.wasm` in the plugin directory, or a registry reference
    /// pinned by digest, `oci://HOST[:PORT]/REPO[:TAG]@sha256:…`.
    pub plugin: String,
    /// The plugin's own settings, handed to its `init` as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Resource limits for this plugin.
    #[serde(default)]
    pub limits: PluginLimits,
    /// Imports granted beyond the baseline, e.g. `["wasi:sockets/*"]`.
    #[serde(default)]
    pub grants: Vec<String>,
    /// Deploy each new version written to the plugin's file into the running pipeline.
    #[serde(default)]
    pub watch: bool,
}

/// Per-plugin limits.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    /// Linear memory cap in MiB (default 256).
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// CPU deadline of one call (default 1s).
    #[serde(default = "default_deadline", with = "serde_duration")]
    pub deadline: Duration,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits { memory_mib: default_memory_mib(), deadline: default_deadline() }
    }
}

fn default_memory_mib() -> u64 {
    256
}
fn default_deadline() -> Duration {
    Duration::from_secs(1)
}

/// Aggregators are configured like any stage.
pub type AggregatorConfig = StageConfig;

/// The window.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// `tumbling`, `hopping` or `session`.
    pub kind: WindowKind,
    /// Window length (tumbling, hopping), e.g. `1m`.
    #[serde(default, deserialize_with = "optional_duration")]
    pub size: Option<Duration>,
    /// Distance between window starts (hopping).
    #[serde(default, deserialize_with = "optional_duration")]
    pub slide: Option<Duration>,
    /// Inactivity gap that ends a session (session).
    #[serde(default, deserialize_with = "optional_duration")]
    pub gap: Option<Duration>,
    /// The event columns that key a window, e.g. `["city"]`.
    pub key: Vec<String>,
    /// The longest text a key column may hold, in bytes (default 1024). A record with a
    /// longer key, or a NUL byte in one, is a dead letter: PostgreSQL cannot index
    /// a key past about 2.7 kB, nor store a NUL in text.
    #[serde(default = "default_max_key_bytes")]
    pub max_key_bytes: usize,
}

fn default_max_key_bytes() -> usize {
    1024
}

/// Window kinds.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Fixed, non-overlapping.
    Tumbling,
    /// Fixed size, overlapping.
    Hopping,
    /// Per key, split by inactivity.
    Session,
}

impl WindowConfig {
    /// The window this config describes; errors name the missing or stray key.
    pub fn spec(&self) -> Result<WindowSpec> {
        if self.max_key_bytes == 0 {
            bail!("window.max_key_bytes must be positive: every key would be refused");
        }
        let ms = |d: Duration| d.as_millis() as i64;
        let required = |value: Option<Duration>, key: &str, kind: &str| {
            value.map(ms).with_context(|| format!("window.{key} is required for {kind} windows"))
        };
        let stray = |value: Option<Duration>, key: &str, kind: &str| match value {
            Some(_) => bail!("window.{key} does not apply to {kind} windows"),
            None => Ok(()),
        };
        let spec = match self.kind {
            WindowKind::Tumbling => {
                stray(self.slide, "slide", "tumbling")?;
                stray(self.gap, "gap", "tumbling")?;
                WindowSpec::Tumbling { size_ms: required(self.size, "size", "tumbling")? }
            }
            WindowKind::Hopping => {
                stray(self.gap, "gap", "hopping")?;
                WindowSpec::Hopping {
                    size_ms: required(self.size, "size", "hopping")?,
                    slide_ms: required(self.slide, "slide", "hopping")?,
                }
            }
            WindowKind::Session => {
                stray(self.size, "size", "session")?;
                stray(self.slide, "slide", "session")?;
                WindowSpec::Session { gap_ms: required(self.gap, "gap", "session")? }
            }
        };
        spec.validate()?;
        if self.key.is_empty() {
            bail!("window.key must name at least one column");
        }
        Ok(spec)
    }
}

/// Lateness and idleness.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatermarkConfig {
    /// How far behind the largest event time an event may arrive and still count (default 0s).
    #[serde(default, with = "serde_duration")]
    pub lateness: Duration,
    /// A partition silent this long stops holding the watermark back (default 30s).
    #[serde(default = "default_idle_timeout", with = "serde_duration")]
    pub idle_timeout: Duration,
    /// How far (event time) a partition may run ahead of the slowest active one before
    /// it is held back (default 1m); it reads again once within a quarter of that. This
    /// keeps which events are late a property of the stream, not of the order in which
    /// the broker hands partitions out.
    #[serde(default = "default_max_skew", with = "serde_duration")]
    pub max_skew: Duration,
    /// How far beyond the processing clock an event time may lie (default 1h). A record
    /// further ahead is a dead letter: one bad clock would otherwise close every window.
    #[serde(default = "default_max_ahead", with = "serde_duration")]
    pub max_ahead: Duration,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        WatermarkConfig {
            lateness: Duration::ZERO,
            idle_timeout: default_idle_timeout(),
            max_skew: default_max_skew(),
            max_ahead: default_max_ahead(),
        }
    }
}

fn default_max_skew() -> Duration {
    Duration::from_secs(60)
}

fn default_max_ahead() -> Duration {
    Duration::from_secs(3600)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `sqlite://path` (relative to the pipeline file) or `postgres://user@host/db`. A
    /// password comes from `PGPASSWORD` or a `${VAR}`, never from the file itself.
    pub url: String,
    /// The table of window rows; created from the declared schema when missing.
    pub table: String,
    /// A new plugin version whose output would break the table's readers (a column
    /// dropped, renamed or retyped) writes a new table, `<table>_v2`, `_v3`, …, and `table`
    /// becomes a view in its first columns over every version (default false: such a
    /// version is refused).
    #[serde(default)]
    pub versioned: bool,
    /// Also deliver the rows, exactly once, to a Delta table.
    pub delta: Option<super::outputs::DeltaConfig>,
    /// Also deliver the rows, exactly once, to Redis.
    pub redis: Option<super::outputs::RedisConfig>,
}

/// Checkpoints.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// How often one sink transaction commits window rows, offsets and state (default 1s).
    #[serde(default = "default_checkpoint_interval", with = "serde_duration")]
    pub interval: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { interval: default_checkpoint_interval() }
    }
}

fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}

/// The data-quality circuit breaker.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Pause when dead letters exceed this share of records over `interval` (default 0.5).
    #[serde(default = "default_dead_letter_rate")]
    pub dead_letter_rate: f64,
    /// The sliding interval the rate is measured over (default 1m).
    #[serde(default = "default_breaker_interval", with = "serde_duration")]
    pub interval: Duration,
    /// The rate is judged only once this many records were seen in the interval (default 1000).
    #[serde(default = "default_min_records")]
    pub min_records: u64,
    /// Resume on its own after this long, unless resumed by command first (default 5m).
    #[serde(default = "default_cooldown", with = "serde_duration")]
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            dead_letter_rate: default_dead_letter_rate(),
            interval: default_breaker_interval(),
            min_records: default_min_records(),
            cooldown: default_cooldown(),
        }
    }
}

fn default_dead_letter_rate() -> f64 {
    0.5
}
fn default_breaker_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_min_records() -> u64 {
    1000
}
fn default_cooldown() -> Duration {
    Duration::from_secs(300)
}

impl PipelineConfig {
    /// The settings of one stage.
    pub fn stage(&self, stage: crate::pipeline::StageId) -> Option<&StageConfig> {
        use crate::pipeline::StageId;
        match stage {
            StageId::Parser => Some(&self.parser),
            StageId::Validator(i) => self.validators.get(i),
            StageId::Transform(i) => self.transforms.get(i),
            StageId::Aggregator => Some(&self.aggregator),
        }
    }

    /// Every stage, in pipeline order.
    pub fn stages(&self) -> impl Iterator<Item = (crate::pipeline::StageId, &StageConfig)> {
        use crate::pipeline::StageId;
        std::iter::once((StageId::Parser, &self.parser))
            .chain(self.validators.iter().enumerate().map(|(i, s)| (StageId::Validator(i), s)))
            .chain(self.transforms.iter().enumerate().map(|(i, s)| (StageId::Transform(i), s)))
            .chain(std::iter::once((StageId::Aggregator, &self.aggregator)))
    }

    /// Reads, interpolates and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading pipeline file {}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = at.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = at.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            anyhow::anyhow!("pipeline file {}: line {line}, column {column}: not UTF-8", path.display())
        })?;
        Self::parse(&text, |name| std::env::var(name).ok()).with_context(|| format!("pipeline file {}", path.display()))
    }

    /// Parses pipeline text, reading `${VAR}`s through `env`.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let text = super::interpolate(text, env).map_err(anyhow::Error::msg)?;
        let config: PipelineConfig = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.check()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RIDES: &str = r#"
name = "rides"

[source]
kind = "kafka"
brokers = "${KAFKA_BROKERS}"
topic = "${KAFKA_TOPIC:-trips}"

[parser]
plugin = "json_parser"
config = { event_time = "event_time", fields = [{ name = "event_time", type = "timestamp" }] }
limits = { deadline = "250ms" }

[[validators]]
plugin = "rules_validator"
config.rules = [{ field = "fare", min = 0.0 }]

[aggregator]
plugin = "window_stats"
config = { count = "trips" }

[window]
kind = "tumbling"
size = "1m"
key = ["city"]

[watermark]
lateness = "10m"

[sink]
url = "${DATABASE_URL}"
table = "rides_city_minute"
"#;

    fn env(name: &str) -> Option<String> {
        match name {
            "KAFKA_BROKERS" => Some("127.0.0.1:9092".into()),
            "DATABASE_URL" => Some("postgres://weir@127.0.0.1/rides".into()),
            _ => None,
        }
    }

    #[test]
    fn parses_the_rides_pipeline_with_defaults() {
        let config = PipelineConfig::parse(RIDES, env).unwrap();
        match &config.source {
            SourceConfig::Kafka { brokers, topic, group, .. } => {
                assert_eq!((brokers.as_str(), topic.as_str(), group), ("127.0.0.1:9092", "trips", &None));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(config.parser.limits, PluginLimits { memory_mib: 256, deadline: Duration::from_millis(250) });
        assert_eq!(config.window.spec().unwrap(), WindowSpec::Tumbling { size_ms: 60_000 });
        assert_eq!(config.watermark.lateness, Duration::from_secs(600));
        assert_eq!(config.checkpoint.interval, Duration::from_secs(1));
        assert_eq!(config.validators[0].config["rules"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_key() {
        let unknown = RIDES.replace("[watermark]", "[watermark]\nlatenes = \"1m\"");
        let err = format!("{:#}", PipelineConfig::parse(&unknown, env).unwrap_err());
        assert!(err.contains("latenes") && err.contains("line"), "{err}");

        let bad_size = RIDES.replace("size = \"1m\"", "size = \"1 minute\"");
        let err = format!("{:#}", PipelineConfig::parse(&bad_size, env).unwrap_err());
        assert!(err.contains("size") && err.contains("1 minute"), "{err}");

        let hopping = RIDES.replace("kind = \"tumbling\"", "kind = \"hopping\"");
        let err = format!("{:#}", PipelineConfig::parse(&hopping, env).unwrap_err());
        assert!(err.contains("window.slide is required"), "{err}");

        let err = format!("{:#}", PipelineConfig::parse(RIDES, |_| None).unwrap_err());
        assert!(err.contains("KAFKA_BROKERS"), "{err}");

        let source = RIDES.replace("kind = \"kafka\"", "kind = \"kafka\"\npath = \"/tmp\"");
        let err = format!("{:#}", PipelineConfig::parse(&source, env).unwrap_err());
        assert!(err.contains("path"), "{err}");
    }
}
