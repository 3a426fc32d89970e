//! ISO-8601 timestamps to and from epoch milliseconds, without a date library.

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff…][Z|±HH:MM|±HHMM]` (a space may stand for `T`).
#[inline]
pub fn parse_iso8601(s: &[u8]) -> Option<i64> {
    DateCache::default().parse(s)
}

/// [`parse_iso8601`] that remembers the last date it converted: the times of a stream
/// mostly share their day, and converting a date is most of the work.
#[derive(Clone, Debug, Default)]
pub struct DateCache {
    /// The last valid `YYYY-MM-DD` seen, and its day number.
    last: Option<([u8; 10], i64)>,
}

impl DateCache {
    /// Parses like [`parse_iso8601`].
    #[inline]
    pub fn parse(&mut self, s: &[u8]) -> Option<i64> {
        if s.len() < 19 || !matches!(s[10], b'T' | b't' | b' ') || s[13] != b':' || s[16] != b':' {
            return None;
        }
        let days = self.days(&s[..10])?;
        let (hour, minute, second) = (digits(s, 11..13)?, digits(s, 14..16)?, digits(s, 17..19)?);
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        let mut i = 19;
        let mut millis = 0;
        if s.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            let count = i - start;
            if count == 0 {
                return None;
            }
            // Keep milliseconds; finer digits are truncated.
            let kept = count.min(3);
            millis = digits(s, start..start + kept)? * 10i64.pow(3 - kept as u32);
        }
        let offset_minutes = match s.get(i) {
            None => 0,
            Some(b'Z' | b'z') if i + 1 == s.len() => 0,
            Some(&sign @ (b'+' | b'-')) => {
                let rest = &s[i + 1..];
                let (h, m) = match rest.len() {
                    5 if rest[2] == b':' => (digits(s, i + 1..i + 3)?, digits(s, i + 4..i + 6)?),
                    4 => (digits(s, i + 1..i + 3)?, digits(s, i + 3..i + 5)?),
                    2 => (digits(s, i + 1..i + 3)?, 0),
                    _ => return None,
                };
                // RFC 3339: the offset's hour is 00-23 and its minute 00-59. `+99:99` is no
                // offset, and read as one it moved a record four days from its time.
                if h > 23 || m > 59 {
                    return None;
                }
                let total = h * 60 + m;
                if sign == b'+' {
                    total
                } else {
                    -total
                }
            }
            Some(_) => return None,
        };
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
        Some(seconds * 1000 + millis)
    }

    /// The day number of `YYYY-MM-DD`, or `None` if it is not a valid date.
    #[inline]
    fn days(&mut self, date: &[u8]) -> Option<i64> {
        if let Some((last, days)) = &self.last {
            if last[..] == *date {
                return Some(*days);
            }
        }
        if date[4] != b'-' || date[7] != b'-' {
            return None;
        }
        let (year, month, day) = (digits(date, 0..4)?, digits(date, 5..7)?, digits(date, 8..10)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        self.last = Some((date.try_into().ok()?, days));
        Some(days)
    }
}

/// The decimal number in `s[range]`, all digits.
#[inline]
fn digits(s: &[u8], range: std::ops::Range<usize>) -> Option<i64> {
    let mut v = 0i64;
    for &b in s.get(range)? {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(b - b'0');
    }
    Some(v)
}

#[inline]
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
#[inline]
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_iso8601(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{milli:03}Z")
}

/// The date of a day number since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::{format_iso8601, parse_iso8601, DateCache};

    #[test]
    fn format_round_trips() {
        for ms in [0, 1_714_550_396_722, -1000, 1_709_164_800_000, 4_102_444_800_000] {
            assert_eq!(parse_iso8601(format_iso8601(ms).as_bytes()), Some(ms), "{ms}");
        }
        assert_eq!(format_iso8601(1_714_550_396_722), "2024-05-01T07:59:56.722Z");
    }

    #[test]
    fn known_instants() {
        assert_eq!(parse_iso8601(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601(b"1970-01-01T23:59:00+23:59"), Some(0), "the largest offset there is");
        assert_eq!(parse_iso8601(b"2024-05-01T07:59:56.722Z"), Some(1_714_550_396_722));
        assert_eq!(parse_iso8601(b"2024-05-01T07:59:56.7Z"), Some(1_714_550_396_700));
        assert_eq!(parse_iso8601(b"2024-05-01T09:59:56.722+02:00"), Some(1_714_550_396_722));
        assert_eq!(parse_iso8601(b"2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(parse_iso8601(b"1969-12-31T23:59:59Z"), Some(-1000));
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T07:59:56.Z",
            "2024-05-01T07:59:56Zjunk",
            "2024-05-01T07:59:56+99:99",
            "2024-05-01T07:59:56-99:99",
            "2024-05-01T07:59:56+24:00",
            "2024-05-01T07:59:56+01:60",
            "2024-05-01T07:59:56+2400",
        ] {
            assert_eq!(parse_iso8601(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn a_remembered_date_gives_what_a_fresh_parse_gives() {
        let mut cache = DateCache::default();
        for text in [
            "2024-02-29T00:00:00Z",
            "2024-02-29T23:59:59.999Z",
            "2024-02-29T24:00:00Z",
            "2024-02-29X00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-02-29T01:00:00+01:00",
            "2024-0a-29T00:00:00Z",
            "2024-03-01T00:00:00Z",
            "2024-02-29T00:00:00Z",
        ] {
            assert_eq!(cache.parse(text.as_bytes()), parse_iso8601(text.as_bytes()), "{text}");
        }
    }
}
