//! Loading one lookup table from where `[[lookup]]` says: a CSV or JSON-lines file, a
//! PostgreSQL query, or a compacted Kafka topic. A table's version is the digest of its
//! rows, so two loads of the same content are the same version.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::LookupConfig;
use crate::plugin::LookupTable;

/// The most rows a lookup table may have: it is held whole by every host.
pub const MAX_ROWS: usize = 1_000_000;

/// Loads `config`'s table; relative files are relative to `base`, and `sink_url` and
/// `brokers` are the defaults for a query and a topic.
pub fn load(
    config: &LookupConfig,
    base: &std::path::Path,
    sink_url: &str,
    brokers: Option<&str>,
) -> Result<LookupTable> {
    let (columns, rows) = if let Some(file) = &config.file {
        let path = base.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let is_jsonl = path.extension().is_some_and(|e| e == "jsonl" || e == "json");
        if is_jsonl {
            json_lines(&text, config)?
        } else {
            csv(&text, config)?
        }
    } else if let Some(query) = &config.query {
        postgres(query, config.url.as_deref().unwrap_or(sink_url), config)?
    } else if let Some(topic) = &config.topic {
        let brokers = config.brokers.as_deref().or(brokers).context("a topic lookup needs brokers (lookup.brokers)")?;
        kafka(topic, brokers, config)?
    } else {
        bail!("no source: give file, query or topic");
    };
    if rows.len() > MAX_ROWS {
        bail!("{} rows, more than the {MAX_ROWS} a lookup table may hold", rows.len());
    }
    let mut sorted: Vec<(&String, &Vec<Option<String>>)> = rows.iter().collect();
    sorted.sort();
    let version = crate::plugin::digest(serde_json::to_string(&(&columns, &sorted))?.as_bytes());
    Ok(LookupTable { name: config.name.clone(), version, columns, rows })
}

type Rows = rustc_hash::FxHashMap<String, Vec<Option<String>>>;

/// The value columns: as configured, else `found` without the key.
fn value_columns(config: &LookupConfig, found: impl IntoIterator<Item = String>) -> Vec<String> {
    match &config.columns {
        Some(columns) => columns.clone(),
        None => found.into_iter().filter(|c| *c != config.key).collect(),
    }
}

fn csv(text: &str, config: &LookupConfig) -> Result<(Vec<String>, Rows)> {
    use crate::source::csv::{is_complete, split};
    let mut records = Vec::new();
    let mut record = String::new();
    for line in text.lines() {
        record.push_str(line);
        if is_complete(record.as_bytes()) {
            if !record.trim().is_empty() {
                records.push(std::mem::take(&mut record));
            }
            record.clear();
        } else {
            record.push('\n');
        }
    }
    let Some((header, body)) = records.split_first() else { bail!("the file is empty: a CSV lookup needs a header") };
    let header = split(header.trim_start_matches('\u{feff}').as_bytes()).map_err(|e| anyhow::anyhow!("header: {e}"))?;
    let key = header
        .iter()
        .position(|h| *h == config.key)
        .with_context(|| format!("the header ({}) has no key column {:?}", header.join(", "), config.key))?;
    let columns = value_columns(config, header.clone());
    let at: Vec<usize> = columns
        .iter()
        .map(|c| header.iter().position(|h| h == c).with_context(|| format!("the header has no column {c:?}")))
        .collect::<Result<_>>()?;
    let mut rows = Rows::default();
    for (i, record) in body.iter().enumerate() {
        let cells = split(record.as_bytes()).map_err(|e| anyhow::anyhow!("row {}: {e}", i + 2))?;
        if cells.len() != header.len() {
            bail!("row {}: {} cells for {} columns", i + 2, cells.len(), header.len());
        }
        rows.insert(cells[key].clone(), at.iter().map(|&c| Some(cells[c].clone())).collect());
    }
    Ok((columns, rows))
}

fn json_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn json_lines(text: &str, config: &LookupConfig) -> Result<(Vec<String>, Rows)> {
    let mut objects = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let value: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).with_context(|| format!("line {}: not a JSON object", i + 1))?;
        let key = value.get(&config.key).and_then(json_text);
        let key = key.with_context(|| format!("line {}: no key {:?}", i + 1, config.key))?;
        objects.push((key, value));
    }
    let found: BTreeSet<String> = objects.iter().flat_map(|(_, o)| o.keys().cloned()).collect();
    let columns = value_columns(config, found);
    let rows = objects
        .into_iter()
        .map(|(key, o)| (key, columns.iter().map(|c| o.get(c).and_then(json_text)).collect()))
        .collect();
    Ok((columns, rows))
}

fn postgres(query: &str, url: &str, config: &LookupConfig) -> Result<(Vec<String>, Rows)> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        bail!("a query lookup runs against PostgreSQL: set lookup.url (the sink is {url})");
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = crate::sink::connect_postgres(url).await?;
        // Every column as text, whatever its type, by wrapping the query.
        let wrapped = format!("SELECT to_jsonb(q)::text FROM ({query}) q");
        let found = client.query(&wrapped, &[]).await.with_context(|| format!("running {query}"))?;
        let statement = client.prepare(query).await?;
        let names: Vec<String> = statement.columns().iter().map(|c| c.name().to_string()).collect();
        if !names.contains(&config.key) {
            bail!("the query's columns ({}) have no key column {:?}", names.join(", "), config.key);
        }
        let columns = value_columns(config, names);
        let mut rows = Rows::default();
        for row in found {
            let object: serde_json::Value = serde_json::from_str(row.get::<_, &str>(0))?;
            let key = object.get(&config.key).and_then(json_text).context("a row whose key is null")?;
            rows.insert(key, columns.iter().map(|c| object.get(c).and_then(json_text)).collect());
        }
        Ok((columns, rows))
    })
}

fn kafka(topic: &str, brokers: &str, config: &LookupConfig) -> Result<(Vec<String>, Rows)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("weir-lookup-{}", config.name))
        .set("enable.auto.commit", "false")
        .create()?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).with_context(|| format!("topic {topic}"))?;
    let partitions: Vec<i32> =
        metadata.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    if partitions.is_empty() {
        bail!("topic {topic} has no partitions (does it exist?)");
    }
    let mut ends = HashMap::new();
    let mut assignment = rdkafka::TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        if high > low {
            ends.insert(p, high);
        }
        assignment.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut objects: HashMap<String, Option<serde_json::Map<String, serde_json::Value>>> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Read to the ends the brokers report, then on until the topic is quiet: a broker's
    // reported end may trail what it holds (Tansu's does, by a few hundred records).
    let mut quiet_since = None::<std::time::Instant>;
    loop {
        if std::time::Instant::now() > deadline {
            bail!("topic {topic} was not read to its end within a minute");
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            let quiet = quiet_since.get_or_insert_with(std::time::Instant::now);
            if ends.is_empty() && quiet.elapsed() >= Duration::from_millis(500) {
                break;
            }
            continue;
        };
        quiet_since = None;
        let message = message?;
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        let value = match message.payload() {
            None | Some([]) => None,
            Some(bytes) => Some(serde_json::from_slice(bytes).with_context(|| {
                format!("partition {} offset {}: the value is not a JSON object", message.partition(), message.offset())
            })?),
        };
        objects.insert(key, value);
        if ends.get(&message.partition()).is_some_and(|&end| message.offset() + 1 >= end) {
            ends.remove(&message.partition());
        }
    }
    let live: Vec<(String, serde_json::Map<String, serde_json::Value>)> =
        objects.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
    let found: BTreeSet<String> = live.iter().flat_map(|(_, o)| o.keys().cloned()).collect();
    let columns = value_columns(config, found);
    let rows =
        live.into_iter().map(|(k, o)| (k, columns.iter().map(|c| o.get(c).and_then(json_text)).collect())).collect();
    Ok((columns, rows))
}
