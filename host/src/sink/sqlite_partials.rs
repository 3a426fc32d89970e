//! Rows merged from partial states, in SQLite, in the checkpoint's transaction (see
//! `partials.rs`): a window's row from every partition's partial, and for sessions, the
//! rows of each key a checkpoint touched recomputed from every partition's partial
//! sessions around it.

use anyhow::{Context, Result};
use rusqlite::{params, Transaction};

use super::partials::{self, Merger};
use super::schema::quote;
use super::sqlite::{iso, now_iso, to_sql, SqliteSink};
use super::{Checkpoint, TableSchema, WindowRow};
use crate::window::Window;

/// Rewrites the rows of the windows whose partials `checkpoint` wrote, from every
/// partition's partial, and marks final the rows the group watermark has passed:
/// returns the rows merged, and the rows only marked final.
pub(super) fn merge(
    tx: &Transaction,
    pipeline: &str,
    table: &TableSchema,
    checkpoint: &Checkpoint,
    merger: &mut dyn Merger,
) -> Result<(Vec<WindowRow>, Vec<WindowRow>)> {
    let now = now_iso();
    let watermark: Option<i64> =
        tx.query_row("SELECT min(watermark) FROM weir_checkpoints WHERE pipeline = ?", [pipeline], |r| r.get(0))?;
    let rows = if merger.sessions() {
        merge_sessions(tx, pipeline, table, checkpoint, merger, watermark, &now)?
    } else {
        merge_windows(tx, pipeline, table, checkpoint, merger, watermark, &now)?
    };
    let finalized = finalise(tx, table, merger, watermark, &now)?;
    Ok((rows, finalized))
}

/// Rewrites the row of each window and key `checkpoint` wrote a partial of.
fn merge_windows(
    tx: &Transaction,
    pipeline: &str,
    table: &TableSchema,
    checkpoint: &Checkpoint,
    merger: &mut dyn Merger,
    watermark: Option<i64>,
    now: &str,
) -> Result<Vec<WindowRow>> {
    let touched = partials::touched(checkpoint);
    let mut read = tx.prepare_cached(
        "SELECT source_partition, state FROM weir_window_state WHERE pipeline = ? AND window_start = ? AND window_end = ? AND key = ?",
    )?;
    let mut stored = Vec::new();
    for t in &touched {
        let partials = read.query_map(params![pipeline, t.window.start, t.window.end, t.key_json], |r| {
            Ok((t.window.start, t.window.end, t.key_json.clone(), r.get(0)?, r.get(1)?))
        })?;
        for partial in partials {
            stored.push(partial.context("reading the partial states of the windows to merge")?);
        }
    }
    let rows = partials::merged_rows(merger, &touched, stored, watermark)?;
    SqliteSink::upsert(tx, table, &rows, now, true)?;
    Ok(rows)
}

/// Marks final the rows the group `watermark` has passed, whoever wrote them.
fn finalise(
    tx: &Transaction,
    table: &TableSchema,
    merger: &dyn Merger,
    watermark: Option<i64>,
    now: &str,
) -> Result<Vec<WindowRow>> {
    let Some(mark) = watermark else { return Ok(Vec::new()) };
    let mut marked = tx.prepare_cached(&format!(
        "UPDATE {} SET is_final = 1, updated_at = ? WHERE NOT is_final AND window_end <= ? RETURNING {}",
        quote(&table.name),
        super::latest::row_columns(table)
    ))?;
    let rows = marked.query_map(params![now, iso(mark.saturating_sub(merger.final_after_ms()))], |r| {
        super::latest::sqlite_row(r, table)
    })?;
    rows.collect::<Result<Vec<_>, _>>().context("marking the rows the group watermark has passed final")
}

/// Rewrites the group's sessions of every key `checkpoint` touched.
fn merge_sessions(
    tx: &Transaction,
    pipeline: &str,
    table: &TableSchema,
    checkpoint: &Checkpoint,
    merger: &mut dyn Merger,
    watermark: Option<i64>,
    now: &str,
) -> Result<Vec<WindowRow>> {
    let mut forget = tx.prepare_cached(
        "DELETE FROM weir_window_state WHERE pipeline = ? AND window_start = ? AND window_end = ? AND key = ? \
         AND source_partition = ?",
    )?;
    for (w, key, partition) in &checkpoint.retracted_partials {
        forget.execute(params![pipeline, w.start, w.end, super::key_json(key), partition])?;
    }
    let mut read = tx.prepare_cached(
        "SELECT window_start, window_end, source_partition, state FROM weir_window_state \
         WHERE pipeline = ? AND key = ? AND window_start < ? AND window_end > ?",
    )?;
    let keys: Vec<String> = table.keys.iter().map(|c| format!("{} = ?", quote(&c.name))).collect();
    let mut stored_rows = tx.prepare_cached(&format!(
        "SELECT window_start, window_end, is_final, revision FROM {} WHERE {} AND window_start < ? AND window_end > ?",
        quote(&table.name),
        keys.join(" AND ")
    ))?;
    let mut planned = Vec::new();
    let mut deleted = Vec::new();
    for (key_json, (key, touched)) in partials::touched_keys(checkpoint) {
        let mut region = partials::span(&touched);
        let sessions = loop {
            let found = read
                .query_map(params![pipeline, key_json, region.end, region.start], |r| {
                    Ok((Window { start: r.get(0)?, end: r.get(1)? }, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<Vec<_>, _>>()
                .context("reading the partial sessions of a key")?;
            let sessions = partials::sessions(found);
            match partials::hull(&sessions) {
                // A session reaching out of the region may join partials beyond it.
                Some(h) if h.start < region.start || h.end > region.end => {
                    region = Window { start: region.start.min(h.start), end: region.end.max(h.end) };
                }
                _ => break sessions,
            }
        };
        let mut values: Vec<rusqlite::types::Value> = key.iter().map(to_sql).collect();
        values.extend([iso(region.end).into(), iso(region.start).into()]);
        let time = |text: String| weir_sdk::time::parse_iso8601(text.as_bytes()).unwrap_or(0);
        let stored = stored_rows
            .query_map(rusqlite::params_from_iter(values), |r| {
                Ok((Window { start: time(r.get(0)?), end: time(r.get(1)?) }, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("reading the sessions of a key in {}", table.name))?;
        let (write, delete) = partials::session_plan(sessions, &touched, &stored);
        deleted.extend(delete.into_iter().map(|w| (w, key.clone())));
        planned.extend(write.into_iter().map(|(session, revision)| (session, key.clone(), revision)));
    }
    SqliteSink::delete_rows(tx, table, &deleted)?;
    let rows = partials::session_rows(merger, planned, watermark)?;
    SqliteSink::upsert(tx, table, &rows, now, true)?;
    Ok(rows)
}
