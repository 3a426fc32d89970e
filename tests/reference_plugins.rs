//! The reference plugins as components: the rides chain through WASM matches an
//! expectation computed independently here, and matches the same code run natively.

use std::collections::BTreeMap;
use std::path::Path;

use weir::bench::chain::PluginChain;
use weir::bench::{native_chain, rides_batches, wasm_chain};
use weir::plugin::{Limits, Native, ParserStage, PluginKind, TransformStage};
use weir::rides::{RidesChainConfig, TripGenerator, TripOptions};
use weir_sdk::{ColumnValues, EventBatch, RawBatch};
use weir_tests::{guests, plugin, runtime};

fn plugin_dir() -> &'static Path {
    Path::new(guests::JSON_PARSER).parent().expect("guests live in a directory")
}

/// (window start, city) → (trips, sum of fares).
type Windows = BTreeMap<(i64, String), (i64, f64)>;

/// The windows and the number of dropped events, by reading each event with serde_json
/// and applying the rides rules by hand.
fn expected(events: &[Vec<u8>]) -> (Windows, usize) {
    let mut windows = BTreeMap::new();
    let mut dropped = 0;
    for event in events {
        let Ok(serde_json::Value::Object(e)) = serde_json::from_slice::<serde_json::Value>(event) else {
            dropped += 1;
            continue;
        };
        let field = |name: &str| e.get(name).cloned().unwrap_or_default();
        let (Some(city), Some(fare), Some(time)) = (
            field("city").as_str().map(String::from),
            field("fare").as_f64(),
            field("event_time").as_str().map(String::from),
        ) else {
            dropped += 1;
            continue;
        };
        if !(0.0..=10_000.0).contains(&fare) {
            dropped += 1;
            continue;
        }
        let ms = weir_sdk::time::parse_iso8601(time.as_bytes()).expect("generated times are valid");
        let entry = windows.entry((ms.div_euclid(60_000) * 60_000, city)).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += fare;
    }
    (windows, dropped)
}

fn results(chain: &mut PluginChain) -> Windows {
    let (keys, rows, outputs) = chain.results().unwrap();
    let col = |name: &str| outputs.iter().position(|c| c.name == name).unwrap();
    let (trips, avg) = (col("trips"), col("avg_fare"));
    keys.iter()
        .enumerate()
        .map(|(i, k)| {
            let n = rows.columns[trips].values.i64(i).unwrap();
            ((k.window_start, k.key.clone()), (n, rows.columns[avg].values.f64(i).unwrap() * n as f64))
        })
        .collect()
}

#[test]
fn rides_chain_matches_an_independent_computation() {
    let options = TripOptions { seed: 7, malformed_share: 0.05, late_share: 0.05, ..Default::default() };
    let mut generator = TripGenerator::new(options);
    let events: Vec<Vec<u8>> = (0..20_000).map(|_| generator.next_event()).collect();
    let (want, dropped) = expected(&events);

    let config = RidesChainConfig::builtin().unwrap();
    let mut chain = wasm_chain(runtime(), plugin_dir(), &config, &Limits::default()).unwrap();
    for batch in events.chunks(1000) {
        chain.process(&RawBatch::from_payloads(batch));
    }
    assert_eq!((chain.stats.malformed + chain.stats.rejected) as usize, dropped);
    assert!(chain.stats.malformed > 0 && chain.stats.rejected > 0, "{:?}", chain.stats);
    assert_eq!(chain.stats.failed, 0);
    let got = results(&mut chain);
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (key, (n, sum)) in &want {
        let (got_n, got_sum) = got[key];
        assert_eq!(got_n, *n, "{key:?}");
        assert!((got_sum - sum).abs() < 1e-6 * sum.max(1.0), "{key:?}: {got_sum} vs {sum}");
    }
}

#[test]
fn wasm_and_native_compute_the_same_windows() {
    let config = RidesChainConfig::builtin().unwrap();
    let batches = rides_batches(30_000, 2048, 11);
    let mut wasm = wasm_chain(runtime(), plugin_dir(), &config, &Limits::default()).unwrap();
    let mut native = native_chain(&config).unwrap();
    for batch in &batches {
        wasm.process(batch);
        native.process(batch);
    }
    assert_eq!(wasm.stats, native.stats);
    assert_eq!(wasm.results().unwrap().1, native.results().unwrap().1);
}

/// The parser scans strings sixteen bytes at a time in WASM and eight natively, and skips
/// scanning a key it expects: both must read every string as serde_json does, whatever its
/// length, bytes and escapes, and whatever the keys around it.
#[test]
fn the_wasm_parser_reads_every_string_as_the_native_one_does() {
    let config = serde_json::json!({
        "event_time": "t",
        "fields": [
            {"name": "city", "type": "text"},
            {"name": "city_code", "type": "text"},
            {"name": "fare", "type": "float64"},
            {"name": "t", "type": "timestamp"},
        ]
    });
    let mut records = Vec::new();
    for len in 0..40 {
        for fill in ["a", "é", "\\\"", "\\u00e9", "\\\\"] {
            let text = fill.repeat(len);
            let t = format!("2024-05-0{}T00:00:{:02}.{len}Z", 1 + len % 3, len % 60);
            records.push(format!(r#"{{"city":"{text}","fare":{len}.5,"t":"{t}"}}"#));
            records.push(format!(r#"{{"city_code":"{text}","city":"x","other":"{text}","t":"{t}"}}"#));
            records.push(format!(r#"{{ "t" : "{t}" , "city" : "{text}" }}"#));
            records.push(format!(r#"{{"t":"{t}","city":"{text}"#));
        }
    }
    let batch = RawBatch::from_payloads(&records);
    let mut wasm = plugin(guests::JSON_PARSER, PluginKind::Parser, &config, Limits::default());
    let mut native: Native<json_parser::JsonParser, weir_sdk::ParserInfo> =
        Native::parser(&config.to_string()).unwrap();
    let (got, want) = (wasm.parse(&batch), native.parse(&batch));
    assert!(got.failures.is_empty(), "{:?}", got.failures);
    assert_eq!(got.output, want.output);
    assert_eq!(want.output.errors.len(), records.len() / 4, "every truncated record, and nothing else");
    for (row, &i) in got.output.sources.iter().enumerate() {
        let record: serde_json::Value = serde_json::from_str(&records[i as usize]).unwrap();
        for (column, key) in [(0, "city"), (1, "city_code")] {
            let parsed = &got.output.events.columns[column];
            let value = parsed.is_valid(row).then(|| parsed.values.str(row));
            assert_eq!(value, record.get(key).map(|v| v.as_str()), "{key} of {record}");
        }
    }
}

/// The WASM build (its strings scanned sixteen bytes at a time with SIMD) refuses what
/// the native one does: control characters at every position of long strings, invalid
/// UTF-8, escapes, numbers and nesting that are not JSON.
#[test]
fn the_wasm_parser_is_as_strict_as_the_native_one() {
    let config = serde_json::json!({
        "event_time": "t",
        "fields": [{"name": "city", "type": "text"}, {"name": "fare", "type": "float64"}, {"name": "t", "type": "timestamp"}]
    });
    let mut records: Vec<Vec<u8>> = Vec::new();
    for at in 0..40 {
        for (field, bad) in [("city", "\u{1}"), ("note", "\u{1f}"), ("city", "\u{0}"), ("note", "\t")] {
            let text = format!("{}{bad}{}", "a".repeat(at), "b".repeat(40 - at));
            records.push(format!(r#"{{"{field}":"{text}","fare":1,"t":"2024-05-01T00:00:00Z"}}"#).into_bytes());
        }
        let mut utf8 = format!(r#"{{"note":"{}"#, "é".repeat(at)).into_bytes();
        utf8.extend_from_slice(&[0xc3, b'(']);
        utf8.extend_from_slice(br#"","t":"2024-05-01T00:00:00Z"}"#);
        records.push(utf8);
    }
    for bad in [r#""fare":01"#, r#""fare":1."#, r#""x":[1,2}"#, r#""x":"\ud800\u0041""#, r#""x":nul"#, r#""x":"\q""#] {
        records.push(format!(r#"{{{bad},"t":"2024-05-01T00:00:00Z"}}"#).into_bytes());
    }
    let batch = RawBatch::from_payloads(&records);
    let mut wasm = plugin(guests::JSON_PARSER, PluginKind::Parser, &config, Limits::default());
    let mut native: Native<json_parser::JsonParser, weir_sdk::ParserInfo> =
        Native::parser(&config.to_string()).unwrap();
    let (got, want) = (wasm.parse(&batch), native.parse(&batch));
    assert!(got.failures.is_empty(), "{:?}", got.failures);
    assert_eq!(got.output, want.output);
    assert_eq!(got.output.errors.len(), records.len(), "every record is refused: {:?}", got.output.sources);
    for record in &records {
        let value: Result<serde_json::Value, _> = serde_json::from_slice(record);
        assert!(value.is_err(), "serde_json reads {}", String::from_utf8_lossy(record));
    }
}

#[test]
fn miswired_stages_are_refused_with_the_column() {
    let mut config = RidesChainConfig::builtin().unwrap();
    config.aggregator.1 =
        serde_json::json!({"count": "trips", "metrics": [{"column": "tip", "stats": ["sum"]}]}).to_string();
    let err = wasm_chain(runtime(), plugin_dir(), &config, &Limits::default()).err().expect("tip is not parsed");
    assert!(format!("{err:#}").contains("\"tip\""), "{err:#}");
    config.aggregator.1 = serde_json::json!({"metrics": [{"column": "city", "stats": ["sum"]}]}).to_string();
    let err = wasm_chain(runtime(), plugin_dir(), &config, &Limits::default()).err().expect("city is text");
    assert!(format!("{err:#}").contains("float64") && format!("{err:#}").contains("text"), "{err:#}");
}

#[test]
fn projection_keeps_renames_and_filters() {
    let config = serde_json::json!({
        "columns": [{"name": "fare", "type": "float64", "rename": "fare_usd"}],
        "filter": {"column": "status", "equals": "completed"},
    });
    let mut projection = plugin(guests::PROJECTION, PluginKind::Transform, &config, Limits::default());
    assert_eq!(TransformStage::info(&projection).outputs[0].name, "fare_usd");
    let events = EventBatch {
        len: 3,
        columns: vec![
            weir_sdk::Column::new(ColumnValues::Float64(vec![1.5, 2.5, 3.5])),
            weir_sdk::Column::new(ColumnValues::Text(["completed", "started", "completed"].into_iter().collect())),
        ],
    };
    let out = projection.apply(&events);
    assert!(out.failures.is_empty());
    assert_eq!(out.output.sources, vec![0, 2]);
    assert_eq!(out.output.events.columns[0].values, ColumnValues::Float64(vec![1.5, 3.5]));
}

/// A component built against `weir:plugin@0.1.0` (the rules validator as it was before
/// 0.2.0, kept as a binary in `tests/compat/`) loads and runs beside 0.2.0 components,
/// with the same results as the current build of the same source.
#[test]
fn a_contract_0_1_component_runs_beside_0_2_ones() {
    let old = weir_tests::services::repo_root().join("tests/compat/rules_validator-0.1.0.wasm");
    let component = runtime().load(&old, &weir::plugin::Policy::none()).unwrap();
    assert_eq!((component.kind, component.contract.as_str()), (PluginKind::Validator, "0.1.0"));
    assert!(component.imports.iter().any(|i| i == "weir:plugin/host@0.1.0"), "{:?}", component.imports);

    let mixed = tempfile::tempdir().unwrap();
    for stem in ["json_parser", "window_stats"] {
        std::fs::copy(plugin_dir().join(format!("{stem}.wasm")), mixed.path().join(format!("{stem}.wasm"))).unwrap();
    }
    std::fs::copy(&old, mixed.path().join("rules_validator.wasm")).unwrap();
    let config = RidesChainConfig::builtin().unwrap();
    let batches = rides_batches(20_000, 2048, 5);
    let mut current = wasm_chain(runtime(), plugin_dir(), &config, &Limits::default()).unwrap();
    let mut with_old = wasm_chain(runtime(), mixed.path(), &config, &Limits::default()).unwrap();
    for batch in &batches {
        current.process(batch);
        with_old.process(batch);
    }
    assert!(current.stats.rejected > 0, "the validator must have something to reject: {:?}", current.stats);
    assert_eq!(with_old.stats, current.stats);
    assert_eq!(with_old.results().unwrap().1, current.results().unwrap().1);
}

/// `json-schema-parser` as a component: records that do not match the JSON Schema are
/// errors naming where, the others are columns.
#[test]
fn the_json_schema_parser_refuses_records_that_do_not_match_naming_where() {
    let config = serde_json::json!({
        "event_time": "event_time",
        "fields": [{"name": "city", "type": "text"}, {"name": "fare", "type": "float64"}, {"name": "event_time", "type": "timestamp"}],
        "schema": {
            "type": "object",
            "required": ["city", "fare", "event_time"],
            "properties": {
                "city": {"type": "string", "enum": ["Oslo", "Lima"]},
                "fare": {"type": "number", "minimum": 0, "maximum": 10000},
                "event_time": {"type": "string"}
            }
        }
    });
    let mut parser = plugin(guests::JSON_SCHEMA_PARSER, PluginKind::Parser, &config, Limits::default());
    let batch = RawBatch::from_payloads([
        r#"{"city":"Oslo","fare":12.5,"event_time":"2024-05-01T00:00:00Z"}"#,
        r#"{"city":"Paris","fare":12.5,"event_time":"2024-05-01T00:00:00Z"}"#,
        r#"{"city":"Lima","fare":-3,"event_time":"2024-05-01T00:00:00Z"}"#,
        r#"{"city":"Lima","event_time":"2024-05-01T00:00:00Z"}"#,
        r#"{"city":"Lima","fare":7,"event_time":"2024-05-01T00:02:00Z"}"#,
    ]);
    let parsed = parser.parse(&batch);
    assert!(parsed.failures.is_empty(), "{:?}", parsed.failures);
    assert_eq!(parsed.output.sources, [0, 4]);
    let reasons: Vec<&str> = parsed.output.errors.iter().map(|e| e.reason.as_str()).collect();
    assert!(reasons[0].contains("at /city"), "{reasons:?}");
    assert!(reasons[1].contains("at /fare") && reasons[1].contains("minimum"), "{reasons:?}");
    assert!(reasons[2].contains("\"fare\" is a required property"), "{reasons:?}");
    assert_eq!(parsed.output.events.columns[1].values.f64(1), Some(7.0));
}
