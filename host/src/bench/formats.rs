//! `weir bench schemas`: what the schema features cost, through the WASM components.
//! - Avro against JSON: the same trips, Confluent-framed Avro through `avro-parser` and
//!   JSON through `json-parser`, each declaring the same eight columns.
//! - A lookup enrichment against the rides chain: `enrich` adding two columns from a
//!   10-row table to the parsed trips, per event, over the chain's time per event.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use apache_avro::types::Value as Avro;
use weir_sdk::{EventBatch, RawBatch};

use crate::plugin::{
    Limits, LookupTable, ParserStage, Plugin, PluginKind, PluginRuntime, Policy, RuntimeOptions, TransformStage,
};
use crate::rides::{TripGenerator, TripOptions};

/// The trips' Avro schema: the JSON trips' eight fields.
const TRIP: &str = r#"{"type":"record","name":"Trip","namespace":"bench","fields":[
  {"name":"trip_id","type":"string"},{"name":"city","type":"string"},
  {"name":"driver_id","type":"string"},{"name":"rider_id","type":"string"},
  {"name":"fare","type":"double"},{"name":"distance_km","type":"double"},
  {"name":"status","type":"string"},
  {"name":"event_time","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;

/// The figures of one run.
#[derive(Debug)]
pub struct SchemaBench {
    pub events: usize,
    pub json_eps: f64,
    pub avro_eps: f64,
    pub json_bytes: usize,
    pub avro_bytes: usize,
    /// The rides chain, events/s.
    pub chain_eps: f64,
    /// `enrich` alone, events/s.
    pub enrich_eps: f64,
}

impl SchemaBench {
    /// Avro events/s over JSON events/s.
    pub fn avro_ratio(&self) -> f64 {
        self.avro_eps / self.json_eps
    }

    /// The enrichment's time per event over the chain's.
    pub fn lookup_share(&self) -> f64 {
        self.chain_eps / self.enrich_eps
    }
}

/// Well-formed trips as JSON, and the same trips as Confluent-framed Avro (schema id 1).
fn trips(events: usize, batch: usize) -> Result<(Vec<RawBatch>, Vec<RawBatch>)> {
    let options = TripOptions { seed: 42, malformed_share: 0.0, ..Default::default() };
    let mut generator = TripGenerator::new(options);
    let schema = apache_avro::Schema::parse_str(TRIP)?;
    let (mut json, mut avro) = (Vec::new(), Vec::new());
    let (mut j, mut a) = (RawBatch::default(), RawBatch::default());
    for offset in 0..events as i64 {
        let record = generator.next_event();
        let trip: serde_json::Value = serde_json::from_slice(&record)?;
        let text = |k: &str| Avro::String(trip[k].as_str().unwrap_or_default().to_string());
        let ms = weir_sdk::time::parse_iso8601(trip["event_time"].as_str().unwrap_or_default().as_bytes())
            .context("a generated trip's event time")?;
        let value = Avro::Record(vec![
            ("trip_id".into(), text("trip_id")),
            ("city".into(), text("city")),
            ("driver_id".into(), text("driver_id")),
            ("rider_id".into(), text("rider_id")),
            ("fare".into(), Avro::Double(trip["fare"].as_f64().unwrap_or_default())),
            ("distance_km".into(), Avro::Double(trip["distance_km"].as_f64().unwrap_or_default())),
            ("status".into(), text("status")),
            ("event_time".into(), Avro::TimestampMillis(ms)),
        ]);
        let mut framed = vec![0, 0, 0, 0, 1];
        framed.extend(apache_avro::to_avro_datum(&schema, value)?);
        j.push(&record, b"", -1, 0, offset);
        a.push(&framed, b"", -1, 0, offset);
        if j.len() == batch {
            json.push(std::mem::take(&mut j));
            avro.push(std::mem::take(&mut a));
        }
    }
    if !j.is_empty() {
        json.push(j);
        avro.push(a);
    }
    Ok((json, avro))
}

fn parse_all(parser: &mut Plugin, batches: &[RawBatch]) -> Result<(Duration, Vec<EventBatch>)> {
    parser.parse(&batches[0]);
    let started = Instant::now();
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let parsed = parser.parse(batch);
        ensure!(
            parsed.output.errors.is_empty() && parsed.failures.is_empty(),
            "records failed: {:?}",
            parsed.output.errors.first()
        );
        out.push(parsed.output.events);
    }
    Ok((started.elapsed(), out))
}

/// Runs the benchmark with the components in `plugin_dir`.
pub fn schema_bench(plugin_dir: &Path, events: usize, batch: usize) -> Result<SchemaBench> {
    let runtime = PluginRuntime::new(RuntimeOptions::default())?;
    let load = |stem: &str, kind: PluginKind, config: &str| -> Result<Plugin> {
        let component = runtime.load(&plugin_dir.join(format!("{stem}.wasm")), &Policy::none())?;
        Plugin::new(component, kind, config, Limits::default())
    };
    let (json, avro) = trips(events, batch)?;
    let bytes = |b: &[RawBatch]| b.iter().map(|b| b.payloads.bytes.len()).sum();

    let fields = r#"[{"name":"trip_id","type":"text"},{"name":"city","type":"text"},{"name":"driver_id","type":"text"},
        {"name":"rider_id","type":"text"},{"name":"fare","type":"float64"},{"name":"distance_km","type":"float64"},
        {"name":"status","type":"text"},{"name":"event_time","type":"timestamp"}]"#;
    let mut json_parser =
        load("json_parser", PluginKind::Parser, &format!(r#"{{"event_time":"event_time","fields":{fields}}}"#))?;
    runtime.resources().add_schema(
        weir_sdk::Schema {
            id: 1,
            subject: "trips-value".into(),
            version: 1,
            format: weir_sdk::SchemaFormat::Avro,
            text: TRIP.into(),
        },
        None,
    );
    let config = serde_json::json!({"event_time": "event_time", "schema": TRIP}).to_string();
    let mut avro_parser = load("avro_parser", PluginKind::Parser, &config)?;
    let (json_time, parsed) = parse_all(&mut json_parser, &json)?;
    let (avro_time, from_avro) = parse_all(&mut avro_parser, &avro)?;
    ensure!(parsed == from_avro, "the Avro and JSON parsers read the trips differently");

    // The lookup: the rides cities' table, and `enrich` over the parsed trips.
    let mut table = LookupTable {
        name: "cities".into(),
        version: "bench".into(),
        columns: vec!["region".into(), "timezone".into()],
        ..Default::default()
    };
    for city in TripOptions::default().cities {
        table.rows.insert(city.clone(), vec![Some(format!("region of {city}")), Some("UTC".into())]);
    }
    runtime.resources().set_lookup(Arc::new(table));
    let enrich_config = serde_json::json!({
        "table": "cities", "key": "city", "add": ["region", "timezone"],
        "keep": [{"name": "city", "type": "text"}, {"name": "fare", "type": "float64"}, {"name": "event_time", "type": "timestamp"}],
    });
    let mut enrich = load("enrich", PluginKind::Transform, &enrich_config.to_string())?;
    let inputs: Vec<usize> = ["city", "fare", "event_time"]
        .iter()
        .map(|c| ParserStage::info(&json_parser).outputs.iter().position(|o| o.name == *c).expect("a parsed column"))
        .collect();
    let enrich_inputs: Vec<EventBatch> = parsed.iter().map(|b| b.select(&inputs, None)).collect();
    enrich.apply(&enrich_inputs[0]);
    let started = Instant::now();
    for b in &enrich_inputs {
        let out = enrich.apply(b);
        ensure!(out.output.errors.is_empty() && out.output.events.len() == b.len(), "enrich dropped rows");
    }
    let enrich_time = started.elapsed();

    let chain = super::plugin_throughput(plugin_dir, events, batch, Limits::default())?;
    let per_s = |t: Duration| events as f64 / t.as_secs_f64();
    Ok(SchemaBench {
        events,
        json_eps: per_s(json_time),
        avro_eps: per_s(avro_time),
        json_bytes: bytes(&json),
        avro_bytes: bytes(&avro),
        chain_eps: chain.wasm.events_per_second,
        enrich_eps: per_s(enrich_time),
    })
}
