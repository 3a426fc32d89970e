//! The quality tables in SQLite (see `quality.rs`): a checkpoint's counts and the output's
//! recount inside its transaction, and the reads and writes of scores, rules and
//! anomalies outside one. Window bounds are ISO text, as in the output table.

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use super::quality::{count_columns, counts_from, counts_of, Anomaly, QualityStore, QualitySums, SlaMinute, SlaRecord};
use super::schema::quote;
use super::sqlite::{iso, SqliteSink};
use super::Checkpoint;

/// Milliseconds since the epoch of an ISO text expression.
fn ms(expr: &str) -> String {
    format!("CAST(round((julianday({expr}) - 2440587.5) * 86400000.0) AS INTEGER)")
}

impl SqliteSink {
    /// Adds the checkpoint's counts, and recounts the output rows of the windows it touched.
    pub(super) fn write_quality(
        conn: &Connection,
        pipeline: &str,
        table: &str,
        checkpoint: &Checkpoint,
        now: &str,
    ) -> Result<()> {
        let columns = count_columns();
        if !checkpoint.quality.is_empty() {
            let marks = vec!["?"; columns.len()].join(", ");
            let adds: Vec<String> = columns.iter().map(|c| format!("{c} = {c} + excluded.{c}")).collect();
            let mut add = conn.prepare_cached(&format!(
                "INSERT INTO weir_quality (pipeline, updated_at, window_start, window_end, source_partition, {}) \
                 VALUES (?, ?, ?, ?, ?, {marks}) \
                 ON CONFLICT (pipeline, window_start, source_partition) DO UPDATE SET {}, updated_at = excluded.updated_at",
                columns.join(", "),
                adds.join(", ")
            ))?;
            for row in &checkpoint.quality {
                let mut values: Vec<rusqlite::types::Value> = vec![
                    pipeline.to_string().into(),
                    now.to_string().into(),
                    iso(row.start).into(),
                    iso(row.end).into(),
                    i64::from(row.partition).into(),
                ];
                values.extend(counts_of(row).into_iter().map(rusqlite::types::Value::from));
                add.execute(rusqlite::params_from_iter(values)).context("adding the checkpoint's quality counts")?;
            }
        }
        if let Some(check) = checkpoint.output_check.as_ref() {
            let mut recount = conn.prepare_cached(&format!(
                "INSERT INTO weir_quality (pipeline, updated_at, window_start, window_end, source_partition, rows_out, rows_valid) \
                 SELECT ?, ?, window_start, max(window_end), -1, count(*), coalesce(sum(CASE WHEN {} THEN 1 ELSE 0 END), 0) \
                 FROM {} WHERE window_start = ? GROUP BY window_start \
                 ON CONFLICT (pipeline, window_start, source_partition) DO UPDATE SET rows_out = excluded.rows_out, \
                 rows_valid = excluded.rows_valid, window_end = excluded.window_end, updated_at = excluded.updated_at",
                check.valid_sql(),
                quote(table)
            ))?;
            for &(start, _) in &check.windows {
                recount.execute(params![pipeline, now, iso(start)]).context("recounting the output's valid rows")?;
            }
        }
        Ok(())
    }
}

impl QualityStore for SqliteSink {
    fn quality_sums(&mut self, pipeline: &str, over_ms: i64) -> Result<QualitySums> {
        let newest: Option<i64> = self.conn.query_row(
            &format!(
                "SELECT {} FROM weir_quality WHERE pipeline = ? AND {}",
                ms("max(window_end)"),
                super::quality::NEWEST
            ),
            [pipeline],
            |r| r.get(0),
        )?;
        let max_event_ms: Option<i64> = self.conn.query_row(
            "SELECT max(max_event_ms) FROM weir_checkpoints WHERE pipeline = ?",
            [pipeline],
            |r| r.get(0),
        )?;
        let mut sums = QualitySums { newest_ms: newest, max_event_ms, ..Default::default() };
        let Some(newest) = newest else { return Ok(sums) };
        let columns: Vec<String> = count_columns()
            .iter()
            .chain(&["rows_out".to_string(), "rows_valid".to_string()])
            .map(|c| format!("coalesce(sum({c}), 0)"))
            .collect();
        let v: Vec<i64> = self.conn.query_row(
            &format!("SELECT {} FROM weir_quality WHERE pipeline = ? AND window_start >= ?", columns.join(", ")),
            params![pipeline, iso(newest - over_ms)],
            |r| (0..columns.len()).map(|i| r.get(i)).collect(),
        )?;
        sums.counts = counts_from(&v);
        (sums.rows, sums.valid) = (v[v.len() - 2], v[v.len() - 1]);
        Ok(sums)
    }

    fn record_minutes(&mut self, pipeline: &str, minutes: &[SlaMinute]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO weir_sla (pipeline, rule, minute, ok, value) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (pipeline, rule, minute) DO UPDATE SET ok = ok AND excluded.ok, value = excluded.value",
            )?;
            for m in minutes {
                put.execute(params![pipeline, m.rule, m.minute, m.ok, m.value])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn sla_record(&mut self, pipeline: &str, rule: &str, since_ms: i64) -> Result<SlaRecord> {
        Ok(self.conn.query_row(
            "SELECT coalesce(sum(ok), 0), count(*), min(minute) FROM weir_sla WHERE pipeline = ? AND rule = ? AND minute >= ?",
            params![pipeline, rule, since_ms],
            |r| Ok(SlaRecord { ok: r.get(0)?, recorded: r.get(1)?, first_ms: r.get(2)? }),
        )?)
    }

    fn store_anomalies(&mut self, pipeline: &str, anomalies: &[Anomaly]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO weir_anomalies (pipeline, flagged_at, window_start, window_end, key, column_name, value, \
                 baseline, spread, score, history) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )?;
            let now = super::sqlite::now_iso();
            for a in anomalies {
                put.execute(params![
                    pipeline,
                    now,
                    iso(a.start),
                    iso(a.end),
                    a.key,
                    a.column,
                    a.value,
                    a.baseline,
                    a.spread,
                    a.score,
                    a.history
                ])
                .context("storing anomalies")?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn anomalies(&mut self, pipeline: &str, limit: i64) -> Result<Vec<Anomaly>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {}, {}, key, column_name, value, baseline, spread, score, history FROM weir_anomalies \
             WHERE pipeline = ? ORDER BY window_start DESC, key, column_name LIMIT ?",
            ms("window_start"),
            ms("window_end")
        ))?;
        let rows = stmt.query_map(params![pipeline, limit], |r| {
            Ok(Anomaly {
                start: r.get(0)?,
                end: r.get(1)?,
                key: r.get(2)?,
                column: r.get(3)?,
                value: r.get(4)?,
                baseline: r.get(5)?,
                spread: r.get(6)?,
                score: r.get(7)?,
                history: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
