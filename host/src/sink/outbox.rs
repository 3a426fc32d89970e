//! `weir_outbox` in PostgreSQL and SQLite: each checkpoint's changed rows, numbered in
//! commit order, kept until every output holds them (see `output.rs`).
//!
//! The number comes from a counter row that each checkpoint's transaction raises: the row
//! stays locked until that transaction ends, so of two hosts' checkpoints the one that
//! commits first has the lower number, and a delivery never sees a number before an
//! earlier one is visible. A sequence or `max(seq) + 1` would not give that.

use anyhow::{Context, Result};
use rusqlite::params;

use super::output::{deliver_pending, encode, Output};
use super::{PostgresSink, SqliteSink, TableSchema, WindowRow};

/// The tables, in PostgreSQL (`bigint`) or SQLite (`INTEGER`).
pub(super) fn tables(int: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS weir_outbox (pipeline TEXT NOT NULL, seq {int} NOT NULL, rows TEXT NOT NULL, \
         PRIMARY KEY (pipeline, seq));
         CREATE TABLE IF NOT EXISTS weir_outbox_seq (pipeline TEXT PRIMARY KEY, seq {int} NOT NULL);"
    )
}

const NEXT: &str = "INSERT INTO weir_outbox_seq (pipeline, seq) VALUES ($1, 1) \
     ON CONFLICT (pipeline) DO UPDATE SET seq = weir_outbox_seq.seq + 1 RETURNING seq";

/// Adds a checkpoint's `rows` to the outbox, in its transaction.
pub(super) async fn pg_append(tx: &tokio_postgres::Transaction<'_>, pipeline: &str, rows: &[WindowRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let seq: i64 = tx.query_one(NEXT, &[&pipeline]).await.context("numbering the outbox entry")?.get(0);
    tx.execute("INSERT INTO weir_outbox (pipeline, seq, rows) VALUES ($1, $2, $3)", &[&pipeline, &seq, &encode(rows)])
        .await
        .context("adding the checkpoint's rows to the outbox")?;
    Ok(())
}

/// Adds a checkpoint's `rows` to the outbox, in its transaction.
pub(super) fn sqlite_append(tx: &rusqlite::Transaction, pipeline: &str, rows: &[WindowRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let seq: i64 = tx.query_row(&NEXT.replace('$', "?"), params![pipeline], |r| r.get(0))?;
    tx.execute("INSERT INTO weir_outbox (pipeline, seq, rows) VALUES (?, ?, ?)", params![pipeline, seq, encode(rows)])
        .context("adding the checkpoint's rows to the outbox")?;
    Ok(())
}

impl PostgresSink {
    /// Delivers the outbox to `output` under a session lock of the pipeline's: the output is
    /// written between statements, outside any transaction of the sink's.
    pub(super) fn deliver_outbox(&mut self, pipeline: &str, outputs: &mut [Box<dyn Output>]) -> Result<u64> {
        let table = self.table()?;
        let lock = format!("weir-outbox:{pipeline}");
        let (runtime, client) = self.session()?;
        runtime
            .block_on(client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&lock]))
            .context("waiting for the group's other deliveries")?;
        let outcome = deliver_pending(pipeline, outputs, &table, |after, limit| {
            let rows = runtime.block_on(client.query(
                "SELECT seq, rows FROM weir_outbox WHERE pipeline = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&pipeline, &after, &limit],
            ))?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
        .and_then(|(written, mark)| {
            runtime
                .block_on(
                    client.execute("DELETE FROM weir_outbox WHERE pipeline = $1 AND seq <= $2", &[&pipeline, &mark]),
                )
                .context("forgetting delivered outbox entries")?;
            Ok(written)
        });
        let unlocked = runtime.block_on(client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&lock]));
        let written = outcome?;
        unlocked?;
        Ok(written)
    }
}

impl SqliteSink {
    /// Delivers the outbox to `output` inside a write transaction, which keeps any other
    /// process on the same file from delivering meanwhile.
    pub(super) fn deliver_outbox(&mut self, pipeline: &str, outputs: &mut [Box<dyn Output>]) -> Result<u64> {
        let table: TableSchema = self.table()?.clone();
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let (written, mark) = deliver_pending(pipeline, outputs, &table, |after, limit| {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, rows FROM weir_outbox WHERE pipeline = ? AND seq > ? ORDER BY seq LIMIT ?",
            )?;
            let rows = stmt.query_map(params![pipeline, after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })?;
        tx.execute("DELETE FROM weir_outbox WHERE pipeline = ? AND seq <= ?", params![pipeline, mark])
            .context("forgetting delivered outbox entries")?;
        tx.commit()?;
        Ok(written)
    }
}
