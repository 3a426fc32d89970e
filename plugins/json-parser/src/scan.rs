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

type Parsed<T> = Result<T, String>;

fn eof() -> String {
    "unexpected end of input (truncated JSON?)".to_string()
}

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
                    if !str.ascii && std::str::from_utf8(&p[str.start..str.end]).is_err() {
                        return Err(format!("field {:?}: invalid UTF-8", field_name(spec)));
                    }
                    Slot::Text(str.start as u32, str.end as u32)
                };
                (slot, str.next)
            }
            ColumnType::Float64 => {
                let (simple, next) = scan_number(p, i).ok_or_else(|| wrong("a number"))?;
                let v = match simple {
                    Some(v) => v,
                    None => {
                        let text = std::str::from_utf8(&p[i..next]).unwrap_or_default();
                        text.parse::<f64>()
                            .map_err(|_| format!("field {:?}: invalid number {text:?}", field_name(spec)))?
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
        let (_, next) = scan_number(p, i).ok_or(None)?;
        let text = std::str::from_utf8(&p[i..next]).unwrap_or_default();
        let v = text
            .parse::<i64>()
            .map_err(|_| Some(format!("field {:?}: expected an integer, got {text}", field_name(spec))))?;
        Ok((v, next))
    }
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
fn skip_ws(p: &[u8], i: usize) -> usize {
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
struct StrSpan {
    start: usize,
    end: usize,
    escaped: bool,
    ascii: bool,
    next: usize,
}

const LOW: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The bytes of `word` equal to `byte`, as their high bits (SWAR).
#[inline]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (LOW * u64::from(byte));
    x.wrapping_sub(LOW) & !x & HIGH
}

/// Scans the string whose opening quote is at `p[i]`, sixteen bytes at a time with WASM
/// SIMD (eight with SWAR elsewhere): JSON strings are most of a record, and each loop
/// iteration costs an epoch check in WASM.
#[inline(always)]
fn scan_string(p: &[u8], i: usize) -> Parsed<StrSpan> {
    let start = i + 1;
    let mut j = start;
    let mut escaped = false;
    let mut high = 0u64;
    loop {
        j = scan_plain(p, j, &mut high);
        match p.get(j) {
            Some(b'"') => return Ok(StrSpan { start, end: j, escaped, ascii: high & HIGH == 0, next: j + 1 }),
            Some(b'\\') => {
                escaped = true;
                j += 2;
            }
            Some(&b) => {
                high |= u64::from(b);
                j += 1;
            }
            None => return Err(eof()),
        }
    }
}

/// The index of the first quote or backslash at or after `j`, or of the first byte too
/// near the end to scan in bulk. Sets `HIGH` bits in `high` if a byte before it is not ASCII.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn scan_plain(p: &[u8], mut j: usize, high: &mut u64) -> usize {
    use core::arch::wasm32::*;
    while let Some(chunk) = p.get(j..j + 16) {
        // SAFETY: `chunk` holds 16 readable bytes; v128_load has no alignment requirement.
        let v = unsafe { v128_load(chunk.as_ptr().cast()) };
        let stop = u8x16_bitmask(v128_or(u8x16_eq(v, u8x16_splat(b'"')), u8x16_eq(v, u8x16_splat(b'\\'))));
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
        let stop = bytes_equal(word, b'"') | bytes_equal(word, b'\\');
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
/// decimal, and the index after it; `None` if no number starts there.
///
/// `-?digits(.digits)?` with at most 15 significant digits is converted on the spot:
/// the mantissa and the power of ten are both exact in f64, so one IEEE division rounds
/// correctly (Clinger's fast path). Other forms return no value, for the full parser.
#[inline(always)]
fn scan_number(p: &[u8], i: usize) -> Option<(Option<f64>, usize)> {
    let negative = p.get(i) == Some(&b'-');
    let mut j = i + usize::from(negative);
    if !p.get(j).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let mut mantissa = 0u64;
    let mut digits = 0usize;
    let mut dot = None;
    let mut simple = true;
    while let Some(&b) = p.get(j) {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0'));
                digits += 1;
            }
            b'.' => {
                simple &= dot.is_none() && digits > 0;
                dot = Some(digits);
            }
            b'e' | b'E' | b'+' | b'-' => simple = false,
            _ => break,
        }
        j += 1;
    }
    if digits == 0 {
        return None;
    }
    let fraction = dot.map_or(0, |d| digits - d);
    simple &= digits <= 15 && dot.is_none_or(|_| fraction > 0);
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

/// Skips any JSON value at `p[i]` without checking nested content closely.
fn skip_value(p: &[u8], i: usize) -> Parsed<usize> {
    match p.get(i) {
        None => Err(eof()),
        Some(b'"') => Ok(scan_string(p, i)?.next),
        Some(b'{' | b'[') => {
            let mut depth = 0usize;
            let mut j = i;
            while j < p.len() {
                match p[j] {
                    b'"' => {
                        j = scan_string(p, j)?.next;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Ok(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            Err(eof())
        }
        Some(_) => {
            let mut j = i;
            while j < p.len() && !matches!(p[j], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            if j == i {
                Err(format!("unexpected character at byte {i}"))
            } else {
                Ok(j)
            }
        }
    }
}

/// Decodes the escapes in a JSON string's content.
fn unescape(raw: &[u8]) -> Parsed<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let esc = *raw.get(i + 1).ok_or_else(eof)?;
        i += 2;
        let ch = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = hex4(raw, i)?;
                i += 4;
                let code = if (0xD800..0xDC00).contains(&hi) && raw.get(i..i + 2) == Some(b"\\u") {
                    let lo = hex4(raw, i + 2)?;
                    i += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                } else {
                    hi
                };
                char::from_u32(code).ok_or_else(|| format!("invalid \\u escape {code:#x}"))?
            }
            other => return Err(format!("invalid escape \\{}", other as char)),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8(out).map_err(|_| "invalid UTF-8 in string".to_string())
}

fn hex4(raw: &[u8], i: usize) -> Parsed<u32> {
    let digits = raw.get(i..i + 4).ok_or_else(eof)?;
    let text = std::str::from_utf8(digits).map_err(|_| "invalid \\u escape".to_string())?;
    u32::from_str_radix(text, 16).map_err(|_| format!("invalid \\u escape {text:?}"))
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
        for text in ["1e5", "1.", "1234567890123456", "1.2.3", "-1e-3"] {
            assert_eq!(simple(text), None, "{text}");
        }
        assert_eq!(simple("-10.03,"), Some(-10.03));
        assert!(scan_number(b".5", 0).is_none() && scan_number(b"-", 0).is_none());
    }

    #[test]
    fn strings_of_every_length_and_content() {
        for len in 0..40 {
            for (fill, ascii) in [("a", true), ("é", false)] {
                let body = fill.repeat(len);
                let text = format!("\"{body}\"tail");
                let span = scan_string(text.as_bytes(), 0).unwrap();
                assert_eq!(&text[span.start..span.end], body);
                assert_eq!(span.ascii, ascii || len == 0, "{text}");
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
