//! Conversions between the bindgen types and `weir_sdk` types, and the checks that a
//! plugin's output matches what it declared. A plugin is untrusted: an output that
//! breaks its schema is a failure of that call, never a panic in the host.

use weir_sdk::{
    Column, ColumnDef, ColumnType, ColumnValues, EventBatch, PackedBytes, RawBatch, RecordError, Severity, Violation,
};

use wasmtime::component::{ComponentType, Lower};

use super::bindings::types as wit;

pub fn column_type(ty: wit::ColumnType) -> ColumnType {
    match ty {
        wit::ColumnType::Int64 => ColumnType::Int64,
        wit::ColumnType::Float64 => ColumnType::Float64,
        wit::ColumnType::Boolean => ColumnType::Boolean,
        wit::ColumnType::Text => ColumnType::Text,
        wit::ColumnType::TimestampMs => ColumnType::TimestampMs,
    }
}

pub fn column_defs(defs: Vec<wit::ColumnDef>) -> Vec<ColumnDef> {
    defs.into_iter().map(|d| ColumnDef { name: d.name, ty: column_type(d.ty), nullable: d.nullable }).collect()
}

fn packed_in(p: wit::PackedBytes) -> PackedBytes {
    PackedBytes { bytes: p.bytes, ends: p.ends }
}

fn packed_out(p: &PackedBytes) -> wit::PackedBytes {
    wit::PackedBytes { bytes: p.bytes.clone(), ends: p.ends.clone() }
}

pub fn batch_in(b: wit::EventBatch) -> EventBatch {
    let columns = b
        .columns
        .into_iter()
        .map(|c| {
            let values = match c.values {
                wit::ColumnValues::Int64(v) => ColumnValues::Int64(v),
                wit::ColumnValues::Float64(v) => ColumnValues::Float64(v),
                wit::ColumnValues::Boolean(v) => ColumnValues::Boolean(v),
                wit::ColumnValues::Text(v) => ColumnValues::Text(packed_in(v)),
                wit::ColumnValues::TimestampMs(v) => ColumnValues::TimestampMs(v),
            };
            Column { values, valid: c.valid }
        })
        .collect();
    EventBatch { len: b.len, columns }
}

/// Copies a batch into bindgen types for lowering; only the columns in `columns`.
pub fn batch_out(b: &EventBatch, columns: &[usize]) -> wit::EventBatch {
    let columns = columns
        .iter()
        .map(|&i| {
            let c = &b.columns[i];
            let values = match &c.values {
                ColumnValues::Int64(v) => wit::ColumnValues::Int64(v.clone()),
                ColumnValues::Float64(v) => wit::ColumnValues::Float64(v.clone()),
                ColumnValues::Boolean(v) => wit::ColumnValues::Boolean(v.clone()),
                ColumnValues::Text(v) => wit::ColumnValues::Text(packed_out(v)),
                ColumnValues::TimestampMs(v) => wit::ColumnValues::TimestampMs(v.clone()),
            };
            wit::Column { values, valid: c.valid.clone() }
        })
        .collect();
    wit::EventBatch { len: b.len, columns }
}

/// A raw batch lowered straight from the host's buffers. wasmtime lowers only what it
/// owns or borrows in the bindgen shape, and building that shape copied every payload once
/// more on its way into the guest (2% of the Kafka benchmark's CPU).
#[derive(ComponentType, Lower)]
#[component(record)]
pub struct RawBatchRef<'a> {
    payloads: PackedRef<'a>,
    keys: PackedRef<'a>,
    timestamps: &'a [i64],
    partitions: &'a [i32],
    offsets: &'a [i64],
}

#[derive(ComponentType, Lower)]
#[component(record)]
pub struct PackedRef<'a> {
    bytes: &'a [u8],
    ends: &'a [u32],
}

impl<'a> RawBatchRef<'a> {
    pub fn of(b: &'a RawBatch) -> Self {
        let packed = |p: &'a PackedBytes| PackedRef { bytes: &p.bytes, ends: &p.ends };
        RawBatchRef {
            payloads: packed(&b.payloads),
            keys: packed(&b.keys),
            timestamps: &b.timestamps,
            partitions: &b.partitions,
            offsets: &b.offsets,
        }
    }
}

pub fn errors_in(errors: Vec<wit::RecordError>) -> Vec<RecordError> {
    errors.into_iter().map(|e| RecordError { index: e.index, reason: e.reason }).collect()
}

pub fn violations_in(violations: Vec<wit::Violation>) -> Vec<Violation> {
    violations
        .into_iter()
        .map(|v| Violation {
            row: v.row,
            rule: v.rule,
            severity: match v.severity {
                wit::Severity::Warn => Severity::Warn,
                wit::Severity::Reject => Severity::Reject,
                wit::Severity::Critical => Severity::Critical,
            },
            message: v.message,
        })
        .collect()
}

/// Checks that `batch` has the columns of `schema`, each with `batch.len` well-formed rows.
pub fn check_batch(batch: &EventBatch, schema: &[ColumnDef]) -> Result<(), String> {
    if batch.columns.len() != schema.len() {
        return Err(format!("returned {} columns, declared {}", batch.columns.len(), schema.len()));
    }
    let rows = batch.len();
    for (column, def) in batch.columns.iter().zip(schema) {
        let name = &def.name;
        if column.values.ty() != def.ty {
            return Err(format!("column {name:?} holds {}, declared {}", column.values.ty().name(), def.ty.name()));
        }
        if column.values.len() != rows {
            return Err(format!("column {name:?} has {} rows, the batch {rows}", column.values.len()));
        }
        if !column.valid.is_empty() {
            if column.valid.len() != rows {
                return Err(format!("column {name:?} has {} null flags for {rows} rows", column.valid.len()));
            }
            if !def.nullable && column.valid.iter().any(|v| !v) {
                return Err(format!("column {name:?} holds a null but is declared not nullable"));
            }
        }
        if let ColumnValues::Text(text) = &column.values {
            let monotonic = text.ends.windows(2).all(|w| w[0] <= w[1]);
            if !monotonic || text.ends.last().is_some_and(|&end| end as usize > text.bytes.len()) {
                return Err(format!("column {name:?} has text offsets outside its bytes"));
            }
            if std::str::from_utf8(&text.bytes).is_err() {
                return Err(format!("column {name:?} holds invalid UTF-8"));
            }
        }
    }
    Ok(())
}

/// Checks that every index in `indices` is below `len`.
pub fn check_indices(what: &str, indices: impl IntoIterator<Item = u32>, len: usize) -> Result<(), String> {
    match indices.into_iter().find(|&i| i as usize >= len) {
        Some(bad) => Err(format!("{what} index {bad} is out of range for {len} rows")),
        None => Ok(()),
    }
}
