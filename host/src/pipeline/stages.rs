//! A pipeline's stages: which component runs where, configured how, and how the columns
//! flow from one stage to the next. The same wiring check runs when a pipeline starts and
//! when a new version is deployed into one stage.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use weir_sdk::{ColumnDef, ColumnType};

use crate::config::{PipelineConfig, StageConfig};
use crate::plugin::{
    AggregatorStage, Limits, ParserStage, Plugin, PluginComponent, PluginKind, PluginRuntime, Policy, TransformStage,
    ValidatorStage,
};
use crate::share::{PluginBytes, Sharing};
use crate::sink::TableSchema;

/// One stage of a pipeline, as the pipeline file and the deploy command name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StageId {
    /// `parser`
    Parser,
    /// `validators[i]`
    Validator(usize),
    /// `transforms[i]`
    Transform(usize),
    /// `aggregator`
    Aggregator,
}

impl StageId {
    /// The plugin kind this stage runs.
    pub fn kind(self) -> PluginKind {
        match self {
            StageId::Parser => PluginKind::Parser,
            StageId::Validator(_) => PluginKind::Validator,
            StageId::Transform(_) => PluginKind::Transform,
            StageId::Aggregator => PluginKind::Aggregator,
        }
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageId::Parser => f.write_str("parser"),
            StageId::Validator(i) => write!(f, "validators[{i}]"),
            StageId::Transform(i) => write!(f, "transforms[{i}]"),
            StageId::Aggregator => f.write_str("aggregator"),
        }
    }
}

impl FromStr for StageId {
    type Err = anyhow::Error;

    /// `parser`, `aggregator`, `validators[0]` (or `validators.0`, or `validator` when
    /// there is one; the check against the pipeline comes later), `transforms[1]`.
    fn from_str(s: &str) -> Result<Self> {
        let indexed = |prefix: &str| -> Option<usize> {
            let rest = s.strip_prefix(prefix)?;
            let n = rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')).or_else(|| rest.strip_prefix('.'))?;
            n.parse().ok()
        };
        Ok(match s {
            "parser" => StageId::Parser,
            "aggregator" => StageId::Aggregator,
            "validator" | "validators" => StageId::Validator(0),
            "transform" | "transforms" => StageId::Transform(0),
            _ => match (indexed("validators"), indexed("transforms")) {
                (Some(i), _) => StageId::Validator(i),
                (_, Some(i)) => StageId::Transform(i),
                _ => bail!(
                    "stage {s:?}: expected parser, validators[N], transforms[N] or aggregator, as the pipeline file names them"
                ),
            },
        })
    }
}

impl serde::Serialize for StageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What runs in one stage: a loaded component and the settings it is started with.
#[derive(Clone)]
pub struct StagePlan {
    /// Which stage.
    pub id: StageId,
    /// The loaded component.
    pub component: Arc<PluginComponent>,
    /// The component's bytes, kept so a deployment can be recorded and rolled back to.
    pub bytes: Arc<Vec<u8>>,
    /// Its config, as the JSON its `init` receives.
    pub config: String,
    /// Its resource limits.
    pub limits: Limits,
    /// What its plugin must satisfy to load: grants, allow-lists, signatures.
    pub policy: Policy,
    /// The file its component came from: the one the pipeline names, or the store's
    /// copy of a registry reference.
    pub path: PathBuf,
}

impl StagePlan {
    /// `name@digest`.
    pub fn version(&self) -> String {
        format!("{}@{}", self.component.name, self.component.digest)
    }

    /// A configured instance.
    pub fn start(&self) -> Result<Plugin> {
        Plugin::new(self.component.clone(), self.id.kind(), &self.config, self.limits.clone())
            .with_context(|| format!("{}.config", self.id))
    }

    /// The same stage running other bytes.
    pub fn with_bytes(&self, runtime: &PluginRuntime, name: &str, bytes: Vec<u8>) -> Result<StagePlan> {
        let component = runtime.load_bytes(name, &bytes, &self.policy)?;
        Ok(StagePlan { component, bytes: Arc::new(bytes), ..self.clone() })
    }
}

/// Where a plugin named by a path or a name is (a registry reference ignores it).
fn plugin_path(stage: &StageConfig, base: &Path, plugin_dir: &Path) -> PathBuf {
    if stage.plugin.ends_with(".wasm") {
        base.join(&stage.plugin)
    } else {
        plugin_dir.join(format!("{}.wasm", stage.plugin))
    }
}

/// Every stage of `config`, in pipeline order, with its component loaded under the
/// pipeline's policy; with `quickly`, on baseline code where optimized code is not cached.
pub fn plan(
    config: &PipelineConfig,
    base: &Path,
    plugin_dir: &Path,
    sharing: &Sharing,
    runtime: &PluginRuntime,
    quickly: bool,
) -> Result<Vec<StagePlan>> {
    let pipeline_policy = sharing.policy(config)?;
    config
        .stages()
        .map(|(id, stage)| {
            let file = plugin_path(stage, base, plugin_dir);
            let PluginBytes { name, bytes, path, .. } =
                sharing.read(&stage.plugin, &file).with_context(|| format!("{id}.plugin"))?;
            let policy = Policy { grants: stage.grants.clone(), ..pipeline_policy.clone() };
            let load = if quickly { PluginRuntime::load_bytes_quickly } else { PluginRuntime::load_bytes };
            let component = load(runtime, &name, &bytes, &policy)
                .with_context(|| format!("{id}.plugin: loading plugin {name} ({})", stage.plugin))?;
            let limits =
                Limits { max_memory_bytes: stage.limits.memory_mib * 1024 * 1024, deadline: stage.limits.deadline };
            Ok(StagePlan {
                id,
                component,
                bytes: Arc::new(bytes),
                config: serde_json::to_string(&stage.config)?,
                limits,
                policy,
                path,
            })
        })
        .collect()
}

/// How columns flow through the stages, and the table that comes out.
#[derive(Clone, Debug, PartialEq)]
pub struct Wiring {
    /// The parser's event-time column.
    pub time_column: usize,
    /// For each validator, the columns it reads.
    pub validators: Vec<Vec<usize>>,
    /// For each transform, the columns it reads.
    pub transforms: Vec<Vec<usize>>,
    /// The columns the aggregator reads.
    pub aggregator: Vec<usize>,
    /// The window key's columns.
    pub keys: Vec<usize>,
    /// The output table.
    pub table: TableSchema,
}

/// Finds each column a stage reads among the columns that reach it, by name and type.
pub fn wire(stage: &str, wanted: &[ColumnDef], available: &[ColumnDef]) -> Result<Vec<usize>> {
    wanted
        .iter()
        .map(|want| match available.iter().position(|c| c.name == want.name) {
            Some(i) if available[i].ty == want.ty => Ok(i),
            Some(i) => bail!(
                "{stage} reads column {:?} as {}, but it arrives as {}",
                want.name,
                want.ty.name(),
                available[i].ty.name()
            ),
            None => bail!(
                "{stage} reads column {:?}, which does not arrive there (available: {})",
                want.name,
                available.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
        .collect()
}

/// Checks that every stage gets the columns it reads, and derives the output table.
/// `plugins` are in pipeline order: parser, validators, transforms, aggregator.
pub fn wiring(config: &PipelineConfig, plugins: &[&Plugin]) -> Result<Wiring> {
    let (parser, rest) = plugins.split_first().context("a pipeline has a parser")?;
    let (aggregator, middle) = rest.split_last().context("a pipeline has an aggregator")?;
    let (validators, transforms) = middle.split_at(config.validators.len());
    let info = ParserStage::info(*parser);
    let time_column = info.outputs.iter().position(|c| c.name == info.event_time_column).with_context(|| {
        format!("parser: its event-time column {:?} is not among its outputs", info.event_time_column)
    })?;
    let mut schema = info.outputs.clone();
    let validators = validators
        .iter()
        .enumerate()
        .map(|(i, v)| wire(&format!("validators[{i}]"), v.inputs(), &schema))
        .collect::<Result<_>>()?;
    let transforms = transforms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let columns = wire(&format!("transforms[{i}]"), &TransformStage::info(*t).inputs, &schema)?;
            schema = TransformStage::info(*t).outputs.clone();
            Ok(columns)
        })
        .collect::<Result<_>>()?;
    let aggregator_columns = wire("aggregator", &AggregatorStage::info(*aggregator).inputs, &schema)?;
    let mut key_columns = Vec::new();
    let mut keys = Vec::new();
    for name in &config.window.key {
        let column = schema.iter().position(|c| &c.name == name).with_context(|| {
            let names: Vec<&str> = schema.iter().map(|c| c.name.as_str()).collect();
            format!("window.key: column {name:?} does not reach the aggregator (available: {})", names.join(", "))
        })?;
        if schema[column].ty == ColumnType::Float64 {
            bail!("window.key: column {name:?} is float64; key windows by text, integer, boolean or timestamp columns");
        }
        key_columns.push(column);
        keys.push(ColumnDef::new(name.clone(), schema[column].ty));
    }
    let values = AggregatorStage::info(*aggregator).outputs.clone();
    if let Some(clash) = values.iter().find(|v| {
        keys.iter().any(|k| k.name == v.name)
            || ["window_start", "window_end", "is_final", "revision", "updated_at"].contains(&v.name.as_str())
    }) {
        bail!(
            "aggregator output column {:?} clashes with a key or bookkeeping column of {}",
            clash.name,
            config.sink.table
        );
    }
    if let Some(quality) = &config.quality {
        quality.check_columns(&info.outputs, &values)?;
    }
    Ok(Wiring {
        time_column,
        validators,
        transforms,
        aggregator: aggregator_columns,
        keys: key_columns,
        table: TableSchema { name: config.sink.table.clone(), keys, values },
    })
}

/// How the output table changes when a new version's table replaces the running one.
#[derive(Clone, Debug, PartialEq)]
pub enum TableChange {
    /// The same columns.
    Same,
    /// Only new value columns: added at the switch's checkpoint, null in earlier rows.
    Adds(Vec<ColumnDef>),
    /// Readers would break: a column dropped, renamed or retyped. Why. A versioned sink
    /// writes a new table version instead.
    Breaks(String),
    /// The window key would change: no table can take it. Why.
    Rekeys(String),
}

impl TableChange {
    /// Whether a version may make this change: `Err` says why not. `versioned` is the
    /// sink's `versioned` setting.
    pub fn allowed(&self, versioned: bool) -> Result<(), String> {
        match self {
            TableChange::Breaks(why) if !versioned => Err(why.clone()),
            TableChange::Rekeys(why) => Err(why.clone()),
            _ => Ok(()),
        }
    }
}

/// How a table of `new` columns would replace one of `old`.
pub fn table_change(old: &TableSchema, new: &TableSchema) -> TableChange {
    let describe =
        |cols: &[ColumnDef]| cols.iter().map(|c| format!("{} {}", c.name, c.ty.name())).collect::<Vec<_>>().join(", ");
    if old.keys != new.keys {
        return TableChange::Rekeys(format!(
            "the window key would change from ({}) to ({})",
            describe(&old.keys),
            describe(&new.keys)
        ));
    }
    for column in &old.values {
        let breaks = match new.values.iter().find(|c| c.name == column.name) {
            Some(c) if c.ty == column.ty => continue,
            Some(c) => format!("column {} would change type from {} to {}", column.name, column.ty.name(), c.ty.name()),
            None => format!("column {} ({}) would be dropped or renamed", column.name, column.ty.name()),
        };
        return TableChange::Breaks(format!(
            "{breaks} in table {}, which breaks its readers; a new version may only add output columns \
             (or set [sink] versioned = true to write such a version into a new table behind a view of this one)",
            old.name
        ));
    }
    let added: Vec<ColumnDef> =
        new.values.iter().filter(|c| !old.values.iter().any(|o| o.name == c.name)).cloned().collect();
    match added.is_empty() {
        true => TableChange::Same,
        false => TableChange::Adds(added),
    }
}

/// A digest, or a `name@digest` version, short enough to read: 12 hex digits.
pub(super) fn short(version: &str) -> String {
    let (name, digest) = version.rsplit_once('@').map_or(("", version), |(n, d)| (n, d));
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let hex = &hex[..hex.len().min(12)];
    if name.is_empty() {
        hex.to_string()
    } else {
        format!("{name}@{hex}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_names_round_trip_and_bad_ones_are_named() {
        for id in [StageId::Parser, StageId::Validator(0), StageId::Transform(2), StageId::Aggregator] {
            assert_eq!(id.to_string().parse::<StageId>().unwrap(), id);
        }
        assert_eq!("validators.1".parse::<StageId>().unwrap(), StageId::Validator(1));
        assert_eq!("validator".parse::<StageId>().unwrap(), StageId::Validator(0));
        let err = "sink".parse::<StageId>().unwrap_err().to_string();
        assert!(err.contains("\"sink\"") && err.contains("validators[N]"), "{err}");
    }

    #[test]
    fn short_versions_keep_the_name() {
        let digest = "sha256:0123456789abcdef0123";
        assert_eq!(super::short(digest), "0123456789ab");
        assert_eq!(super::short(&format!("json_parser@{digest}")), "json_parser@0123456789ab");
    }
}
