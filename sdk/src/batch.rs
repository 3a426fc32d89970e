//! The data that crosses the plugin boundary, as plain Rust types.
//!
//! These mirror `wit/types.wit` one to one. The host uses them as its own batch
//! representation too, so native and WASM plugins see exactly the same values.

/// The type of one column's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    /// 64-bit signed integer.
    Int64,
    /// 64-bit IEEE-754 float.
    Float64,
    /// true or false.
    Boolean,
    /// UTF-8 text.
    Text,
    /// Milliseconds since the Unix epoch, UTC.
    TimestampMs,
}

impl ColumnType {
    /// The name used in configs and in `weir plugin inspect`.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Boolean => "boolean",
            ColumnType::Text => "text",
            ColumnType::TimestampMs => "timestamp",
        }
    }

    /// Parses a type name as written in a config (`int64`, `float64`, `boolean`, `text`, `timestamp`).
    pub fn parse(name: &str) -> Option<ColumnType> {
        Some(match name {
            "int64" | "int" | "i64" => ColumnType::Int64,
            "float64" | "float" | "f64" | "double" => ColumnType::Float64,
            "boolean" | "bool" => ColumnType::Boolean,
            "text" | "string" => ColumnType::Text,
            "timestamp" | "timestamp-ms" => ColumnType::TimestampMs,
            _ => return None,
        })
    }
}

/// One declared column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnDef {
    /// The column's name; the wiring between stages matches on it.
    pub name: String,
    /// The type of its values.
    pub ty: ColumnType,
    /// Whether a row may have no value.
    pub nullable: bool,
}

impl ColumnDef {
    /// A column that always has a value.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Self {
        ColumnDef { name: name.into(), ty, nullable: false }
    }

    /// A column whose rows may be null.
    pub fn nullable(name: impl Into<String>, ty: ColumnType) -> Self {
        ColumnDef { name: name.into(), ty, nullable: true }
    }
}

/// Byte strings packed end to end: value `i` is `bytes[ends[i-1]..ends[i]]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PackedBytes {
    /// The values' bytes, one after another.
    pub bytes: Vec<u8>,
    /// The exclusive end offset of each value in `bytes`.
    pub ends: Vec<u32>,
}

impl PackedBytes {
    /// The number of values.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Value `i`.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// Value `i` as text; invalid UTF-8 reads as "".
    pub fn str(&self, i: usize) -> &str {
        std::str::from_utf8(self.get(i)).unwrap_or("")
    }

    /// Appends a value.
    #[inline]
    pub fn push(&mut self, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.ends.push(self.bytes.len() as u32);
    }

    /// Iterates over the values.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

impl<T: AsRef<[u8]>> FromIterator<T> for PackedBytes {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut packed = PackedBytes::default();
        for value in iter {
            packed.push(value.as_ref());
        }
        packed
    }
}

/// The values of one column, one per row.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnValues {
    /// Values of type `int64`.
    Int64(Vec<i64>),
    /// Values of type `float64`.
    Float64(Vec<f64>),
    /// Values of type `boolean`.
    Boolean(Vec<bool>),
    /// Values of type `text`.
    Text(PackedBytes),
    /// Values of type `timestamp`.
    TimestampMs(Vec<i64>),
}

impl ColumnValues {
    /// The type of these values.
    pub fn ty(&self) -> ColumnType {
        match self {
            ColumnValues::Int64(_) => ColumnType::Int64,
            ColumnValues::Float64(_) => ColumnType::Float64,
            ColumnValues::Boolean(_) => ColumnType::Boolean,
            ColumnValues::Text(_) => ColumnType::Text,
            ColumnValues::TimestampMs(_) => ColumnType::TimestampMs,
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Int64(v) | ColumnValues::TimestampMs(v) => v.len(),
            ColumnValues::Float64(v) => v.len(),
            ColumnValues::Boolean(v) => v.len(),
            ColumnValues::Text(v) => v.len(),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty column of type `ty`.
    pub fn empty(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Int64 => ColumnValues::Int64(Vec::new()),
            ColumnType::Float64 => ColumnValues::Float64(Vec::new()),
            ColumnType::Boolean => ColumnValues::Boolean(Vec::new()),
            ColumnType::Text => ColumnValues::Text(PackedBytes::default()),
            ColumnType::TimestampMs => ColumnValues::TimestampMs(Vec::new()),
        }
    }

    /// Row `i` as a number: integers and timestamps widen, booleans read 0 or 1, text is `None`.
    pub fn f64(&self, i: usize) -> Option<f64> {
        match self {
            ColumnValues::Int64(v) | ColumnValues::TimestampMs(v) => Some(v[i] as f64),
            ColumnValues::Float64(v) => Some(v[i]),
            ColumnValues::Boolean(v) => Some(if v[i] { 1.0 } else { 0.0 }),
            ColumnValues::Text(_) => None,
        }
    }

    /// Row `i` as an integer, for integer and timestamp columns.
    pub fn i64(&self, i: usize) -> Option<i64> {
        match self {
            ColumnValues::Int64(v) | ColumnValues::TimestampMs(v) => Some(v[i]),
            _ => None,
        }
    }

    /// The values of an integer or timestamp column.
    pub fn i64_slice(&self) -> Option<&[i64]> {
        match self {
            ColumnValues::Int64(v) | ColumnValues::TimestampMs(v) => Some(v),
            _ => None,
        }
    }

    /// The values of a text column.
    pub fn text(&self) -> Option<&PackedBytes> {
        match self {
            ColumnValues::Text(v) => Some(v),
            _ => None,
        }
    }

    /// Row `i` as text, for text columns.
    pub fn str(&self, i: usize) -> Option<&str> {
        match self {
            ColumnValues::Text(v) => Some(v.str(i)),
            _ => None,
        }
    }
}

/// One column of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// The values; a null row holds a placeholder.
    pub values: ColumnValues,
    /// Empty when every row has a value; otherwise one flag per row, false for null.
    pub valid: Vec<bool>,
}

impl Column {
    /// A column in which every row has a value.
    pub fn new(values: ColumnValues) -> Self {
        Column { values, valid: Vec::new() }
    }

    /// Whether row `i` has a value.
    pub fn is_valid(&self, i: usize) -> bool {
        self.valid.is_empty() || self.valid[i]
    }
}

/// A batch of typed events in columnar form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventBatch {
    /// The number of rows.
    pub len: u32,
    /// The columns, in the order of the stage's schema.
    pub columns: Vec<Column>,
}

impl EventBatch {
    /// The number of rows.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An empty batch with the columns of `schema`.
    pub fn empty(schema: &[ColumnDef]) -> Self {
        EventBatch { len: 0, columns: schema.iter().map(|c| Column::new(ColumnValues::empty(c.ty))).collect() }
    }

    /// Appends the rows of `other`, which must have the same column types.
    pub fn append(&mut self, other: EventBatch) {
        if self.len == 0 {
            *self = other;
            return;
        }
        for (mine, theirs) in self.columns.iter_mut().zip(other.columns) {
            let (mine_len, theirs_len) = (self.len as usize, other.len as usize);
            if !mine.valid.is_empty() || !theirs.valid.is_empty() {
                mine.valid.resize(mine_len, true);
                let mut valid = theirs.valid;
                valid.resize(theirs_len, true);
                mine.valid.extend(valid);
            }
            match (&mut mine.values, theirs.values) {
                (ColumnValues::Int64(a), ColumnValues::Int64(b))
                | (ColumnValues::TimestampMs(a), ColumnValues::TimestampMs(b)) => a.extend(b),
                (ColumnValues::Float64(a), ColumnValues::Float64(b)) => a.extend(b),
                (ColumnValues::Boolean(a), ColumnValues::Boolean(b)) => a.extend(b),
                (ColumnValues::Text(a), ColumnValues::Text(b)) => {
                    let shift = a.bytes.len() as u32;
                    a.bytes.extend_from_slice(&b.bytes);
                    a.ends.extend(b.ends.iter().map(|end| end + shift));
                }
                (mine, theirs) => panic!("append: column type {:?} does not match {:?}", mine.ty(), theirs.ty()),
            }
        }
        self.len += other.len;
    }

    /// The columns at `columns`, in that order: what a stage that declared them receives.
    pub fn project(&self, columns: &[usize]) -> EventBatch {
        EventBatch { len: self.len, columns: columns.iter().map(|&i| self.columns[i].clone()).collect() }
    }

    /// The rows at `rows`, in that order (a row may repeat).
    pub fn take(&self, rows: &[u32]) -> EventBatch {
        let columns = self.columns.iter().map(|c| take_column(c, rows)).collect();
        EventBatch { len: rows.len() as u32, columns }
    }

    /// `project(columns)`, then `take(rows)` if given, copying only the chosen columns.
    pub fn select(&self, columns: &[usize], rows: Option<&[u32]>) -> EventBatch {
        match rows {
            None => self.project(columns),
            Some(rows) => EventBatch {
                len: rows.len() as u32,
                columns: columns.iter().map(|&i| take_column(&self.columns[i], rows)).collect(),
            },
        }
    }
}

fn take_column(column: &Column, rows: &[u32]) -> Column {
    fn pick<T: Copy>(v: &[T], rows: &[u32]) -> Vec<T> {
        rows.iter().map(|&r| v[r as usize]).collect()
    }
    let values = match &column.values {
        ColumnValues::Int64(v) => ColumnValues::Int64(pick(v, rows)),
        ColumnValues::Float64(v) => ColumnValues::Float64(pick(v, rows)),
        ColumnValues::Boolean(v) => ColumnValues::Boolean(pick(v, rows)),
        ColumnValues::TimestampMs(v) => ColumnValues::TimestampMs(pick(v, rows)),
        ColumnValues::Text(v) => {
            let size = rows.iter().map(|&r| v.get(r as usize).len()).sum();
            let mut out = PackedBytes { bytes: Vec::with_capacity(size), ends: Vec::with_capacity(rows.len()) };
            for &r in rows {
                out.push(v.get(r as usize));
            }
            ColumnValues::Text(out)
        }
    };
    let valid = if column.valid.is_empty() { Vec::new() } else { pick(&column.valid, rows) };
    Column { values, valid }
}

/// A batch of raw records as the source delivered them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawBatch {
    /// Each record's payload.
    pub payloads: PackedBytes,
    /// Each record's key; empty for none.
    pub keys: PackedBytes,
    /// Each record's source timestamp in ms since the epoch, or -1.
    pub timestamps: Vec<i64>,
    /// Each record's source partition.
    pub partitions: Vec<i32>,
    /// Each record's offset within its partition.
    pub offsets: Vec<i64>,
}

impl RawBatch {
    /// The number of records.
    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    /// Whether there are no records.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }

    /// Removes every record, keeping the allocations for the next fill.
    pub fn clear(&mut self) {
        for packed in [&mut self.payloads, &mut self.keys] {
            packed.bytes.clear();
            packed.ends.clear();
        }
        self.timestamps.clear();
        self.partitions.clear();
        self.offsets.clear();
    }

    /// Appends one record.
    pub fn push(&mut self, payload: &[u8], key: &[u8], timestamp: i64, partition: i32, offset: i64) {
        self.payloads.push(payload);
        self.keys.push(key);
        self.timestamps.push(timestamp);
        self.partitions.push(partition);
        self.offsets.push(offset);
    }

    /// A batch of un-keyed records from partition 0, numbered from offset 0; handy in tests.
    pub fn from_payloads<T: AsRef<[u8]>>(payloads: impl IntoIterator<Item = T>) -> RawBatch {
        let mut batch = RawBatch::default();
        for (i, payload) in payloads.into_iter().enumerate() {
            batch.push(payload.as_ref(), b"", -1, 0, i as i64);
        }
        batch
    }

    /// Appends record `i` of `from`.
    pub fn push_from(&mut self, from: &RawBatch, i: usize) {
        self.push(from.payloads.get(i), from.keys.get(i), from.timestamps[i], from.partitions[i], from.offsets[i]);
    }

    /// The records in `range`, renumbered from 0.
    pub fn slice(&self, range: std::ops::Range<usize>) -> RawBatch {
        let mut out = RawBatch::default();
        for i in range {
            out.push_from(self, i);
        }
        out
    }
}

/// Why one input record produced no output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    /// The index of the record in the input batch.
    pub index: u32,
    /// What was wrong, naming the value.
    pub reason: String,
}

/// How serious a rule violation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Flag the event, keep it.
    Warn,
    /// Send the event to the dead-letter store.
    Reject,
    /// Send the event to the dead-letter store and trip the circuit breaker.
    Critical,
}

impl Severity {
    /// Parses `warn`, `reject` or `critical`.
    pub fn parse(name: &str) -> Option<Severity> {
        match name {
            "warn" => Some(Severity::Warn),
            "reject" => Some(Severity::Reject),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warn => "warn",
            Severity::Reject => "reject",
            Severity::Critical => "critical",
        }
    }
}

/// A validator's verdict against one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The row in the batch.
    pub row: u32,
    /// The rule that failed.
    pub rule: String,
    /// How serious it is.
    pub severity: Severity,
    /// What was wrong, naming the value.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_bytes_round_trip() {
        let packed: PackedBytes = ["a", "", "xyz"].into_iter().collect();
        assert_eq!(packed.len(), 3);
        assert_eq!(packed.get(0), b"a");
        assert_eq!(packed.get(1), b"");
        assert_eq!(packed.str(2), "xyz");
    }

    #[test]
    fn take_picks_rows_in_order() {
        let batch = EventBatch {
            len: 3,
            columns: vec![
                Column::new(ColumnValues::Int64(vec![1, 2, 3])),
                Column {
                    values: ColumnValues::Text(["a", "b", "c"].into_iter().collect()),
                    valid: vec![true, false, true],
                },
            ],
        };
        let picked = batch.take(&[2, 0, 2]);
        assert_eq!(picked.len, 3);
        assert_eq!(picked.columns[0].values, ColumnValues::Int64(vec![3, 1, 3]));
        assert_eq!(picked.columns[1].values.str(1), Some("a"));
        assert_eq!(picked.columns[1].valid, vec![true, true, true]);
    }

    #[test]
    fn select_copies_only_the_chosen_columns_of_the_chosen_rows() {
        let batch = EventBatch {
            len: 3,
            columns: vec![
                Column::new(ColumnValues::Int64(vec![1, 2, 3])),
                Column::new(ColumnValues::Text(["a", "b", "c"].into_iter().collect())),
                Column::new(ColumnValues::Float64(vec![0.5, 1.5, 2.5])),
            ],
        };
        assert_eq!(batch.select(&[2, 0], None), batch.project(&[2, 0]));
        let picked = batch.select(&[1], Some(&[2, 0]));
        assert_eq!(picked, batch.take(&[2, 0]).project(&[1]));
        assert_eq!((picked.len, picked.columns[0].values.str(0)), (2, Some("c")));
    }

    #[test]
    fn a_cleared_raw_batch_is_empty_and_refills_as_new() {
        let mut batch = RawBatch::from_payloads(["one", "two"]);
        batch.clear();
        assert!(batch.is_empty() && batch.keys.is_empty() && batch.offsets.is_empty());
        batch.push(b"three", b"k", 7, 1, 9);
        let mut fresh = RawBatch::default();
        fresh.push(b"three", b"k", 7, 1, 9);
        assert_eq!(batch, fresh);
    }

    #[test]
    fn append_joins_values_and_null_flags() {
        let mut a = EventBatch { len: 1, columns: vec![Column::new(ColumnValues::Text(["x"].into_iter().collect()))] };
        let b = EventBatch {
            len: 2,
            columns: vec![Column {
                values: ColumnValues::Text(["", "z"].into_iter().collect()),
                valid: vec![false, true],
            }],
        };
        a.append(b);
        assert_eq!(a.len, 3);
        assert_eq!(a.columns[0].values.str(2), Some("z"));
        assert_eq!(a.columns[0].valid, vec![true, false, true]);
    }
}
