//! `projection`: keep and rename columns, and optionally keep only matching rows.
//!
//! ```toml
//! [stages.completed-only]
//! plugin = "projection"
//! config.columns = [{ name = "city", type = "text" }, { name = "fare", type = "float64", rename = "fare_usd" }]
//! config.filter = { column = "status", equals = "completed" }
//! ```

use serde::Deserialize;
use weir_sdk::{ColumnDef, ColumnType, Config, EventBatch, Transform, TransformInfo, TransformOutput};

/// One kept column.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepConfig {
    /// The input column.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: String,
    /// The output name, if it changes.
    pub rename: Option<String>,
}

/// Keep only rows whose text column equals a value.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// A text column.
    pub column: String,
    /// The value to keep.
    pub equals: String,
}

/// The transform's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectionConfig {
    /// The columns to keep, in output order.
    pub columns: Vec<KeepConfig>,
    /// An optional row filter.
    pub filter: Option<FilterConfig>,
}

/// The configured transform.
pub struct Projection {
    kept: usize,
    filter: Option<(usize, String)>,
}

impl Transform for Projection {
    fn init(config: Config) -> Result<(Self, TransformInfo), String> {
        let config: ProjectionConfig = config.parse()?;
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        for (i, keep) in config.columns.iter().enumerate() {
            let ty = ColumnType::parse(&keep.ty)
                .ok_or_else(|| format!("config.columns[{i}].type: unknown type {:?}", keep.ty))?;
            inputs.push(ColumnDef::nullable(keep.name.clone(), ty));
            outputs.push(ColumnDef::nullable(keep.rename.clone().unwrap_or_else(|| keep.name.clone()), ty));
        }
        let kept = inputs.len();
        let filter = match config.filter {
            None => None,
            Some(f) => {
                let column = match inputs.iter().position(|c| c.name == f.column) {
                    Some(c) if inputs[c].ty == ColumnType::Text => c,
                    Some(_) => return Err(format!("config.filter.column: {:?} must be a text column", f.column)),
                    None => {
                        inputs.push(ColumnDef::nullable(f.column.clone(), ColumnType::Text));
                        inputs.len() - 1
                    }
                };
                Some((column, f.equals))
            }
        };
        Ok((Projection { kept, filter }, TransformInfo { inputs, outputs }))
    }

    fn apply(&self, events: &EventBatch) -> TransformOutput {
        let sources: Vec<u32> = match &self.filter {
            None => (0..events.len).collect(),
            Some((column, value)) => {
                let column = &events.columns[*column];
                (0..events.len())
                    .filter(|&row| column.is_valid(row) && column.values.str(row) == Some(value.as_str()))
                    .map(|row| row as u32)
                    .collect()
            }
        };
        let kept = EventBatch { len: events.len, columns: events.columns[..self.kept].to_vec() };
        let events = if sources.len() == events.len() { kept } else { kept.take(&sources) };
        TransformOutput { events, sources, errors: Vec::new() }
    }
}

weir_sdk::export!(transform: Projection);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{Column, ColumnValues};

    #[test]
    fn keeps_renames_and_filters() {
        let config = r#"{"columns":[{"name":"fare","type":"float64","rename":"fare_usd"}],"filter":{"column":"status","equals":"completed"}}"#;
        let (p, info) = Projection::init(Config::from_json(config)).unwrap();
        assert_eq!(info.outputs[0].name, "fare_usd");
        assert_eq!(info.inputs.len(), 2);
        let events = EventBatch {
            len: 3,
            columns: vec![
                Column::new(ColumnValues::Float64(vec![1.0, 2.0, 3.0])),
                Column::new(ColumnValues::Text(["completed", "cancelled", "completed"].into_iter().collect())),
            ],
        };
        let out = p.apply(&events);
        assert_eq!(out.sources, vec![0, 2]);
        assert_eq!(out.events.columns.len(), 1);
        assert_eq!(out.events.columns[0].values, ColumnValues::Float64(vec![1.0, 3.0]));
    }
}
