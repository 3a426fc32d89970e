//! `[source]`: where a pipeline's records come from, each kind with its keys.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration::serde_duration;
use super::PipelineConfig;

/// The source of raw records.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A Kafka topic, read by a consumer group.
    Kafka {
        /// Bootstrap servers, `host:port[,host:port…]`.
        brokers: String,
        /// The topic.
        topic: String,
        /// The consumer group (default `weir-<pipeline name>`).
        group: Option<String>,
        /// librdkafka properties, e.g. `"fetch.min.bytes" = "65536"` or security settings.
        #[serde(default)]
        options: std::collections::BTreeMap<String, String>,
    },
    /// JSON-lines or CSV files: one file, or every file in a directory.
    Files {
        /// A file or a directory (relative paths are relative to the pipeline file).
        path: PathBuf,
        /// `jsonl` (default) or `csv`.
        #[serde(default)]
        format: FileFormat,
        /// Keep watching the directory for new files.
        #[serde(default)]
        follow: bool,
        /// The largest record, in bytes (default 4 MiB): a longer one is a dead letter
        /// with its size, its first KiB and its digest, read in bounded memory.
        #[serde(default = "default_max_record_bytes")]
        max_record_bytes: u64,
    },
    /// Records pushed over HTTP, `POST /ingest/PIPELINE` on the admin port, kept in an
    /// inbox table in the sink's database until read.
    Http {
        /// How many records may wait unread before a request gets 429 (default 100000).
        #[serde(default = "default_max_waiting")]
        max_waiting: i64,
    },
    /// A PostgreSQL table's inserts, updates and deletes, read through logical replication
    /// (`pgoutput`), after a snapshot of the rows already there.
    Postgres {
        /// The database, `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`; its server needs
        /// `wal_level = logical`, and the user the REPLICATION attribute.
        url: String,
        /// The table, `[SCHEMA.]NAME`.
        table: String,
        /// The replication slot (default `weir_<pipeline name>`), created unless it exists.
        slot: Option<String>,
        /// The publication (default `weir_<pipeline name>`), created for the table unless
        /// it exists.
        publication: Option<String>,
        /// Read the rows already there first (default true); needs a single-column integer
        /// primary key, by which the snapshot resumes after a crash.
        #[serde(default = "default_true")]
        snapshot: bool,
        /// `cdc` (default): logical replication; `poll`: `SELECT`s by `cursor`, for servers
        /// where a slot is not allowed.
        #[serde(default)]
        mode: PostgresMode,
        /// With `mode = "poll"`: the column rows are read in order of, a timestamp set on
        /// every insert and update (`updated_at`) or an integer.
        cursor: Option<String>,
        /// With `mode = "poll"`: a row is read once its timestamp cursor is this old
        /// (default 5s), so that a transaction committing up to this long after it set the
        /// cursor is not passed by.
        #[serde(default = "default_poll_lag", with = "serde_duration")]
        lag: Duration,
        /// With `mode = "poll"`: how often to ask again once caught up (default 1s).
        #[serde(default = "default_poll_interval", with = "serde_duration")]
        interval: Duration,
    },
    /// A JSON API polled page by page; the pages' records wait in an inbox table in the
    /// sink's database, with the API's cursor, until read.
    Api {
        /// The first page's URL; later pages add the cursor as `cursor_param`, or follow a
        /// `next` that is a URL. `${VAR}` takes secrets from the environment.
        url: String,
        /// Where a page keeps its records: a key of the page's object, or `""` (default)
        /// when the page is the array itself.
        #[serde(default)]
        records: String,
        /// The page's key holding the next page's cursor or URL (default `next`); a page
        /// without one is the last for now. A `Link: <…>; rel="next"` header is followed too.
        #[serde(default = "default_next")]
        next: String,
        /// The query parameter that carries a cursor (default `cursor`).
        #[serde(default = "default_cursor_param")]
        cursor_param: String,
        /// Request headers, e.g. `{ Authorization = "Bearer ${API_TOKEN}" }`.
        #[serde(default)]
        headers: std::collections::BTreeMap<String, String>,
        /// How long to wait before asking the last page again once caught up (default 5s).
        #[serde(default = "default_api_interval", with = "serde_duration")]
        interval: Duration,
        /// How many records may wait unread before the poller waits too (default 100000).
        #[serde(default = "default_max_waiting")]
        max_waiting: i64,
    },
    /// The built-in synthetic trip producer.
    Producer {
        /// How many events, or endless if absent.
        events: Option<u64>,
        /// Events per second of event time (default 1000).
        #[serde(default = "default_rate")]
        rate: u32,
        /// Events per second of wall time, so that a demo unfolds live; as fast as the
        /// pipeline reads if absent.
        pace: Option<std::num::NonZeroU32>,
        /// The seed; the same seed yields the same stream (default 42).
        #[serde(default = "default_seed")]
        seed: u64,
        /// Share of events out of order (default 0.02): half 2 to 5 minutes behind, half 15
        /// to 20 minutes behind the stream.
        #[serde(default = "default_late_share")]
        late_share: f64,
        /// Share of malformed events (default 0.01).
        #[serde(default = "default_malformed_share")]
        malformed_share: f64,
    },
}

impl PipelineConfig {
    /// The slot and the publication of a change-capture source: as named, or
    /// `weir_<pipeline name>` in the characters PostgreSQL allows in a slot's name.
    pub fn cdc_names(&self) -> Option<(String, String)> {
        let SourceConfig::Postgres { slot, publication, .. } = &self.source else { return None };
        let own: String = format!("weir_{}", self.name)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(63)
            .collect();
        Some((slot.clone().unwrap_or_else(|| own.clone()), publication.clone().unwrap_or(own)))
    }
}

/// How a `postgres` source reads its table.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PostgresMode {
    /// Logical replication: inserts, updates and deletes, after a snapshot.
    #[default]
    Cdc,
    /// `SELECT … WHERE (cursor, key) > (…) ORDER BY cursor, key`, again and again.
    Poll,
}

fn default_next() -> String {
    "next".into()
}
fn default_cursor_param() -> String {
    "cursor".into()
}
fn default_api_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_poll_lag() -> Duration {
    Duration::from_secs(5)
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_true() -> bool {
    true
}
fn default_max_waiting() -> i64 {
    100_000
}
fn default_rate() -> u32 {
    1000
}
fn default_seed() -> u64 {
    42
}
fn default_late_share() -> f64 {
    0.02
}
fn default_malformed_share() -> f64 {
    0.01
}

/// The format of file sources.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One record per line.
    #[default]
    Jsonl,
    /// A header line, then one record per line.
    Csv,
}

fn default_max_record_bytes() -> u64 {
    4 << 20
}
