//! `avro-parser`: Avro records framed for a schema registry, resolved to the pipeline's
//! reader schema.
//!
//! ```toml
//! [schemas]
//! reader = "schemas/trip-v2.avsc"   # the reader schema (or config.schema inline)
//!
//! [stages.parse]
//! plugin = "avro-parser"
//! config.event_time = "ts"          # a timestamp (or long of milliseconds) field
//! config.framing = "auto"           # "confluent", "single-object" or "auto"
//! ```
//!
//! Each record names its writer schema: the Confluent wire format as a magic byte 0 and a
//! 4-byte big-endian id before the body; Avro's single-object encoding as `C3 01` and the
//! 8-byte little-endian CRC-64-AVRO fingerprint. The host fetches those schemas from the
//! registry before the batch reaches the plugin (contract 0.2.0, `schemas`); the plugin
//! resolves each writer schema to the reader schema once (`plan.rs`) and then decodes the
//! bodies straight into columns (`writer.rs`). The output columns are the reader schema's
//! fields: `["null", T]` is a nullable column; `int`/`long` is int64, `float`/`double`
//! float64, `string`/`enum`/`uuid` text, the timestamp and date logical types timestamps.

mod columns;
mod plan;
mod writer;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use apache_avro::Schema;
use serde::Deserialize;
use weir_sdk::{ColumnDef, Config, ParseOutput, Parser, ParserInfo, RawBatch, RecordError};

use columns::Columns;
use plan::{Action, Plan, ReaderField};
use writer::Reader;

/// How records name their writer schema.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Either, told apart by the first bytes.
    #[default]
    Auto,
    /// Magic byte 0, then the schema id (4 bytes, big-endian).
    Confluent,
    /// `C3 01`, then the schema's fingerprint (8 bytes, little-endian).
    SingleObject,
}

/// The parser's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvroParserConfig {
    /// The reader field that holds the event time.
    pub event_time: String,
    /// The reader schema as Avro JSON; by default the pipeline's (`[schemas] reader`).
    #[serde(default)]
    pub schema: Option<String>,
    /// How records are framed.
    #[serde(default)]
    pub framing: Framing,
}

/// Which writer schema a record names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum WriterKey {
    Id(u32),
    Fingerprint(u64),
}

/// The configured parser.
pub struct AvroParser {
    fields: Vec<ReaderField>,
    columns: Vec<ColumnDef>,
    framing: Framing,
    /// Each writer schema's plan (or why there is none), made on its first record.
    plans: RefCell<HashMap<WriterKey, Rc<Result<Plan, String>>>>,
}

impl Parser for AvroParser {
    fn init(config: Config) -> Result<(Self, ParserInfo), String> {
        let config: AvroParserConfig = config.parse()?;
        let text = match config.schema {
            Some(text) => text,
            None => weir_sdk::resources::reader_schema().map(|s| s.text).ok_or(
                "no reader schema: declare one in the pipeline ([schemas] reader = \"FILE.avsc\") or give config.schema",
            )?,
        };
        let reader =
            Schema::parse_str(&text).map_err(|e| format!("the reader schema is not a valid Avro schema: {e}"))?;
        let fields = plan::reader_fields(&reader, &config.event_time)?;
        let time = fields
            .iter()
            .find(|f| f.name == config.event_time)
            .ok_or_else(|| format!("event_time {:?} is not a field of the reader schema", config.event_time))?;
        if time.ty != weir_sdk::ColumnType::TimestampMs {
            return Err(format!("event_time {:?} must be a timestamp or a long of milliseconds", config.event_time));
        }
        let columns = plan::columns(&fields);
        let info = ParserInfo { outputs: columns.clone(), event_time_column: config.event_time };
        Ok((AvroParser { fields, columns, framing: config.framing, plans: RefCell::default() }, info))
    }

    fn parse(&self, batch: &RawBatch) -> ParseOutput {
        let mut out = Columns::new(&self.columns, batch.len());
        let mut sources = Vec::with_capacity(batch.len());
        let mut errors = Vec::new();
        // Records of one batch mostly share a writer schema: its plan is kept at hand.
        let mut last: Option<(WriterKey, Rc<Result<Plan, String>>)> = None;
        for (i, payload) in batch.payloads.iter().enumerate() {
            match self.record(payload, &mut last, &mut out) {
                Ok(()) => sources.push(i as u32),
                Err(reason) => {
                    out.truncate(sources.len());
                    errors.push(RecordError { index: i as u32, reason })
                }
            }
        }
        ParseOutput { events: out.finish(sources.len()), sources, errors }
    }
}

impl AvroParser {
    /// Decodes one record into `out`; on error `out` may hold part of it, which the caller
    /// truncates away.
    fn record(
        &self,
        payload: &[u8],
        last: &mut Option<(WriterKey, Rc<Result<Plan, String>>)>,
        out: &mut Columns,
    ) -> Result<(), String> {
        let (key, body) = self.frame(payload)?;
        if last.as_ref().is_none_or(|(k, _)| *k != key) {
            *last = Some((key, self.plan(key)?));
        }
        let plan: &Plan = last.as_ref().expect("set above").1.as_ref().as_ref().map_err(Clone::clone)?;
        let mut reader = Reader { bytes: body, at: 0 };
        for ((name, w), action) in plan.root.iter().zip(&plan.actions) {
            let failed = |e: String| format!("field {name:?}: {e}");
            match *action {
                Action::Text(c) => {
                    let bytes = reader.string().map_err(failed)?;
                    std::str::from_utf8(bytes).map_err(|_| failed("a string that is not UTF-8".into()))?;
                    out.push_text(c, bytes);
                }
                Action::Long(c) => out.push_i64(c, reader.long().map_err(failed)?),
                Action::Double(c) => {
                    let bytes = reader.bytes(8).map_err(failed)?;
                    out.push_f64(c, f64::from_le_bytes(bytes.try_into().expect("8 bytes")));
                }
                Action::Skip => reader.skip(w, &plan.named).map_err(failed)?,
                Action::Fill(c) => {
                    let cell = reader.cell(w, &plan.named).map_err(failed)?;
                    let cell =
                        cell.ok_or_else(|| failed("a complex value where the reader expects a column".into()))?;
                    out.push(c, &plan::convert(cell, &self.fields[c]).map_err(failed)?);
                }
            }
        }
        if reader.at != body.len() {
            return Err(format!("{} bytes follow the record", body.len() - reader.at));
        }
        for (c, default) in plan.defaults.iter().enumerate() {
            if let Some(d) = default {
                out.push(c, &d.value(self.fields[c].ty));
            }
        }
        Ok(())
    }

    fn frame<'a>(&self, payload: &'a [u8]) -> Result<(WriterKey, &'a [u8]), String> {
        let confluent = || -> Result<(WriterKey, &'a [u8]), String> {
            match payload {
                [0, a, b, c, d, body @ ..] => Ok((WriterKey::Id(u32::from_be_bytes([*a, *b, *c, *d])), body)),
                [0, ..] => Err(format!("a Confluent frame of {} bytes, shorter than its 5-byte header", payload.len())),
                [first, ..] => {
                    Err(format!("not Confluent-framed: the first byte is 0x{first:02x}, not the magic byte 0"))
                }
                [] => Err("an empty record".into()),
            }
        };
        let single = || -> Result<(WriterKey, &'a [u8]), String> {
            match payload {
                [0xc3, 0x01, rest @ ..] if rest.len() >= 8 => {
                    let fingerprint = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
                    Ok((WriterKey::Fingerprint(fingerprint), &rest[8..]))
                }
                [0xc3, 0x01, ..] => Err("a single-object frame shorter than its 10-byte header".into()),
                _ => Err("not single-object encoded: it does not start with C3 01".into()),
            }
        };
        match self.framing {
            Framing::Confluent => confluent(),
            Framing::SingleObject => single(),
            Framing::Auto => match payload.first() {
                Some(0xc3) => single(),
                Some(0) | None => confluent(),
                Some(first) => Err(format!(
                    "not framed for a schema registry: the first byte is 0x{first:02x}, neither the magic byte 0 nor C3 01"
                )),
            },
        }
    }

    fn plan(&self, key: WriterKey) -> Result<Rc<Result<Plan, String>>, String> {
        if let Some(plan) = self.plans.borrow().get(&key) {
            return Ok(plan.clone());
        }
        let schema = match key {
            WriterKey::Id(id) => weir_sdk::resources::schema_by_id(id)
                .ok_or_else(|| format!("unknown schema id {id}: the registry has no schema with this id"))?,
            WriterKey::Fingerprint(f) => weir_sdk::resources::schema_by_fingerprint(f)
                .ok_or_else(|| format!("unknown schema fingerprint {f:016x}: the registry has no schema with it"))?,
        };
        let named = format!("writer schema {} ({} version {})", schema.id, schema.subject, schema.version);
        let plan = Schema::parse_str(&schema.text)
            .map_err(|e| format!("{named} is not a valid Avro schema: {e}"))
            .and_then(|writer| plan::plan(&writer, &self.fields).map_err(|e| format!("{named} cannot be read: {e}")));
        let plan = Rc::new(plan);
        self.plans.borrow_mut().insert(key, plan.clone());
        Ok(plan)
    }
}

weir_sdk::export!(parser: AvroParser);

#[cfg(test)]
mod tests;
