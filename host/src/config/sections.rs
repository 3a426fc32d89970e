//! How sections of the pipeline file are read so that every error names its key: serde's
//! derived readers lose the key inside an internally tagged enum, and take an array for
//! a struct.

use serde::Deserialize;

use super::SourceConfig;

/// A `[section]`, which must be a table. serde's derived structs also take an array,
/// field by field in order, so `breaker = [1]` was read as a dead-letter rate of 1.
pub(super) fn section<'de, D: serde::Deserializer<'de>, T: serde::de::DeserializeOwned>(
    deserializer: D,
) -> Result<T, D::Error> {
    use serde::de::Error;
    let table = toml::Table::deserialize(deserializer)?;
    T::deserialize(toml::Value::Table(table)).map_err(|e| D::Error::custom(e.to_string().trim_end()))
}

/// `[source]`, chosen by its `kind`. serde's internally tagged enums buffer the table
/// before they read it, and an error found then cannot name its key (`[source]` alone
/// was shown for a wrong `topic`); read as `{ kind = { ...the rest } }`, every error
/// names its key.
pub(super) fn source_by_kind<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SourceConfig, D::Error> {
    use serde::de::Error;
    let mut table = toml::Table::deserialize(deserializer)?;
    let kind = match table.remove("kind") {
        Some(toml::Value::String(kind)) => kind,
        Some(other) => return Err(D::Error::custom(format!("source.kind must be a string, got {other}"))),
        None => return Err(D::Error::custom("source.kind is missing: kafka, files, postgres, http or producer")),
    };
    let tagged = toml::Value::Table(toml::Table::from_iter([(kind.clone(), toml::Value::Table(table))]));
    SourceConfig::deserialize(tagged).map_err(|e| {
        let message = e
            .to_string()
            .replace(&format!("in `{kind}."), "in `source.")
            .replace(&format!("in `{kind}`"), "in `source`");
        D::Error::custom(format!("source (kind = {kind:?}): {}", message.trim_end()))
    })
}
