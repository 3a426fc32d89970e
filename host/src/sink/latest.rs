//! The committed rows of the latest windows, read back from the output table: what every
//! host of a group shows on its dashboard, whichever host wrote them, and what a host
//! shows again right after a restart.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use weir_sdk::ColumnType;

use super::schema::quote;
use super::{Cell, TableSchema, WindowRow};
use crate::window::Window;

/// How many of the latest window starts, and at most how many rows.
pub const LATEST_WINDOWS: usize = 30;
const LATEST_ROWS: usize = 5_000;

/// A window row's columns, in the order [`pg_row`] and [`sqlite_row`] read them.
pub(super) fn row_columns(table: &TableSchema) -> String {
    let columns: Vec<String> = table.keys.iter().chain(&table.values).map(|c| quote(&c.name)).collect();
    format!("window_start, window_end, {}, is_final, revision", columns.join(", "))
}

/// The query for the rows of the latest window starts, oldest first.
fn sql(table: &TableSchema) -> String {
    let name = quote(&table.name);
    format!(
        "SELECT {} FROM {name} WHERE window_start IN \
         (SELECT DISTINCT window_start FROM {name} ORDER BY window_start DESC LIMIT {LATEST_WINDOWS}) \
         ORDER BY window_start, window_end LIMIT {LATEST_ROWS}",
        row_columns(table)
    )
}

/// Rows counted at the most: every heartbeat counts, so a large table costs a bounded scan.
pub const COUNTED_ROWS: i64 = 1_000_000;

/// How many rows the table holds, up to [`COUNTED_ROWS`].
fn count_sql(table: &TableSchema) -> String {
    format!("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {COUNTED_ROWS}) AS rows", quote(&table.name))
}

pub(super) fn ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The latest rows of `table` in PostgreSQL.
pub(super) async fn postgres(client: &tokio_postgres::Client, table: &TableSchema) -> Result<(Vec<WindowRow>, i64)> {
    let rows =
        client.query(&sql(table), &[]).await.with_context(|| format!("reading the latest rows of {}", table.name))?;
    let count: i64 = client.query_one(&count_sql(table), &[]).await?.get(0);
    Ok((rows.iter().map(|r| pg_row(r, table)).collect(), count))
}

/// A window row of `table` read as [`row_columns`] lists them, from PostgreSQL.
pub(super) fn pg_row(r: &tokio_postgres::Row, table: &TableSchema) -> WindowRow {
    let defs: Vec<ColumnType> = table.keys.iter().chain(&table.values).map(|c| c.ty).collect();
    let cell = |r: &tokio_postgres::Row, i: usize, ty: ColumnType| -> Cell {
        let cell = match ty {
            ColumnType::Int64 => r.get::<_, Option<i64>>(i).map(Cell::Int),
            ColumnType::Float64 => r.get::<_, Option<f64>>(i).map(Cell::Float),
            ColumnType::Boolean => r.get::<_, Option<bool>>(i).map(Cell::Bool),
            ColumnType::Text => r.get::<_, Option<String>>(i).map(Cell::Text),
            ColumnType::TimestampMs => r.get::<_, Option<SystemTime>>(i).map(|t| Cell::Timestamp(ms(t))),
        };
        cell.unwrap_or(Cell::Null)
    };
    let cells: Vec<Cell> = defs.iter().enumerate().map(|(i, ty)| cell(r, i + 2, *ty)).collect();
    let (key, values) = cells.split_at(table.keys.len());
    WindowRow {
        window: Window { start: ms(r.get(0)), end: ms(r.get(1)) },
        key: key.to_vec(),
        values: values.to_vec(),
        is_final: r.get(defs.len() + 2),
        revision: r.get(defs.len() + 3),
    }
}

/// The latest rows of `table` in SQLite, whose times are ISO-8601 text.
pub(super) fn sqlite(conn: &rusqlite::Connection, table: &TableSchema) -> Result<(Vec<WindowRow>, i64)> {
    let mut stmt = conn.prepare(&sql(table))?;
    let rows = stmt.query_map([], |r| sqlite_row(r, table))?;
    let rows =
        rows.collect::<Result<Vec<_>, _>>().with_context(|| format!("reading the latest rows of {}", table.name))?;
    let count: i64 = conn.query_row(&count_sql(table), [], |r| r.get(0))?;
    Ok((rows, count))
}

/// A window row of `table` read as [`row_columns`] lists them, from SQLite.
pub(super) fn sqlite_row(r: &rusqlite::Row, table: &TableSchema) -> rusqlite::Result<WindowRow> {
    let defs: Vec<ColumnType> = table.keys.iter().chain(&table.values).map(|c| c.ty).collect();
    let time = |text: Option<String>| text.and_then(|t| weir_sdk::time::parse_iso8601(t.as_bytes()));
    let mut cells = Vec::with_capacity(defs.len());
    for (i, ty) in defs.iter().enumerate() {
        let i = i + 2;
        cells.push(
            match ty {
                ColumnType::Int64 => r.get::<_, Option<i64>>(i)?.map(Cell::Int),
                ColumnType::Float64 => r.get::<_, Option<f64>>(i)?.map(Cell::Float),
                ColumnType::Boolean => r.get::<_, Option<i64>>(i)?.map(|b| Cell::Bool(b != 0)),
                ColumnType::Text => r.get::<_, Option<String>>(i)?.map(Cell::Text),
                ColumnType::TimestampMs => time(r.get(i)?).map(Cell::Timestamp),
            }
            .unwrap_or(Cell::Null),
        );
    }
    let values = cells.split_off(table.keys.len());
    Ok(WindowRow {
        window: Window { start: time(r.get(0)?).unwrap_or(0), end: time(r.get(1)?).unwrap_or(0) },
        key: cells,
        values,
        is_final: r.get(defs.len() + 2)?,
        revision: r.get(defs.len() + 3)?,
    })
}
