//! The Delta Lake output (`[sink.delta]`): window rows appended to a Delta table that
//! Spark, DuckDB, pandas or Python's `deltalake` read.
//!
//! A window is written many times as it fills and again when it closes or is corrected, so
//! the table holds revisions: each delivery appends the rows it carries, each with
//! `weir_seq`, the outbox entry it came from. A window's current row is the one with the
//! highest `weir_seq` (the latest-revision query in `docs/PIPELINES.md`); compaction
//! (`delta_compact.rs`) keeps only those. Each delivery is one Delta commit whose `txn`
//! action (app id `weir:PIPELINE`) records the last entry it holds, so a delivery replayed
//! after a crash is recognised and skipped (see DECISIONS).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, TimeUnit};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{DataType, PrimitiveType, StructField, Transaction};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::DeltaTable;
use weir_sdk::ColumnType;

use super::output::Output;
use super::{Cell, TableSchema, WindowRow};

/// Rows written to a Delta table.
pub struct DeltaOutput {
    runtime: tokio::runtime::Runtime,
    location: String,
    /// The object store's options (`[sink.delta] storage`).
    storage: HashMap<String, String>,
    table: Option<DeltaTable>,
    schema: Option<TableSchema>,
    compact: Compaction,
}

/// When small files are compacted.
#[derive(Clone, Debug)]
pub struct Compaction {
    /// How often to look.
    pub every: Duration,
    /// Compact once at least this many files are smaller than [`SMALL_FILE`].
    pub min_files: usize,
    pub(super) last: Instant,
}

impl Compaction {
    /// Looks every `every` for at least `min_files` small files.
    pub fn new(every: Duration, min_files: usize) -> Self {
        Compaction { every, min_files, last: Instant::now() }
    }
}

/// Files below this size are compacted.
pub(super) const SMALL_FILE: i64 = 32 << 20;

/// The window's columns, before the key and value columns.
pub(super) const WINDOW: [&str; 2] = ["window_start", "window_end"];

impl DeltaOutput {
    /// An output to the Delta table at `location`: a directory, a `file://` URL or an
    /// `s3://` one, with the object store's `storage` options.
    pub fn new(location: &str, storage: HashMap<String, String>, compact: Compaction) -> Result<Self> {
        super::delta_store::check_options(location, &storage).map_err(|e| anyhow::anyhow!("sink.delta.{e}"))?;
        super::delta_store::register();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(DeltaOutput { runtime, location: location.to_string(), storage, table: None, schema: None, compact })
    }

    /// The table's columns as Delta and Arrow name them.
    fn columns(table: &TableSchema) -> Vec<(String, PrimitiveType)> {
        let time = || PrimitiveType::Timestamp;
        let mut columns: Vec<(String, PrimitiveType)> = WINDOW.iter().map(|c| (c.to_string(), time())).collect();
        for def in table.keys.iter().chain(&table.values) {
            columns.push((def.name.clone(), primitive(def.ty)));
        }
        columns.push(("is_final".into(), PrimitiveType::Boolean));
        columns.push(("revision".into(), PrimitiveType::Long));
        columns.push(("updated_at".into(), time()));
        columns.push(("weir_seq".into(), PrimitiveType::Long));
        columns
    }

    fn app_id(pipeline: &str) -> String {
        format!("weir:{pipeline}")
    }

    /// `rows` as one Arrow batch in the table's columns.
    pub(super) fn batch(table: &TableSchema, rows: &[(i64, WindowRow)], now_ms: i64) -> Result<RecordBatch> {
        let columns = Self::columns(table);
        let fields: Vec<Field> = columns.iter().map(|(name, ty)| Field::new(name, arrow_type(ty), true)).collect();
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
        let micros = |ms: i64| ms.saturating_mul(1000);
        let times = |f: &dyn Fn(&WindowRow) -> i64| -> ArrayRef {
            let mut b = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
            rows.iter().for_each(|(_, r)| b.append_value(micros(f(r))));
            Arc::new(b.finish())
        };
        arrays.push(times(&|r| r.window.start));
        arrays.push(times(&|r| r.window.end));
        let defs: Vec<ColumnType> = table.keys.iter().chain(&table.values).map(|c| c.ty).collect();
        for (i, ty) in defs.iter().enumerate() {
            let cell = |r: &WindowRow| -> Cell {
                let cells = r.key.iter().chain(&r.values);
                cells.clone().nth(i).cloned().unwrap_or(Cell::Null)
            };
            arrays.push(column(*ty, rows.iter().map(|(_, r)| cell(r)), rows.len())?);
        }
        let mut finals = BooleanBuilder::with_capacity(rows.len());
        let mut revisions = Int64Builder::with_capacity(rows.len());
        let mut seqs = Int64Builder::with_capacity(rows.len());
        for (seq, r) in rows {
            finals.append_value(r.is_final);
            revisions.append_value(r.revision);
            seqs.append_value(*seq);
        }
        arrays.push(Arc::new(finals.finish()));
        arrays.push(Arc::new(revisions.finish()));
        arrays.push(times(&|_| now_ms));
        arrays.push(Arc::new(seqs.finish()));
        Ok(RecordBatch::try_new(Arc::new(ArrowSchema::new(fields)), arrays)?)
    }

    pub(super) fn compact_min_files(&self) -> usize {
        self.compact.min_files
    }

    pub(super) fn opened(&mut self) -> Result<(&tokio::runtime::Runtime, &mut DeltaTable, &TableSchema)> {
        match (&mut self.table, &self.schema) {
            (Some(table), Some(schema)) => Ok((&self.runtime, table, schema)),
            _ => bail!("the Delta output was not prepared"),
        }
    }
}

/// The table at `location`, created with `columns` if there is none.
async fn open_or_create(
    location: &str,
    storage: &HashMap<String, String>,
    name: &str,
    columns: &[(String, PrimitiveType)],
) -> Result<DeltaTable> {
    // A local directory is made here if it is missing.
    let url = deltalake::ensure_table_uri(location)?;
    let mut table = deltalake::DeltaTableBuilder::from_url(url)?.with_storage_options(storage.clone()).build()?;
    // Loading a table that is not there yet logs an error; only an existing log is loaded.
    if table.log_store().is_delta_table_location().await? {
        table.load().await?;
        return Ok(table);
    }
    let fields = columns.iter().map(|(n, ty)| StructField::new(n, DataType::Primitive(ty.clone()), true));
    Ok(table.create().with_table_name(name).with_columns(fields).await?)
}

fn primitive(ty: ColumnType) -> PrimitiveType {
    match ty {
        ColumnType::Int64 => PrimitiveType::Long,
        ColumnType::Float64 => PrimitiveType::Double,
        ColumnType::Boolean => PrimitiveType::Boolean,
        ColumnType::Text => PrimitiveType::String,
        ColumnType::TimestampMs => PrimitiveType::Timestamp,
    }
}

fn arrow_type(ty: &PrimitiveType) -> ArrowType {
    match ty {
        PrimitiveType::Long => ArrowType::Int64,
        PrimitiveType::Double => ArrowType::Float64,
        PrimitiveType::Boolean => ArrowType::Boolean,
        PrimitiveType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => ArrowType::Utf8,
    }
}

/// One column of cells as an Arrow array of type `ty`.
fn column(ty: ColumnType, cells: impl Iterator<Item = Cell>, len: usize) -> Result<ArrayRef> {
    Ok(match ty {
        ColumnType::Int64 => {
            let mut b = Int64Builder::with_capacity(len);
            cells.for_each(|c| b.append_option(if let Cell::Int(v) = c { Some(v) } else { None }));
            Arc::new(b.finish())
        }
        ColumnType::Float64 => {
            let mut b = Float64Builder::with_capacity(len);
            cells.for_each(|c| b.append_option(if let Cell::Float(v) = c { Some(v) } else { None }));
            Arc::new(b.finish())
        }
        ColumnType::Boolean => {
            let mut b = BooleanBuilder::with_capacity(len);
            cells.for_each(|c| b.append_option(if let Cell::Bool(v) = c { Some(v) } else { None }));
            Arc::new(b.finish())
        }
        ColumnType::Text => {
            let mut b = StringBuilder::new();
            cells.for_each(|c| b.append_option(if let Cell::Text(v) = c { Some(v) } else { None }));
            Arc::new(b.finish())
        }
        ColumnType::TimestampMs => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(len).with_timezone("UTC");
            cells.for_each(|c| b.append_option(if let Cell::Timestamp(v) = c { Some(v * 1000) } else { None }));
            Arc::new(b.finish())
        }
    })
}

impl Output for DeltaOutput {
    fn describe(&self) -> String {
        format!("delta table {}", self.location)
    }

    fn prepare(&mut self, schema: &TableSchema) -> Result<()> {
        let expected = Self::columns(schema);
        let (location, storage) = (self.location.clone(), self.storage.clone());
        let table = self.runtime.block_on(async {
            // Several hosts of a group may create the table at once: the losers open the
            // winner's, once its first commit is complete.
            let mut attempt = 0;
            loop {
                match open_or_create(&location, &storage, &schema.name, &expected).await {
                    Ok(table) => break Ok::<_, anyhow::Error>(table),
                    Err(_) if attempt < 40 => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => break Err(e),
                }
            }
        })?;
        let found = table.snapshot()?.schema();
        for (name, ty) in &expected {
            match found.fields().find(|f| f.name() == name) {
                None => bail!("delta table {location} has no column {name}: it was not written by this pipeline"),
                Some(f) if f.data_type() != &DataType::Primitive(ty.clone()) => bail!(
                    "delta table {location}: column {name} is {}, this pipeline writes {ty}; \
                     it was written with another schema",
                    f.data_type()
                ),
                Some(_) => {}
            }
        }
        if let Some(extra) = found.fields().find(|f| !f.is_nullable() && !expected.iter().any(|(n, _)| n == f.name())) {
            bail!("delta table {location}: column {} is required, and this pipeline does not write it", extra.name());
        }
        self.table = Some(table);
        self.schema = Some(schema.clone());
        Ok(())
    }

    fn delivered(&mut self, pipeline: &str) -> Result<i64> {
        let app = Self::app_id(pipeline);
        let (runtime, table, _) = self.opened()?;
        runtime.block_on(async {
            table.update_state().await?;
            let mark = table.snapshot()?.transaction_version(table.log_store().as_ref(), app).await?;
            Ok(mark.unwrap_or(0))
        })
    }

    fn deliver(&mut self, pipeline: &str, upto: i64, rows: &[(i64, WindowRow)]) -> Result<()> {
        let app = Self::app_id(pipeline);
        let now = crate::pipeline::now_ms();
        let (runtime, table, schema) = self.opened()?;
        let batch = Self::batch(schema, rows, now)?;
        runtime.block_on(async {
            table.update_state().await?;
            let mark = table.snapshot()?.transaction_version(table.log_store().as_ref(), &app).await?;
            if mark.is_some_and(|m| m >= upto) {
                return Ok(());
            }
            let txn = Transaction::new_with_last_update(&app, upto, Some(now));
            let mut writer = RecordBatchWriter::for_table(table)?
                .with_commit_properties(CommitProperties::default().with_application_transaction(txn));
            writer.write(batch).await?;
            writer.flush_and_commit(table).await?;
            Ok(())
        })
    }

    fn maintain(&mut self, _pipeline: &str) -> Result<()> {
        if self.compact.last.elapsed() < self.compact.every {
            return Ok(());
        }
        self.compact.last = Instant::now();
        let gone = self.compact_small_files().with_context(|| format!("compacting {}", self.describe()))?;
        if gone > 0 {
            tracing::info!(files = gone, table = %self.location, "compacted the Delta table's small files");
        }
        Ok(())
    }

    fn is_transient(&self, error: &anyhow::Error) -> bool {
        use delta_kernel::Error as K;
        use deltalake::DeltaTableError as E;
        error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<E>(),
                Some(E::ObjectStore { .. } | E::Io { .. } | E::VersionAlreadyExists(_) | E::Transaction { .. })
            ) || matches!(cause.downcast_ref::<K>(), Some(K::ObjectStore(_) | K::Reqwest(_) | K::IOError(_)))
                || cause.downcast_ref::<std::io::Error>().is_some()
                || cause.downcast_ref::<object_store::Error>().is_some()
        })
    }
}
