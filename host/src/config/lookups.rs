//! `[[lookup]]`: small reference tables a pipeline's plugins read (contract 0.2.0's
//! `lookups`), loaded once per host and refreshed at checkpoint boundaries.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use super::duration::serde_duration;

/// One lookup table. Exactly one of `file`, `query` and `topic` says where it comes from.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The name plugins ask for.
    pub name: String,
    /// The column whose value is looked up (a CSV header, a JSON key, a query's column);
    /// for a topic, the record key is the key and this names it.
    pub key: String,
    /// A CSV file with a header row, or JSON lines (`.jsonl`), relative to the pipeline file.
    pub file: Option<PathBuf>,
    /// A PostgreSQL query; each row is a table row.
    pub query: Option<String>,
    /// The database `query` runs against (default: the sink's, which must be PostgreSQL).
    pub url: Option<String>,
    /// A compacted Kafka topic: each record's key is a row's key, its value a JSON object of
    /// the other columns (the latest record of a key wins; an empty value deletes the key).
    pub topic: Option<String>,
    /// The topic's brokers (default: the Kafka source's).
    pub brokers: Option<String>,
    /// The value columns, in order (default: every column but the key, as the source has
    /// them; for JSON, sorted by name).
    pub columns: Option<Vec<String>>,
    /// How often it is loaded again (default 1m); a new version is put in place at the
    /// next checkpoint boundary.
    #[serde(default = "default_refresh", with = "serde_duration")]
    pub refresh: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_secs(60)
}

impl LookupConfig {
    pub(super) fn check(&self, i: usize) -> Result<()> {
        let sources = [self.file.is_some(), self.query.is_some(), self.topic.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            bail!("lookup[{i}] ({}): give exactly one of file, query and topic", self.name);
        }
        if self.name.is_empty() || self.key.is_empty() {
            bail!("lookup[{i}]: name and key must not be empty");
        }
        if self.refresh.is_zero() {
            bail!("lookup[{i}].refresh must be positive");
        }
        if self.url.is_some() && self.query.is_none() {
            bail!("lookup[{i}].url is only for a query");
        }
        if self.brokers.is_some() && self.topic.is_none() {
            bail!("lookup[{i}].brokers is only for a topic");
        }
        Ok(())
    }
}
