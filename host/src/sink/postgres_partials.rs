//! Rows merged from partial states, in PostgreSQL, in the checkpoint's transaction and
//! under the group's lock (see `partials.rs`): a window's row from every partition's
//! partial; for sessions, which a session of one partition can bridge across others, the
//! rows of each key recomputed from every partition's partial sessions around what the
//! checkpoint touched (`partials::session_plan`).

use std::time::SystemTime;

use anyhow::{Context, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Transaction;

use super::latest::ms;
use super::partials::{self, Merger};
use super::postgres::{array_cast, time, unnest_args, Array, PostgresSink};
use super::schema::quote;
use super::{Cell, Checkpoint, TableSchema, WindowRow};
use crate::window::Window;

impl PostgresSink {
    pub(super) fn commit_with(
        &mut self,
        pipeline: &str,
        table: &TableSchema,
        checkpoint: &Checkpoint,
        merger: Option<&mut (dyn Merger + 'static)>,
    ) -> Result<()> {
        let merger = match (checkpoint.partials, merger) {
            (false, _) => None,
            (true, Some(merger)) => Some(merger),
            (true, None) => anyhow::bail!("a checkpoint of partial states came without an aggregator to merge them"),
        };
        let watched = self.fence.watched(checkpoint);
        // Out of `self` while the session borrows it, and put back whatever happens: a
        // fence lost with a failed reconnect would let the retry write unchecked.
        let fence = std::mem::take(&mut self.fence);
        let merged = self.session().and_then(|(runtime, client)| {
            runtime.block_on(async {
                let tx = client.transaction().await?;
                if !watched.is_empty() {
                    // Locked to the commit: no other writer moves them in between (see fence.rs).
                    let held = tx
                        .query(
                            "SELECT source_partition, next_offset FROM weir_checkpoints \
                         WHERE pipeline = $1 AND source_partition = ANY($2) FOR UPDATE",
                            &[&pipeline, &watched],
                        )
                        .await
                        .context("locking the checkpoint's partitions")?;
                    fence.check(checkpoint, &held.iter().map(|r| (r.get(0), r.get(1))).collect::<Vec<_>>())?;
                }
                // Offsets, partials, dead letters and late events touch only this host's rows.
                Self::write(&tx, pipeline, table, checkpoint).await?;
                let (merged, finalized) = match merger {
                    Some(merger) => {
                        // The merges one at a time, each after the previous one's commit: the last
                        // to merge a window reads every partial committed before it, its own too.
                        tx.execute(
                            "SELECT pg_advisory_xact_lock(hashtext($1))",
                            &[&format!("weir-partials:{pipeline}")],
                        )
                        .await
                        .context("waiting for the group's other checkpoints")?;
                        Self::merge(&tx, pipeline, table, checkpoint, merger).await?
                    }
                    None => Default::default(),
                };
                Self::write_quality(&tx, pipeline, &table.name, checkpoint, std::time::SystemTime::now()).await?;
                if checkpoint.outbox {
                    let changed: Vec<WindowRow> =
                        checkpoint.rows.iter().chain(&merged).chain(&finalized).cloned().collect();
                    super::outbox::pg_append(&tx, pipeline, &changed).await?;
                }
                tx.commit().await.context("committing the checkpoint")?;
                Ok::<_, anyhow::Error>(merged)
            })
        });
        self.fence = fence;
        self.merged = merged?;
        self.fence.committed(checkpoint);
        Ok(())
    }

    /// Rewrites the rows of the windows whose partials `checkpoint` wrote, from every
    /// partition's partial, and marks final the rows the group watermark has passed:
    /// returns the rows merged, and the rows only marked final.
    async fn merge(
        tx: &tokio_postgres::Transaction<'_>,
        pipeline: &str,
        table: &TableSchema,
        checkpoint: &Checkpoint,
        merger: &mut dyn Merger,
    ) -> Result<(Vec<WindowRow>, Vec<WindowRow>)> {
        let now = SystemTime::now();
        let watermark: Option<i64> = tx
            .query_one("SELECT min(watermark) FROM weir_checkpoints WHERE pipeline = $1", &[&pipeline])
            .await
            .context("reading the group watermark")?
            .get(0);
        let touched = partials::touched(checkpoint);
        let mut rows = Vec::new();
        if merger.sessions() {
            rows = Self::merge_sessions(tx, pipeline, table, checkpoint, merger, watermark, now).await?;
        } else if !touched.is_empty() {
            let starts: Vec<i64> = touched.iter().map(|t| t.window.start).collect();
            let ends: Vec<i64> = touched.iter().map(|t| t.window.end).collect();
            let keys: Vec<&str> = touched.iter().map(|t| t.key_json.as_str()).collect();
            let stored = tx
                .query(
                    "SELECT window_start, window_end, key, source_partition, state FROM weir_window_state \
                     WHERE pipeline = $1 AND (window_start, window_end, key) IN \
                     (SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[]))",
                    &[&pipeline, &starts, &ends, &keys],
                )
                .await
                .context("reading the partial states of the windows to merge")?;
            let stored = stored.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
            rows = partials::merged_rows(merger, &touched, stored, watermark)?;
            Self::upsert(tx, table, &rows, now, true).await?;
        }
        let mut finalized = Vec::new();
        if let Some(mark) = watermark {
            let marked = tx
                .query(
                    &format!(
                        "UPDATE {} SET is_final = true, updated_at = $1 WHERE NOT is_final AND window_end <= $2 \
                         RETURNING {}",
                        quote(&table.name),
                        super::latest::row_columns(table)
                    ),
                    &[&now, &time(mark.saturating_sub(merger.final_after_ms()))],
                )
                .await
                .context("marking the rows the group watermark has passed final")?;
            finalized = marked.iter().map(|r| super::latest::pg_row(r, table)).collect();
        }
        Ok((rows, finalized))
    }

    /// Rewrites the group's sessions of every key `checkpoint` touched.
    async fn merge_sessions(
        tx: &Transaction<'_>,
        pipeline: &str,
        table: &TableSchema,
        checkpoint: &Checkpoint,
        merger: &mut dyn Merger,
        watermark: Option<i64>,
        now: SystemTime,
    ) -> Result<Vec<WindowRow>> {
        let gone = &checkpoint.retracted_partials;
        if !gone.is_empty() {
            let starts: Vec<i64> = gone.iter().map(|(w, ..)| w.start).collect();
            let ends: Vec<i64> = gone.iter().map(|(w, ..)| w.end).collect();
            let keys: Vec<String> = gone.iter().map(|(_, k, _)| super::key_json(k)).collect();
            let partitions: Vec<i32> = gone.iter().map(|(.., p)| *p).collect();
            tx.execute(
                "DELETE FROM weir_window_state WHERE pipeline = $1 AND (window_start, window_end, key, source_partition) IN \
                 (SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::integer[]))",
                &[&pipeline, &starts, &ends, &keys, &partitions],
            )
            .await
            .context("forgetting partial sessions merged into others")?;
        }
        let mut planned = Vec::new();
        let mut deleted = Vec::new();
        for (key_json, (key, touched)) in partials::touched_keys(checkpoint) {
            let mut region = partials::span(&touched);
            let sessions = loop {
                let found = tx
                    .query(
                        "SELECT window_start, window_end, source_partition, state FROM weir_window_state \
                         WHERE pipeline = $1 AND key = $2 AND window_start < $3 AND window_end > $4",
                        &[&pipeline, &key_json, &region.end, &region.start],
                    )
                    .await
                    .context("reading the partial sessions of a key")?;
                let found = found.iter().map(|r| (Window { start: r.get(0), end: r.get(1) }, r.get(2), r.get(3)));
                let sessions = partials::sessions(found.collect());
                match partials::hull(&sessions) {
                    // A session reaching out of the region may join partials beyond it.
                    Some(h) if h.start < region.start || h.end > region.end => {
                        region = Window { start: region.start.min(h.start), end: region.end.max(h.end) };
                    }
                    _ => break sessions,
                }
            };
            let stored = rows_of_key(tx, table, &key, region).await?;
            let (write, delete) = partials::session_plan(sessions, &touched, &stored);
            deleted.extend(delete.into_iter().map(|w| (w, key.clone())));
            planned.extend(write.into_iter().map(|(session, revision)| (session, key.clone(), revision)));
        }
        Self::delete_rows(tx, table, &deleted).await?;
        let rows = partials::session_rows(merger, planned, watermark)?;
        Self::upsert(tx, table, &rows, now, true).await?;
        Ok(rows)
    }
}

/// The stored rows of `key` overlapping `region`: window, is_final, revision.
async fn rows_of_key(
    tx: &Transaction<'_>,
    table: &TableSchema,
    key: &[Cell],
    region: Window,
) -> Result<Vec<(Window, bool, i64)>> {
    let mut keys: Vec<Array> = table.keys.iter().map(|c| Array::new(c.ty)).collect();
    for (column, cell) in keys.iter_mut().zip(key) {
        column.push(cell);
    }
    let casts: Vec<&str> = table.keys.iter().map(|c| array_cast(c.ty)).collect();
    let names: Vec<String> = (0..casts.len()).map(|i| format!("k{i}")).collect();
    let matches: Vec<String> =
        table.keys.iter().enumerate().map(|(i, c)| format!("t.{} = k.k{i}", quote(&c.name))).collect();
    let sql = format!(
        "SELECT t.window_start, t.window_end, t.is_final, t.revision FROM {} AS t, unnest({}) AS k({}) \
         WHERE {} AND t.window_start < $1 AND t.window_end > $2",
        quote(&table.name),
        unnest_args(3, &casts),
        names.join(", "),
        matches.join(" AND ")
    );
    let (end, start) = (time(region.end), time(region.start));
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&end, &start];
    params.extend(keys.iter().map(Array::param));
    let rows =
        tx.query(&sql, &params).await.with_context(|| format!("reading the sessions of a key in {}", table.name))?;
    Ok(rows.iter().map(|r| (Window { start: ms(r.get(0)), end: ms(r.get(1)) }, r.get(2), r.get(3))).collect())
}
