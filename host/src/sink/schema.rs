//! The output table's shape, shared by the SQL sinks: what to create when it is missing,
//! what to add when the aggregator gained a column, and what to refuse.

use anyhow::{bail, Result};
use weir_sdk::ColumnType;

use super::TableSchema;

/// How a SQL dialect spells weir's column types.
pub struct Dialect {
    /// The type of a column of this kind, as the catalog reports it.
    pub type_of: fn(ColumnType) -> &'static str,
    /// `window_start` and `window_end`.
    pub window: &'static str,
    /// `is_final`.
    pub boolean: &'static str,
    /// `revision`.
    pub integer: &'static str,
    /// `updated_at`.
    pub timestamp: &'static str,
}

/// A column of an existing table, as its catalog describes it.
pub struct Existing {
    /// The column's name.
    pub name: String,
    /// Its type.
    pub ty: String,
    /// Whether it is part of the primary key.
    pub primary_key: bool,
}

/// Quotes an identifier.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The pieces of an upsert into the output table, shared by the SQL dialects.
pub struct Upsert {
    /// Every written column but `updated_at`, quoted, in row order: window bounds, keys,
    /// values, `is_final`, `revision`.
    pub columns: Vec<String>,
    /// The conflict target: window bounds and keys.
    pub conflict: String,
    /// The `SET` list. Absolute values: a replayed checkpoint writes the same row again,
    /// never adds to it.
    pub updates: String,
}

impl Upsert {
    /// The upsert of `table`.
    pub fn of(table: &TableSchema) -> Self {
        let keys: Vec<String> = table.keys.iter().map(|c| quote(&c.name)).collect();
        let values: Vec<String> = table.values.iter().map(|c| quote(&c.name)).collect();
        let bounds = ["window_start".to_string(), "window_end".to_string()];
        let conflict = bounds.iter().chain(&keys).cloned().collect::<Vec<_>>().join(", ");
        let mut columns: Vec<String> = bounds.into_iter().chain(keys).chain(values.iter().cloned()).collect();
        columns.extend(["is_final", "revision"].map(String::from));
        let updates = values
            .iter()
            .map(String::as_str)
            .chain(["is_final", "revision", "updated_at"])
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        Upsert { columns, conflict, updates }
    }
}

/// The statements that make `existing` fit `table`: a `CREATE TABLE` when it is missing,
/// `ADD COLUMN`s for new aggregator outputs, or an error naming the incompatibility.
pub fn plan(table: &TableSchema, existing: &[Existing], d: &Dialect) -> Result<Vec<String>> {
    let name = quote(&table.name);
    let fixed = [("window_start", d.window), ("window_end", d.window)];
    let keys: Vec<(&str, &str)> = table.keys.iter().map(|c| (c.name.as_str(), (d.type_of)(c.ty))).collect();
    let values: Vec<(&str, &str)> = table.values.iter().map(|c| (c.name.as_str(), (d.type_of)(c.ty))).collect();
    let bookkeeping = [("is_final", d.boolean), ("revision", d.integer), ("updated_at", d.timestamp)];
    let primary: Vec<&str> = fixed.iter().chain(&keys).map(|(n, _)| *n).collect();
    if existing.is_empty() {
        let mut columns: Vec<String> =
            fixed.iter().chain(&keys).chain(&bookkeeping).map(|(n, t)| format!("{} {t} NOT NULL", quote(n))).collect();
        columns.extend(values.iter().map(|(n, t)| format!("{} {t}", quote(n))));
        let pk: Vec<String> = primary.iter().map(|n| quote(n)).collect();
        return Ok(vec![format!("CREATE TABLE {name} ({}, PRIMARY KEY ({}))", columns.join(", "), pk.join(", "))]);
    }
    let pk: Vec<&str> = existing.iter().filter(|c| c.primary_key).map(|c| c.name.as_str()).collect();
    if pk.len() != primary.len() || primary.iter().any(|k| !pk.contains(k)) {
        bail!(
            "table {} exists with primary key ({}); this pipeline needs ({})",
            table.name,
            pk.join(", "),
            primary.join(", ")
        );
    }
    let mut statements = Vec::new();
    for (column, ty) in fixed.iter().chain(&keys).chain(&values).chain(&bookkeeping) {
        match existing.iter().find(|c| c.name == *column) {
            Some(have) if !have.ty.eq_ignore_ascii_case(ty) => {
                bail!("table {} has column {column} of type {}; this pipeline writes {ty}", table.name, have.ty)
            }
            Some(_) => {}
            // A new aggregator output: an additive, safe migration.
            None if values.iter().any(|(v, _)| v == column) => {
                statements.push(format!("ALTER TABLE {name} ADD COLUMN {} {ty}", quote(column)))
            }
            None => bail!("table {} exists without column {column}; refusing to write into it", table.name),
        }
    }
    Ok(statements)
}
