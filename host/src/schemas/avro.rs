//! What the registry knows of a schema's content: its canonical form and fingerprint, and
//! whether one version can read another's data (Avro's resolution rules, as apache-avro
//! checks them), with a message that names the field and the rule.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use super::{Level, SchemaType};

/// A schema as registered: parsed, canonical text, fingerprint.
pub struct Parsed {
    /// The schema, for compatibility checks (Avro only).
    pub avro: Option<Schema>,
    /// The text two schemas are compared by: Avro's parsing canonical form, or the JSON
    /// document re-serialized with sorted keys.
    pub canonical: String,
    /// The CRC-64-AVRO (Rabin) fingerprint of the canonical form, as single-object
    /// encoding writes it; for a JSON Schema, the first 8 bytes of its SHA-256.
    pub fingerprint: u64,
}

/// Parses `text` as a schema of type `ty`, or says why it is not one.
pub fn parse(ty: SchemaType, text: &str) -> Result<Parsed, String> {
    match ty {
        SchemaType::Avro => {
            let schema = Schema::parse_str(text).map_err(|e| format!("not a valid Avro schema: {e}"))?;
            let bytes = schema.fingerprint::<apache_avro::rabin::Rabin>().bytes;
            let fingerprint = u64::from_le_bytes(bytes.try_into().map_err(|_| "a fingerprint of 8 bytes")?);
            Ok(Parsed { canonical: schema.canonical_form(), fingerprint, avro: Some(schema) })
        }
        SchemaType::Json => {
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| format!("not a valid JSON Schema document: {e}"))?;
            if !value.is_object() && !value.is_boolean() {
                return Err("not a valid JSON Schema: it must be an object or a boolean".into());
            }
            // serde_json's map keeps keys sorted, so this is a canonical text.
            let canonical = value.to_string();
            let hash = crate::plugin::digest(canonical.as_bytes());
            let fingerprint = u64::from_str_radix(&hash["sha256:".len().."sha256:".len() + 16], 16).expect("hex");
            Ok(Parsed { canonical, fingerprint, avro: None })
        }
    }
}

/// Whether data written with `writer` can be read with `reader`, or why not.
pub fn can_read(writer: &Parsed, reader: &Parsed) -> Result<(), String> {
    match (&writer.avro, &reader.avro) {
        (Some(w), Some(r)) => SchemaCompatibility::can_read(w, r).map_err(|e| e.to_string()),
        _ => Ok(()),
    }
}

/// Whether `new` may follow `old` under `level` (`old` is the version `version` of the
/// subject): `Err` names the rule, the version and the field.
pub fn check(level: Level, new: &Parsed, old: &Parsed, version: u32) -> Result<(), String> {
    let (Some(new), Some(old)) = (&new.avro, &old.avro) else {
        // JSON Schema compatibility is not checked (docs/SCHEMAS.md).
        return Ok(());
    };
    let backward = || {
        SchemaCompatibility::can_read(old, new).map_err(|e| {
            format!("{}: the new schema cannot read data written with version {version}: {e}", level.name())
        })
    };
    let forward = || {
        SchemaCompatibility::can_read(new, old).map_err(|e| {
            format!("{}: version {version} cannot read data written with the new schema: {e}", level.name())
        })
    };
    match level {
        Level::None => Ok(()),
        Level::Backward | Level::BackwardTransitive => backward(),
        Level::Forward | Level::ForwardTransitive => forward(),
        Level::Full | Level::FullTransitive => backward().and_then(|()| forward()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"Trip","fields":[
        {"name":"city","type":"string"},{"name":"fare","type":"float"},{"name":"distance_km","type":"double"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Trip","fields":[
        {"name":"city","type":"string"},{"name":"fare","type":"double"},
        {"name":"distance","type":"double","aliases":["distance_km"]},
        {"name":"tip","type":["null","double"],"default":null}]}"#;
    const NO_DEFAULT: &str = r#"{"type":"record","name":"Trip","fields":[
        {"name":"city","type":"string"},{"name":"fare","type":"double"},{"name":"distance_km","type":"double"},
        {"name":"tip","type":"double"}]}"#;

    fn avro(text: &str) -> Parsed {
        parse(SchemaType::Avro, text).unwrap()
    }

    #[test]
    fn a_default_an_alias_and_a_promotion_are_backward_compatible() {
        assert_eq!(check(Level::Backward, &avro(V2), &avro(V1), 1), Ok(()));
        // Forward fails: v1 reads fare as a float, and a double cannot be narrowed.
        let err = check(Level::Full, &avro(V2), &avro(V1), 1).unwrap_err();
        assert!(err.starts_with("FULL: version 1 cannot read") && err.contains("fare"), "{err}");
    }

    #[test]
    fn a_new_field_without_a_default_is_refused_naming_it() {
        let err = check(Level::Backward, &avro(NO_DEFAULT), &avro(V1), 1).unwrap_err();
        assert!(err.contains("BACKWARD") && err.contains("version 1") && err.contains("'tip'"), "{err}");
        assert_eq!(check(Level::None, &avro(NO_DEFAULT), &avro(V1), 1), Ok(()));
    }

    #[test]
    fn the_fingerprint_is_the_single_object_one_and_ignores_formatting() {
        let spaced = V1.replace(",", " , ");
        assert_eq!(avro(V1).fingerprint, avro(&spaced).fingerprint);
        assert_ne!(avro(V1).fingerprint, avro(V2).fingerprint);
        // The CRC-64-AVRO of "int" from the specification's test vectors: 0x7275d51a3f395c8f.
        assert_eq!(avro(r#""int""#).fingerprint, 0x7275_d51a_3f39_5c8f);
        assert!(parse(SchemaType::Avro, "{\"type\":\"recrd\"}").err().unwrap().contains("not a valid Avro schema"));
    }
}
