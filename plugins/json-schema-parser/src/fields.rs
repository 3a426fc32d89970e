//! The configured fields read from a JSON value the schema check already parsed, with
//! `json-parser`'s config and types: text, int64, float64, boolean, and timestamps as
//! ISO 8601 text or epoch milliseconds.

use serde::Deserialize;
use serde_json::Value as Json;
use weir_sdk::{BatchBuilder, ColumnDef, ColumnType, Config, ParserInfo, Value};

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum TimeFormat {
    #[default]
    Iso8601,
    EpochMillis,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldConfig {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    format: TimeFormat,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldsConfig {
    fields: Vec<FieldConfig>,
    event_time: String,
}

/// The fields to read, as columns.
pub struct Fields {
    fields: Vec<(FieldConfig, ColumnDef)>,
    columns: Vec<ColumnDef>,
}

impl Fields {
    pub fn new(config: Config) -> Result<(Self, ParserInfo), String> {
        let config: FieldsConfig = config.parse()?;
        let mut fields = Vec::new();
        for (i, f) in config.fields.into_iter().enumerate() {
            let ty = ColumnType::parse(&f.ty)
                .ok_or_else(|| format!("config.fields[{i}] ({:?}): unknown type {:?}", f.name, f.ty))?;
            if fields.iter().any(|(_, c): &(FieldConfig, ColumnDef)| c.name == f.name) {
                return Err(format!("config.fields[{i}]: field {:?} is listed twice", f.name));
            }
            let required = f.required || f.name == config.event_time;
            let column = ColumnDef { name: f.name.clone(), ty, nullable: !required };
            fields.push((f, column));
        }
        match fields.iter().find(|(_, c)| c.name == config.event_time) {
            Some((_, c)) if c.ty == ColumnType::TimestampMs => {}
            Some(_) => {
                return Err(format!("config.event_time: field {:?} must have type \"timestamp\"", config.event_time))
            }
            None => return Err(format!("config.event_time: {:?} is not one of config.fields", config.event_time)),
        }
        let columns: Vec<ColumnDef> = fields.iter().map(|(_, c)| c.clone()).collect();
        let info = ParserInfo { outputs: columns.clone(), event_time_column: config.event_time };
        Ok((Fields { fields, columns }, info))
    }

    pub fn builder(&self, _rows: usize) -> BatchBuilder {
        BatchBuilder::new(&self.columns)
    }

    /// Reads `value`'s fields into a row of `out`; nothing is appended on error.
    pub fn push(&self, value: &Json, out: &mut BatchBuilder) -> Result<(), String> {
        let object = value.as_object().ok_or("not a JSON object")?;
        let mut row = Vec::with_capacity(self.fields.len());
        for (f, column) in &self.fields {
            let wrong = |what: &str| format!("field {:?}: expected {what}", f.name);
            let cell = match (object.get(&f.name), column.ty) {
                (None | Some(Json::Null), _) if f.required || !column.nullable => {
                    return Err(format!("field {:?} is missing", f.name))
                }
                (None | Some(Json::Null), _) => Value::Null,
                (Some(Json::String(s)), ColumnType::Text) => Value::Text(s),
                (Some(v), ColumnType::Int64) => Value::Int64(v.as_i64().ok_or_else(|| wrong("an integer"))?),
                (Some(v), ColumnType::Float64) => Value::Float64(v.as_f64().ok_or_else(|| wrong("a number"))?),
                (Some(Json::Bool(b)), ColumnType::Boolean) => Value::Boolean(*b),
                (Some(v), ColumnType::TimestampMs) => Value::TimestampMs(match f.format {
                    TimeFormat::EpochMillis => v.as_i64().ok_or_else(|| wrong("milliseconds since the epoch"))?,
                    TimeFormat::Iso8601 => v
                        .as_str()
                        .and_then(|s| weir_sdk::time::parse_iso8601(s.as_bytes()))
                        .ok_or_else(|| wrong("an ISO 8601 time"))?,
                }),
                (Some(_), ColumnType::Text) => return Err(wrong("a string")),
                (Some(_), ColumnType::Boolean) => return Err(wrong("true or false")),
            };
            row.push(cell);
        }
        out.push_row(&row)
    }
}
