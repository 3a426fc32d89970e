//! The SQLite sink's bookkeeping outside a checkpoint: the dead letters and late events a
//! replay or `weir dead-letters` reads and purges, the leases of the processes that work
//! on a pipeline, and what each partition stands for.

use anyhow::{Context, Result};
use rusqlite::params;

use super::sqlite::SqliteSink;
use super::{expire_sql, keep_param, Bookkeeping, Kept, Lane, Lease, Stored, HOST_COLUMNS, HOST_UPDATES};
use crate::window::Window;

impl Bookkeeping for SqliteSink {
    fn renew(&mut self, pipeline: &str, lease: &Lease) -> Result<()> {
        self.conn.execute(
            &format!(
                "INSERT INTO weir_hosts ({HOST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (pipeline, holder) DO UPDATE SET {HOST_UPDATES}"
            ),
            params![
                pipeline,
                lease.holder,
                lease.role,
                lease.admin,
                lease.heartbeat_ms,
                lease.version,
                lease.group,
                lease.plugins,
                super::partitions_text(&lease.partitions),
                lease.records as i64,
                lease.lag.map(|l| l as i64),
                lease.events_per_s,
                lease.proposal,
                lease.verdict
            ],
        )?;
        Ok(())
    }

    fn leases(&mut self, pipeline: &str) -> Result<Vec<Lease>> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {HOST_COLUMNS} FROM weir_hosts WHERE pipeline = ? ORDER BY holder"))?;
        let rows = stmt.query_map([pipeline], |r| {
            Ok(Lease {
                holder: r.get(1)?,
                role: r.get(2)?,
                admin: r.get(3)?,
                heartbeat_ms: r.get(4)?,
                version: r.get(5)?,
                group: r.get(6)?,
                plugins: r.get(7)?,
                partitions: super::partitions_from_text(&r.get::<_, String>(8)?),
                records: r.get::<_, i64>(9)? as u64,
                lag: r.get::<_, Option<i64>>(10)?.map(|l| l as u64),
                events_per_s: r.get(11)?,
                proposal: r.get(12)?,
                verdict: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn purge(&mut self, pipeline: &str, lane: Lane, ids: &[i64]) -> Result<u64> {
        let table = match lane {
            Lane::Late => "weir_late_events",
            Lane::DeadLetters => "weir_dead_letters",
        };
        let tx = self.conn.transaction()?;
        let mut removed = 0;
        {
            let mut delete = tx.prepare_cached(&format!("DELETE FROM {table} WHERE pipeline = ? AND id = ?"))?;
            for id in ids {
                removed += delete.execute(params![pipeline, id])? as u64;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    fn labels(&mut self, pipeline: &str) -> Result<Vec<(i32, String)>> {
        let mut stmt = self.conn.prepare("SELECT source_partition, label FROM weir_partitions WHERE pipeline = ?")?;
        let rows = stmt.query_map([pipeline], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn give_up(&mut self, pipeline: &str, holder: &str) -> Result<()> {
        self.conn.execute("DELETE FROM weir_hosts WHERE pipeline = ? AND holder = ?", params![pipeline, holder])?;
        Ok(())
    }

    fn store_component(&mut self, digest: &str, name: &str, bytes: &[u8]) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO weir_components (digest, name, bytes) VALUES (?, ?, ?)",
            params![digest, name, bytes],
        )?;
        Ok(())
    }

    fn component(&mut self, digest: &str) -> Result<Option<Vec<u8>>> {
        use rusqlite::OptionalExtension;
        let bytes = self
            .conn
            .query_row("SELECT bytes FROM weir_components WHERE digest = ?", [digest], |r| r.get(0))
            .optional()?;
        Ok(bytes)
    }

    fn checkpoint_log(&mut self, pipeline: &str) -> Result<Vec<super::LogRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT plugins, offsets, committed_at FROM weir_checkpoint_log WHERE pipeline = ? ORDER BY id")?;
        let rows = stmt.query_map([pipeline], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)))?;
        rows.map(|row| {
            let (plugins, offsets, committed_at) = row?;
            let offsets =
                serde_json::from_str(&offsets).with_context(|| format!("checkpoint log offsets {offsets}"))?;
            Ok(super::LogRow { plugins, offsets, committed_at })
        })
        .collect()
    }

    fn lookups_as_of(&mut self, pipeline: &str, at_ms: i64) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT l.name, l.version, l.content FROM weir_lookups l, json_each(( \
                 SELECT lookups FROM weir_checkpoint_log WHERE pipeline = ?1 AND lookups IS NOT NULL \
                 AND committed_at <= ?2 ORDER BY id DESC LIMIT 1)) AS used \
             WHERE l.pipeline = ?1 AND l.name = used.key AND l.version = used.value ORDER BY l.name",
        )?;
        let at = weir_sdk::time::format_iso8601(at_ms);
        let rows = stmt.query_map(rusqlite::params![pipeline, at], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn stored(&mut self, pipeline: &str, lane: Lane) -> Result<Vec<Stored>> {
        let sql = match lane {
            Lane::Late => "SELECT id, source_partition, source_offset, raw, '', '', window_start, window_end, '', created_at, event_time \
                FROM weir_late_events WHERE pipeline = ? ORDER BY id",
            Lane::DeadLetters => "SELECT id, source_partition, source_offset, raw, kind, reason, NULL, NULL, plugin, created_at, NULL \
                FROM weir_dead_letters WHERE pipeline = ? ORDER BY id",
        };
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map([pipeline], |r| {
            Ok(Stored {
                id: r.get(0)?,
                partition: r.get(1)?,
                offset: r.get(2)?,
                raw: r.get(3)?,
                kind: r.get(4)?,
                reason: r.get(5)?,
                window: stored_window(r.get(6)?, r.get(7)?),
                plugin: r.get(8)?,
                stored_ms: weir_sdk::time::parse_iso8601(r.get::<_, String>(9)?.as_bytes()).unwrap_or(0),
                event_ms: r.get::<_, Option<String>>(10)?.and_then(|t| weir_sdk::time::parse_iso8601(t.as_bytes())),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn expire(
        &mut self,
        pipeline: &str,
        lane: Kept,
        before: Option<i64>,
        keep: Option<u64>,
        limit: u64,
    ) -> Result<u64> {
        let (table, stamp) = lane.table();
        // Stamps are ISO 8601 text of one format, so they compare as text.
        let before = super::sqlite::iso(before.unwrap_or(0).max(0));
        let sql = expire_sql(table, stamp, '?', keep.is_some());
        Ok(self.conn.execute(&sql, params![pipeline, before, keep_param(keep), limit as i64])? as u64)
    }
}

/// A late event's window, stored as ISO 8601 text.
fn stored_window(start: Option<String>, end: Option<String>) -> Option<Window> {
    let parse = |s: Option<String>| weir_sdk::time::parse_iso8601(s?.as_bytes());
    Some(Window { start: parse(start)?, end: parse(end)? })
}
