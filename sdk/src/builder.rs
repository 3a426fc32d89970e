//! Building a columnar batch one row at a time.

use crate::batch::{Column, ColumnDef, ColumnType, ColumnValues, EventBatch};

/// One value of a row being built.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// No value.
    Null,
    /// An `int64` value.
    Int64(i64),
    /// A `float64` value.
    Float64(f64),
    /// A `boolean` value.
    Boolean(bool),
    /// A `text` value.
    Text(&'a str),
    /// A `timestamp` value in ms since the epoch.
    TimestampMs(i64),
}

/// Builds an [`EventBatch`] with a fixed schema, row by row.
///
/// ```
/// use weir_sdk::{BatchBuilder, ColumnDef, ColumnType, Value};
/// let schema = [ColumnDef::new("city", ColumnType::Text), ColumnDef::nullable("fare", ColumnType::Float64)];
/// let mut out = BatchBuilder::new(&schema);
/// out.push_row(&[Value::Text("Denver"), Value::Float64(10.5)]).unwrap();
/// out.push_row(&[Value::Text("Oslo"), Value::Null]).unwrap();
/// let batch = out.finish();
/// assert_eq!(batch.len, 2);
/// assert!(!batch.columns[1].is_valid(1));
/// ```
pub struct BatchBuilder {
    defs: Vec<ColumnDef>,
    columns: Vec<Column>,
    len: u32,
}

impl BatchBuilder {
    /// An empty builder for `schema`.
    pub fn new(schema: &[ColumnDef]) -> Self {
        let columns = schema.iter().map(|c| Column::new(ColumnValues::empty(c.ty))).collect();
        BatchBuilder { defs: schema.to_vec(), columns, len: 0 }
    }

    /// The number of rows so far.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one row, one value per column in schema order. Nothing is appended on error.
    pub fn push_row(&mut self, row: &[Value]) -> Result<(), String> {
        if row.len() != self.defs.len() {
            return Err(format!("row has {} values, schema has {} columns", row.len(), self.defs.len()));
        }
        for (def, value) in self.defs.iter().zip(row) {
            let fits = match value {
                Value::Null => def.nullable,
                Value::Int64(_) => def.ty == ColumnType::Int64,
                Value::Float64(_) => def.ty == ColumnType::Float64,
                Value::Boolean(_) => def.ty == ColumnType::Boolean,
                Value::Text(_) => def.ty == ColumnType::Text,
                Value::TimestampMs(_) => def.ty == ColumnType::TimestampMs,
            };
            if !fits {
                return Err(match value {
                    Value::Null => format!("column {:?} is not nullable", def.name),
                    other => format!("column {:?} is {}, got {other:?}", def.name, def.ty.name()),
                });
            }
        }
        for (column, value) in self.columns.iter_mut().zip(row) {
            push_value(column, value);
        }
        self.len += 1;
        Ok(())
    }

    /// The finished batch.
    pub fn finish(mut self) -> EventBatch {
        // Flags are kept per row while building; a column without nulls drops them.
        for column in &mut self.columns {
            if column.valid.iter().all(|&v| v) {
                column.valid = Vec::new();
            }
        }
        EventBatch { len: self.len, columns: self.columns }
    }
}

fn push_value(column: &mut Column, value: &Value) {
    column.valid.push(!matches!(value, Value::Null));
    match (&mut column.values, value) {
        (ColumnValues::Int64(v), Value::Int64(x)) | (ColumnValues::TimestampMs(v), Value::TimestampMs(x)) => v.push(*x),
        (ColumnValues::Float64(v), Value::Float64(x)) => v.push(*x),
        (ColumnValues::Boolean(v), Value::Boolean(x)) => v.push(*x),
        (ColumnValues::Text(v), Value::Text(x)) => v.push(x.as_bytes()),
        (ColumnValues::Int64(v), _) | (ColumnValues::TimestampMs(v), _) => v.push(0),
        (ColumnValues::Float64(v), _) => v.push(0.0),
        (ColumnValues::Boolean(v), _) => v.push(false),
        (ColumnValues::Text(v), _) => v.push(b""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_type_is_refused_and_nothing_appended() {
        let schema = [ColumnDef::new("n", ColumnType::Int64), ColumnDef::new("s", ColumnType::Text)];
        let mut b = BatchBuilder::new(&schema);
        let err = b.push_row(&[Value::Int64(1), Value::Float64(2.0)]).unwrap_err();
        assert!(err.contains("\"s\""), "{err}");
        assert!(b.push_row(&[Value::Null, Value::Text("x")]).is_err());
        b.push_row(&[Value::Int64(7), Value::Text("x")]).unwrap();
        let batch = b.finish();
        assert_eq!(batch.len, 1);
        assert_eq!(batch.columns[0].values, ColumnValues::Int64(vec![7]));
    }
}
