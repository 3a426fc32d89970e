//! One checkpoint's statements in PostgreSQL, inside the transaction `commit_with` opens:
//! the table's migration at a switch, partition labels, replayed lanes, retracted
//! sessions, the rows, the shadow's rows, window states, dead letters, late events, lookup
//! versions, deployments, and the offsets with their log row.

use std::time::SystemTime;

use anyhow::{Context, Result};

use super::postgres::{existing, time, PostgresSink, DIALECT};
use super::schema::{self, quote};
use super::{Checkpoint, TableSchema};

impl PostgresSink {
    pub(super) async fn write(
        tx: &tokio_postgres::Transaction<'_>,
        pipeline: &str,
        table: &TableSchema,
        checkpoint: &Checkpoint,
    ) -> Result<()> {
        let now = SystemTime::now();
        match &checkpoint.table {
            Some(logical) if checkpoint.new_table_version => {
                super::postgres_versions::switch(tx, &logical.name, table).await?;
            }
            Some(_) => {
                let existing = existing(tx, &quote(&table.name)).await?;
                for sql in schema::plan(table, &existing, &DIALECT)? {
                    tx.batch_execute(&sql).await.with_context(|| format!("migrating table {}: {sql}", table.name))?;
                }
            }
            None => {}
        }
        if !checkpoint.labels.is_empty() {
            let (partitions, labels): (Vec<i32>, Vec<String>) = checkpoint.labels.iter().cloned().unzip();
            tx.execute(
                "INSERT INTO weir_partitions (pipeline, source_partition, label) SELECT $1, * FROM unnest($2::integer[], $3::text[]) \
                 ON CONFLICT (pipeline, source_partition) DO UPDATE SET label = EXCLUDED.label",
                &[&pipeline, &partitions, &labels],
            )
            .await
            .context("recording partition labels")?;
        }
        // Replayed records leave their lane first; one that fails again is written back below.
        if !checkpoint.replayed_late.is_empty() {
            tx.execute("DELETE FROM weir_late_events WHERE id = ANY($1)", &[&checkpoint.replayed_late])
                .await
                .context("removing replayed late events")?;
        }
        if !checkpoint.replayed_dead.is_empty() {
            tx.execute("DELETE FROM weir_dead_letters WHERE id = ANY($1)", &[&checkpoint.replayed_dead])
                .await
                .context("removing replayed dead letters")?;
        }
        if !checkpoint.retracted.is_empty() {
            let r = &checkpoint.retracted;
            Self::delete_rows(tx, table, r).await?;
            let starts: Vec<i64> = r.iter().map(|(w, _)| w.start).collect();
            let ends: Vec<i64> = r.iter().map(|(w, _)| w.end).collect();
            let keys: Vec<String> = r.iter().map(|(_, k)| super::key_json(k)).collect();
            tx.execute(
                "DELETE FROM weir_window_state WHERE pipeline = $1 AND (window_start, window_end, key) IN \
                 (SELECT * FROM unnest($2::bigint[], $3::bigint[], $4::text[]))",
                &[&pipeline, &starts, &ends, &keys],
            )
            .await
            .context("forgetting merged sessions' state")?;
        }
        Self::upsert(tx, table, &checkpoint.rows, now, false).await?;
        if let Some(shadow) = &checkpoint.shadow {
            if shadow.fresh {
                let existing = existing(tx, &quote(&shadow.table.name)).await?;
                for sql in schema::plan(&shadow.table, &existing, &DIALECT)? {
                    tx.batch_execute(&sql).await.with_context(|| format!("creating the shadow table: {sql}"))?;
                }
                tx.execute(&format!("DELETE FROM {}", quote(&shadow.table.name)), &[]).await?;
            }
            Self::upsert(tx, &shadow.table, &shadow.rows, now, false).await?;
        }
        if !checkpoint.states.is_empty() {
            let starts: Vec<i64> = checkpoint.states.iter().map(|s| s.window.start).collect();
            let ends: Vec<i64> = checkpoint.states.iter().map(|s| s.window.end).collect();
            let keys: Vec<String> = checkpoint.states.iter().map(|s| super::key_json(&s.key)).collect();
            let partitions: Vec<i32> = checkpoint.states.iter().map(|s| s.partition).collect();
            let states: Vec<&[u8]> = checkpoint.states.iter().map(|s| s.state.as_slice()).collect();
            let revisions: Vec<i64> = checkpoint.states.iter().map(|s| s.revision).collect();
            let finals: Vec<bool> = checkpoint.states.iter().map(|s| s.is_final).collect();
            tx.execute(
                "INSERT INTO weir_window_state (pipeline, window_start, window_end, key, source_partition, state, revision, is_final) \
                 SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::integer[], $6::bytea[], $7::bigint[], $8::boolean[]) \
                 ON CONFLICT (pipeline, window_start, window_end, key, source_partition) DO UPDATE SET \
                 state = EXCLUDED.state, revision = EXCLUDED.revision, is_final = EXCLUDED.is_final",
                &[&pipeline, &starts, &ends, &keys, &partitions, &states, &revisions, &finals],
            )
            .await
            .context("saving window state")?;
        }
        if !checkpoint.dead_letters.is_empty() {
            let d = &checkpoint.dead_letters;
            let kinds: Vec<&str> = d.iter().map(|x| x.kind.name()).collect();
            let reasons: Vec<std::borrow::Cow<str>> = d.iter().map(|x| super::storable(&x.reason)).collect();
            let plugins: Vec<&str> = d.iter().map(|x| x.plugin.as_str()).collect();
            let digests: Vec<&str> = d.iter().map(|x| x.digest.as_str()).collect();
            let partitions: Vec<i32> = d.iter().map(|x| x.partition).collect();
            let offsets: Vec<i64> = d.iter().map(|x| x.offset).collect();
            let raws: Vec<&[u8]> = d.iter().map(|x| x.raw.as_slice()).collect();
            tx.execute(
                "INSERT INTO weir_dead_letters (pipeline, created_at, kind, reason, plugin, digest, source_partition, source_offset, raw) \
                 SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::integer[], $8::bigint[], $9::bytea[]) \
                 ON CONFLICT DO NOTHING",
                &[&pipeline, &now, &kinds, &reasons, &plugins, &digests, &partitions, &offsets, &raws],
            )
            .await
            .context("writing dead letters")?;
        }
        if !checkpoint.late_events.is_empty() {
            let l = &checkpoint.late_events;
            let partitions: Vec<i32> = l.iter().map(|x| x.partition).collect();
            let offsets: Vec<i64> = l.iter().map(|x| x.offset).collect();
            let times: Vec<SystemTime> = l.iter().map(|x| time(x.event_ms)).collect();
            let starts: Vec<SystemTime> = l.iter().map(|x| time(x.window.start)).collect();
            let ends: Vec<SystemTime> = l.iter().map(|x| time(x.window.end)).collect();
            let raws: Vec<&[u8]> = l.iter().map(|x| x.raw.as_slice()).collect();
            tx.execute(
                "INSERT INTO weir_late_events (pipeline, created_at, source_partition, source_offset, event_time, window_start, window_end, raw) \
                 SELECT $1, $2, * FROM unnest($3::integer[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], $7::timestamptz[], $8::bytea[]) \
                 ON CONFLICT DO NOTHING",
                &[&pipeline, &now, &partitions, &offsets, &times, &starts, &ends, &raws],
            )
            .await
            .context("writing late events")?;
        }
        for v in &checkpoint.lookup_versions {
            tx.execute(
                "INSERT INTO weir_lookups (pipeline, name, version, rows, content, loaded_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT DO NOTHING",
                &[&pipeline, &v.name, &v.version, &v.rows, &*v.content, &now],
            )
            .await
            .context("storing a lookup table's version")?;
        }
        for d in &checkpoint.deployments {
            let state_version = d.state_version.map(i64::from);
            tx.execute(
                "WITH component AS (INSERT INTO weir_components (digest, name, bytes) VALUES ($4, $3, $10) ON CONFLICT DO NOTHING) \
                 INSERT INTO weir_deployments (pipeline, stage, plugin, digest, how, state_version, configured_digest, from_offsets, deployed_ms, reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11)",
                &[
                    &pipeline,
                    &d.stage,
                    &d.plugin,
                    &d.digest,
                    &d.how,
                    &state_version,
                    &d.configured_digest,
                    &d.offsets_json(),
                    &d.at_ms,
                    d.bytes.as_ref(),
                    &d.reason,
                ],
            )
            .await
            .context("recording a deployment")?;
        }
        let parts: Vec<(i32, i64, Option<crate::window::PartitionClock>)> = checkpoint.partitions().collect();
        if !parts.is_empty() {
            let partitions: Vec<i32> = parts.iter().map(|p| p.0).collect();
            let offsets: Vec<i64> = parts.iter().map(|p| p.1).collect();
            let max_events: Vec<Option<i64>> = parts.iter().map(|p| p.2.and_then(|c| c.max_event_ms)).collect();
            let actives: Vec<Option<i64>> = parts.iter().map(|p| p.2.map(|c| c.last_active_ms)).collect();
            // The log row rides on the same statement: one round trip per checkpoint.
            tx.execute(
                "WITH log AS (INSERT INTO weir_checkpoint_log (pipeline, plugins, offsets, committed_at, lookups) \
                 VALUES ($1, $3, $10, $4, NULLIF($11, ''))) \
                 INSERT INTO weir_checkpoints (pipeline, watermark, plugins, updated_at, source, source_partition, next_offset, max_event_ms, last_active_ms) \
                 SELECT $1, $2, $3, $4, $9, * FROM unnest($5::integer[], $6::bigint[], $7::bigint[], $8::bigint[]) \
                 ON CONFLICT (pipeline, source_partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, source = EXCLUDED.source, \
                 max_event_ms = EXCLUDED.max_event_ms, last_active_ms = EXCLUDED.last_active_ms, watermark = EXCLUDED.watermark, \
                 plugins = EXCLUDED.plugins, updated_at = EXCLUDED.updated_at",
                &[
                    &pipeline,
                    &checkpoint.watermark,
                    &checkpoint.plugins,
                    &now,
                    &partitions,
                    &offsets,
                    &max_events,
                    &actives,
                    &checkpoint.source,
                    &serde_json::to_string(&checkpoint.offsets)?,
                    &checkpoint.lookups,
                ],
            )
            .await
            .context("storing offsets")?;
        }
        Ok(())
    }
}
