//! PostgreSQL's side of a versioned output table (see `versions.rs`): which relation a
//! table's name is, and the switch to a new version, in the checkpoint's transaction.

use anyhow::{Context, Result};
use tokio_postgres::GenericClient;

use super::postgres::{existing, DIALECT};
use super::schema::{self, quote};
use super::versions::{latest, version_name, view_sql};
use super::TableSchema;

/// `'r'` for a table, `'v'` for a view, `None` if `name` is neither.
async fn kind<C: GenericClient>(client: &C, name: &str) -> Result<Option<i8>> {
    let row = client.query_opt("SELECT relkind FROM pg_class WHERE oid = to_regclass($1)", &[&quote(name)]).await?;
    Ok(row.map(|r| r.get::<_, i8>(0)))
}

/// The version tables of `base`, oldest first.
async fn versions<C: GenericClient>(client: &C, base: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace \
             AND starts_with(relname, $1)",
            &[&format!("{base}_v")],
        )
        .await?;
    let mut names: Vec<(u32, String)> =
        rows.iter().map(|r| r.get::<_, String>(0)).filter_map(|n| latest(base, [n.clone()]).map(|v| (v, n))).collect();
    names.sort();
    Ok(names.into_iter().map(|(_, n)| n).collect())
}

/// The table `table.name` stands for: itself, or, once it is a view over versions, its
/// latest version.
pub(super) async fn resolve<C: GenericClient>(client: &C, table: &TableSchema) -> Result<TableSchema> {
    if kind(client, &table.name).await? != Some(b'v' as i8) {
        return Ok(table.clone());
    }
    let names = versions(client, &table.name).await?;
    let latest = names.last().with_context(|| format!("{} is a view without version tables", table.name))?;
    Ok(TableSchema { name: latest.clone(), ..table.clone() })
}

/// Makes `new` (a version of `base`) the table `base` writes to: the original table
/// becomes version 1, `new` is created, and `base` becomes the view over all versions.
pub(super) async fn switch(tx: &tokio_postgres::Transaction<'_>, base: &str, new: &TableSchema) -> Result<()> {
    if kind(tx, base).await? == Some(b'r' as i8) {
        tx.batch_execute(&format!("ALTER TABLE {} RENAME TO {}", quote(base), quote(&version_name(base, 1))))
            .await
            .with_context(|| format!("renaming {base} to its first version"))?;
    }
    for sql in schema::plan(new, &existing(tx, &quote(&new.name)).await?, &DIALECT)? {
        tx.batch_execute(&sql).await.with_context(|| format!("creating {}: {sql}", new.name))?;
    }
    let mut all = Vec::new();
    for name in versions(tx, base).await? {
        let columns = existing(tx, &quote(&name)).await?;
        all.push((name, columns));
    }
    let keys: Vec<String> = new.keys.iter().map(|k| k.name.clone()).collect();
    tx.batch_execute(&format!("DROP VIEW IF EXISTS {}", quote(base))).await?;
    tx.batch_execute(&view_sql(base, &keys, &all)).await.with_context(|| format!("creating the view {base}"))?;
    Ok(())
}
