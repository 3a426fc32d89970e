//! `json-parser`: one JSON object per record into typed columns.
//!
//! ```toml
//! [stages.parse]
//! plugin = "json-parser"
//! config.event_time = "event_time"
//! config.fields = [
//!   { name = "city", type = "text" },
//!   { name = "fare", type = "float64" },
//!   { name = "event_time", type = "timestamp", format = "iso8601" },
//! ]
//! ```
//!
//! A missing or `null` field is null; a field with the wrong type, truncated JSON or
//! trailing garbage makes the record a per-record error that names the field. Fields
//! not in the config are skipped.

mod grammar;
mod scan;

use serde::Deserialize;
use weir_sdk::{ColumnDef, ColumnType, Config, ParseOutput, Parser, ParserInfo, RawBatch, RecordError};

use scan::{FieldSpec, RowParser};

/// How a timestamp field is written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `2024-05-01T07:59:56.722Z`, or with a `+hh:mm` offset.
    #[default]
    Iso8601,
    /// Milliseconds since the Unix epoch, as a JSON number.
    EpochMillis,
}

/// One field to extract.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    /// The JSON key, and the output column's name.
    pub name: String,
    /// `text`, `int64`, `float64`, `boolean` or `timestamp`.
    #[serde(rename = "type")]
    pub ty: String,
    /// A record without this field is an error instead of a null.
    #[serde(default)]
    pub required: bool,
    /// For timestamp fields: `iso8601` (default) or `epoch_millis`.
    #[serde(default)]
    pub format: TimeFormat,
}

/// The parser's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonParserConfig {
    /// The fields to extract, in output column order.
    pub fields: Vec<FieldConfig>,
    /// The timestamp field that holds the event time; it is always required.
    pub event_time: String,
}

/// The configured parser.
pub struct JsonParser {
    row: RowParser,
}

impl Parser for JsonParser {
    fn init(config: Config) -> Result<(Self, ParserInfo), String> {
        let config: JsonParserConfig = config.parse()?;
        if config.fields.is_empty() || config.fields.len() > scan::MAX_FIELDS {
            return Err(format!("config.fields: list between 1 and {} fields", scan::MAX_FIELDS));
        }
        let mut specs = Vec::new();
        let mut outputs = Vec::new();
        for (i, field) in config.fields.iter().enumerate() {
            let ty = ColumnType::parse(&field.ty).ok_or_else(|| {
                format!(
                    "config.fields[{i}] ({:?}): unknown type {:?}; use text, int64, float64, boolean or timestamp",
                    field.name, field.ty
                )
            })?;
            if outputs.iter().any(|c: &ColumnDef| c.name == field.name) {
                return Err(format!("config.fields[{i}]: field {:?} is listed twice", field.name));
            }
            let required = field.required || field.name == config.event_time;
            outputs.push(ColumnDef { name: field.name.clone(), ty, nullable: !required });
            specs.push(FieldSpec { key: field.name.clone().into_bytes(), ty, required, format: field.format });
        }
        match outputs.iter().find(|c| c.name == config.event_time) {
            Some(c) if c.ty == ColumnType::TimestampMs => {}
            Some(_) => {
                return Err(format!("config.event_time: field {:?} must have type \"timestamp\"", config.event_time))
            }
            None => return Err(format!("config.event_time: {:?} is not one of config.fields", config.event_time)),
        }
        let info = ParserInfo { outputs, event_time_column: config.event_time };
        Ok((JsonParser { row: RowParser::new(specs) }, info))
    }

    fn parse(&self, batch: &RawBatch) -> ParseOutput {
        let mut columns = self.row.columns(batch.len());
        let mut sources = Vec::with_capacity(batch.len());
        let mut errors = Vec::new();
        let mut scratch = self.row.scratch();
        for (i, payload) in batch.payloads.iter().enumerate() {
            match self.row.parse(payload, &mut scratch) {
                Ok(()) => {
                    columns.push(&scratch, payload);
                    sources.push(i as u32);
                }
                Err(reason) => errors.push(RecordError { index: i as u32, reason }),
            }
        }
        ParseOutput { events: columns.finish(), sources, errors }
    }
}

weir_sdk::export!(parser: JsonParser);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::ColumnValues;

    fn rides() -> JsonParser {
        let config = serde_json::json!({
            "event_time": "event_time",
            "fields": [
                {"name": "trip_id", "type": "text"},
                {"name": "city", "type": "text"},
                {"name": "fare", "type": "float64"},
                {"name": "distance_km", "type": "float64"},
                {"name": "status", "type": "text"},
                {"name": "event_time", "type": "timestamp"},
            ]
        });
        JsonParser::init(Config::from_json(config.to_string())).unwrap().0
    }

    const GOOD: &str = r#"{"trip_id":"t-42-000000000000","city":"Denver","driver_id":"d-0004467","rider_id":"r-00005697","fare":10.03,"distance_km":3.65,"status":"completed","event_time":"2024-05-01T07:59:56.722Z"}"#;

    #[test]
    fn parses_a_rides_event() {
        let out = rides().parse(&RawBatch::from_payloads([GOOD]));
        assert_eq!(out.errors, vec![]);
        assert_eq!(out.sources, vec![0]);
        let cols = &out.events.columns;
        assert_eq!(cols[1].values.str(0), Some("Denver"));
        assert_eq!(cols[2].values, ColumnValues::Float64(vec![10.03]));
        assert_eq!(cols[5].values, ColumnValues::TimestampMs(vec![1_714_550_396_722]));
    }

    #[test]
    fn malformed_records_become_errors_that_name_the_problem() {
        let cases = [
            (&GOOD[..60], "end of input"),
            (r#"{"city":"Denver","fare":"10.03","event_time":"2024-05-01T07:59:56.722Z"}"#, "\"fare\""),
            (r#"{"city":"Denver","fare":1,"event_time":"yesterday"}"#, "\"event_time\""),
            (r#"{"city":"Denver","fare":1}"#, "missing required field \"event_time\""),
            (r#"[1,2]"#, "expected a JSON object"),
            (r#"{"fare":1,"event_time":"2024-05-01T07:59:56Z"} x"#, "trailing"),
        ];
        let parser = rides();
        for (input, expected) in cases {
            let out = parser.parse(&RawBatch::from_payloads([input]));
            assert_eq!(out.events.len, 0, "{input}");
            assert!(out.errors[0].reason.contains(expected), "{input}: {}", out.errors[0].reason);
        }
    }

    /// Records that are not JSON (RFC 8259) or that the parser must not read as it would
    /// like to, each with what its error names: the issue's hostile kinds.
    const NOT_JSON: &[(&str, &str)] = &[
        (r#"{"city":"Oslo","fare":01,"event_time":"2024-05-01T08:00:00Z"}"#, "invalid number \"01\""),
        (r#"{"city":"Oslo","fare":1.,"event_time":"2024-05-01T08:00:00Z"}"#, "invalid number"),
        (r#"{"city":"Oslo","fare":2.e0,"event_time":"2024-05-01T08:00:00Z"}"#, "invalid number"),
        (r#"{"city":"Oslo","fare":1e999,"event_time":"2024-05-01T08:00:00Z"}"#, "out of the range"),
        (r#"{"city":"Oslo","fare":1,"extra":[1,2},"event_time":"2024-05-01T08:00:00Z"}"#, "container's end"),
        (r#"{"city":"Oslo","fare":1,"extra":tru,"event_time":"2024-05-01T08:00:00Z"}"#, "unexpected character"),
        (r#"{"city":"Oslo","fare":1,"extra":01,"event_time":"2024-05-01T08:00:00Z"}"#, "invalid number"),
        (r#"{"city":"Lima\ud800\u0041","fare":1,"event_time":"2024-05-01T08:00:00Z"}"#, "unpaired surrogate"),
        (r#"{"city":"Lima","note":"\udc00","fare":1,"event_time":"2024-05-01T08:00:00Z"}"#, "unpaired surrogate"),
        (r#"{"city":"Lima","note":"bad \q escape","fare":1,"event_time":"2024-05-01T08:00:00Z"}"#, "invalid escape"),
        ("{\"city\":\"a long city name with a\u{1}control character\",\"fare\":1,\"event_time\":\"2024-05-01T08:00:00Z\"}", "control character"),
        ("{\"city\":\"Raw\u{0}Nul\",\"fare\":1,\"event_time\":\"2024-05-01T08:00:00Z\"}", "control character"),
        ("{\"city\":\"Oslo\",\"note\":\"tab\tinside a skipped string, long enough\",\"event_time\":\"2024-05-01T08:00:00Z\"}", "control character"),
        (r#"{"city":"Oslo","city":"Lima","fare":1,"event_time":"2024-05-01T08:00:00Z"}"#, "appears twice"),
        (r#"{"city":"Oslo","fare":1,"event_time":"2024-05-01T08:00:00+99:99"}"#, "invalid ISO-8601"),
    ];

    #[test]
    fn records_that_are_not_json_are_errors_that_say_why() {
        let parser = rides();
        for (input, expected) in NOT_JSON {
            let out = parser.parse(&RawBatch::from_payloads([input]));
            assert_eq!(out.events.len, 0, "{input}");
            assert!(out.errors[0].reason.contains(expected), "{input}: {}", out.errors[0].reason);
        }
        // Invalid UTF-8 where the parser reads nothing is no more JSON than where it does.
        let mut bytes = br#"{"city":"Oslo","note":"x"#.to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(br#"","event_time":"2024-05-01T08:00:00Z"}"#);
        let out = parser.parse(&RawBatch::from_payloads([bytes]));
        assert!(out.errors[0].reason.contains("invalid UTF-8"), "{}", out.errors[0].reason);
        // Duplicates of keys the parser does not read are left alone.
        let fine = r#"{"x":1,"x":2,"city":"Oslo","event_time":"2024-05-01T08:00:00Z"}"#;
        assert_eq!(parser.parse(&RawBatch::from_payloads([fine])).errors, vec![]);
    }

    #[test]
    fn missing_optional_field_is_null_and_escapes_are_decoded() {
        let input = r#"{"trip_id":"a\"b\u00e9","fare":null,"extra":{"n":[1,{"x":"}"}]},"event_time":"2024-05-01T08:00:00+02:00"}"#;
        let out = rides().parse(&RawBatch::from_payloads([input]));
        assert_eq!(out.errors, vec![]);
        let cols = &out.events.columns;
        assert_eq!(cols[0].values.str(0), Some("a\"bé"));
        assert!(!cols[1].is_valid(0), "city is missing");
        assert!(!cols[2].is_valid(0), "fare is null");
        assert_eq!(cols[5].values, ColumnValues::TimestampMs(vec![1_714_543_200_000]));
    }

    #[test]
    fn bad_config_names_the_key() {
        let err = JsonParser::init(Config::from_json(r#"{"fields":[{"name":"a","type":"uuid"}],"event_time":"a"}"#))
            .err()
            .unwrap();
        assert!(err.contains("fields[0]") && err.contains("uuid"), "{err}");
        let err = JsonParser::init(Config::from_json(r#"{"fields":[{"name":"a","type":"text"}],"event_time":"t"}"#))
            .err()
            .unwrap();
        assert!(err.contains("event_time"), "{err}");
    }
}
