//! The quality tables in PostgreSQL (see `quality.rs`): a checkpoint's counts and the
//! output's recount inside its transaction, and the reads and writes of scores, rules and
//! anomalies outside one.

use std::time::SystemTime;

use anyhow::{Context, Result};
use tokio_postgres::types::ToSql;

use super::postgres::{time, PostgresSink};
use super::quality::{count_columns, counts_of, Anomaly, QualityStore, QualitySums, SlaMinute, SlaRecord, NEWEST};
use super::schema::quote;
use super::Checkpoint;

/// Milliseconds since the epoch of a timestamptz expression.
fn ms(expr: &str) -> String {
    format!("(extract(epoch from {expr}) * 1000)::bigint")
}

impl PostgresSink {
    /// Adds the checkpoint's counts, and recounts the output rows of the windows it touched.
    pub(super) async fn write_quality(
        tx: &tokio_postgres::Transaction<'_>,
        pipeline: &str,
        table: &str,
        checkpoint: &Checkpoint,
        now: SystemTime,
    ) -> Result<()> {
        let rows = &checkpoint.quality;
        if !rows.is_empty() {
            let columns = count_columns();
            let starts: Vec<SystemTime> = rows.iter().map(|r| time(r.start)).collect();
            let ends: Vec<SystemTime> = rows.iter().map(|r| time(r.end)).collect();
            let partitions: Vec<i32> = rows.iter().map(|r| r.partition).collect();
            let by_row: Vec<Vec<i64>> = rows.iter().map(counts_of).collect();
            let counts: Vec<Vec<i64>> = (0..columns.len()).map(|c| by_row.iter().map(|r| r[c]).collect()).collect();
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&pipeline, &now, &starts, &ends, &partitions];
            params.extend(counts.iter().map(|c| c as &(dyn ToSql + Sync)));
            let arrays: Vec<String> = (0..columns.len()).map(|i| format!("${}::bigint[]", i + 6)).collect();
            let adds: Vec<String> = columns.iter().map(|c| format!("{c} = weir_quality.{c} + EXCLUDED.{c}")).collect();
            let sql = format!(
                "INSERT INTO weir_quality (pipeline, updated_at, window_start, window_end, source_partition, {}) \
                 SELECT $1, $2, * FROM unnest($3::timestamptz[], $4::timestamptz[], $5::integer[], {}) \
                 ON CONFLICT (pipeline, window_start, source_partition) DO UPDATE SET {}, updated_at = EXCLUDED.updated_at",
                columns.join(", "),
                arrays.join(", "),
                adds.join(", ")
            );
            tx.execute(&sql, &params).await.context("adding the checkpoint's quality counts")?;
        }
        if let Some(check) = checkpoint.output_check.as_ref().filter(|c| !c.windows.is_empty()) {
            if !checkpoint.partials {
                // Hosts of a keyed group write rows of one window at once: each recount
                // must see the others' committed rows (partials hold their own lock).
                tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("weir-quality:{pipeline}")])
                    .await
                    .context("waiting for the group's other checkpoints")?;
            }
            let starts: Vec<SystemTime> = check.windows.iter().map(|w| time(w.0)).collect();
            let sql = format!(
                "INSERT INTO weir_quality (pipeline, updated_at, window_start, window_end, source_partition, rows_out, rows_valid) \
                 SELECT $1, $2, window_start, max(window_end), -1, count(*), count(*) FILTER (WHERE {}) \
                 FROM {} WHERE window_start = ANY($3) GROUP BY window_start \
                 ON CONFLICT (pipeline, window_start, source_partition) DO UPDATE SET rows_out = EXCLUDED.rows_out, \
                 rows_valid = EXCLUDED.rows_valid, window_end = EXCLUDED.window_end, updated_at = EXCLUDED.updated_at",
                check.valid_sql(),
                quote(table)
            );
            tx.execute(&sql, &[&pipeline, &now, &starts]).await.context("recounting the output's valid rows")?;
        }
        Ok(())
    }
}

impl QualityStore for PostgresSink {
    fn quality_sums(&mut self, pipeline: &str, over_ms: i64) -> Result<QualitySums> {
        let (runtime, client) = self.session()?;
        runtime.block_on(async {
            let newest: Option<i64> = client
                .query_one(
                    &format!("SELECT {} FROM weir_quality WHERE pipeline = $1 AND {NEWEST}", ms("max(window_end)")),
                    &[&pipeline],
                )
                .await?
                .get(0);
            let max_event_ms: Option<i64> = client
                .query_one("SELECT max(max_event_ms) FROM weir_checkpoints WHERE pipeline = $1", &[&pipeline])
                .await?
                .get(0);
            let mut sums = QualitySums { newest_ms: newest, max_event_ms, ..Default::default() };
            let Some(newest) = newest else { return Ok(sums) };
            let columns: Vec<String> = count_columns()
                .iter()
                .chain(&["rows_out".into(), "rows_valid".into()])
                .map(|c| format!("coalesce(sum({c}), 0)::bigint"))
                .collect();
            let row = client
                .query_one(
                    &format!(
                        "SELECT {} FROM weir_quality WHERE pipeline = $1 AND window_start >= $2",
                        columns.join(", ")
                    ),
                    &[&pipeline, &time(newest - over_ms)],
                )
                .await?;
            let v: Vec<i64> = (0..columns.len()).map(|i| row.get(i)).collect();
            sums.counts = super::quality::counts_from(&v);
            (sums.rows, sums.valid) = (v[v.len() - 2], v[v.len() - 1]);
            Ok(sums)
        })
    }

    fn record_minutes(&mut self, pipeline: &str, minutes: &[SlaMinute]) -> Result<()> {
        let (runtime, client) = self.session()?;
        let rules: Vec<&str> = minutes.iter().map(|m| m.rule.as_str()).collect();
        let at: Vec<i64> = minutes.iter().map(|m| m.minute).collect();
        let ok: Vec<bool> = minutes.iter().map(|m| m.ok).collect();
        let values: Vec<Option<f64>> = minutes.iter().map(|m| m.value).collect();
        runtime.block_on(client.execute(
            "INSERT INTO weir_sla (pipeline, rule, minute, ok, value) \
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::boolean[], $5::float8[]) \
             ON CONFLICT (pipeline, rule, minute) DO UPDATE SET ok = weir_sla.ok AND EXCLUDED.ok, value = EXCLUDED.value",
            &[&pipeline, &rules, &at, &ok, &values],
        ))?;
        Ok(())
    }

    fn sla_record(&mut self, pipeline: &str, rule: &str, since_ms: i64) -> Result<SlaRecord> {
        let (runtime, client) = self.session()?;
        let row = runtime.block_on(client.query_one(
            "SELECT count(*) FILTER (WHERE ok), count(*), min(minute) FROM weir_sla \
             WHERE pipeline = $1 AND rule = $2 AND minute >= $3",
            &[&pipeline, &rule, &since_ms],
        ))?;
        Ok(SlaRecord { ok: row.get(0), recorded: row.get(1), first_ms: row.get(2) })
    }

    fn store_anomalies(&mut self, pipeline: &str, anomalies: &[Anomaly]) -> Result<()> {
        let (runtime, client) = self.session()?;
        let a = anomalies;
        let starts: Vec<SystemTime> = a.iter().map(|x| time(x.start)).collect();
        let ends: Vec<SystemTime> = a.iter().map(|x| time(x.end)).collect();
        let keys: Vec<&str> = a.iter().map(|x| x.key.as_str()).collect();
        let columns: Vec<&str> = a.iter().map(|x| x.column.as_str()).collect();
        let f = |get: fn(&Anomaly) -> f64| a.iter().map(get).collect::<Vec<f64>>();
        let (values, baselines, spreads, scores) = (f(|x| x.value), f(|x| x.baseline), f(|x| x.spread), f(|x| x.score));
        let history: Vec<i64> = a.iter().map(|x| x.history).collect();
        runtime.block_on(client.execute(
            "INSERT INTO weir_anomalies (pipeline, flagged_at, window_start, window_end, key, column_name, value, baseline, spread, score, history) \
             SELECT $1, now(), * FROM unnest($2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[], $6::float8[], \
             $7::float8[], $8::float8[], $9::float8[], $10::bigint[]) ON CONFLICT DO NOTHING",
            &[&pipeline, &starts, &ends, &keys, &columns, &values, &baselines, &spreads, &scores, &history],
        ))
        .context("storing anomalies")?;
        Ok(())
    }

    fn anomalies(&mut self, pipeline: &str, limit: i64) -> Result<Vec<Anomaly>> {
        let (runtime, client) = self.session()?;
        let rows = runtime.block_on(client.query(
            &format!(
                "SELECT {}, {}, key, column_name, value, baseline, spread, score, history FROM weir_anomalies \
                 WHERE pipeline = $1 ORDER BY window_start DESC, key, column_name LIMIT $2",
                ms("window_start"),
                ms("window_end")
            ),
            &[&pipeline, &limit],
        ))?;
        Ok(rows
            .iter()
            .map(|r| Anomaly {
                start: r.get(0),
                end: r.get(1),
                key: r.get(2),
                column: r.get(3),
                value: r.get(4),
                baseline: r.get(5),
                spread: r.get(6),
                score: r.get(7),
                history: r.get(8),
            })
            .collect())
    }
}
