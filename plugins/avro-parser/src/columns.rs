//! The output columns, filled a value at a time in whatever order the writer's fields
//! come (each column gets exactly one value per record), and cut back to the last whole
//! record when one fails halfway.

use weir_sdk::{Column, ColumnDef, ColumnValues, EventBatch, PackedBytes, Value};

pub struct Columns {
    columns: Vec<Column>,
}

impl Columns {
    pub fn new(defs: &[ColumnDef], rows: usize) -> Self {
        let columns = defs
            .iter()
            .map(|d| {
                let mut values = ColumnValues::empty(d.ty);
                match &mut values {
                    ColumnValues::Int64(v) | ColumnValues::TimestampMs(v) => v.reserve(rows),
                    ColumnValues::Float64(v) => v.reserve(rows),
                    ColumnValues::Boolean(v) => v.reserve(rows),
                    ColumnValues::Text(p) => p.ends.reserve(rows),
                }
                Column { values, valid: Vec::with_capacity(rows) }
            })
            .collect();
        Columns { columns }
    }

    /// Appends `value` to column `c`; its type was checked when the plan was made.
    pub fn push(&mut self, c: usize, value: &Value) {
        let column = &mut self.columns[c];
        column.valid.push(!matches!(value, Value::Null));
        match (&mut column.values, value) {
            (ColumnValues::Int64(v) | ColumnValues::TimestampMs(v), Value::Int64(x) | Value::TimestampMs(x)) => {
                v.push(*x)
            }
            (ColumnValues::Float64(v), Value::Float64(x)) => v.push(*x),
            (ColumnValues::Boolean(v), Value::Boolean(x)) => v.push(*x),
            (ColumnValues::Text(p), Value::Text(x)) => p.push(x.as_bytes()),
            (ColumnValues::Int64(v) | ColumnValues::TimestampMs(v), _) => v.push(0),
            (ColumnValues::Float64(v), _) => v.push(0.0),
            (ColumnValues::Boolean(v), _) => v.push(false),
            (ColumnValues::Text(p), _) => p.push(b""),
        }
    }

    #[inline]
    pub fn push_text(&mut self, c: usize, bytes: &[u8]) {
        let column = &mut self.columns[c];
        column.valid.push(true);
        if let ColumnValues::Text(p) = &mut column.values {
            p.push(bytes);
        }
    }

    #[inline]
    pub fn push_i64(&mut self, c: usize, value: i64) {
        let column = &mut self.columns[c];
        column.valid.push(true);
        if let ColumnValues::Int64(v) | ColumnValues::TimestampMs(v) = &mut column.values {
            v.push(value);
        }
    }

    #[inline]
    pub fn push_f64(&mut self, c: usize, value: f64) {
        let column = &mut self.columns[c];
        column.valid.push(true);
        if let ColumnValues::Float64(v) = &mut column.values {
            v.push(value);
        }
    }

    /// Drops everything past the first `rows` rows.
    pub fn truncate(&mut self, rows: usize) {
        for column in &mut self.columns {
            column.valid.truncate(rows);
            match &mut column.values {
                ColumnValues::Int64(v) | ColumnValues::TimestampMs(v) => v.truncate(rows),
                ColumnValues::Float64(v) => v.truncate(rows),
                ColumnValues::Boolean(v) => v.truncate(rows),
                ColumnValues::Text(p) => truncate_packed(p, rows),
            }
        }
    }

    /// The batch of `rows` rows; a column without nulls drops its flags.
    pub fn finish(mut self, rows: usize) -> EventBatch {
        for column in &mut self.columns {
            if column.valid.iter().all(|&v| v) {
                column.valid = Vec::new();
            }
        }
        EventBatch { len: rows as u32, columns: self.columns }
    }
}

fn truncate_packed(p: &mut PackedBytes, rows: usize) {
    p.ends.truncate(rows);
    p.bytes.truncate(p.ends.last().copied().unwrap_or(0) as usize);
}
