//! `json-schema-parser`: JSON objects checked against a JSON Schema, then read into typed
//! columns. A record that does not match is an error naming where and why
//! (`at /fare: "12" is not of type "number"`); the others are read as `json-parser`'s
//! config says (`fields`, `event_time`), from the value the check already parsed.
//!
//! ```toml
//! [schemas]
//! reader = "schemas/trip.schema.json"   # a JSON Schema, or config.schema inline
//!
//! [parser]
//! plugin = "json-schema-parser"
//! config.event_time = "event_time"
//! config.fields = [{ name = "city", type = "text" }, { name = "event_time", type = "timestamp" }]
//! ```
//!
//! It is a plugin of its own, not an option of `json-parser`, so that the fast parser
//! stays small: a JSON Schema validator is most of this one's size.

mod fields;

use weir_sdk::{Config, ParseOutput, Parser, ParserInfo, RawBatch, RecordError, SchemaFormat};

use fields::Fields;

/// At most this many violations are named per record.
const NAMED: usize = 3;

/// The configured parser.
pub struct JsonSchemaParser {
    schema: jsonschema::Validator,
    fields: Fields,
}

impl Parser for JsonSchemaParser {
    fn init(config: Config) -> Result<(Self, ParserInfo), String> {
        let mut json: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(config.as_json()).map_err(|e| format!("invalid config: {e}"))?;
        let schema = match json.remove("schema") {
            Some(serde_json::Value::String(text)) => parse_schema(&text)?,
            Some(schema) => schema,
            None => match weir_sdk::resources::reader_schema() {
                Some(s) if s.format == SchemaFormat::Json => parse_schema(&s.text)?,
                Some(_) => {
                    return Err(
                        "the pipeline's reader schema is not a JSON Schema ([schemas] reader = \"….json\")".into()
                    )
                }
                None => {
                    return Err(
                        "no JSON Schema: give config.schema, or [schemas] reader = \"FILE.json\" in the pipeline"
                            .into(),
                    )
                }
            },
        };
        let schema =
            jsonschema::validator_for(&schema).map_err(|e| format!("config.schema is not a valid JSON Schema: {e}"))?;
        let (fields, info) = Fields::new(Config::from_json(serde_json::Value::Object(json).to_string()))?;
        Ok((JsonSchemaParser { schema, fields }, info))
    }

    fn parse(&self, batch: &RawBatch) -> ParseOutput {
        let mut out = self.fields.builder(batch.len());
        let mut sources = Vec::with_capacity(batch.len());
        let mut errors = Vec::new();
        for (i, payload) in batch.payloads.iter().enumerate() {
            let read = self.check(payload).and_then(|value| self.fields.push(&value, &mut out));
            match read {
                Ok(()) => sources.push(i as u32),
                Err(reason) => errors.push(RecordError { index: i as u32, reason }),
            }
        }
        ParseOutput { events: out.finish(), sources, errors }
    }
}

fn parse_schema(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("the JSON Schema is not JSON: {e}"))
}

impl JsonSchemaParser {
    /// `payload` as JSON, if it matches the schema; why not, naming where.
    fn check(&self, payload: &[u8]) -> Result<serde_json::Value, String> {
        let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
        if self.schema.is_valid(&value) {
            return Ok(value);
        }
        let named: Vec<String> = self
            .schema
            .iter_errors(&value)
            .take(NAMED)
            .map(|e| {
                let at = e.instance_path.to_string();
                format!("at {}: {e}", if at.is_empty() { "/" } else { &at })
            })
            .collect();
        Err(format!("does not match its JSON Schema: {}", named.join("; ")))
    }
}

weir_sdk::export!(parser: JsonSchemaParser);

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> JsonSchemaParser {
        let config = serde_json::json!({
            "event_time": "t",
            "fields": [{"name": "city", "type": "text"}, {"name": "fare", "type": "float64"}, {"name": "t", "type": "timestamp"}],
            "schema": {
                "type": "object",
                "required": ["city", "fare", "t"],
                "properties": {"city": {"type": "string", "minLength": 1}, "fare": {"type": "number", "minimum": 0}}
            }
        });
        JsonSchemaParser::init(Config::from_json(config.to_string())).unwrap().0
    }

    #[test]
    fn records_that_do_not_match_are_errors_naming_where_and_the_rest_are_columns() {
        let batch = RawBatch::from_payloads([
            r#"{"city":"Oslo","fare":12.5,"t":"2024-05-01T00:00:00Z"}"#,
            r#"{"city":"Oslo","fare":"12","t":"2024-05-01T00:00:00Z"}"#,
            r#"{"city":"","fare":-1,"t":"2024-05-01T00:00:00Z"}"#,
            r#"{"city":"Lima","fare":3,"t":"not a time"}"#,
            r#"{"city":"Lima","fare":4,"t":"2024-05-01T00:01:00Z"}"#,
            r#"{"city":"Lima""#,
        ]);
        let out = parser().parse(&batch);
        assert_eq!(out.sources, [0, 4]);
        let reasons: Vec<(u32, &str)> = out.errors.iter().map(|e| (e.index, e.reason.as_str())).collect();
        assert_eq!(reasons.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 5], "{reasons:?}");
        assert!(reasons[0].1.contains("at /fare") && reasons[0].1.contains("\"number\""), "{reasons:?}");
        assert!(reasons[1].1.contains("at /city") && reasons[1].1.contains("at /fare"), "{reasons:?}");
        // The schema says nothing of `t`'s format: reading it as a timestamp refuses it.
        assert!(reasons[2].1.contains("\"t\""), "{reasons:?}");
        assert!(reasons[3].1.starts_with("not JSON"), "{reasons:?}");
        assert_eq!(out.events.len, 2);
    }

    #[test]
    fn a_schema_that_is_not_one_is_refused() {
        let config = serde_json::json!({"event_time": "t", "fields": [{"name": "t", "type": "timestamp"}], "schema": {"type": 12}});
        let err = JsonSchemaParser::init(Config::from_json(config.to_string())).err().unwrap();
        assert!(err.contains("not a valid JSON Schema"), "{err}");
    }
}
