//! One checkpoint's statements in SQLite, inside the transaction `commit` opens: the
//! table's migration at a switch, replayed lanes, retracted sessions, the rows, the
//! shadow's rows, window states, dead letters, late events, lookup versions, deployments,
//! and the offsets with their log row.

use anyhow::{Context, Result};
use rusqlite::{params, Transaction};

use super::schema::quote;
use super::sqlite::{iso, now_iso, plan_on, SqliteSink};
use super::{Checkpoint, TableSchema};

impl SqliteSink {
    pub(super) fn write(tx: &Transaction, pipeline: &str, table: &TableSchema, checkpoint: &Checkpoint) -> Result<()> {
        let now = now_iso();
        match &checkpoint.table {
            Some(logical) if checkpoint.new_table_version => super::sqlite_versions::switch(tx, &logical.name, table)?,
            Some(_) => {
                for sql in plan_on(tx, table)? {
                    tx.execute_batch(&sql).with_context(|| format!("migrating table {}: {sql}", table.name))?;
                }
            }
            None => {}
        }
        // Replayed records leave their lane first; one that fails again is written back below.
        let mut forget = tx.prepare_cached("DELETE FROM weir_late_events WHERE id = ?")?;
        for id in &checkpoint.replayed_late {
            forget.execute([id])?;
        }
        let mut forget = tx.prepare_cached("DELETE FROM weir_dead_letters WHERE id = ?")?;
        for id in &checkpoint.replayed_dead {
            forget.execute([id])?;
        }
        Self::delete_rows(tx, table, &checkpoint.retracted)?;
        let mut forget = tx.prepare_cached(
            "DELETE FROM weir_window_state WHERE pipeline = ? AND window_start = ? AND window_end = ? AND key = ?",
        )?;
        for (window, key) in &checkpoint.retracted {
            forget.execute(params![pipeline, window.start, window.end, super::key_json(key)])?;
        }
        Self::upsert(tx, table, &checkpoint.rows, &now, false)?;
        if let Some(shadow) = &checkpoint.shadow {
            if shadow.fresh {
                for sql in plan_on(tx, &shadow.table)? {
                    tx.execute_batch(&sql).with_context(|| format!("creating the shadow table: {sql}"))?;
                }
                tx.execute(&format!("DELETE FROM {}", quote(&shadow.table.name)), [])?;
            }
            Self::upsert(tx, &shadow.table, &shadow.rows, &now, false)?;
        }
        let mut state = tx.prepare_cached(
            "INSERT INTO weir_window_state (pipeline, window_start, window_end, key, source_partition, state, revision, is_final) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (pipeline, window_start, window_end, key, source_partition) DO UPDATE SET \
             state = excluded.state, revision = excluded.revision, is_final = excluded.is_final",
        )?;
        for s in &checkpoint.states {
            state.execute(params![
                pipeline,
                s.window.start,
                s.window.end,
                super::key_json(&s.key),
                s.partition,
                s.state,
                s.revision,
                s.is_final
            ])?;
        }
        let mut dead = tx.prepare_cached(
            "INSERT OR IGNORE INTO weir_dead_letters (pipeline, kind, reason, plugin, digest, source_partition, source_offset, raw, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for d in &checkpoint.dead_letters {
            dead.execute(params![
                pipeline,
                d.kind.name(),
                super::storable(&d.reason),
                d.plugin,
                d.digest,
                d.partition,
                d.offset,
                d.raw,
                now
            ])?;
        }
        let mut late = tx.prepare_cached(
            "INSERT OR IGNORE INTO weir_late_events (pipeline, source_partition, source_offset, event_time, window_start, window_end, raw, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for l in &checkpoint.late_events {
            late.execute(params![
                pipeline,
                l.partition,
                l.offset,
                iso(l.event_ms),
                iso(l.window.start),
                iso(l.window.end),
                l.raw,
                now
            ])?;
        }
        let mut partition = tx.prepare_cached(
            "INSERT INTO weir_checkpoints (pipeline, source_partition, next_offset, max_event_ms, last_active_ms, watermark, plugins, updated_at, source) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pipeline, source_partition) DO UPDATE SET next_offset = excluded.next_offset, source = excluded.source, \
             max_event_ms = excluded.max_event_ms, last_active_ms = excluded.last_active_ms, watermark = excluded.watermark, \
             plugins = excluded.plugins, updated_at = excluded.updated_at",
        )?;
        let mut component =
            tx.prepare_cached("INSERT OR IGNORE INTO weir_components (digest, name, bytes) VALUES (?, ?, ?)")?;
        let mut deployment = tx.prepare_cached(
            "INSERT INTO weir_deployments (pipeline, stage, plugin, digest, how, state_version, configured_digest, from_offsets, deployed_ms, reason) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for d in &checkpoint.deployments {
            component.execute(params![d.digest, d.plugin, d.bytes.as_slice()])?;
            deployment.execute(params![
                pipeline,
                d.stage,
                d.plugin,
                d.digest,
                d.how,
                d.state_version,
                d.configured_digest,
                d.offsets_json(),
                d.at_ms,
                d.reason
            ])?;
        }
        tx.prepare_cached(
            "INSERT INTO weir_checkpoint_log (pipeline, plugins, offsets, committed_at, lookups) VALUES (?, ?, ?, ?, NULLIF(?, ''))",
        )?
        .execute(params![pipeline, checkpoint.plugins, serde_json::to_string(&checkpoint.offsets)?, now, checkpoint.lookups])?;
        let mut store = tx.prepare_cached(
            "INSERT INTO weir_lookups (pipeline, name, version, rows, content, loaded_at) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )?;
        for v in &checkpoint.lookup_versions {
            store.execute(params![pipeline, v.name, v.version, v.rows, v.content.as_str(), now])?;
        }
        let mut label = tx.prepare_cached(
            "INSERT INTO weir_partitions (pipeline, source_partition, label) VALUES (?, ?, ?) \
             ON CONFLICT (pipeline, source_partition) DO UPDATE SET label = excluded.label",
        )?;
        for (p, name) in &checkpoint.labels {
            label.execute(params![pipeline, p, name])?;
        }
        for (p, offset, clock) in checkpoint.partitions() {
            partition.execute(params![
                pipeline,
                p,
                offset,
                clock.and_then(|c| c.max_event_ms),
                clock.map(|c| c.last_active_ms),
                checkpoint.watermark,
                checkpoint.plugins,
                now,
                checkpoint.source
            ])?;
        }
        Ok(())
    }
}
