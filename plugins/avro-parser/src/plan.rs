//! Avro schema resolution, compiled: the reader schema's fields become the output
//! columns, and each writer schema gets a plan that says, for each of its fields, which
//! column it fills and how, following the specification's rules: fields matched by name
//! or by the reader field's aliases; reader fields the writer lacks take their default;
//! `int` promotes to `long`, `float` and `double`, `long` to `float` and `double`,
//! `float` to `double`, `string` and `bytes` to each other; a writer union is resolved
//! branch by branch as each record takes one, and a nullable reader field is
//! `["null", T]`.

use apache_avro::Schema;
use weir_sdk::{ColumnDef, ColumnType, Value};

use crate::writer::{compile, Cell, Unit, W};

/// One output column: a field of the reader schema.
#[derive(Clone, Debug)]
pub struct ReaderField {
    pub name: String,
    pub aliases: Vec<String>,
    pub ty: ColumnType,
    pub nullable: bool,
    /// The reader's enum symbols, when the field is an enum.
    pub symbols: Option<Vec<String>>,
    pub default: Option<serde_json::Value>,
}

/// The reader schema's record fields as columns; `event_time` becomes a timestamp.
pub fn reader_fields(reader: &Schema, event_time: &str) -> Result<Vec<ReaderField>, String> {
    let Schema::Record(record) = reader else { return Err("the reader schema must be a record".into()) };
    record
        .fields
        .iter()
        .map(|f| {
            let (inner, nullable) = match &f.schema {
                Schema::Union(u) => match u.variants() {
                    [Schema::Null, t] | [t, Schema::Null] => (t, true),
                    _ => {
                        return Err(format!("field {:?}: a union other than [\"null\", T] cannot be a column", f.name))
                    }
                },
                t => (t, false),
            };
            let ty = match inner {
                Schema::Boolean => ColumnType::Boolean,
                Schema::Long if f.name == event_time => ColumnType::TimestampMs,
                Schema::Int | Schema::Long => ColumnType::Int64,
                Schema::Float | Schema::Double => ColumnType::Float64,
                Schema::String | Schema::Enum(_) | Schema::Uuid => ColumnType::Text,
                Schema::TimestampMillis
                | Schema::TimestampMicros
                | Schema::TimestampNanos
                | Schema::LocalTimestampMillis
                | Schema::LocalTimestampMicros
                | Schema::LocalTimestampNanos
                | Schema::Date => ColumnType::TimestampMs,
                other => return Err(format!("field {:?}: type {other:?} cannot be a column", f.name)),
            };
            let symbols = match inner {
                Schema::Enum(e) => Some(e.symbols.clone()),
                _ => None,
            };
            let aliases = f.aliases.clone().unwrap_or_default();
            Ok(ReaderField { name: f.name.clone(), aliases, ty, nullable, symbols, default: f.default.clone() })
        })
        .collect()
}

/// The columns the parser declares.
pub fn columns(fields: &[ReaderField]) -> Vec<ColumnDef> {
    fields.iter().map(|f| ColumnDef { name: f.name.clone(), ty: f.ty, nullable: f.nullable }).collect()
}

/// What to do with one writer field: the common cases decoded straight into their
/// column, the rest through `Reader::cell` and `convert`.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    Skip,
    Fill(usize),
    /// A string into a text column.
    Text(usize),
    /// A long (or a timestamp in milliseconds) into an int64 or timestamp column.
    Long(usize),
    /// A double into a float64 column.
    Double(usize),
}

/// The fast action for writer type `w` into `field`'s column `c`, if there is one.
fn fast(w: &W, field: &ReaderField, c: usize) -> Action {
    match (w, field.ty) {
        (W::Str, ColumnType::Text) if field.symbols.is_none() => Action::Text(c),
        (W::Long(Unit::Plain | Unit::Millis), ColumnType::Int64 | ColumnType::TimestampMs) => Action::Long(c),
        (W::Double, ColumnType::Float64) => Action::Double(c),
        _ => Action::Fill(c),
    }
}

/// How the records of one writer schema are read.
#[derive(Debug)]
pub struct Plan {
    pub root: Vec<(String, W)>,
    pub named: Vec<W>,
    pub actions: Vec<Action>,
    /// Each column's value before the record is read: its default, or `None` if the
    /// writer fills it.
    pub defaults: Vec<Option<Default>>,
}

/// A reader default, owned.
#[derive(Clone, Debug)]
pub enum Default {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Default {
    pub fn value(&self, ty: ColumnType) -> Value<'_> {
        match (self, ty) {
            (Default::Null, _) => Value::Null,
            (Default::Int(v), ColumnType::TimestampMs) => Value::TimestampMs(*v),
            (Default::Int(v), _) => Value::Int64(*v),
            (Default::Float(v), _) => Value::Float64(*v),
            (Default::Bool(v), _) => Value::Boolean(*v),
            (Default::Text(v), _) => Value::Text(v),
        }
    }
}

fn default_of(field: &ReaderField) -> Result<Default, String> {
    let json = field.default.as_ref().ok_or_else(|| {
        format!(
            "the writer schema has no field {:?} (nor any of its aliases) and the reader's has no default",
            field.name
        )
    })?;
    let bad = || format!("field {:?}: default {json} does not fit its type", field.name);
    Ok(match (json, field.ty) {
        (serde_json::Value::Null, _) if field.nullable => Default::Null,
        (serde_json::Value::Bool(b), ColumnType::Boolean) => Default::Bool(*b),
        (serde_json::Value::Number(n), ColumnType::Int64 | ColumnType::TimestampMs) => {
            Default::Int(n.as_i64().ok_or_else(bad)?)
        }
        (serde_json::Value::Number(n), ColumnType::Float64) => Default::Float(n.as_f64().ok_or_else(bad)?),
        (serde_json::Value::String(s), ColumnType::Text) => Default::Text(s.clone()),
        _ => return Err(bad()),
    })
}

/// Resolves a writer schema against the reader's fields.
pub fn plan(writer: &Schema, fields: &[ReaderField]) -> Result<Plan, String> {
    let (root, named) = compile(writer)?;
    let W::Record(root) = root else { return Err("the writer schema is not a record".into()) };
    let mut filled = vec![false; fields.len()];
    let mut actions = Vec::with_capacity(root.len());
    for (name, w) in &root {
        let column = fields.iter().position(|f| &f.name == name || f.aliases.iter().any(|a| a == name));
        match column {
            Some(c) if !filled[c] => {
                check(w, &named, &fields[c]).map_err(|e| format!("field {name:?}: {e}"))?;
                filled[c] = true;
                actions.push(fast(w, &fields[c], c));
            }
            _ => actions.push(Action::Skip),
        }
    }
    let defaults = fields
        .iter()
        .zip(&filled)
        .map(|(f, &filled)| if filled { Ok(None) } else { default_of(f).map(Some) })
        .collect::<Result<_, _>>()?;
    Ok(Plan { root, named, actions, defaults })
}

/// Whether a writer type can be read as the column at all (a union: if any branch can).
fn check(w: &W, named: &[W], field: &ReaderField) -> Result<(), String> {
    match w {
        W::Union(branches) => match branches.iter().any(|b| check(b, named, field).is_ok()) {
            true => Ok(()),
            false => Err(format!("no branch of the writer's union can be read as {}", field.ty.name())),
        },
        W::Named(i) => check(&named[*i], named, field),
        W::Null if field.nullable => Ok(()),
        _ => {
            let sample = match w {
                W::Bool => Cell::Bool(false),
                W::Int(u) | W::Long(u) => Cell::Int(0, *u),
                W::Float => Cell::Float(0.0),
                W::Double => Cell::Double(0.0),
                W::Str | W::Bytes => Cell::Text(b""),
                W::Enum(_) => Cell::Symbol(""),
                other => return Err(format!("a writer {} cannot be read as {}", kind(other), field.ty.name())),
            };
            match (sample, field.ty) {
                // Symbols are checked against the reader's as records name them.
                (Cell::Symbol(_), weir_sdk::ColumnType::Text) => Ok(()),
                _ => convert(sample, field).map(|_| ()),
            }
        }
    }
}

fn kind(w: &W) -> &'static str {
    match w {
        W::Null => "null",
        W::Fixed(_) => "fixed",
        W::Array(_) => "array",
        W::Map(_) => "map",
        W::Record(_) => "record",
        _ => "value",
    }
}

/// A decoded writer value as the column's value, by the promotion rules.
pub fn convert<'a>(cell: Cell<'a>, field: &ReaderField) -> Result<Value<'a>, String> {
    let text = |b: &'a [u8]| std::str::from_utf8(b).map_err(|_| "a string that is not UTF-8".to_string());
    Ok(match (cell, field.ty) {
        (Cell::Null, _) if field.nullable => Value::Null,
        (Cell::Null, _) => return Err("null, and the reader's field is not nullable".into()),
        (Cell::Bool(b), ColumnType::Boolean) => Value::Boolean(b),
        (Cell::Int(v, _), ColumnType::Int64) => Value::Int64(v),
        (Cell::Int(v, unit), ColumnType::TimestampMs) => Value::TimestampMs(match unit {
            Unit::Plain | Unit::Millis => v,
            Unit::Micros => v.div_euclid(1_000),
            Unit::Nanos => v.div_euclid(1_000_000),
            Unit::Date => v.saturating_mul(86_400_000),
            Unit::TimeMillis | Unit::TimeMicros => return Err("a time of day is not an instant".into()),
        }),
        (Cell::Int(v, _), ColumnType::Float64) => Value::Float64(v as f64),
        (Cell::Float(v) | Cell::Double(v), ColumnType::Float64) => Value::Float64(v),
        (Cell::Text(b), ColumnType::Text) => Value::Text(text(b)?),
        (Cell::Symbol(symbol), ColumnType::Text) => {
            if let Some(reader) = &field.symbols {
                if !reader.iter().any(|s| s == symbol) {
                    return Err(format!("symbol {symbol:?} is not among the reader's symbols"));
                }
            }
            Value::Text(symbol)
        }
        (cell, ty) => return Err(format!("a writer {} cannot be read as {}", describe(cell), ty.name())),
    })
}

fn describe(cell: Cell<'_>) -> &'static str {
    match cell {
        Cell::Null => "null",
        Cell::Bool(_) => "boolean",
        Cell::Int(_, Unit::Plain) => "int or long",
        Cell::Int(_, Unit::Date) => "date",
        Cell::Int(_, Unit::TimeMillis | Unit::TimeMicros) => "time of day",
        Cell::Int(_, _) => "timestamp",
        Cell::Float(_) => "float",
        Cell::Double(_) => "double",
        Cell::Text(_) => "string",
        Cell::Symbol(_) => "enum",
    }
}
