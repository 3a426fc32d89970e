//! The parts of RFC 8259 the fast scanner does not do on its way: checking values it skips
//! (fields the parser does not extract), escapes, and decoding escapes exactly. A record
//! that is not JSON is an error even where the parser reads nothing, and an escape never
//! decodes to a character it does not stand for.

use crate::scan::{scan_number, scan_string, skip_ws, Parsed};

/// The deepest nesting a skipped value may have; deeper is an error rather than a deep
/// stack (the containers' kinds are kept as bits of one word).
const MAX_DEPTH: u32 = 128;

pub(crate) fn eof() -> String {
    "unexpected end of input (truncated JSON?)".to_string()
}

/// Checks the JSON value at `p[i]` and returns the index after it.
pub(crate) fn skip_value(p: &[u8], i: usize) -> Parsed<usize> {
    let mut depth = 0u32;
    // Bit `d` is set when the container at depth `d` is an object.
    let mut objects = 0u128;
    let mut j = i;
    'value: loop {
        j = skip_ws(p, j);
        match p.get(j).copied() {
            None => return Err(eof()),
            Some(b'"') => j = scan_string(p, j)?.next,
            Some(open @ (b'{' | b'[')) => {
                if depth == MAX_DEPTH {
                    return Err(format!("nesting deeper than {MAX_DEPTH} at byte {j}"));
                }
                let object = open == b'{';
                objects = (objects & !(1 << depth)) | (u128::from(object) << depth);
                depth += 1;
                j = skip_ws(p, j + 1);
                if p.get(j) == Some(if object { &b'}' } else { &b']' }) {
                    depth -= 1;
                    j += 1;
                } else {
                    if object {
                        j = key(p, j)?;
                    }
                    continue 'value;
                }
            }
            Some(b't') => j = literal(p, j, b"true")?,
            Some(b'f') => j = literal(p, j, b"false")?,
            Some(b'n') => j = literal(p, j, b"null")?,
            Some(b'-' | b'0'..=b'9') => {
                j = scan_number(p, j).ok_or_else(|| format!("invalid number at byte {j}"))?.1;
            }
            Some(_) => return Err(format!("unexpected character at byte {j}")),
        }
        // After a value: the next member, or the end of its container.
        loop {
            if depth == 0 {
                return Ok(j);
            }
            j = skip_ws(p, j);
            let object = (objects >> (depth - 1)) & 1 == 1;
            match p.get(j) {
                Some(b',') => {
                    j = skip_ws(p, j + 1);
                    if object {
                        j = key(p, j)?;
                    }
                    continue 'value;
                }
                Some(b'}') if object => (depth, j) = (depth - 1, j + 1),
                Some(b']') if !object => (depth, j) = (depth - 1, j + 1),
                None => return Err(eof()),
                Some(_) => return Err(format!("expected ',' or the container's end at byte {j}")),
            }
        }
    }
}

/// A member's key and its colon at `p[j]`; the index after the colon.
fn key(p: &[u8], j: usize) -> Parsed<usize> {
    if p.get(j) != Some(&b'"') {
        return Err(if j >= p.len() { eof() } else { format!("expected a key at byte {j}") });
    }
    let j = skip_ws(p, scan_string(p, j)?.next);
    match p.get(j) {
        Some(b':') => Ok(j + 1),
        Some(_) => Err(format!("expected ':' at byte {j}")),
        None => Err(eof()),
    }
}

fn literal(p: &[u8], j: usize, word: &[u8]) -> Parsed<usize> {
    if p[j..].starts_with(word) {
        Ok(j + word.len())
    } else {
        Err(format!("unexpected character at byte {j}"))
    }
}

/// Checks the escape whose backslash is at `p[j]`, inside a string, and returns the index
/// after it: one of `\" \\ \/ \b \f \n \r \t`, or `\uXXXX` where a high surrogate must be
/// followed by a low one and a low one may not stand alone.
pub(crate) fn check_escape(p: &[u8], j: usize) -> Parsed<usize> {
    match p.get(j + 1) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(j + 2),
        Some(b'u') => Ok(j + 2 + code_point(p, j + 2)?.1),
        Some(&other) => Err(format!("invalid escape \\{} at byte {j}", other.escape_ascii())),
        None => Err(eof()),
    }
}

/// The code point of the `\u` escape whose hex digits start at `raw[i]`, joining a
/// surrogate pair, and how many bytes it took after the `\u`.
fn code_point(raw: &[u8], i: usize) -> Parsed<(char, usize)> {
    let hi = hex4(raw, i)?;
    let code = match hi {
        0xD800..=0xDBFF => {
            let lo = match raw.get(i + 4..i + 6) {
                Some(b"\\u") => hex4(raw, i + 6)?,
                _ => return Err(format!("unpaired surrogate \\u{hi:04X}")),
            };
            if !(0xDC00..=0xDFFF).contains(&lo) {
                return Err(format!("unpaired surrogate \\u{hi:04X} (followed by \\u{lo:04X})"));
            }
            return Ok((char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)).ok_or_else(eof)?, 10));
        }
        0xDC00..=0xDFFF => return Err(format!("unpaired surrogate \\u{hi:04X}")),
        code => code,
    };
    Ok((char::from_u32(code).ok_or_else(|| format!("invalid \\u escape {code:#x}"))?, 4))
}

fn hex4(raw: &[u8], i: usize) -> Parsed<u32> {
    let digits = raw.get(i..i + 4).ok_or_else(eof)?;
    if !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!("invalid \\u escape {:?}", String::from_utf8_lossy(digits)));
    }
    let text = std::str::from_utf8(digits).map_err(|_| "invalid \\u escape".to_string())?;
    u32::from_str_radix(text, 16).map_err(|_| format!("invalid \\u escape {text:?}"))
}

/// Decodes the escapes in a JSON string's content (already checked by `scan_string`).
pub(crate) fn unescape(raw: &[u8]) -> Parsed<String> {
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
                let (ch, used) = code_point(raw, i)?;
                i += used;
                ch
            }
            other => return Err(format!("invalid escape \\{}", other.escape_ascii())),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8(out).map_err(|_| "invalid UTF-8 in string".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_values_must_be_json() {
        for good in
            ["1", "-0.5e+3", "\"a\\u00e9\"", "true", "null", "[]", "{}", "[1,[2,{\"a\":[]}],\"x\"]", "{ \"a\" : 1 }"]
        {
            assert_eq!(skip_value(good.as_bytes(), 0), Ok(good.len()), "{good}");
        }
        for bad in
            ["01", "1.", "2.e0", "-", "tru", "nul", "[1,2}", "{\"a\"}", "{\"a\":}", "[1,]", "{,}", "[", "\"\\q\"", "+1"]
        {
            assert!(skip_value(bad.as_bytes(), 0).map(|end| end == bad.len()) != Ok(true), "{bad} passed");
        }
        let deep = format!("{}1{}", "[".repeat(129), "]".repeat(129));
        assert!(skip_value(deep.as_bytes(), 0).unwrap_err().contains("nesting deeper"));
    }

    #[test]
    fn escapes_decode_exactly_or_are_refused() {
        assert_eq!(unescape(br"Lima\ud83d\ude00 \u00e9\/\n").unwrap(), "Lima\u{1F600} \u{e9}/\n");
        for bad in [&br"Lima\ud800\u0041"[..], br"\udc00", br"\ud800", br"\u12g4", br"\x"] {
            assert!(unescape(bad).is_err(), "{}", String::from_utf8_lossy(bad));
            let quoted = [b"\"".as_slice(), bad, b"\""].concat();
            assert!(scan_string(&quoted, 0).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
