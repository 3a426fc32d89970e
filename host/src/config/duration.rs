//! Durations as people write them in config files: `500ms`, `10s`, `1m`, `2h`.

use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m` or `h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a duration; write e.g. 500ms, 10s, 1m or 2h"))?;
    let ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("{text:?}: unknown unit {other:?}; use ms, s, m, h or d")),
    };
    // Event times are ms since the epoch in an i64; a longer duration would wrap when added.
    n.checked_mul(ms)
        .filter(|&total| total <= MAX_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too long: at most 100 years ({MAX_MS}ms)"))
}

/// The longest duration a setting may have: 100 years, far from any overflow when added
/// to an event time.
const MAX_MS: u64 = 100 * 365 * 24 * 3_600_000;

/// Serde adapter: a duration field written as a string.
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: an optional duration field written as a string.
pub fn optional_duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    serde_duration::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration(" 2h "), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("10").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("ten minutes").unwrap_err().contains("not a duration"));
    }
}
