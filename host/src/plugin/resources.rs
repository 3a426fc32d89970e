//! What the host lends plugins besides batches (contract 0.2.0): writer schemas by id or
//! fingerprint, the reader schema, and lookup tables. One `Resources` per pipeline run,
//! shared by every instance; the pipeline fills it (schemas before the parse that needs
//! them, lookup tables at checkpoint boundaries) and plugin calls only read it.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::{Arc, RwLock};

use weir_sdk::{Column, ColumnValues, PackedBytes, Schema};

/// A lookup table as loaded: value columns and each key's row.
#[derive(Debug, Default)]
pub struct LookupTable {
    /// The table's name in the pipeline file.
    pub name: String,
    /// A digest of its contents: which version a checkpoint used.
    pub version: String,
    /// The value columns, in order.
    pub columns: Vec<String>,
    /// Each key's values, one per column.
    pub rows: FxHashMap<String, Vec<Option<String>>>,
}

#[derive(Default)]
struct Schemas {
    by_id: HashMap<u32, Schema>,
    by_fingerprint: HashMap<u64, u32>,
    reader: Option<Schema>,
}

/// The shared resources.
#[derive(Default)]
pub struct Resources {
    schemas: RwLock<Schemas>,
    lookups: RwLock<HashMap<String, Arc<LookupTable>>>,
}

impl std::fmt::Debug for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resources").finish_non_exhaustive()
    }
}

impl Resources {
    /// Adds a writer schema (and its fingerprint, for an Avro one).
    pub fn add_schema(&self, schema: Schema, fingerprint: Option<u64>) {
        let mut schemas = self.schemas.write().unwrap_or_else(|e| e.into_inner());
        if let Some(fingerprint) = fingerprint {
            schemas.by_fingerprint.insert(fingerprint, schema.id);
        }
        schemas.by_id.insert(schema.id, schema);
    }

    /// Whether the schema with `id` is known.
    pub fn has_schema(&self, id: u32) -> bool {
        self.schemas.read().unwrap_or_else(|e| e.into_inner()).by_id.contains_key(&id)
    }

    /// Whether a schema with `fingerprint` is known.
    pub fn has_fingerprint(&self, fingerprint: u64) -> bool {
        self.schemas.read().unwrap_or_else(|e| e.into_inner()).by_fingerprint.contains_key(&fingerprint)
    }

    /// Sets the pipeline's reader schema.
    pub fn set_reader(&self, schema: Option<Schema>) {
        self.schemas.write().unwrap_or_else(|e| e.into_inner()).reader = schema;
    }

    pub fn schema_by_id(&self, id: u32) -> Option<Schema> {
        self.schemas.read().unwrap_or_else(|e| e.into_inner()).by_id.get(&id).cloned()
    }

    pub fn schema_by_fingerprint(&self, fingerprint: u64) -> Option<Schema> {
        let schemas = self.schemas.read().unwrap_or_else(|e| e.into_inner());
        schemas.by_fingerprint.get(&fingerprint).and_then(|id| schemas.by_id.get(id)).cloned()
    }

    pub fn reader(&self) -> Option<Schema> {
        self.schemas.read().unwrap_or_else(|e| e.into_inner()).reader.clone()
    }

    /// Puts `table` in place of the one with its name; calls already running keep the old one.
    pub fn set_lookup(&self, table: Arc<LookupTable>) {
        self.lookups.write().unwrap_or_else(|e| e.into_inner()).insert(table.name.clone(), table);
    }

    /// The lookup table named `name`.
    pub fn lookup_table(&self, name: &str) -> Result<Arc<LookupTable>, String> {
        let tables = self.lookups.read().unwrap_or_else(|e| e.into_inner());
        tables.get(name).cloned().ok_or_else(|| {
            let mut names: Vec<&str> = tables.keys().map(String::as_str).collect();
            names.sort();
            match names.is_empty() {
                true => format!("no lookup table named {name:?}: the pipeline declares none ([[lookup]])"),
                false => format!("no lookup table named {name:?}; the pipeline declares {}", names.join(", ")),
            }
        })
    }

    /// Each key's values of `columns` in `table`, a text column per name; null where no row.
    pub fn lookup(&self, table: &str, columns: &[String], keys: &PackedBytes) -> Result<Vec<Column>, String> {
        let table = self.lookup_table(table)?;
        let at: Vec<usize> = columns
            .iter()
            .map(|column| {
                table.columns.iter().position(|c| c == column).ok_or_else(|| {
                    format!(
                        "lookup table {:?} has no column {column:?}; it has {}",
                        table.name,
                        table.columns.join(", ")
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let n = keys.len();
        let mut out: Vec<(PackedBytes, Vec<bool>)> = at
            .iter()
            .map(|_| {
                (PackedBytes { bytes: Vec::with_capacity(n * 8), ends: Vec::with_capacity(n) }, Vec::with_capacity(n))
            })
            .collect();
        for key in keys.iter() {
            let row = std::str::from_utf8(key).ok().and_then(|k| table.rows.get(k));
            for ((values, valid), &c) in out.iter_mut().zip(&at) {
                let value = row.and_then(|r| r[c].as_deref());
                values.push(value.unwrap_or("").as_bytes());
                valid.push(value.is_some());
            }
        }
        Ok(out
            .into_iter()
            .map(|(values, valid)| {
                let valid = if valid.iter().all(|v| *v) { Vec::new() } else { valid };
                Column { values: ColumnValues::Text(values), valid }
            })
            .collect())
    }
}
