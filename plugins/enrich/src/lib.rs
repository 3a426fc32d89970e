//! `enrich`: adds columns from a broadcast lookup table (`[[lookup]]`), found by a key
//! column, to every event, without a network call (contract 0.2.0's `lookups`).
//!
//! ```toml
//! [[lookup]]
//! name = "cities"
//! file = "lookups/cities.csv"
//! key = "city"
//!
//! [[transforms]]
//! plugin = "enrich"
//! config.table = "cities"
//! config.key = "city"                       # the text column looked up
//! config.add = ["region", "timezone"]       # the table's columns added, as text
//! config.keep = [{ name = "city", type = "text" }, { name = "fare", type = "float64" }]
//! ```
//!
//! The output is the `keep` columns, then the added ones; an event whose key the table
//! lacks (or whose key is null) gets nulls, or is an error naming the key with
//! `config.required = true`.

use serde::Deserialize;
use weir_sdk::{
    Column, ColumnDef, ColumnType, Config, EventBatch, PackedBytes, RecordError, Transform, TransformInfo,
    TransformOutput,
};

/// One column passed through.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepConfig {
    /// The column.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
}

/// The transform's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// The lookup table, as `[[lookup]] name` says.
    pub table: String,
    /// The text column whose value is looked up.
    pub key: String,
    /// The table's columns to add.
    pub add: Vec<String>,
    /// The columns passed through, in output order.
    pub keep: Vec<KeepConfig>,
    /// An event whose key the table lacks is an error instead of getting nulls.
    #[serde(default)]
    pub required: bool,
}

/// The configured transform.
pub struct Enrich {
    table: String,
    add: Vec<String>,
    kept: usize,
    key: usize,
    required: bool,
}

impl Transform for Enrich {
    fn init(config: Config) -> Result<(Self, TransformInfo), String> {
        let config: EnrichConfig = config.parse()?;
        let available = weir_sdk::resources::lookup_columns(&config.table)?;
        if let Some(missing) = config.add.iter().find(|c| !available.contains(c)) {
            return Err(format!(
                "config.add: lookup table {:?} has no column {missing:?}; it has {}",
                config.table,
                available.join(", ")
            ));
        }
        let mut inputs = Vec::new();
        for (i, keep) in config.keep.iter().enumerate() {
            let ty = ColumnType::parse(&keep.ty)
                .ok_or_else(|| format!("config.keep[{i}].type: unknown type {:?}", keep.ty))?;
            inputs.push(ColumnDef::nullable(keep.name.clone(), ty));
        }
        let mut outputs = inputs.clone();
        outputs.extend(config.add.iter().map(|c| ColumnDef::nullable(c.clone(), ColumnType::Text)));
        let kept = inputs.len();
        let key = match inputs.iter().position(|c| c.name == config.key) {
            Some(k) if inputs[k].ty == ColumnType::Text => k,
            Some(_) => return Err(format!("config.key: {:?} must be a text column", config.key)),
            None => {
                inputs.push(ColumnDef::nullable(config.key.clone(), ColumnType::Text));
                inputs.len() - 1
            }
        };
        let enrich = Enrich { table: config.table, add: config.add, kept, key, required: config.required };
        Ok((enrich, TransformInfo { inputs, outputs }))
    }

    fn apply(&self, events: &EventBatch) -> TransformOutput {
        let n = events.len();
        let key = &events.columns[self.key];
        let keys = match key.values.text() {
            Some(text) => text.clone(),
            None => PackedBytes::default(),
        };
        let mut columns: Vec<Column> = events.columns[..self.kept].to_vec();
        let mut errors = Vec::new();
        let added = match weir_sdk::resources::lookup(&self.table, &self.add, &keys) {
            Ok(added) => added,
            Err(reason) => {
                let errors = (0..n as u32).map(|index| RecordError { index, reason: reason.clone() }).collect();
                return TransformOutput {
                    events: EventBatch { len: 0, columns: Vec::new() },
                    sources: Vec::new(),
                    errors,
                };
            }
        };
        let mut found = vec![true; n];
        for mut column in added {
            // A null key finds nothing.
            if !key.valid.is_empty() {
                if column.valid.is_empty() {
                    column.valid = vec![true; n];
                }
                for (row, v) in column.valid.iter_mut().enumerate() {
                    *v &= key.is_valid(row);
                }
            }
            if self.required {
                for (row, f) in found.iter_mut().enumerate() {
                    *f &= column.is_valid(row);
                }
            }
            columns.push(column);
        }
        let mut sources: Vec<u32> = (0..n as u32).collect();
        if self.required && found.iter().any(|f| !f) {
            sources.retain(|&row| found[row as usize]);
            for (row, _) in found.iter().enumerate().filter(|(_, f)| !**f) {
                let value = key.is_valid(row).then(|| key.values.str(row).unwrap_or_default().to_string());
                let reason = match value {
                    Some(v) => format!("{:?} is not a key of lookup table {:?}", v, self.table),
                    None => format!("the key column is null, and lookup table {:?} is required", self.table),
                };
                errors.push(RecordError { index: row as u32, reason });
            }
            let batch = EventBatch { len: n as u32, columns };
            return TransformOutput { events: batch.take(&sources), sources, errors };
        }
        TransformOutput { events: EventBatch { len: n as u32, columns }, sources, errors }
    }
}

weir_sdk::export!(transform: Enrich);
