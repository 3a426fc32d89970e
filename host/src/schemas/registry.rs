//! The registry's rules over its tables: registering a version (its id shared by equal
//! schemas under any subject, a new version only when the schema is new to the subject,
//! refused when the subject's compatibility level forbids it), looking versions up, and
//! the levels.

use std::sync::Arc;

use anyhow::Result;

use super::db::{columns, registered, SchemaDb, Tx, Val};
use super::{avro, Level, Registered, SchemaType, DEFAULT_LEVEL};

/// Why a registration was refused, as the registry API answers it.
#[derive(Debug)]
pub enum Refusal {
    /// Not a schema of its type (HTTP 422, error code 42201).
    Invalid(String),
    /// The subject's compatibility level forbids it (HTTP 409).
    Incompatible(String),
    /// The database failed (HTTP 500).
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Self {
        Refusal::Failed(e)
    }
}

/// The registry over its database.
#[derive(Clone)]
pub struct Registry {
    db: Arc<SchemaDb>,
}

impl Registry {
    pub fn new(db: SchemaDb) -> Self {
        Registry { db: Arc::new(db) }
    }

    fn select(&self, filter: &str) -> String {
        format!("SELECT {} FROM weir_schemas WHERE {filter}", columns(self.db.postgres()))
    }

    /// Registers `text` under `subject`: its existing version if the subject has the same
    /// schema, else a new version checked against the subject's level.
    pub fn register(&self, subject: &str, ty: SchemaType, text: &str) -> Result<Registered, Refusal> {
        let parsed = avro::parse(ty, text).map_err(Refusal::Invalid)?;
        self.db.locked(|tx| {
            let versions = self.versions_in(tx, subject)?;
            if let Some(same) = versions.iter().find(|v| v.ty == ty && v.fingerprint == parsed.fingerprint) {
                return Ok(Ok(same.clone()));
            }
            let level = level_in(tx, subject)?.or(level_in(tx, "")?).unwrap_or(DEFAULT_LEVEL);
            if let Err(e) = check_against(level, &parsed, ty, &versions) {
                return Ok(Err(Refusal::Incompatible(format!(
                    "Schema being registered is incompatible with an earlier schema for subject \"{subject}\": {e}"
                ))));
            }
            let existing = tx.rows(
                "SELECT id FROM weir_schemas WHERE fingerprint = $1 AND type = $2 LIMIT 1",
                &[Val::I(parsed.fingerprint as i64), Val::S(ty.name().into())],
            )?;
            let id = match existing.first() {
                Some(row) => row[0].int(),
                None => tx.rows("SELECT COALESCE(MAX(id), 0) + 1 FROM weir_schemas", &[])?[0][0].int(),
            };
            let version = versions.last().map_or(1, |v| v.version + 1);
            tx.exec(
                "INSERT INTO weir_schemas (subject, version, id, type, text, fingerprint) VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    Val::S(subject.into()),
                    Val::I(version.into()),
                    Val::I(id),
                    Val::S(ty.name().into()),
                    Val::S(text.into()),
                    Val::I(parsed.fingerprint as i64),
                ],
            )?;
            let row = tx.rows(&self.select("subject = $1 AND version = $2"), &[Val::S(subject.into()), Val::I(version.into())])?;
            Ok(Ok(registered(&row[0])))
        })?
    }

    /// Whether `text` could be registered under `subject`, checked against `version` (or,
    /// with `None`, against what the subject's level checks); the reasons if not.
    pub fn test(
        &self,
        subject: &str,
        ty: SchemaType,
        text: &str,
        version: Option<u32>,
    ) -> Result<Vec<String>, Refusal> {
        let parsed = avro::parse(ty, text).map_err(Refusal::Invalid)?;
        let versions = self.versions(subject)?;
        let level = self.level(Some(subject))?.or(self.level(None)?).unwrap_or(DEFAULT_LEVEL);
        let against: Vec<Registered> = match version {
            Some(v) => versions.into_iter().filter(|r| r.version == v).collect(),
            None => versions,
        };
        let level = if version.is_some() { non_transitive(level) } else { level };
        Ok(check_against(level, &parsed, ty, &against).err().into_iter().collect())
    }

    /// The schema with `id` (its first registration).
    pub fn by_id(&self, id: u32) -> Result<Option<Registered>> {
        let sql = self.select("id = $1 ORDER BY subject, version LIMIT 1");
        self.db.locked(|tx| Ok(tx.rows(&sql, &[Val::I(id.into())])?.first().map(|r| registered(r))))
    }

    /// Every (subject, version) that holds `id`.
    pub fn uses_of(&self, id: u32) -> Result<Vec<Registered>> {
        let sql = self.select("id = $1 ORDER BY subject, version");
        self.db.locked(|tx| Ok(tx.rows(&sql, &[Val::I(id.into())])?.iter().map(|r| registered(r)).collect()))
    }

    /// The Avro schema whose fingerprint is `fingerprint`.
    pub fn by_fingerprint(&self, fingerprint: u64) -> Result<Option<Registered>> {
        let sql = self.select("fingerprint = $1 AND type = 'AVRO' ORDER BY id LIMIT 1");
        self.db.locked(|tx| Ok(tx.rows(&sql, &[Val::I(fingerprint as i64)])?.first().map(|r| registered(r))))
    }

    /// The subjects, sorted.
    pub fn subjects(&self) -> Result<Vec<String>> {
        self.db.locked(|tx| {
            let rows = tx.rows("SELECT DISTINCT subject FROM weir_schemas ORDER BY subject", &[])?;
            Ok(rows.iter().map(|r| r[0].text()).collect())
        })
    }

    /// A subject's versions, oldest first.
    pub fn versions(&self, subject: &str) -> Result<Vec<Registered>> {
        self.db.locked(|tx| self.versions_in(tx, subject))
    }

    fn versions_in(&self, tx: &mut dyn Tx, subject: &str) -> Result<Vec<Registered>> {
        let rows = tx.rows(&self.select("subject = $1 ORDER BY version"), &[Val::S(subject.into())])?;
        Ok(rows.iter().map(|r| registered(r)).collect())
    }

    /// The level set for `subject` (or for the registry, with `None`), if one is.
    pub fn level(&self, subject: Option<&str>) -> Result<Option<Level>> {
        self.db.locked(|tx| level_in(tx, subject.unwrap_or("")))
    }

    /// Sets the level of `subject` (or the registry's).
    pub fn set_level(&self, subject: Option<&str>, level: Level) -> Result<()> {
        self.db.locked(|tx| {
            let subject = Val::S(subject.unwrap_or("").into());
            tx.exec("DELETE FROM weir_schema_config WHERE subject = $1", std::slice::from_ref(&subject))?;
            tx.exec(
                "INSERT INTO weir_schema_config (subject, level) VALUES ($1, $2)",
                &[subject, Val::S(level.name().into())],
            )
        })
    }

    /// Removes the level of `subject`, returning it.
    pub fn clear_level(&self, subject: &str) -> Result<Option<Level>> {
        self.db.locked(|tx| {
            let level = level_in(tx, subject)?;
            tx.exec("DELETE FROM weir_schema_config WHERE subject = $1", &[Val::S(subject.into())])?;
            Ok(level)
        })
    }
}

fn level_in(tx: &mut dyn Tx, subject: &str) -> Result<Option<Level>> {
    let rows = tx.rows("SELECT level FROM weir_schema_config WHERE subject = $1", &[Val::S(subject.into())])?;
    Ok(rows.first().and_then(|r| Level::parse(&r[0].text()).ok()))
}

fn non_transitive(level: Level) -> Level {
    match level {
        Level::BackwardTransitive => Level::Backward,
        Level::ForwardTransitive => Level::Forward,
        Level::FullTransitive => Level::Full,
        other => other,
    }
}

/// Checks a new schema against the latest of `versions` (all of them if `level` is
/// transitive), newest first; versions of another type are not compared.
fn check_against(level: Level, new: &avro::Parsed, ty: SchemaType, versions: &[Registered]) -> Result<(), String> {
    let same_type: Vec<&Registered> = versions.iter().filter(|v| v.ty == ty).collect();
    let against = match level.transitive() {
        true => &same_type[..],
        false => &same_type[same_type.len().saturating_sub(1)..],
    };
    for old in against.iter().rev() {
        let parsed =
            avro::parse(old.ty, &old.text).map_err(|e| format!("version {} in the registry is {e}", old.version))?;
        avro::check(level, new, &parsed, old.version)?;
    }
    Ok(())
}
