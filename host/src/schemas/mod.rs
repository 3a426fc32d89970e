//! Schemas that evolve: a schema registry kept in the sink (`weir_schemas`) and served
//! with the Confluent Schema Registry REST API on the admin port (`api.rs`), or an
//! external registry by URL (`remote.rs`); compatibility levels checked with Avro's
//! resolution rules (`avro.rs`); and the writer schemas a batch names, fetched before the
//! parser needs them (`fetch.rs`).

pub(crate) mod api;
mod avro;
mod db;
mod fetch;
mod registry;
mod remote;

use std::fmt;

use serde::Serialize;

pub use api::routes;
pub use avro::{can_read, parse, Parsed};
pub use db::SchemaDb;
pub use fetch::{frames, Fetcher, SchemaSource};
pub use registry::{Refusal, Registry};
pub use remote::Remote;

/// How a schema is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SchemaType {
    /// Avro, in its JSON form.
    #[serde(rename = "AVRO")]
    Avro,
    /// JSON Schema.
    #[serde(rename = "JSON")]
    Json,
}

impl SchemaType {
    /// The registry API's name: `AVRO` or `JSON`.
    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
        }
    }

    /// The type of a schema file: a JSON Schema if its name ends in `.json`, else Avro
    /// (`.avsc`).
    pub fn of_file(path: &std::path::Path) -> Self {
        match path.extension().is_some_and(|e| e == "json") {
            true => SchemaType::Json,
            false => SchemaType::Avro,
        }
    }

    /// Reads the registry API's `schemaType` (absent means Avro).
    pub fn parse(name: Option<&str>) -> Result<Self, String> {
        match name.map(str::to_ascii_uppercase).as_deref() {
            None | Some("AVRO") => Ok(SchemaType::Avro),
            Some("JSON") => Ok(SchemaType::Json),
            Some(other) => Err(format!("schemaType {other:?} is not supported; weir's registry keeps AVRO and JSON")),
        }
    }
}

/// A compatibility level, as the registry API names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl Level {
    const ALL: [Level; 7] = [
        Level::None,
        Level::Backward,
        Level::BackwardTransitive,
        Level::Forward,
        Level::ForwardTransitive,
        Level::Full,
        Level::FullTransitive,
    ];

    /// The API's name, e.g. `BACKWARD_TRANSITIVE`.
    pub fn name(self) -> &'static str {
        match self {
            Level::None => "NONE",
            Level::Backward => "BACKWARD",
            Level::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Level::Forward => "FORWARD",
            Level::ForwardTransitive => "FORWARD_TRANSITIVE",
            Level::Full => "FULL",
            Level::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Reads a level by its name, in any case.
    pub fn parse(name: &str) -> Result<Self, String> {
        let upper = name.to_ascii_uppercase();
        Level::ALL.into_iter().find(|l| l.name() == upper).ok_or_else(|| {
            let names: Vec<&str> = Level::ALL.iter().map(|l| l.name()).collect();
            format!("invalid compatibility level {name:?}; valid levels are {}", names.join(", "))
        })
    }

    /// Whether a new version is checked against every earlier one, not only the latest.
    pub fn transitive(self) -> bool {
        matches!(self, Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The level a subject gets when neither it nor the registry sets one: Confluent's default.
pub const DEFAULT_LEVEL: Level = Level::Backward;

/// One version of a subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Registered {
    /// The schema's id: the same text (canonically) has the same id under every subject.
    pub id: u32,
    pub subject: String,
    pub version: u32,
    #[serde(rename = "schemaType")]
    pub ty: SchemaType,
    #[serde(rename = "schema")]
    pub text: String,
    /// The fingerprint of the canonical form (`avro.rs`).
    #[serde(skip)]
    pub fingerprint: u64,
    /// When it was registered, as RFC 3339 UTC.
    #[serde(skip)]
    pub registered_at: String,
}

impl Registered {
    /// As `weir_sdk` hands it to plugins.
    pub fn to_sdk(&self) -> weir_sdk::Schema {
        let format = match self.ty {
            SchemaType::Avro => weir_sdk::SchemaFormat::Avro,
            SchemaType::Json => weir_sdk::SchemaFormat::Json,
        };
        weir_sdk::Schema {
            id: self.id,
            subject: self.subject.clone(),
            version: self.version,
            format,
            text: self.text.clone(),
        }
    }
}
