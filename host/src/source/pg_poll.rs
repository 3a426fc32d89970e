//! PostgreSQL polling (`[source] kind = "postgres"`, `mode = "poll"`), for databases where
//! a replication slot is not allowed: `SELECT … WHERE (cursor, key) > (last cursor, last
//! key) ORDER BY cursor, key`, over and over.
//!
//! The position is the last row read: its cursor value (partition 0; microseconds since
//! the epoch for a timestamp column) and its key (partition 1). The key breaks ties, so
//! rows sharing a cursor value are neither skipped nor read twice. A transaction may
//! commit after a row with a later cursor value was read; rows are read only once their
//! cursor is `lag` old, so one that commits within `lag` of its cursor value is not
//! missed. An update that moves the cursor is read again, as a new event; a delete is not
//! seen at all.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio_postgres::Client;
use weir_sdk::RawBatch;

use super::cdc_setup::{self, ident, Table};
use super::pgoutput::{self, Op, Value};
use super::Source;

const CURSOR: i32 = 0;
const KEY: i32 = 1;

/// How the cursor column compares and converts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CursorKind {
    /// `timestamptz`: positions in microseconds since the epoch.
    Zoned,
    /// `timestamp`, taken as UTC.
    Plain,
    /// An integer column (a version or a sequence).
    Integer,
}

/// The source.
pub struct PollSource {
    runtime: tokio::runtime::Runtime,
    client: Client,
    table: Table,
    cursor_column: String,
    query: String,
    kind: CursorKind,
    /// The last row read: its cursor value and its key.
    cursor: i64,
    key: i64,
    interval: Duration,
    /// Caught up, or failed: not asked again before this.
    quiet_until: Option<Instant>,
    url: String,
    /// Why the database cannot be read now, and the wait after the next failure.
    trouble: Option<String>,
    backoff: Duration,
}

impl PollSource {
    /// Connects and finds the table, its key and the cursor column.
    pub fn open(url: &str, table: &str, cursor: &str, lag: Duration, interval: Duration) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let (client, table) = runtime.block_on(async {
            let client = cdc_setup::connect(url).await?;
            let table = cdc_setup::table(&client, table).await?;
            Ok::<_, anyhow::Error>((client, table))
        })?;
        let Some(key) = table.key.clone() else {
            bail!(
                "source.mode = \"poll\": table {} has no single-column integer primary key to order rows by",
                table.shown
            )
        };
        let column = table.columns.iter().find(|c| c.name == cursor);
        let kind = match column.map(|c| c.type_oid) {
            Some(1184) => CursorKind::Zoned,
            Some(1114) => CursorKind::Plain,
            Some(20 | 21 | 23) => CursorKind::Integer,
            Some(_) => bail!("source.cursor {cursor:?}: a timestamp, timestamptz or integer column is needed"),
            None => bail!("source.cursor {cursor:?}: table {} has no such column", table.shown),
        };
        // Qualified: the text columns of the select list take the columns' own names.
        let c = format!("weir_t.{}", ident(cursor));
        let (as_number, from_number, ripe) = match kind {
            CursorKind::Zoned => (
                format!("(extract(epoch FROM {c}) * 1000000)::int8"),
                "timestamptz 'epoch' + $1::int8 * interval '1 microsecond'".to_string(),
                format!("{c} <= now() - interval '{} milliseconds'", lag.as_millis()),
            ),
            CursorKind::Plain => (
                format!("(extract(epoch FROM {c}) * 1000000)::int8"),
                "timestamp 'epoch' + $1::int8 * interval '1 microsecond'".to_string(),
                format!("{c} <= (now() AT TIME ZONE 'UTC') - interval '{} milliseconds'", lag.as_millis()),
            ),
            CursorKind::Integer => (format!("{c}::int8"), "$1::int8".to_string(), "true".to_string()),
        };
        let texts: Vec<String> = table.columns.iter().map(|col| format!("weir_t.{}::text", ident(&col.name))).collect();
        let k = format!("weir_t.{}", ident(&key));
        let query = format!(
            "SELECT {as_number}, {k}::int8, {} FROM {} AS weir_t WHERE ({c}, {k}) > ({from_number}, $2::int8) AND {c} IS NOT NULL \
             AND {ripe} ORDER BY {c}, {k} LIMIT $3",
            texts.join(", "),
            table.sql
        );
        Ok(PollSource {
            runtime,
            client,
            table,
            cursor_column: cursor.to_string(),
            query,
            kind,
            // Before every row: for timestamps, 4368 BC (the epoch plus i64::MIN microseconds
            // is out of PostgreSQL's range).
            cursor: if kind == CursorKind::Integer { i64::MIN } else { -200_000_000_000_000_000 },
            key: i64::MIN,
            interval,
            quiet_until: None,
            url: url.to_string(),
            trouble: None,
            backoff: Duration::from_millis(100),
        })
    }

    /// The next rows, on a new connection if the last one was lost.
    fn rows(&mut self, limit: i64) -> Result<Vec<tokio_postgres::Row>> {
        self.runtime.block_on(async {
            if self.client.is_closed() {
                self.client = cdc_setup::connect(&self.url).await?;
            }
            let rows = self.client.query(&self.query, &[&self.cursor, &self.key, &limit]).await;
            rows.with_context(|| format!("polling {}", self.table.shown))
        })
    }
}

impl Source for PollSource {
    fn describe(&self) -> String {
        format!("postgres table {} polled by {}", self.table.shown, self.cursor_column)
    }

    fn label(&self, partition: i32) -> String {
        match partition {
            KEY => format!("key of the last row of {}", self.table.shown),
            _ => format!("{} of {}", self.cursor_column, self.table.shown),
        }
    }

    fn partitions(&self) -> Vec<i32> {
        vec![CURSOR, KEY]
    }

    fn seek(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        for &(partition, offset) in offsets {
            match partition {
                CURSOR => self.cursor = offset,
                KEY => self.key = offset,
                other => bail!("polling has partitions 0 (cursor) and 1 (key); asked to seek {other}"),
            }
        }
        Ok(())
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        vec![(CURSOR, self.cursor), (KEY, self.key)]
    }

    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>> {
        if self.quiet_until.is_some_and(|t| Instant::now() < t) {
            return Ok(Some(RawBatch::default()));
        }
        let limit = max.max(1) as i64;
        let rows = match self.rows(limit) {
            Ok(rows) => rows,
            // Out of reach or restarting: said by /readyz, and asked again after a while.
            Err(e) => {
                let why = format!("the source database: {e:#}");
                tracing::warn!(error = %why, "polling will try again in {:?}", self.backoff);
                self.trouble = Some(why);
                self.quiet_until = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
                return Ok(Some(RawBatch::default()));
            }
        };
        (self.trouble, self.backoff) = (None, Duration::from_millis(100));
        let mut batch = RawBatch::default();
        let poll_ms = crate::pipeline::now_ms();
        for row in &rows {
            let (cursor, key): (i64, i64) = (row.get(0), row.get(1));
            let texts: Vec<Option<&str>> = (2..row.len()).map(|i| row.get(i)).collect();
            let values: Vec<Value> =
                texts.iter().map(|t| t.map_or(Value::Null, |t| Value::Text(t.as_bytes()))).collect();
            let at_ms = if self.kind == CursorKind::Integer { poll_ms } else { cursor.div_euclid(1000) };
            let mut payload = Vec::with_capacity(128);
            pgoutput::row_json(&mut payload, Op::Upsert, at_ms, &self.table.columns, &values);
            batch.push(&payload, b"", -1, CURSOR, key);
            (self.cursor, self.key) = (cursor, key);
        }
        self.quiet_until = (rows.len() < limit as usize).then(|| Instant::now() + self.interval);
        Ok(Some(batch))
    }

    fn trouble(&mut self) -> Option<String> {
        self.trouble.clone()
    }

    fn active(&self) -> Option<Vec<i32>> {
        Some(vec![CURSOR])
    }

    fn drained(&mut self) -> Vec<i32> {
        vec![KEY]
    }
}
