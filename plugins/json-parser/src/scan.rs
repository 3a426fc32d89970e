//! A single-pass scanner for flat JSON objects that fills typed columns.
//!
//! It reads only the configured keys and skips everything else without building a
//! tree: the rides benchmark spends most of its time here, so it avoids allocation on
//! the common path (strings without escapes are sliced straight from the payload).
//!
//! In WASM every loop back-edge and function entry also pays an epoch check (the CPU
//! deadline), so the hot path is written to iterate little: strings are scanned sixteen
//! bytes at a time (WASM SIMD), the expected key is compared in place as two words
//! without scanning it, presence is a bitmask, numbers are scanned and converted in one
//! pass, and a timestamp's date is converted once per run of records that share it.

use weir_sdk::{Column, ColumnType, ColumnValues, EventBatch};

use crate::grammar::{check_escape, eof, skip_value, unescape};
use crate::TimeFormat;
use weir_sdk::time::DateCache;

/// One configured field.
pub struct FieldSpec {
    pub key: Vec<u8>,
    pub ty: ColumnType,
    pub required: bool,
    pub format: TimeFormat,
}

/// The most fields a parser can extract (presence is a 64-bit mask).
pub const MAX_FIELDS: usize = 64;

/// A key as up to two little-endian words, for loop-free comparison. Only for keys of at
/// most 16 bytes with neither a quote nor a backslash, whose bytes in a JSON key read as
/// themselves: then matching bytes mean the same key, and a match needs no scan.
#[derive(Clone, Copy)]
struct KeyWords {
    len: usize,
    words: [u64; 2],
}

/// The low `n` bytes of `word` (n ≤ 8).
#[inline(always)]
fn low_bytes(word: u64, n: usize) -> u64 {
    if n >= 8 {
        word
    } else {
        word & ((1u64 << (n * 8)) - 1)
    }
}

#[inline(always)]
fn word_at(p: &[u8], at: usize) -> Option<u64> {
    p.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}

impl KeyWords {
    fn new(key: &[u8]) -> Option<Self> {
        if key.len() > 16 || key.iter().any(|b| matches!(b, b'"' | b'\\')) {
            return None;
        }
        let mut padded = [0u8; 16];
        padded[..key.len()].copy_from_slice(key);
        let word = |k: usize| u64::from_le_bytes(padded[k * 8..k * 8 + 8].try_into().unwrap_or_default());
        Some(KeyWords { len: key.len(), words: [word(0), word(1)] })
    }

    /// Whether `p[start..start + len]` is this key; `None` when too near the end to read words.
    #[inline(always)]
    fn matches(&self, p: &[u8], start: usize, len: usize) -> Option<bool> {
        if len != self.len {
            return Some(false);
        }
        let first = low_bytes(word_at(p, start)?, len) == self.words[0];
        if len <= 8 {
            return Some(first);
        }
        Some(first && low_bytes(word_at(p, start + 8)?, len - 8) == self.words[1])
    }
}

/// A parsed value of the current record.
#[derive(Clone, Copy)]
enum Slot {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A byte range of the payload holding text without escapes.
    Text(u32, u32),
    /// An index into `Scratch::unescaped`.
    Unescaped(u32),
}

/// The values of the record being parsed. A slot is meaningful only if its bit is set
/// in `present`; a null value leaves the bit clear.
pub struct Scratch {
    slots: Vec<Slot>,
    present: u64,
    unescaped: Vec<String>,
    dates: DateCache,
}

/// Parses records against the configured fields.
pub struct RowParser {
    specs: Vec<FieldSpec>,
    words: Vec<Option<KeyWords>>,
    required: u64,
}

pub(crate) type Parsed<T> = Result<T, String>;

impl RowParser {
    /// Expects at most [`MAX_FIELDS`] specs (checked at init).
    pub fn new(specs: Vec<FieldSpec>) -> Self {
        let words = specs.iter().map(|s| KeyWords::new(&s.key)).collect();
        let required = specs.iter().enumerate().filter(|(_, s)| s.required).fold(0u64, |m, (i, _)| m | 1 << i);
        RowParser { specs, words, required }
    }

    pub fn scratch(&self) -> Scratch {
        Scratch {
            slots: vec![Slot::Null; self.specs.len()],
            present: 0,
            unescaped: Vec::new(),
            dates: DateCache::default(),
        }
    }

    pub fn columns(&self, capacity: usize) -> ColumnsOut {
        let columns = self
            .specs
            .iter()
            .map(|s| {
                let values = match s.ty {
                    ColumnType::Int64 => ColumnValues::Int64(Vec::with_capacity(capacity)),
                    ColumnType::Float64 => ColumnValues::Float64(Vec::with_capacity(capacity)),
                    ColumnType::Boolean => ColumnValues::Boolean(Vec::with_capacity(capacity)),
                    ColumnType::TimestampMs => ColumnValues::TimestampMs(Vec::with_capacity(capacity)),
                    ColumnType::Text => ColumnValues::empty(ColumnType::Text),
                };
                ColumnOut { values, valid: Vec::with_capacity(capacity), any_null: false }
            })
            .collect();
        ColumnsOut { columns, len: 0 }
    }

    /// Parses one record into `s`. On error `s` holds garbage and must not be pushed.
    pub fn parse(&self, p: &[u8], s: &mut Scratch) -> Parsed<()> {
        s.present = 0;
        if !s.unescaped.is_empty() {
            s.unescaped.clear();
        }
        let mut i = skip_ws(p, 0);
        match p.get(i) {
            Some(b'{') => i += 1,
            Some(_) => return Err("expected a JSON object".into()),
            None => return Err("empty record".into()),
        }
        i = skip_ws(p, i);
        if p.get(i) == Some(&b'}') {
            i += 1;
        } else {
            // Records usually list their keys in the same order, so try the field after
            // the last match first.
            let mut hint = 0;
            let mut seen = 0u64;
            loop {
                if p.get(i) != Some(&b'"') {
                    return Err(if i >= p.len() { eof() } else { format!("expected a key at byte {i}") });
                }
                // Usually the key is the expected one, followed by its colon: then it
                // need not be scanned.
                let found = match self.expected(p, i, hint) {
                    Some(after) => {
                        i = skip_ws(p, after);
                        Some(hint)
                    }
                    None => {
                        let key = scan_string(p, i)?;
                        i = skip_ws(p, key.next);
                        match p.get(i) {
                            Some(b':') => i = skip_ws(p, i + 1),
                            Some(_) => return Err(format!("expected ':' at byte {i}")),
                            None => return Err(eof()),
                        }
                        if key.escaped {
                            let name = unescape(&p[key.start..key.end])?;
                            self.specs.iter().position(|s| s.key == name.as_bytes())
                        } else {
                            self.lookup(p, key.start, key.end, hint)
                        }
                    }
                };
                match found {
                    Some(f) => {
                        // One rule for duplicate keys: a field the parser extracts may
                        // appear once (RFC 8259 leaves the meaning of a second to parsers).
                        if seen & (1 << f) != 0 {
                            return Err(format!("field {:?} appears twice", field_name(&self.specs[f])));
                        }
                        seen |= 1 << f;
                        i = self.value(f, p, i, s)?;
                        hint = f + 1;
                    }
                    None => i = skip_value(p, i)?,
                }
                i = skip_ws(p, i);
                match p.get(i) {
                    Some(b',') => i = skip_ws(p, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    Some(_) => return Err(format!("expected ',' or '}}' at byte {i}")),
                    None => return Err(eof()),
                }
            }
        }
        if skip_ws(p, i) != p.len() {
            return Err(format!("trailing characters after the object at byte {i}"));
        }
        let missing = self.required & !s.present;
        if missing != 0 {
            let spec = &self.specs[missing.trailing_zeros() as usize];
            return Err(format!("missing required field {:?} (absent or null)", field_name(spec)));
        }
        Ok(())
    }

    /// If the string at `p[i]` is field `f`'s key immediately followed by `:`, the index
    /// after the colon (only for keys with [`KeyWords`]).
    #[inline(always)]
    fn expected(&self, p: &[u8], i: usize, f: usize) -> Option<usize> {
        let words = (*self.words.get(f)?)?;
        let end = i + 1 + words.len;
        if words.matches(p, i + 1, words.len)? && p.get(end..end + 2)? == b"\":" {
            Some(end + 2)
        } else {
            None
        }
    }

    /// The field whose key is `p[start..end]`, trying `hint` first.
    #[inline(always)]
    fn lookup(&self, p: &[u8], start: usize, end: usize, hint: usize) -> Option<usize> {
        if hint < self.specs.len() && self.key_is(hint, p, start, end) {
            return Some(hint);
        }
        (0..self.specs.len()).find(|&f| self.key_is(f, p, start, end))
    }

    #[inline(always)]
    fn key_is(&self, f: usize, p: &[u8], start: usize, end: usize) -> bool {
        match self.words[f].and_then(|w| w.matches(p, start, end - start)) {
            Some(matched) => matched,
            None => self.specs[f].key == p[start..end],
        }
    }

    /// Parses the value at `p[i]` into field `f`'s slot and returns the index after it.
    fn value(&self, f: usize, p: &[u8], i: usize, s: &mut Scratch) -> Parsed<usize> {
        let spec = &self.specs[f];
        if p[i..].starts_with(b"null") {
            s.present &= !(1 << f);
            return Ok(i + 4);
        }
        let wrong = |expected: &str| {
            let got = match p.get(i) {
                Some(b'"') => "a string",
                Some(b'{') => "an object",
                Some(b'[') => "an array",
                Some(b't' | b'f') => "a boolean",
                Some(b'-' | b'0'..=b'9') => "a number",
                Some(_) => "an invalid value",
                None => return eof(),
            };
            format!("field {:?}: expected {expected}, got {got}", field_name(spec))
        };
        let (slot, next) = match spec.ty {
            ColumnType::Text => {
                if p.get(i) != Some(&b'"') {
                    return Err(wrong("a string"));
                }
                let str = scan_string(p, i)?;
                let slot = if str.escaped {
                    s.unescaped.push(unescape(&p[str.start..str.end])?);
                    Slot::Unescaped(s.unescaped.len() as u32 - 1)
                } else {
                    Slot::Text(str.start as u32, str.end as u32)
                };
                (slot, str.next)
            }
            ColumnType::Float64 => {
                let (simple, next) = scan_number(p, i).ok_or_else(|| number_error(spec, p, i, wrong("a number")))?;
                let v = match simple {
                    Some(v) => v,
                    None => {
                        let text = std::str::from_utf8(&p[i..next]).unwrap_or_default();
                        // A float64 holds no infinity: `1e999` is out of its range, not a value.
                        text.parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                            format!("field {:?}: number {text} is out of the range of a float64", field_name(spec))
                        })?
                    }
                };
                (Slot::Float(v), next)
            }
            ColumnType::Int64 => {
                let (v, next) = self.integer(spec, p, i).map_err(|e| e.unwrap_or_else(|| wrong("an integer")))?;
                (Slot::Int(v), next)
            }
            ColumnType::Boolean => {
                if p[i..].starts_with(b"true") {
                    (Slot::Bool(true), i + 4)
                } else if p[i..].starts_with(b"false") {
                    (Slot::Bool(false), i + 5)
                } else {
                    return Err(wrong("true or false"));
                }
            }
            ColumnType::TimestampMs => match spec.format {
                TimeFormat::EpochMillis => {
                    let (v, next) =
                        self.integer(spec, p, i).map_err(|e| e.unwrap_or_else(|| wrong("epoch milliseconds")))?;
                    (Slot::Int(v), next)
                }
                TimeFormat::Iso8601 => {
                    if p.get(i) != Some(&b'"') {
                        return Err(wrong("an ISO-8601 time string"));
                    }
                    let str = scan_string(p, i)?;
                    let raw = &p[str.start..str.end];
                    let ms = s.dates.parse(raw).ok_or_else(|| {
                        format!(
                            "field {:?}: invalid ISO-8601 time {:?}",
                            field_name(spec),
                            String::from_utf8_lossy(raw)
                        )
                    })?;
                    (Slot::Int(ms), str.next)
                }
            },
        };
        s.slots[f] = slot;
        s.present |= 1 << f;
        Ok(next)
    }

    /// An integer value; `Err(None)` means "not a number at all".
    fn integer(&self, spec: &FieldSpec, p: &[u8], i: usize) -> Result<(i64, usize), Option<String>> {
        let (_, next) = scan_number(p, i).ok_or_else(|| {
            p.get(i).filter(|b| matches!(b, b'-' | b'0'..=b'9')).map(|_| number_error(spec, p, i, String::new()))
        })?;
        let text = std::str::from_utf8(&p[i..next]).unwrap_or_default();
        let v = text
            .parse::<i64>()
            .map_err(|_| Some(format!("field {:?}: expected an integer, got {text}", field_name(spec))))?;
        Ok((v, next))
    }
}

/// The error for a value at `p[i]` that is not a JSON number: `otherwise` unless it looks
/// like one (`01`, `1.`, `2.e0`), which is then named as an invalid number.
fn number_error(spec: &FieldSpec, p: &[u8], i: usize, otherwise: String) -> String {
    if !matches!(p.get(i), Some(b'-' | b'0'..=b'9')) {
        return otherwise;
    }
    let end = p[i..].iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ')).map_or(p.len(), |n| i + n);
    format!("field {:?}: invalid number {:?}", field_name(spec), String::from_utf8_lossy(&p[i..end]))
}

fn field_name(spec: &FieldSpec) -> String {
    String::from_utf8_lossy(&spec.key).into_owned()
}

/// The columns being filled.
pub struct ColumnsOut {
    columns: Vec<ColumnOut>,
    len: u32,
}

struct ColumnOut {
    values: ColumnValues,
    valid: Vec<bool>,
    any_null: bool,
}

impl ColumnsOut {
    /// Appends the record parsed into `s` from `payload`.
    pub fn push(&mut self, s: &Scratch, payload: &[u8]) {
        for (f, (column, slot)) in self.columns.iter_mut().zip(&s.slots).enumerate() {
            let slot = if s.present & (1 << f) != 0 { *slot } else { Slot::Null };
            let is_null = matches!(slot, Slot::Null);
            column.any_null |= is_null;
            column.valid.push(!is_null);
            match (&mut column.values, slot) {
                (ColumnValues::Int64(v) | ColumnValues::TimestampMs(v), Slot::Int(x)) => v.push(x),
                (ColumnValues::Float64(v), Slot::Float(x)) => v.push(x),
                (ColumnValues::Boolean(v), Slot::Bool(x)) => v.push(x),
                (ColumnValues::Text(v), Slot::Text(a, b)) => v.push(&payload[a as usize..b as usize]),
                (ColumnValues::Text(v), Slot::Unescaped(k)) => v.push(s.unescaped[k as usize].as_bytes()),
                (ColumnValues::Int64(v) | ColumnValues::TimestampMs(v), _) => v.push(0),
                (ColumnValues::Float64(v), _) => v.push(0.0),
                (ColumnValues::Boolean(v), _) => v.push(false),
                (ColumnValues::Text(v), _) => v.push(b""),
            }
        }
        self.len += 1;
    }

    pub fn finish(self) -> EventBatch {
        let columns = self
            .columns
            .into_iter()
            .map(|c| Column { values: c.values, valid: if c.any_null { c.valid } else { Vec::new() } })
            .collect();
        EventBatch { len: self.len, columns }
    }
}

#[inline(always)]
pub(crate) fn skip_ws(p: &[u8], i: usize) -> usize {
    // Compact JSON has no white space; don't enter a loop for it.
    match p.get(i) {
        Some(b' ' | b'\t' | b'\n' | b'\r') => skip_ws_loop(p, i),
        _ => i,
    }
}

fn skip_ws_loop(p: &[u8], mut i: usize) -> usize {
    while i < p.len() && matches!(p[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A string's content range, whether it holds escapes or non-ASCII bytes, and the
/// index after its closing quote.
pub(crate) struct StrSpan {
    start: usize,
    end: usize,
    escaped: bool,
    pub(crate) next: usize,
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The bytes of `word` below `n` (at most 0x80), as their high bits (SWAR).
#[inline]
fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(LOW * u64::from(n)) & !word & HIGH
}

/// The bytes of `word` equal to `byte`, as their high bits (SWAR).
#[inline]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (LOW * u64::from(byte));
    x.wrapping_sub(LOW) & !x & HIGH
}

/// Scans and checks the string whose opening quote is at `p[i]`, sixteen bytes at a time
/// with WASM SIMD (eight with SWAR elsewhere): JSON strings are most of a record, and each
/// loop iteration costs an epoch check in WASM. A control character, an invalid escape or
/// invalid UTF-8 is an error (RFC 8259), wherever the string is.
#[inline(always)]
pub(crate) fn scan_string(p: &[u8], i: usize) -> Parsed<StrSpan> {
    let start = i + 1;
    let mut j = start;
    let mut escaped = false;
    let mut high = 0u64;
    loop {
        j = scan_plain(p, j, &mut high);
        match p.get(j) {
            Some(b'"') => {
                if high & HIGH != 0 && std::str::from_utf8(&p[start..j]).is_err() {
                    return Err(format!("invalid UTF-8 in the string at byte {i}"));
                }
                return Ok(StrSpan { start, end: j, escaped, next: j + 1 });
            }
            Some(b'\\') => {
                escaped = true;
                j = check_escape(p, j)?;
            }
            Some(&b) if b < 0x20 => return Err(format!("control character {b:#04x} in a string at byte {j}")),
            Some(&b) => {
                high |= u64::from(b);
                j += 1;
            }
            None => return Err(eof()),
        }
    }
}

/// The index of the first quote, backslash or control character at or after `j`, or of
/// the first byte too near the end to scan in bulk. Sets `HIGH` bits in `high` if a byte before it is not ASCII.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn scan_plain(p: &[u8], mut j: usize, high: &mut u64) -> usize {
    use core::arch::wasm32::*;
    while let Some(chunk) = p.get(j..j + 16) {
        // SAFETY: `chunk` holds 16 readable bytes; v128_load has no alignment requirement.
        let v = unsafe { v128_load(chunk.as_ptr().cast()) };
        let quote_or_backslash = v128_or(u8x16_eq(v, u8x16_splat(b'"')), u8x16_eq(v, u8x16_splat(b'\\')));
        let stop = u8x16_bitmask(v128_or(quote_or_backslash, u8x16_lt(v, u8x16_splat(0x20))));
        let wide = u8x16_bitmask(v);
        if stop == 0 {
            *high |= u64::from(wide != 0) << 7;
            j += 16;
            continue;
        }
        let at = stop.trailing_zeros();
        // Only the bytes before the stop belong to the string.
        *high |= u64::from(wide & ((1u16 << at) - 1) != 0) << 7;
        return j + at as usize;
    }
    scan_plain_words(p, j, high)
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn scan_plain(p: &[u8], j: usize, high: &mut u64) -> usize {
    scan_plain_words(p, j, high)
}

/// [`scan_plain`] eight bytes at a time (SWAR).
#[inline(always)]
fn scan_plain_words(p: &[u8], mut j: usize, high: &mut u64) -> usize {
    while let Some(chunk) = p.get(j..j + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let stop = bytes_equal(word, b'"') | bytes_equal(word, b'\\') | bytes_below(word, 0x20);
        if stop == 0 {
            *high |= word;
            j += 8;
            continue;
        }
        let at = (stop.trailing_zeros() / 8) as usize;
        *high |= word & ((1u64 << (at * 8)) - 1);
        return j + at;
    }
    j
}

/// Exact powers of ten as f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Scans the number at `p[i]` in one pass and returns its value, when it is a simple
/// decimal, and the index after it; `None` if no JSON number starts there (RFC 8259:
/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, so `01`, `1.` and `.5` are not).
///
/// `-?digits(.digits)?` with at most 15 significant digits is converted on the spot:
/// the mantissa and the power of ten are both exact in f64, so one IEEE division rounds
/// correctly (Clinger's fast path). Other forms return no value, for the full parser.
#[inline(always)]
pub(crate) fn scan_number(p: &[u8], i: usize) -> Option<(Option<f64>, usize)> {
    let negative = p.get(i) == Some(&b'-');
    let mut j = i + usize::from(negative);
    let mut mantissa = 0u64;
    let mut digits = 0usize;
    match p.get(j) {
        // A leading zero stands alone.
        Some(b'0') => {
            j += 1;
            digits = 1;
            if p.get(j).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        Some(b'1'..=b'9') => {
            while let Some(&b @ b'0'..=b'9') = p.get(j) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                digits += 1;
                j += 1;
            }
        }
        _ => return None,
    }
    let mut fraction = 0;
    if p.get(j) == Some(&b'.') {
        j += 1;
        while let Some(&b @ b'0'..=b'9') = p.get(j) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
            digits += 1;
            fraction += 1;
            j += 1;
        }
        if fraction == 0 {
            return None;
        }
    }
    let mut simple = digits <= 15;
    if matches!(p.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(p.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let start = j;
        while p.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j == start {
            return None;
        }
        simple = false;
    }
    let value = simple.then(|| {
        let v = mantissa as f64 / POW10[fraction];
        if negative {
            -v
        } else {
            v
        }
    });
    Some((value, j))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(text: &str) -> Option<f64> {
        scan_number(text.as_bytes(), 0).and_then(|(value, _)| value)
    }

    #[test]
    fn simple_decimals_match_the_full_parser() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let text = format!("{}.{:0width$}", x % 100_000, (x >> 20) % 10_000, width = (x % 5) as usize);
            assert_eq!(simple(&text), Some(text.parse::<f64>().unwrap()), "{text}");
        }
        for text in ["1e5", "1.", "1234567890123456", "-1e-3", "01", "2.e0"] {
            assert_eq!(simple(text), None, "{text}");
        }
        assert_eq!(scan_number(b"1.2.3", 0), Some((Some(1.2), 3)), "the number ends at the second dot");
        assert_eq!(simple("-10.03,"), Some(-10.03));
        assert!(scan_number(b".5", 0).is_none() && scan_number(b"-", 0).is_none());
    }

    #[test]
    fn strings_of_every_length_and_content() {
        for len in 0..40 {
            for fill in ["a", "é"] {
                let body = fill.repeat(len);
                let text = format!("\"{body}\"tail");
                let span = scan_string(text.as_bytes(), 0).unwrap();
                assert_eq!(&text[span.start..span.end], body);
                assert!(!span.escaped);
            }
            let text = format!("\"{}\\\"x\"", "b".repeat(len));
            let span = scan_string(text.as_bytes(), 0).unwrap();
            assert!(span.escaped);
            assert_eq!(span.next, text.len());
        }
        assert!(scan_string(b"\"never closed", 0).is_err());
    }
}
