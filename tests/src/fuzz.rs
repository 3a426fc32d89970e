//! Fuzzed input for the rides files pipeline: clean trips, and records broken in one of
//! many ways at random (truncated, wrong types, huge, deeply nested, invalid UTF-8,
//! binary, blank, duplicated keys, NUL in the key, not an object). Every broken record
//! must become a dead letter at its own offset, but a blank line, which a files source
//! skips (it holds no record); the clean ones count in their windows. Event times only
//! grow, so nothing is late.

use std::collections::{BTreeMap, BTreeSet};

use crate::lateness::Rng;

const T0: i64 = 1_714_550_400_000;
const CITIES: [&str; 4] = ["Oslo", "Lima", "Pune", "Kyiv"];

/// A fuzzed file and what weir must make of it.
#[derive(Default)]
pub struct Fuzzed {
    pub bytes: Vec<u8>,
    /// Offsets of the broken records.
    pub broken: BTreeSet<i64>,
    /// Offsets of the blank lines.
    pub blank: BTreeSet<i64>,
    /// (window start, city) → (trips, fare sum) of the clean ones.
    pub windows: BTreeMap<(i64, String), (i64, i64)>,
    /// Records of each kind of damage.
    pub kinds: BTreeMap<&'static str, u64>,
}

fn clean(city: &str, fare: i64, t: i64) -> String {
    format!("{{\"city\":\"{city}\",\"fare\":{fare},\"event_time\":\"{}\"}}", weir_sdk::time::format_iso8601(t))
}

/// One broken record about the clean `good`, and its kind.
fn broken(rng: &mut Rng, good: &str, city: &str, time: &str, huge_ok: bool) -> (&'static str, Vec<u8>) {
    let text = |kind, s: String| (kind, s.into_bytes());
    match rng.below(if huge_ok { 14 } else { 13 }) {
        0 => ("truncated", good.as_bytes()[..1 + rng.below(good.len() as u64 - 2) as usize].to_vec()),
        1 => text("fare is text", format!("{{\"city\":\"{city}\",\"fare\":\"12\",\"event_time\":\"{time}\"}}")),
        2 => {
            let fare = ["true", "[1]", "{\"v\":1}", "null"][rng.below(4) as usize];
            text("fare of another type", format!("{{\"city\":\"{city}\",\"fare\":{fare},\"event_time\":\"{time}\"}}"))
        }
        3 => text("city is a number", format!("{{\"city\":7,\"fare\":3,\"event_time\":\"{time}\"}}")),
        4 => text("time is a number", format!("{{\"city\":\"{city}\",\"fare\":3,\"event_time\":{T0}}}")),
        5 => text(
            "key over max_key_bytes",
            format!("{{\"city\":\"{}\",\"fare\":3,\"event_time\":\"{time}\"}}", "k".repeat(2000)),
        ),
        6 => {
            let depth = 129 + rng.below(400) as usize;
            let nest = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            text(
                "nested too deep",
                format!("{{\"city\":\"{city}\",\"fare\":3,\"event_time\":\"{time}\",\"x\":{nest}}}"),
            )
        }
        7 => {
            let mut b = format!("{{\"city\":\"{}", &city[..2]).into_bytes();
            b.extend_from_slice(&[0xc3, 0x28, 0xff]);
            b.extend_from_slice(format!("\",\"fare\":3,\"event_time\":\"{time}\"}}").as_bytes());
            ("invalid UTF-8", b)
        }
        8 => {
            let mut b = vec![0xff];
            b.extend((0..rng.below(200)).map(|_| rng.below(256) as u8).filter(|&c| c != b'\n'));
            ("binary", b)
        }
        9 => ("blank", [&b""[..], b" ", b"\t \r"][rng.below(3) as usize].to_vec()),
        10 => text(
            "duplicated key",
            format!("{{\"city\":\"{city}\",\"city\":\"X\",\"fare\":3,\"event_time\":\"{time}\"}}"),
        ),
        11 => text("NUL in the key", format!("{{\"city\":\"Nu\\u0000l\",\"fare\":3,\"event_time\":\"{time}\"}}")),
        12 => text("not an object", ["[1,2]", "\"trip\"", "42", "null", "{}"][rng.below(5) as usize].to_string()),
        _ => text("over max_record_bytes", format!("{{\"city\":\"{city}\",\"note\":\"{}\"}}", "h".repeat(5 << 20))),
    }
}

/// `broken` fuzzed records with `clean` good ones spread among them, from `seed`; at most
/// `huge` of them over the 4 MiB record limit.
pub fn file(broken_records: u64, clean_records: u64, huge: u64, seed: u64) -> Fuzzed {
    let mut rng = Rng(seed | 1);
    let mut out = Fuzzed::default();
    let total = broken_records + clean_records;
    let (mut bad_left, mut huge_left) = (broken_records, huge);
    for i in 0..total {
        let t = T0 + i as i64 * 50;
        let city = CITIES[rng.below(4) as usize];
        let fare = 1 + rng.below(90) as i64;
        let good = clean(city, fare, t);
        let offset = out.bytes.len() as i64;
        // Broken with the share still to place, so both counts come out exact.
        if rng.below(total - i) < bad_left {
            bad_left -= 1;
            let (kind, bytes) = broken(&mut rng, &good, city, &weir_sdk::time::format_iso8601(t), huge_left > 0);
            huge_left -= u64::from(kind == "over max_record_bytes");
            *out.kinds.entry(kind).or_default() += 1;
            out.bytes.extend_from_slice(&bytes);
            if kind == "blank" {
                out.blank.insert(offset);
            } else {
                out.broken.insert(offset);
            }
        } else {
            out.bytes.extend_from_slice(good.as_bytes());
            let w = out.windows.entry((t.div_euclid(60_000) * 60_000, city.to_string())).or_default();
            *w = (w.0 + 1, w.1 + fare);
        }
        out.bytes.push(b'\n');
    }
    out
}
