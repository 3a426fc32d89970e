//! The Redis output (`[sink.redis]`): each window row as a hash,
//! `PREFIX:TABLE:KEY…:WINDOW_START` (the key columns joined by `:`, the window's start in
//! ms since the epoch), for an app to serve from. Fields: `window_start`, `window_end`,
//! the key and value columns, `is_final`, `revision` and `updated_at`; a null value is
//! no field.
//!
//! The rows of a delivery and its outbox number (`PREFIX:TABLE:_delivered`) are written in
//! one `MULTI`/`EXEC` under `WATCH` of the number: a replayed delivery finds the number
//! already there and writes nothing.

use std::time::Duration;

use anyhow::{Context, Result};

use super::output::{cell_text, Output};
use super::{TableSchema, WindowRow};

/// Rows written to Redis.
pub struct RedisOutput {
    client: redis::Client,
    connection: Option<redis::Connection>,
    /// `PREFIX:TABLE`.
    prefix: String,
    table: Option<TableSchema>,
    ttl: Option<Duration>,
    shown: String,
}

/// How long a connect or a command may take before the server counts as out of reach.
const TIMEOUT: Duration = Duration::from_secs(5);

impl RedisOutput {
    /// An output to the server at `url` (`redis://host:port/db`), under `prefix` (the
    /// pipeline's name unless set); window hashes expire `ttl` after their last write.
    pub fn new(url: &str, prefix: &str, table: &str, ttl: Option<Duration>) -> Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("[sink.redis] url: {url} is not a Redis URL"))?;
        let shown = format!("redis {}", client.get_connection_info().addr());
        Ok(RedisOutput { client, connection: None, prefix: format!("{prefix}:{table}"), table: None, ttl, shown })
    }

    fn connection(&mut self) -> Result<&mut redis::Connection> {
        if self.connection.is_none() {
            let connection = self.client.get_connection_with_timeout(TIMEOUT)?;
            connection.set_read_timeout(Some(TIMEOUT))?;
            connection.set_write_timeout(Some(TIMEOUT))?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("just connected"))
    }

    /// Runs `f` on the connection, dropping a connection that failed so the next attempt
    /// makes a new one.
    fn with<T>(&mut self, f: impl FnOnce(&mut redis::Connection, &str) -> redis::RedisResult<T>) -> Result<T> {
        let prefix = self.prefix.clone();
        let outcome = f(self.connection()?, &prefix);
        if outcome.as_ref().is_err_and(|e| e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) {
            self.connection = None;
        }
        Ok(outcome?)
    }

    fn marker(prefix: &str) -> String {
        format!("{prefix}:_delivered")
    }

    /// A row's hash key.
    fn key(prefix: &str, row: &WindowRow) -> String {
        let parts: Vec<String> = row.key.iter().map(|c| cell_text(c).unwrap_or_default()).collect();
        format!("{prefix}:{}:{}", parts.join(":"), row.window.start)
    }

    /// A row's fields, nulls left out.
    fn fields(table: &TableSchema, row: &WindowRow, now_ms: i64) -> Vec<(String, String)> {
        let mut fields = vec![
            ("window_start".to_string(), row.window.start.to_string()),
            ("window_end".to_string(), row.window.end.to_string()),
        ];
        let columns = table.keys.iter().chain(&table.values);
        for (def, cell) in columns.zip(row.key.iter().chain(&row.values)) {
            if let Some(text) = cell_text(cell) {
                fields.push((def.name.clone(), text));
            }
        }
        fields.push(("is_final".into(), row.is_final.to_string()));
        fields.push(("revision".into(), row.revision.to_string()));
        fields.push(("updated_at".into(), now_ms.to_string()));
        fields
    }
}

impl Output for RedisOutput {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn prepare(&mut self, table: &TableSchema) -> Result<()> {
        self.table = Some(table.clone());
        self.with(|c, _| redis::cmd("PING").query::<String>(c)).with_context(|| format!("reaching {}", self.shown))?;
        Ok(())
    }

    fn delivered(&mut self, _pipeline: &str) -> Result<i64> {
        let mark: Option<i64> = self.with(|c, prefix| redis::cmd("GET").arg(Self::marker(prefix)).query(c))?;
        Ok(mark.unwrap_or(0))
    }

    fn deliver(&mut self, _pipeline: &str, upto: i64, rows: &[(i64, WindowRow)]) -> Result<()> {
        let table = self.table.clone().context("the Redis output was not prepared")?;
        let ttl = self.ttl.map(|t| t.as_millis() as u64);
        let now_ms = crate::pipeline::now_ms();
        self.with(|c, prefix| {
            let marker = Self::marker(prefix);
            redis::transaction(c, &[&marker], |c, pipe| {
                let mark: Option<i64> = redis::cmd("GET").arg(&marker).query(c)?;
                if mark.is_some_and(|m| m >= upto) {
                    return Ok(Some(()));
                }
                for (_, row) in rows {
                    let key = Self::key(prefix, row);
                    pipe.del(&key).ignore();
                    pipe.hset_multiple(&key, &Self::fields(&table, row, now_ms)).ignore();
                    if let Some(ttl) = ttl {
                        pipe.pexpire(&key, ttl as i64).ignore();
                    }
                }
                pipe.set(&marker, upto).ignore();
                pipe.query::<Option<()>>(c)
            })
        })
    }

    fn is_transient(&self, error: &anyhow::Error) -> bool {
        error.chain().any(|cause| {
            cause.downcast_ref::<redis::RedisError>().is_some_and(|e| {
                e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout()
            }) || cause.downcast_ref::<std::io::Error>().is_some()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::fixtures::{city_trips, city_trips_table};
    use crate::sink::Cell;

    #[test]
    fn a_row_is_a_hash_under_its_key_and_window_and_nulls_are_left_out() {
        let table = city_trips_table("trips");
        let mut row = city_trips(60_000, "Oslo", 3);
        assert_eq!(RedisOutput::key("rides:trips", &row), "rides:trips:Oslo:60000");
        row.values = vec![Cell::Null];
        let fields = RedisOutput::fields(&table, &row, 5);
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["window_start", "window_end", "city", "is_final", "revision", "updated_at"]);
        assert!(RedisOutput::new("http://x", "p", "t", None).is_err());
    }
}
