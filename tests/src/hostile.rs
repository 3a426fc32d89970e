//! Hostile input: JSON-lines trips of which one in ten is malformed or odd in one of
//! twenty ways (truncated, wrong types, huge or NUL-laden keys, deep nesting, invalid
//! UTF-8, binary, bad escapes, odd numbers and times, CRLF), shared by the both-sinks test
//! and the pipeline benchmark's hostile case.

use crate::lateness::Rng;

const T0: i64 = 1_714_550_400_000;

/// One odd record of kind `k`, about a clean record at `time`.
pub fn odd(k: u64, time: &str, rng: &mut Rng) -> Vec<u8> {
    let city = ["Oslo", "Lima", "Pune"][rng.below(3) as usize];
    let text = match k {
        0 => format!("{{\"city\":\"{city}\",\"fare\":"),
        1 => format!("{{\"city\":\"{city}\",\"fare\":\"twelve\",\"event_time\":\"{time}\"}}"),
        2 => format!("{{\"city\":42,\"fare\":1,\"event_time\":\"{time}\"}}"),
        3 => format!("{{\"city\":\"{}\",\"fare\":1,\"event_time\":\"{time}\"}}", "x".repeat(5_000)),
        4 => format!("{{\"city\":\"Nul\\u0000City\",\"fare\":1,\"event_time\":\"{time}\"}}"),
        5 => format!(
            "{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"{time}\",\"deep\":{}1{}}}",
            "[".repeat(300),
            "]".repeat(300)
        ),
        6 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"{time}\",\"note\":\"\\q\"}}"),
        7 => format!("{{\"city\":\"{city}\",\"fare\":1e999,\"event_time\":\"{time}\"}}"),
        8 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"2024-02-30T00:00:00Z\"}}"),
        9 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"{}\"}}", time.replace('Z', "+99:99")),
        10 => format!("{{\"fare\":1,\"event_time\":\"{time}\"}}"),
        11 => format!("{{\"city\":\"{city}\",\"fare\":-5,\"event_time\":\"{time}\"}}"),
        12 => format!("[\"{city}\",1,\"{time}\"]"),
        13 => "null".to_string(),
        14 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"2030-01-01T00:00:00Z\"}}"),
        15 => {
            let mut bytes = "{\"city\":\"Os".to_string().into_bytes();
            bytes.extend_from_slice(&[0xff, 0xfe]);
            bytes.extend_from_slice(format!("lo\",\"fare\":1,\"event_time\":\"{time}\"}}").as_bytes());
            return bytes;
        }
        16 => return (0..40).map(|_| rng.below(256) as u8).filter(|&b| b != b'\n').collect(),
        17 => {
            let mut bytes = "{\"city\":\"Ra".to_string().into_bytes();
            bytes.push(0);
            bytes.extend_from_slice(format!("w\",\"fare\":1,\"event_time\":\"{time}\"}}").as_bytes());
            return bytes;
        }
        18 => format!("{{\"city\":\"{city}\",\"fare\":1,\"event_time\":\"{time}\"}}\r"),
        _ => format!(
            "{{\"city\":\"{city}\",\"fare\":{},\"event_time\":\"{time}\",\"extra\":[1,2,{{\"a\":null}}]}}",
            rng.below(100)
        ),
    };
    text.into_bytes()
}

/// `records` trips a second apart, every tenth of them odd if `hostile` (twenty kinds in
/// turn at random); no final newline.
pub fn file(records: usize, hostile: bool) -> Vec<u8> {
    let mut rng = Rng(0x5eed_1234_5678_9abc);
    let mut out = Vec::new();
    for i in 0..records {
        let time = weir_sdk::time::format_iso8601(T0 + i as i64 * 1_000);
        if hostile && i % 10 == 9 {
            out.extend(odd(rng.below(20), &time, &mut rng));
        } else {
            let city = ["Oslo", "Lima", "Pune", "Kyiv"][rng.below(4) as usize];
            out.extend(
                format!("{{\"city\":\"{city}\",\"fare\":{},\"event_time\":\"{time}\"}}", 1 + rng.below(90)).bytes(),
            );
        }
        if i + 1 < records {
            out.push(b'\n');
        }
    }
    out
}
