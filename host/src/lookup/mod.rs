//! Broadcast lookup tables (`[[lookup]]`): loaded whole by every host before the first
//! record, reloaded in the background every `refresh`, and put in place only at
//! checkpoint boundaries, so every record of a checkpoint was enriched with one version
//! of each table, which the checkpoint records (`weir_checkpoint_log.lookups`, and the
//! content in `weir_lookups`). A load that fails keeps the last good version, and says
//! so on `/readyz` and the dashboard until a load succeeds.

mod load;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub use load::{load, MAX_ROWS};

use crate::config::{LookupConfig, PipelineConfig, SourceConfig};
use crate::plugin::{LookupTable, Resources};

/// A version's rows as `weir_lookups.content` keeps them.
#[derive(serde::Deserialize)]
struct StoredContent {
    columns: Vec<String>,
    rows: rustc_hash::FxHashMap<String, Vec<Option<String>>>,
}

/// A version of a table first used by a checkpoint: stored with it, so what enriched its
/// records can be read back.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupVersion {
    pub name: String,
    pub version: String,
    pub rows: i64,
    /// `{"columns": [...], "rows": {key: [values]}}`.
    pub content: Arc<String>,
}

/// The pipeline's lookup tables.
pub struct Lookups {
    resources: Arc<Resources>,
    loaded: Receiver<(String, Result<LookupTable, String>)>,
    /// The version of each table in place.
    current: BTreeMap<String, Arc<LookupTable>>,
    /// Versions already handed to a checkpoint for storing.
    stored: HashSet<String>,
    /// Why a table's last load failed, by table.
    failing: BTreeMap<String, String>,
    /// Told what is failing (`Some`), or that nothing is (`None`).
    pub trouble: Arc<dyn Fn(Option<String>) + Send + Sync>,
    /// Held while the tables are wanted: the reload thread stops once it is dropped (it
    /// sends only news, so a closed channel alone would not tell it).
    _alive: Arc<()>,
}

/// Where a pipeline's lookups load from.
struct Sources {
    configs: Vec<LookupConfig>,
    base: PathBuf,
    sink_url: String,
    brokers: Option<String>,
}

impl Sources {
    fn load(&self, config: &LookupConfig) -> Result<LookupTable> {
        load(config, &self.base, &self.sink_url, self.brokers.as_deref())
    }
}

impl Lookups {
    /// Loads every table of `config` (failing, naming the table, if one cannot be loaded:
    /// there is no earlier version to keep), puts them in `resources`, and starts the
    /// background reloads.
    pub fn start(config: &PipelineConfig, base: &std::path::Path, resources: Arc<Resources>) -> Result<Option<Self>> {
        if config.lookup.is_empty() {
            return Ok(None);
        }
        let brokers = match &config.source {
            SourceConfig::Kafka { brokers, .. } => Some(brokers.clone()),
            _ => None,
        };
        let sources = Sources {
            configs: config.lookup.clone(),
            base: base.to_path_buf(),
            sink_url: config.sink.url.clone(),
            brokers,
        };
        let mut current = BTreeMap::new();
        for c in &sources.configs {
            let table = sources.load(c).with_context(|| format!("loading lookup table {}", c.name))?;
            tracing::info!(table = c.name, rows = table.rows.len(), version = table.version, "lookup table loaded");
            let table = Arc::new(table);
            resources.set_lookup(table.clone());
            current.insert(c.name.clone(), table);
        }
        // Bounded, and only news is sent (a new version, a failure, a recovery): a pipeline
        // that takes no checkpoint for a while (paused, held) never piles tables up.
        let (send, loaded) = mpsc::sync_channel(sources.configs.len() * 2);
        let mut last: Vec<Result<String, String>> =
            sources.configs.iter().map(|c| Ok(current[&c.name].version.clone())).collect();
        let alive = Arc::new(());
        let wanted = Arc::downgrade(&alive);
        std::thread::Builder::new().name("weir-lookups".into()).spawn(move || {
            let mut due: Vec<Instant> = sources.configs.iter().map(|c| Instant::now() + c.refresh).collect();
            while wanted.strong_count() > 0 {
                std::thread::sleep(Duration::from_millis(100));
                for ((c, at), last) in sources.configs.iter().zip(&mut due).zip(&mut last) {
                    if Instant::now() < *at {
                        continue;
                    }
                    *at = Instant::now() + c.refresh;
                    let result = sources.load(c).map_err(|e| format!("{e:#}"));
                    let seen = result.as_ref().map(|t| t.version.clone()).map_err(Clone::clone);
                    if seen == *last {
                        continue;
                    }
                    *last = seen;
                    if send.send((c.name.clone(), result)).is_err() {
                        return; // The pipeline is gone.
                    }
                }
            }
        })?;
        Ok(Some(Lookups {
            resources,
            loaded,
            current,
            stored: HashSet::new(),
            failing: BTreeMap::new(),
            trouble: Arc::new(|_| {}),
            _alive: alive,
        }))
    }

    /// The versions the sink recorded, `(name, version, content)`, in place for good: what
    /// a replay enriches with to do what the original run did. Every table the pipeline
    /// declares must be among them.
    pub fn recorded(
        config: &PipelineConfig,
        recorded: Vec<(String, String, String)>,
        resources: Arc<Resources>,
    ) -> Result<Self> {
        let mut current = BTreeMap::new();
        for (name, version, content) in recorded {
            let stored: StoredContent = serde_json::from_str(&content)
                .with_context(|| format!("the stored rows of lookup {name} {version}"))?;
            let table =
                Arc::new(LookupTable { name: name.clone(), version, columns: stored.columns, rows: stored.rows });
            resources.set_lookup(table.clone());
            current.insert(name, table);
        }
        if let Some(missing) = config.lookup.iter().find(|l| !current.contains_key(&l.name)) {
            anyhow::bail!("no recorded version of lookup table {} at that time", missing.name);
        }
        let (_, loaded) = mpsc::sync_channel(0);
        let stored = current.values().map(|t| t.version.clone()).collect();
        Ok(Lookups {
            resources,
            loaded,
            current,
            stored,
            failing: BTreeMap::new(),
            trouble: Arc::new(|_| {}),
            _alive: Arc::new(()),
        })
    }

    /// The versions in place, as the checkpoint log records them: `{"name": "sha256:…"}`.
    pub fn versions(&self) -> String {
        let map: BTreeMap<&str, &str> = self.current.iter().map(|(n, t)| (n.as_str(), t.version.as_str())).collect();
        serde_json::to_string(&map).unwrap_or_default()
    }

    /// The versions in place that no checkpoint has stored yet, with their content.
    pub fn unstored(&mut self) -> Vec<LookupVersion> {
        let mut out = Vec::new();
        for table in self.current.values() {
            if self.stored.insert(table.version.clone()) {
                let mut keys: Vec<&String> = table.rows.keys().collect();
                keys.sort();
                let rows: serde_json::Map<String, serde_json::Value> =
                    keys.into_iter().map(|k| (k.clone(), serde_json::json!(table.rows[k]))).collect();
                let content = serde_json::json!({"columns": table.columns, "rows": rows}).to_string();
                out.push(LookupVersion {
                    name: table.name.clone(),
                    version: table.version.clone(),
                    rows: table.rows.len() as i64,
                    content: Arc::new(content),
                });
            }
        }
        out
    }

    /// Puts the versions loaded since the last boundary in place. Called between
    /// checkpoints, never within a batch.
    pub fn at_boundary(&mut self) {
        let mut changed = false;
        while let Ok((name, result)) = self.loaded.try_recv() {
            match result {
                Ok(table) => {
                    changed |= self.failing.remove(&name).is_some();
                    if self.current.get(&name).is_some_and(|t| t.version == table.version) {
                        continue;
                    }
                    tracing::info!(
                        table = name,
                        rows = table.rows.len(),
                        version = table.version,
                        "lookup table refreshed"
                    );
                    let table = Arc::new(table);
                    self.resources.set_lookup(table.clone());
                    self.current.insert(name, table);
                }
                Err(e) => {
                    let kept = self.current.get(&name).map_or("none".into(), |t| t.version.clone());
                    let why = format!("lookup table {name}: loading failed, keeping version {kept}: {e}");
                    if self.failing.get(&name) != Some(&why) {
                        tracing::warn!("{why}");
                    }
                    self.failing.insert(name, why);
                    changed = true;
                }
            }
        }
        if changed {
            let trouble =
                (!self.failing.is_empty()).then(|| self.failing.values().cloned().collect::<Vec<_>>().join("; "));
            (self.trouble)(trouble);
        }
    }
}
