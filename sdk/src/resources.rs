//! What the host lends a plugin besides its batches (contract 0.2.0): the writer schemas
//! of framed records, the pipeline's reader schema, and broadcast lookup tables.
//!
//! In a component these calls go to the host; natively (in unit tests) they go to
//! whatever [`install`] was given, so a plugin's logic is tested without WASM.

use std::sync::{Arc, RwLock};

use crate::{Column, PackedBytes};

/// How a schema is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaFormat {
    /// An Avro schema in its JSON form.
    Avro,
    /// A JSON Schema document.
    Json,
}

/// One registered schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schema {
    /// The registry's id, as in the Confluent wire format.
    pub id: u32,
    /// The subject it is registered under.
    pub subject: String,
    /// Its version under the subject, from 1.
    pub version: u32,
    /// How `text` is written.
    pub format: SchemaFormat,
    /// The schema itself.
    pub text: String,
}

/// The host's side of these calls.
pub trait Resources: Send + Sync {
    /// The schema registered under `id`.
    fn schema_by_id(&self, id: u32) -> Option<Schema>;
    /// The Avro schema with this CRC-64-AVRO fingerprint.
    fn schema_by_fingerprint(&self, fingerprint: u64) -> Option<Schema>;
    /// The pipeline's reader schema.
    fn reader_schema(&self) -> Option<Schema>;
    /// A lookup table's value columns.
    fn lookup_columns(&self, table: &str) -> Result<Vec<String>, String>;
    /// Each key's values of `columns` in `table`, a text column per name; null where
    /// there is no row.
    fn lookup(&self, table: &str, columns: &[String], keys: &PackedBytes) -> Result<Vec<Column>, String>;
}

static RESOURCES: RwLock<Option<Arc<dyn Resources>>> = RwLock::new(None);

/// Routes the calls below to `resources`: the export glue installs the host's; a unit
/// test installs its own.
pub fn install(resources: Arc<dyn Resources>) {
    *RESOURCES.write().unwrap_or_else(|e| e.into_inner()) = Some(resources);
}

fn with<R>(f: impl FnOnce(&dyn Resources) -> R, none: R) -> R {
    match RESOURCES.read().unwrap_or_else(|e| e.into_inner()).as_deref() {
        Some(resources) => f(resources),
        None => none,
    }
}

/// The writer schema registered under `id` (the 4 bytes after a Confluent frame's 0).
pub fn schema_by_id(id: u32) -> Option<Schema> {
    with(|r| r.schema_by_id(id), None)
}

/// The writer schema of an Avro single-object record, by its fingerprint.
pub fn schema_by_fingerprint(fingerprint: u64) -> Option<Schema> {
    with(|r| r.schema_by_fingerprint(fingerprint), None)
}

/// The schema the pipeline reads with (`[schemas] reader`), if it declares one.
pub fn reader_schema() -> Option<Schema> {
    with(|r| r.reader_schema(), None)
}

/// The value columns of a lookup table.
pub fn lookup_columns(table: &str) -> Result<Vec<String>, String> {
    with(|r| r.lookup_columns(table), Err("no lookup tables are available here".into()))
}

/// For each key, the values of `columns` in `table`'s row with that key: a text column
/// per name, null where the table has no such key. Each key is looked up once.
pub fn lookup(table: &str, columns: &[String], keys: &PackedBytes) -> Result<Vec<Column>, String> {
    with(|r| r.lookup(table, columns, keys), Err("no lookup tables are available here".into()))
}
