//! SQLite's side of a versioned output table (see `versions.rs`): which relation a
//! table's name is, and the switch to a new version, in the checkpoint's transaction.

use anyhow::{Context, Result};
use rusqlite::{params, Connection, Transaction};

use super::schema::quote;
use super::sqlite::{columns_of, plan_on};
use super::TableSchema;

/// `'table'`, `'view'`, or `None`: what `name` is.
fn kind(conn: &Connection, name: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension;
    Ok(conn.query_row("SELECT type FROM sqlite_master WHERE name = ?", [name], |r| r.get(0)).optional()?)
}

/// The version tables of `base`, oldest first.
fn version_tables(conn: &Connection, base: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?")?;
    let prefix = format!("{base}_v");
    let names = stmt.query_map(params![prefix.len() as i64, prefix], |r| r.get::<_, String>(0))?;
    let mut versions: Vec<(u32, String)> = names
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter_map(|n| super::versions::latest(base, [n.clone()]).map(|v| (v, n)))
        .collect();
    versions.sort();
    Ok(versions.into_iter().map(|(_, n)| n).collect())
}

/// The table `table.name` stands for: itself, or its latest version once it is a view.
pub(super) fn resolve(conn: &Connection, table: &TableSchema) -> Result<TableSchema> {
    if kind(conn, &table.name)?.as_deref() != Some("view") {
        return Ok(table.clone());
    }
    let names = version_tables(conn, &table.name)?;
    let latest = names.last().with_context(|| format!("{} is a view without version tables", table.name))?;
    Ok(TableSchema { name: latest.clone(), ..table.clone() })
}

/// Makes `new` (a version of `base`) the table `base` writes to (see `versions.rs`).
pub(super) fn switch(tx: &Transaction, base: &str, new: &TableSchema) -> Result<()> {
    use super::versions::{version_name, view_sql};
    if kind(tx, base)?.as_deref() == Some("table") {
        tx.execute_batch(&format!("ALTER TABLE {} RENAME TO {}", quote(base), quote(&version_name(base, 1))))?;
    }
    for sql in plan_on(tx, new)? {
        tx.execute_batch(&sql).with_context(|| format!("creating {}: {sql}", new.name))?;
    }
    let mut all = Vec::new();
    for name in version_tables(tx, base)? {
        all.push((name.clone(), columns_of(tx, &name)?));
    }
    let keys: Vec<String> = new.keys.iter().map(|k| k.name.clone()).collect();
    tx.execute_batch(&format!("DROP VIEW IF EXISTS {}", quote(base)))?;
    tx.execute_batch(&view_sql(base, &keys, &all)).with_context(|| format!("creating the view {base}"))?;
    Ok(())
}
