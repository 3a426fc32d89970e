//! A versioned output table (`[sink] versioned = true`): a new version whose output would
//! break readers of the table (a column dropped, renamed or retyped) writes a new table
//! instead, `<table>_v2`, `_v3`, …, and the old name becomes a view that keeps the columns
//! its readers know. The first such switch renames the table itself to `<table>_v1`.
//!
//! The view reads every version table, each row from the newest version that has its
//! window and key, with the first version's columns: a column a later version does not
//! write (or writes with another type) is null there. So a dashboard that reads the old
//! name goes on showing every window, old and new. This module writes the statements; the
//! sinks read their catalogs and run them in the transaction of the switch's checkpoint.

use super::schema::{quote, Existing};
use super::TableSchema;

/// The name of version `n` of `base`.
pub fn version_name(base: &str, n: u32) -> String {
    format!("{base}_v{n}")
}

/// The version number of the table `physical` of `base`: 1 for `base` itself.
pub fn version_of(base: &str, physical: &str) -> u32 {
    physical.strip_prefix(base).and_then(|rest| rest.strip_prefix("_v")).and_then(|n| n.parse().ok()).unwrap_or(1)
}

/// The highest version among `names` (a catalog's table names), if any is a version of `base`.
pub fn latest(base: &str, names: impl IntoIterator<Item = String>) -> Option<u32> {
    let prefix = format!("{base}_v");
    names.into_iter().filter_map(|n| n.strip_prefix(&prefix).and_then(|v| v.parse::<u32>().ok())).max()
}

/// The view named `base` over the version tables `versions` (oldest first, with their
/// columns), in the first version's columns; `keys` are the window key's column names.
pub fn view_sql(base: &str, keys: &[String], versions: &[(String, Vec<Existing>)]) -> String {
    let Some((_, shape)) = versions.first() else { return String::new() };
    let mut matches = vec!["n.window_start = t.window_start".to_string(), "n.window_end = t.window_end".to_string()];
    matches.extend(keys.iter().map(|k| format!("n.{0} = t.{0}", quote(k))));
    let selects: Vec<String> = versions
        .iter()
        .enumerate()
        .map(|(k, (name, columns))| {
            let cols: Vec<String> = shape
                .iter()
                .map(|c| match columns.iter().find(|have| have.name == c.name) {
                    Some(have) if have.ty.eq_ignore_ascii_case(&c.ty) => format!("t.{}", quote(&c.name)),
                    _ => format!("CAST(NULL AS {}) AS {}", c.ty, quote(&c.name)),
                })
                .collect();
            let newer: Vec<String> = versions[k + 1..]
                .iter()
                .map(|(newer, _)| {
                    format!("NOT EXISTS (SELECT 1 FROM {} n WHERE {})", quote(newer), matches.join(" AND "))
                })
                .collect();
            let filter = if newer.is_empty() { String::new() } else { format!(" WHERE {}", newer.join(" AND ")) };
            format!("SELECT {} FROM {} t{filter}", cols.join(", "), quote(name))
        })
        .collect();
    format!("CREATE VIEW {} AS {}", quote(base), selects.join(" UNION ALL "))
}

/// The table a checkpoint writes when it carries a new version of `base`'s table, after
/// the version `current` (a physical name).
pub fn next(table: &TableSchema, current: &str) -> TableSchema {
    let base = &table.name;
    TableSchema { name: version_name(base, version_of(base, current) + 1), ..table.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> Existing {
        Existing { name: name.into(), ty: ty.into(), primary_key: false }
    }

    #[test]
    fn versions_are_named_and_found() {
        assert_eq!((version_of("t", "t"), version_of("t", "t_v3"), version_of("t", "t_vx")), (1, 3, 1));
        assert_eq!(latest("t", ["t_v1".to_string(), "t_v12".into(), "t_v2".into(), "other_v9".into()]), Some(12));
        assert_eq!(latest("t", ["t".to_string()]), None);
    }

    #[test]
    fn the_view_keeps_the_first_versions_columns_and_the_newest_row() {
        let v1 = vec![col("window_start", "INTEGER"), col("city", "TEXT"), col("avg_fare", "REAL")];
        let v2 = vec![col("window_start", "INTEGER"), col("city", "TEXT"), col("mean_fare", "REAL")];
        let sql = view_sql("rides", &["city".into()], &[("rides_v1".into(), v1), ("rides_v2".into(), v2)]);
        assert_eq!(
            sql,
            "CREATE VIEW \"rides\" AS SELECT t.\"window_start\", t.\"city\", t.\"avg_fare\" FROM \"rides_v1\" t \
             WHERE NOT EXISTS (SELECT 1 FROM \"rides_v2\" n WHERE n.window_start = t.window_start AND \
             n.window_end = t.window_end AND n.\"city\" = t.\"city\") \
             UNION ALL SELECT t.\"window_start\", t.\"city\", CAST(NULL AS REAL) AS \"avg_fare\" FROM \"rides_v2\" t"
        );
    }
}
