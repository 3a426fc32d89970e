//! Compaction of the Delta output: each delivery adds a small file, so on a schedule the
//! small files are read and rewritten as one, keeping of each window only its latest
//! revision (the highest `weir_seq` among them). A newer revision in a file left alone
//! still wins in the latest-revision query, so compacting any set of files is safe. One
//! commit removes the old files and adds the new one; readers see the table before or
//! after, never between.

use std::collections::HashMap;

use anyhow::{Context, Result};
use deltalake::arrow::array::{Array, Int64Array, UInt32Array};
use deltalake::arrow::compute::{concat_batches, take_record_batch};
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::arrow::util::display::array_value_to_string;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::Action;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};

use super::delta::{DeltaOutput, SMALL_FILE, WINDOW};

impl DeltaOutput {
    /// Rewrites the small files as one once there are enough of them; returns how many
    /// files went.
    pub(super) fn compact_small_files(&mut self) -> Result<usize> {
        let min_files = self.compact_min_files();
        let (runtime, table, schema) = self.opened()?;
        let keys: Vec<String> =
            WINDOW.into_iter().map(String::from).chain(schema.keys.iter().map(|k| k.name.clone())).collect();
        runtime.block_on(async {
            table.update_state().await?;
            let small: Vec<_> = table.snapshot()?.log_data().iter().filter(|f| f.size() < SMALL_FILE).collect();
            if small.len() < min_files.max(2) {
                return Ok(0);
            }
            let store = table.object_store();
            let mut batches = Vec::new();
            for file in &small {
                let bytes = store.get_opts(&file.object_store_path(), Default::default()).await?.bytes().await?;
                for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
                    batches.push(batch?);
                }
            }
            let Some(first) = batches.first() else { return Ok(0) };
            let all = concat_batches(&first.schema(), &batches).context("the small files differ in schema")?;
            let kept = take_record_batch(&all, &latest_revisions(&all, &keys)?)?;
            let mut writer = RecordBatchWriter::for_table(table)?;
            writer.write(kept).await?;
            let mut actions: Vec<Action> = writer.flush().await?.into_iter().map(Action::Add).collect();
            actions.extend(small.iter().map(|f| Action::Remove(f.remove_action(true))));
            let operation = DeltaOperation::Optimize { predicate: None, target_size: SMALL_FILE };
            CommitBuilder::default()
                .with_actions(actions)
                .build(Some(table.snapshot()?), table.log_store(), operation)
                .await?;
            table.update_state().await?;
            Ok(small.len())
        })
    }
}

/// The index of each window's row with the highest `weir_seq` in `batch`, in row order.
fn latest_revisions(batch: &RecordBatch, keys: &[String]) -> Result<UInt32Array> {
    let seq = batch
        .column_by_name("weir_seq")
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .context("the files have no weir_seq column")?;
    let columns = keys
        .iter()
        .map(|k| batch.column_by_name(k).with_context(|| format!("the files have no column {k}")))
        .collect::<Result<Vec<_>>>()?;
    let mut best: HashMap<String, (i64, u32)> = HashMap::new();
    for row in 0..batch.num_rows() {
        let mut key = String::new();
        for column in &columns {
            if !column.is_null(row) {
                key.push_str(&array_value_to_string(column, row)?);
            }
            key.push('\u{1f}');
        }
        let candidate = (seq.value(row), row as u32);
        best.entry(key).and_modify(|b| *b = (*b).max(candidate)).or_insert(candidate);
    }
    let mut rows: Vec<u32> = best.into_values().map(|(_, row)| row).collect();
    rows.sort_unstable();
    Ok(UInt32Array::from(rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures::{city_trips, city_trips_table};

    #[test]
    fn compaction_keeps_each_windows_latest_revision() {
        let table = city_trips_table("trips");
        let rows = vec![
            (1, city_trips(0, "Oslo", 1)),
            (1, city_trips(0, "Lima", 4)),
            (2, city_trips(0, "Oslo", 2)),
            (3, city_trips(60_000, "Oslo", 7)),
            (4, city_trips(0, "Oslo", 3)),
        ];
        let batch = DeltaOutput::batch(&table, &rows, 0).unwrap();
        let keys = ["window_start", "window_end", "city"].map(String::from);
        assert_eq!(latest_revisions(&batch, &keys).unwrap().values().to_vec(), vec![1, 3, 4]);
    }
}
