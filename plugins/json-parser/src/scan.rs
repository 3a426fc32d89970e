//! A single-pass scanner for flat JSON objects that fills typed columns.
//!
//! It reads only the configured keys and skips everything else without building a
//! tree: the rides benchmark spends most of its time here, so it avoids allocation on
//! the common path (strings without escapes are sliced straight from the payload).

use weir_sdk::{Column, ColumnType, ColumnValues, EventBatch};

use weir_sdk::time::parse_iso8601;
use crate::TimeFormat;

/// One configured field.
pub struct FieldSpec {
    pub key: Vec<u8>,
    pub ty: ColumnType,
    pub required: bool,
    pub format: TimeFormat,
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

/// The values of the record being parsed.
pub struct Scratch {
    slots: Vec<Slot>,
    unescaped: Vec<String>,
}

/// Parses records against the configured fields.
pub struct RowParser {
    specs: Vec<FieldSpec>,
}

type Parsed<T> = Result<T, String>;

fn eof() -> String {
    "unexpected end of input (truncated JSON?)".to_string()
}

impl RowParser {
    pub fn new(specs: Vec<FieldSpec>) -> Self {
        RowParser { specs }
    }

    pub fn scratch(&self) -> Scratch {
        Scratch { slots: vec![Slot::Null; self.specs.len()], unescaped: Vec::new() }
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
        s.slots.iter_mut().for_each(|slot| *slot = Slot::Null);
        s.unescaped.clear();
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
                let key = scan_string(p, i)?;
                i = skip_ws(p, key.next);
                match p.get(i) {
                    Some(b':') => i = skip_ws(p, i + 1),
                    Some(_) => return Err(format!("expected ':' at byte {i}")),
                    None => return Err(eof()),
                }
                let name = if key.escaped { unescape(&p[key.start..key.end])?.into_bytes() } else { Vec::new() };
                let name: &[u8] = if key.escaped { &name } else { &p[key.start..key.end] };
                match self.lookup(name, hint) {
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
        for (spec, slot) in self.specs.iter().zip(&s.slots) {
            if spec.required && matches!(slot, Slot::Null) {
                return Err(format!("missing required field {:?} (absent or null)", field_name(spec)));
            }
        }
        Ok(())
    }

    fn lookup(&self, key: &[u8], hint: usize) -> Option<usize> {
        if self.specs.get(hint).is_some_and(|s| s.key == key) {
            return Some(hint);
        }
        self.specs.iter().position(|s| s.key == key)
    }

    /// Parses the value at `p[i]` into field `f`'s slot and returns the index after it.
    fn value(&self, f: usize, p: &[u8], i: usize, s: &mut Scratch) -> Parsed<usize> {
        let spec = &self.specs[f];
        if p[i..].starts_with(b"null") {
            s.slots[f] = Slot::Null;
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
                    std::str::from_utf8(&p[str.start..str.end])
                        .map_err(|_| format!("field {:?}: invalid UTF-8", field_name(spec)))?;
                    Slot::Text(str.start as u32, str.end as u32)
                };
                (slot, str.next)
            }
            ColumnType::Float64 => {
                let (text, next) = number(p, i).ok_or_else(|| wrong("a number"))?;
                let v = text.parse::<f64>().map_err(|_| format!("field {:?}: invalid number {text:?}", field_name(spec)))?;
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
                    let (v, next) = self.integer(spec, p, i).map_err(|e| e.unwrap_or_else(|| wrong("epoch milliseconds")))?;
                    (Slot::Int(v), next)
                }
                TimeFormat::Iso8601 => {
                    if p.get(i) != Some(&b'"') {
                        return Err(wrong("an ISO-8601 time string"));
                    }
                    let str = scan_string(p, i)?;
                    let raw = &p[str.start..str.end];
                    let ms = parse_iso8601(raw).ok_or_else(|| {
                        format!("field {:?}: invalid ISO-8601 time {:?}", field_name(spec), String::from_utf8_lossy(raw))
                    })?;
                    (Slot::Int(ms), str.next)
                }
            },
        };
        s.slots[f] = slot;
        Ok(next)
    }

    /// An integer value; `Err(None)` means "not a number at all".
    fn integer(&self, spec: &FieldSpec, p: &[u8], i: usize) -> Result<(i64, usize), Option<String>> {
        let (text, next) = number(p, i).ok_or(None)?;
        let v = text.parse::<i64>().map_err(|_| Some(format!("field {:?}: expected an integer, got {text}", field_name(spec))))?;
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
        for (column, slot) in self.columns.iter_mut().zip(&s.slots) {
            let is_null = matches!(slot, Slot::Null);
            column.any_null |= is_null;
            column.valid.push(!is_null);
            match (&mut column.values, *slot) {
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

fn skip_ws(p: &[u8], mut i: usize) -> usize {
    while i < p.len() && matches!(p[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// A string's content range, whether it holds escapes, and the index after its closing quote.
struct StrSpan {
    start: usize,
    end: usize,
    escaped: bool,
    next: usize,
}

/// Scans the string whose opening quote is at `p[i]`.
fn scan_string(p: &[u8], i: usize) -> Parsed<StrSpan> {
    let start = i + 1;
    let mut j = start;
    let mut escaped = false;
    while j < p.len() {
        match p[j] {
            b'"' => return Ok(StrSpan { start, end: j, escaped, next: j + 1 }),
            b'\\' => {
                escaped = true;
                j += 2;
            }
            _ => j += 1,
        }
    }
    Err(eof())
}

/// The text of the number at `p[i]` and the index after it.
fn number(p: &[u8], i: usize) -> Option<(&str, usize)> {
    let mut j = i;
    while j < p.len() && matches!(p[j], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') {
        j += 1;
    }
    if j == i || !matches!(p[i], b'-' | b'0'..=b'9') {
        return None;
    }
    // The bytes are ASCII by the loop above.
    std::str::from_utf8(&p[i..j]).ok().map(|s| (s, j))
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
