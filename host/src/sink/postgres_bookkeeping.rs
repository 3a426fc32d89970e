//! The PostgreSQL sink's bookkeeping outside a checkpoint: the dead letters and late
//! events a replay or `weir dead-letters` reads and purges, the leases of the processes
//! that work on a pipeline, and what each partition stands for.

use anyhow::{Context, Result};

use super::postgres::PostgresSink;
use super::{expire_sql, keep_param, Bookkeeping, Kept, Lane, Lease, Stored, HOST_COLUMNS, HOST_UPDATES};
use crate::window::Window;

impl Bookkeeping for PostgresSink {
    fn renew(&mut self, pipeline: &str, lease: &Lease) -> Result<()> {
        let (runtime, client) = self.session()?;
        let lag = lease.lag.map(|l| l as i64);
        runtime.block_on(client.execute(
            &format!(
                "INSERT INTO weir_hosts ({HOST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (pipeline, holder) DO UPDATE SET {HOST_UPDATES}"
            ),
            &[
                &pipeline,
                &lease.holder,
                &lease.role,
                &lease.admin,
                &lease.heartbeat_ms,
                &lease.version,
                &lease.group,
                &lease.plugins,
                &super::partitions_text(&lease.partitions),
                &(lease.records as i64),
                &lag,
                &lease.events_per_s,
                &lease.proposal,
                &lease.verdict,
            ],
        ))?;
        Ok(())
    }

    fn leases(&mut self, pipeline: &str) -> Result<Vec<Lease>> {
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(
            &format!("SELECT {HOST_COLUMNS} FROM weir_hosts WHERE pipeline = $1 ORDER BY holder"),
            &[&pipeline],
        ))?;
        Ok(rows
            .iter()
            .map(|r| Lease {
                holder: r.get(1),
                role: r.get(2),
                admin: r.get(3),
                heartbeat_ms: r.get(4),
                version: r.get(5),
                group: r.get(6),
                plugins: r.get(7),
                partitions: super::partitions_from_text(r.get(8)),
                records: r.get::<_, i64>(9) as u64,
                lag: r.get::<_, Option<i64>>(10).map(|l| l as u64),
                events_per_s: r.get(11),
                proposal: r.get(12),
                verdict: r.get(13),
            })
            .collect())
    }

    fn purge(&mut self, pipeline: &str, lane: Lane, ids: &[i64]) -> Result<u64> {
        let table = match lane {
            Lane::Late => "weir_late_events",
            Lane::DeadLetters => "weir_dead_letters",
        };
        let (runtime, client) = self.session()?;
        let sql = format!("DELETE FROM {table} WHERE pipeline = $1 AND id = ANY($2)");
        Ok(runtime.block_on(client.execute(&sql, &[&pipeline, &ids]))?)
    }

    fn labels(&mut self, pipeline: &str) -> Result<Vec<(i32, String)>> {
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(
            client.query("SELECT source_partition, label FROM weir_partitions WHERE pipeline = $1", &[&pipeline]),
        )?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn give_up(&mut self, pipeline: &str, holder: &str) -> Result<()> {
        let (runtime, client) = self.session()?;
        runtime.block_on(
            client.execute("DELETE FROM weir_hosts WHERE pipeline = $1 AND holder = $2", &[&pipeline, &holder]),
        )?;
        Ok(())
    }

    fn store_component(&mut self, digest: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let (runtime, client) = self.session()?;
        runtime.block_on(client.execute(
            "INSERT INTO weir_components (digest, name, bytes) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&digest, &name, &bytes],
        ))?;
        Ok(())
    }

    fn component(&mut self, digest: &str) -> Result<Option<Vec<u8>>> {
        let (runtime, client) = self.session()?;
        let row =
            runtime.block_on(client.query_opt("SELECT bytes FROM weir_components WHERE digest = $1", &[&digest]))?;
        Ok(row.map(|r| r.get(0)))
    }

    fn checkpoint_log(&mut self, pipeline: &str) -> Result<Vec<super::LogRow>> {
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(
            "SELECT plugins, offsets, to_char(committed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
             FROM weir_checkpoint_log WHERE pipeline = $1 ORDER BY id",
            &[&pipeline],
        ))?;
        rows.iter()
            .map(|r| {
                let offsets: String = r.get(1);
                Ok(super::LogRow {
                    plugins: r.get(0),
                    offsets: serde_json::from_str(&offsets)
                        .with_context(|| format!("checkpoint log offsets {offsets}"))?,
                    committed_at: r.get(2),
                })
            })
            .collect()
    }

    fn lookups_as_of(&mut self, pipeline: &str, at_ms: i64) -> Result<Vec<(String, String, String)>> {
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(
            "SELECT l.name, l.version, l.content FROM weir_lookups l, jsonb_each_text(( \
                 SELECT lookups::jsonb FROM weir_checkpoint_log WHERE pipeline = $1 AND lookups IS NOT NULL \
                 AND committed_at <= to_timestamp($2::bigint / 1000.0) ORDER BY id DESC LIMIT 1)) AS used(name, version) \
             WHERE l.pipeline = $1 AND l.name = used.name AND l.version = used.version ORDER BY l.name",
            &[&pipeline, &at_ms],
        ))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    fn stored(&mut self, pipeline: &str, lane: Lane) -> Result<Vec<Stored>> {
        let sql = match lane {
            Lane::Late => {
                "SELECT id, source_partition, source_offset, raw, '', '', \
                (extract(epoch FROM window_start) * 1000)::bigint, (extract(epoch FROM window_end) * 1000)::bigint, '', \
                (extract(epoch FROM created_at) * 1000)::bigint, (extract(epoch FROM event_time) * 1000)::bigint \
                FROM weir_late_events WHERE pipeline = $1 ORDER BY id"
            }
            Lane::DeadLetters => {
                "SELECT id, source_partition, source_offset, raw, kind, reason, NULL::bigint, NULL::bigint, plugin, \
                (extract(epoch FROM created_at) * 1000)::bigint, NULL::bigint \
                FROM weir_dead_letters WHERE pipeline = $1 ORDER BY id"
            }
        };
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(sql, &[&pipeline]))?;
        Ok(rows
            .iter()
            .map(|r| Stored {
                id: r.get(0),
                partition: r.get(1),
                offset: r.get(2),
                raw: r.get(3),
                kind: r.get(4),
                reason: r.get(5),
                window: r
                    .get::<_, Option<i64>>(6)
                    .zip(r.get::<_, Option<i64>>(7))
                    .map(|(start, end)| Window { start, end }),
                plugin: r.get(8),
                stored_ms: r.get(9),
                event_ms: r.get(10),
            })
            .collect())
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
        let before = std::time::UNIX_EPOCH + std::time::Duration::from_millis(before.unwrap_or(0).max(0) as u64);
        let sql = expire_sql(table, stamp, '$', keep.is_some());
        let (runtime, client) = self.session()?;
        Ok(runtime.block_on(client.execute(&sql, &[&pipeline, &before, &keep_param(keep), &(limit as i64)]))?)
    }
}
