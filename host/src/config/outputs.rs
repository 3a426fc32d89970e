//! `[sink.delta]` and `[sink.redis]`: outputs the window rows are delivered to, exactly
//! once, besides the sink's own table (see `sink/output.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use super::duration::{optional_duration, serde_duration};
use super::PipelineConfig;
use crate::sink::{Compaction, DeltaOutput, Output, RedisOutput};

/// A Delta table the rows are appended to.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaConfig {
    /// The table's directory (relative to the pipeline file), a `file://` URL, or
    /// `s3://BUCKET/PATH`.
    pub path: String,
    /// The object store's options, e.g. `aws_endpoint`, `aws_region`, `aws_allow_http`;
    /// credentials come from the `AWS_*` environment or a `${VAR}` here.
    #[serde(default)]
    pub storage: HashMap<String, String>,
    /// How often to look for small files to compact (default 10m).
    #[serde(default = "default_compact_every", with = "serde_duration")]
    pub compact_every: Duration,
    /// Compact once at least this many files are small (default 16).
    #[serde(default = "default_compact_files")]
    pub compact_files: usize,
}

/// A Redis server the rows are written to as hashes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:PASSWORD@]HOST:PORT/DB`; a password belongs in a `${VAR}`.
    pub url: String,
    /// The keys' first part (default: the pipeline's name).
    pub prefix: Option<String>,
    /// A window's hash expires this long after its last write (default: never).
    #[serde(default, deserialize_with = "optional_duration")]
    pub ttl: Option<Duration>,
}

fn default_compact_every() -> Duration {
    Duration::from_secs(600)
}

fn default_compact_files() -> usize {
    16
}

impl PipelineConfig {
    /// The checks of the outputs' keys.
    pub(super) fn check_outputs(&self) -> Result<()> {
        let outputs = self.sink.delta.is_some() || self.sink.redis.is_some();
        if outputs && matches!(self.window.spec()?, crate::window::WindowSpec::Session { .. }) {
            bail!(
                "sink.delta/sink.redis: session windows merge and delete rows, which the outputs do not carry yet; \
                 use tumbling or hopping windows with an output"
            );
        }
        if outputs && self.sink.versioned {
            bail!("sink.versioned: a new table version is not carried to [sink.delta] or [sink.redis]; remove one");
        }
        if let Some(delta) = &self.sink.delta {
            if delta.path.is_empty() {
                bail!("sink.delta.path: name the Delta table's directory");
            }
            if let Err(e) = crate::sink::check_delta_storage(&delta.path, &delta.storage) {
                bail!("sink.delta.{e}");
            }
            if delta.compact_files < 2 {
                bail!("sink.delta.compact_files must be at least 2, got {}", delta.compact_files);
            }
        }
        if let Some(redis) = &self.sink.redis {
            if !redis.url.starts_with("redis://") && !redis.url.starts_with("unix://") {
                bail!("sink.redis.url {:?}: use redis://HOST:PORT/DB", redis.url);
            }
            if redis.ttl.is_some_and(|t| t.is_zero()) {
                bail!("sink.redis.ttl must be positive");
            }
        }
        Ok(())
    }

    /// The outputs the pipeline names, not yet prepared.
    pub fn open_outputs(&self, base: &Path) -> Result<Vec<Box<dyn Output>>> {
        let mut outputs: Vec<Box<dyn Output>> = Vec::new();
        if let Some(delta) = &self.sink.delta {
            let location = match delta.path.strip_prefix("file://") {
                Some(_) => delta.path.clone(),
                None if delta.path.contains("://") => delta.path.clone(),
                None => base.join(&delta.path).to_string_lossy().into_owned(),
            };
            let compaction = Compaction::new(delta.compact_every, delta.compact_files);
            outputs.push(Box::new(DeltaOutput::new(&location, delta.storage.clone(), compaction)?));
        }
        if let Some(redis) = &self.sink.redis {
            let prefix = redis.prefix.as_deref().unwrap_or(&self.name);
            outputs.push(Box::new(RedisOutput::new(&redis.url, prefix, &self.sink.table, redis.ttl)?));
        }
        Ok(outputs)
    }
}
