//! Records written by apache-avro's own encoder with two versions of the trips schema,
//! read through the parser with the second as the reader schema.

use std::sync::Arc;

use apache_avro::types::Value as Avro;
use apache_avro::{to_avro_datum, Schema as AvroSchema};
use weir_sdk::resources::{install, Resources};
use weir_sdk::{Column, Config, PackedBytes, Parser, RawBatch, Schema, SchemaFormat};

use crate::AvroParser;

pub const V1: &str = r#"{"type":"record","name":"Trip","namespace":"rides","fields":[
  {"name":"trip_id","type":"string"},
  {"name":"city","type":"string"},
  {"name":"fare","type":"float"},
  {"name":"distance_km","type":"double"},
  {"name":"status","type":{"type":"enum","name":"Status","symbols":["completed","cancelled"]}},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;

pub const V2: &str = r#"{"type":"record","name":"Trip","namespace":"rides","fields":[
  {"name":"trip_id","type":"string"},
  {"name":"city","type":"string"},
  {"name":"fare","type":"double"},
  {"name":"distance","type":"double","aliases":["distance_km"]},
  {"name":"status","type":{"type":"enum","name":"Status","symbols":["completed","cancelled"]}},
  {"name":"tip","type":["null","double"],"default":null},
  {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;

struct Registry;

impl Resources for Registry {
    fn schema_by_id(&self, id: u32) -> Option<Schema> {
        let text = match id {
            1 => V1,
            2 => V2,
            _ => return None,
        };
        Some(Schema { id, subject: "trips-value".into(), version: id, format: SchemaFormat::Avro, text: text.into() })
    }
    fn schema_by_fingerprint(&self, fingerprint: u64) -> Option<Schema> {
        let v1 = AvroSchema::parse_str(V1).unwrap().fingerprint::<apache_avro::rabin::Rabin>();
        let v1 = u64::from_le_bytes(v1.bytes.try_into().unwrap());
        (fingerprint == v1).then(|| self.schema_by_id(1)).flatten()
    }
    fn reader_schema(&self) -> Option<Schema> {
        self.schema_by_id(2)
    }
    fn lookup_columns(&self, _: &str) -> Result<Vec<String>, String> {
        Err("none".into())
    }
    fn lookup(&self, _: &str, _: &[String], _: &PackedBytes) -> Result<Vec<Column>, String> {
        Err("none".into())
    }
}

fn parser() -> AvroParser {
    install(Arc::new(Registry));
    AvroParser::init(Config::from_json(r#"{"event_time":"ts"}"#.to_string())).unwrap().0
}

fn v1(trip: &str, fare: f32, km: f64, ts: i64) -> Vec<u8> {
    let schema = AvroSchema::parse_str(V1).unwrap();
    let record = Avro::Record(vec![
        ("trip_id".into(), Avro::String(trip.into())),
        ("city".into(), Avro::String("Oslo".into())),
        ("fare".into(), Avro::Float(fare)),
        ("distance_km".into(), Avro::Double(km)),
        ("status".into(), Avro::Enum(1, "cancelled".into())),
        ("ts".into(), Avro::TimestampMillis(ts)),
    ]);
    to_avro_datum(&schema, record).unwrap()
}

fn v2(trip: &str, fare: f64, km: f64, tip: Option<f64>, ts: i64) -> Vec<u8> {
    let schema = AvroSchema::parse_str(V2).unwrap();
    let tip = match tip {
        Some(t) => Avro::Union(1, Box::new(Avro::Double(t))),
        None => Avro::Union(0, Box::new(Avro::Null)),
    };
    let record = Avro::Record(vec![
        ("trip_id".into(), Avro::String(trip.into())),
        ("city".into(), Avro::String("Lima".into())),
        ("fare".into(), Avro::Double(fare)),
        ("distance".into(), Avro::Double(km)),
        ("status".into(), Avro::Enum(0, "completed".into())),
        ("tip".into(), tip),
        ("ts".into(), Avro::TimestampMillis(ts)),
    ]);
    to_avro_datum(&schema, record).unwrap()
}

fn confluent(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn v1_and_v2_records_resolve_to_the_reader_schema() {
    let parser = parser();
    let batch = RawBatch::from_payloads([
        confluent(1, &v1("a", 12.5, 3.25, 1_000)),
        confluent(2, &v2("b", 20.125, 7.5, Some(2.5), 2_000)),
        confluent(2, &v2("c", 9.0, 1.0, None, 3_000)),
    ]);
    let out = parser.parse(&batch);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let col = |name: &str| &out.events.columns[parser.columns.iter().position(|c| c.name == name).unwrap()];
    assert_eq!(out.events.len, 3);
    // float → double promotion, the alias, the enum, and v2's default for v1's missing tip.
    assert_eq!(col("fare").values.f64(0), Some(12.5));
    assert_eq!(col("distance").values.f64(0), Some(3.25));
    assert_eq!(col("status").values.str(0), Some("cancelled"));
    assert!(!col("tip").is_valid(0));
    assert_eq!((col("tip").values.f64(1), col("tip").is_valid(1)), (Some(2.5), true));
    assert!(!col("tip").is_valid(2));
    assert_eq!(col("ts").values.i64(2), Some(3_000));
    assert_eq!(col("trip_id").values.str(1), Some("b"));
}

#[test]
fn single_object_records_are_found_by_fingerprint() {
    let parser = parser();
    let fingerprint = AvroSchema::parse_str(V1).unwrap().fingerprint::<apache_avro::rabin::Rabin>().bytes;
    let mut record = vec![0xc3, 0x01];
    record.extend_from_slice(&fingerprint);
    record.extend_from_slice(&v1("s", 1.5, 2.0, 5));
    let out = parser.parse(&RawBatch::from_payloads([record]));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.events.len, 1);
}

#[test]
fn bad_records_are_errors_that_say_why() {
    let parser = parser();
    let good = v2("b", 20.0, 7.5, Some(2.5), 2_000);
    let mut bad_branch = good.clone();
    // The union's branch index sits after trip_id, city, fare, distance and status.
    let at = 2 + 5 + 8 + 8 + 1;
    bad_branch[at] = 0x08;
    // trip_id's length forged to 2^62: refused, not a panic.
    let mut forged = good.clone();
    forged.splice(0..1, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]);
    let batch = RawBatch::from_payloads([
        confluent(2, &forged),
        confluent(9, &good),
        confluent(2, &good[..good.len() - 1]),
        [confluent(2, &good), vec![1, 2]].concat(),
        b"{\"json\": true}".to_vec(),
        confluent(2, &bad_branch),
    ]);
    let out = parser.parse(&batch);
    let mut reasons: Vec<&str> = out.errors.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(out.events.len, 0);
    let forged = reasons.remove(0);
    // 2^62 bytes: more than the record has (natively), or than a wasm32 guest can address.
    assert!(forged.contains("field \"trip_id\"") && forged.contains("4611686018427387904"), "{forged}");
    assert!(reasons[0].contains("unknown schema id 9"), "{reasons:?}");
    assert!(reasons[1].contains("field \"ts\""), "{reasons:?}");
    assert!(reasons[2].contains("2 bytes follow"), "{reasons:?}");
    assert!(reasons[3].contains("0x7b"), "{reasons:?}");
    assert!(reasons[4].contains("field \"tip\"") && reasons[4].contains("union branch 4"), "{reasons:?}");
}

/// Where the plugin's own decoding and apache-avro's decoding plus resolution both apply
/// (no alias), they agree.
#[test]
fn decoding_agrees_with_apache_avro() {
    let parser = parser();
    let writer = AvroSchema::parse_str(V2).unwrap();
    let mut records = Vec::new();
    for i in 0..200 {
        let tip = (i % 3 != 0).then_some(i as f64 / 7.0);
        records.push(v2(&format!("t{i}"), i as f64 * 1.25 - 40.0, i as f64 / 3.0, tip, i * 1_000_003 - 50_000_000));
    }
    let out = parser.parse(&RawBatch::from_payloads(records.iter().map(|r| confluent(2, r))));
    assert!(out.errors.is_empty());
    for (row, record) in records.iter().enumerate() {
        let Avro::Record(fields) = apache_avro::from_avro_datum(&writer, &mut &record[..], Some(&writer)).unwrap()
        else {
            panic!("a record")
        };
        for (c, (name, value)) in fields.iter().enumerate() {
            let column = &out.events.columns[c];
            assert_eq!(parser.columns[c].name, *name);
            match value {
                Avro::String(s) => assert_eq!(column.values.str(row), Some(s.as_str())),
                Avro::Double(d) => assert_eq!(column.values.f64(row), Some(*d)),
                Avro::Enum(_, s) => assert_eq!(column.values.str(row), Some(s.as_str())),
                Avro::TimestampMillis(t) => assert_eq!(column.values.i64(row), Some(*t)),
                Avro::Union(0, _) => assert!(!column.is_valid(row)),
                Avro::Union(_, v) => assert_eq!(
                    column.values.f64(row),
                    Some(match **v {
                        Avro::Double(d) => d,
                        _ => unreachable!(),
                    })
                ),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// Hostile bodies: random bytes, and valid records cut or corrupted at every byte, under
/// both writer schemas. Each record is read or refused with a reason; none panics, and a
/// batch keeps one row per record read.
#[test]
fn damaged_and_random_bodies_are_refused_never_a_panic() {
    let parser = parser();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut records = Vec::new();
    for i in 0..2_000 {
        let len = (next() % 64) as usize;
        let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        records.push(confluent(1 + (i % 2) as u32, &body));
    }
    for good in [v1("a", 1.5, 2.0, 3), v2("b", 4.5, 6.0, Some(1.0), 7)] {
        let id = if good.len() == v1("a", 1.5, 2.0, 3).len() { 1 } else { 2 };
        for cut in 0..good.len() {
            records.push(confluent(id, &good[..cut]));
            let mut flipped = good.clone();
            flipped[cut] ^= 0xff;
            records.push(confluent(id, &flipped));
        }
    }
    let out = parser.parse(&RawBatch::from_payloads(&records));
    assert_eq!(out.sources.len() + out.errors.len(), records.len());
    assert_eq!(out.events.len as usize, out.sources.len());
    assert!(out.errors.iter().all(|e| !e.reason.is_empty()));
    for column in &out.events.columns {
        assert_eq!(column.values.len(), out.sources.len(), "every column has a row per record read");
        assert!(column.valid.is_empty() || column.valid.len() == out.sources.len());
    }
}
