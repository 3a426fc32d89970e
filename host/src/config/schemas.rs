//! `[schemas]`: where a pipeline's writer schemas are registered, and the schema it reads
//! with.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Deserialize;

/// `[schemas]`. With it, records framed for a schema registry (a schema id or fingerprint
/// before each body) get their writer schemas from the registry, and plugins may read the
/// reader schema (contract 0.2.0).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SchemasConfig {
    /// `"embedded"` (default): weir keeps the registry in the sink (`weir_schemas`) and
    /// serves the Confluent Schema Registry API on the admin port. Or the URL of an
    /// external registry, e.g. `"http://registry:8081"`.
    #[serde(default = "embedded")]
    pub registry: String,
    /// A file holding the reader schema, relative to the pipeline file: Avro (`.avsc`), or
    /// a JSON Schema (`.json`) for `json-schema-parser`.
    pub reader: Option<PathBuf>,
    /// The subject the input's schemas are registered under; `weir validate` lists its
    /// versions (default `<topic>-value` for a Kafka source, else `<pipeline name>-value`).
    pub subject: Option<String>,
}

fn embedded() -> String {
    "embedded".into()
}

impl SchemasConfig {
    /// The external registry's URL, or `None` for the embedded one.
    pub fn external(&self) -> Option<&str> {
        (self.registry != "embedded").then_some(self.registry.as_str())
    }

    pub(super) fn check(&self) -> Result<()> {
        if let Some(url) = self.external() {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("schemas.registry {url:?}: use \"embedded\" or an http:// or https:// URL of a schema registry");
            }
        }
        if self.subject.as_deref() == Some("") {
            bail!("schemas.subject must not be empty");
        }
        Ok(())
    }
}
