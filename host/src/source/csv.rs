//! CSV rows (RFC 4180: a header line, `,` separators, `"` quoting with `""` for a quote,
//! fields that may span lines) turned into JSON objects keyed by the header. Parsing the
//! JSON stays the parser plugin's job; the host only frames rows and names their cells.
//! A cell's JSON type follows the column the parser declares: a numeric column's cell
//! that reads as a number becomes a number, anything else stays a string, so the parser
//! judges it (a non-numeric fare is still its error, with its message).

use std::collections::HashMap;
use std::path::Path;

use weir_sdk::ColumnType;

use super::records::{trim_newline, RecordReader};

/// The row that starts at byte `offset` of the file at `path`, as read (without its
/// newline): what a dead letter or a late event of a CSV file keeps, since the parser saw
/// the row converted to JSON. Rows longer than `max` never reach the parser.
pub fn row_at(path: &Path, offset: u64, max: u64) -> anyhow::Result<Vec<u8>> {
    let (mut reader, _) = RecordReader::open(path)?;
    reader.seek(offset)?;
    let mut row = Vec::new();
    reader.read(&mut row, true, max as usize, false)?;
    Ok(trim_newline(&row).to_vec())
}

/// The header of the CSV file at `path` (after a byte-order mark), with `types` for its cells.
pub fn header_of(path: &Path, types: &HashMap<String, ColumnType>, max: u64) -> Result<Header, String> {
    let (mut reader, _) = RecordReader::open(path).map_err(|e| format!("{e:#}"))?;
    let mut line = Vec::new();
    reader.read(&mut line, true, max as usize, false).map_err(|e| format!("{e:#}"))?;
    Header::parse(trim_newline(&line), types)
}

/// Whether `record` ends outside a quoted field, i.e. holds whole rows.
pub fn is_complete(record: &[u8]) -> bool {
    record.iter().filter(|&&b| b == b'"').count() % 2 == 0
}

/// The fields of one row, unquoted. A quote inside an unquoted field, or text after a
/// closing quote, is an error that says where.
pub fn split(row: &[u8]) -> Result<Vec<String>, String> {
    let row = std::str::from_utf8(row).map_err(|e| format!("CSV row is not UTF-8 ({e})"))?;
    let mut fields = Vec::new();
    let mut chars = row.char_indices().peekable();
    loop {
        let mut field = String::new();
        if chars.peek().is_some_and(|&(_, c)| c == '"') {
            chars.next();
            loop {
                match chars.next() {
                    Some((_, '"')) if chars.peek().is_some_and(|&(_, c)| c == '"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some((_, '"')) => break,
                    Some((_, c)) => field.push(c),
                    None => return Err("CSV row ends inside a quoted field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some((_, ',')) => fields.push(field),
                Some((i, c)) => {
                    return Err(format!("CSV field {}: {c:?} after a closing quote at byte {i}", fields.len() + 1))
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some((_, ',')) => break,
                    Some((i, '"')) => {
                        return Err(format!(
                            "CSV field {}: a quote inside an unquoted field at byte {i}",
                            fields.len() + 1
                        ))
                    }
                    Some((_, c)) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// A file's header, with the JSON type each column's cells take.
#[derive(Debug)]
pub struct Header {
    columns: Vec<(String, Option<ColumnType>)>,
}

impl Header {
    /// Reads the header row; `types` are the columns the parser declares.
    pub fn parse(row: &[u8], types: &HashMap<String, ColumnType>) -> Result<Header, String> {
        let names = split(row)?;
        let columns: Vec<(String, Option<ColumnType>)> =
            names.into_iter().map(|n| n.trim().to_string()).map(|n| (n.clone(), types.get(&n).copied())).collect();
        if let Some(i) = columns.iter().position(|(n, _)| n.is_empty()) {
            return Err(format!("CSV header: column {} has no name", i + 1));
        }
        Ok(Header { columns })
    }

    /// Writes `row` as a JSON object into `out`. Empty cells are left out (null). Columns
    /// the parser does not declare are kept, as strings: a dead letter holds this object,
    /// and a fixed parser (one that reads `City` where the old one wanted `city`) must
    /// find every column in it when the dead letter is replayed.
    pub fn to_json(&self, row: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let cells = split(row)?;
        if cells.len() != self.columns.len() {
            return Err(format!("CSV row has {} fields, the header has {}", cells.len(), self.columns.len()));
        }
        out.clear();
        out.push(b'{');
        for ((name, ty), cell) in self.columns.iter().zip(&cells) {
            if cell.is_empty() {
                continue;
            }
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, name).expect("writing to a Vec");
            out.push(b':');
            let trimmed = cell.trim();
            let number = match ty.unwrap_or(ColumnType::Text) {
                ColumnType::Int64 | ColumnType::TimestampMs => trimmed.parse::<i64>().ok().map(|n| n.to_string()),
                ColumnType::Float64 => trimmed.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f.to_string()),
                ColumnType::Boolean => match trimmed.to_ascii_lowercase().as_str() {
                    "true" => Some("true".into()),
                    "false" => Some("false".into()),
                    _ => None,
                },
                _ => None,
            };
            match number {
                Some(literal) => out.extend_from_slice(literal.as_bytes()),
                None => serde_json::to_writer(&mut *out, cell).expect("writing to a Vec"),
            }
        }
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_fields_with_commas_quotes_and_newlines() {
        assert_eq!(split(b"a,\"b,c\",\"say \"\"hi\"\"\",,\"x\ny\"").unwrap(), ["a", "b,c", "say \"hi\"", "", "x\ny"]);
        assert_eq!(split(b"").unwrap(), [""]);
        assert!(split(b"a,\"b").unwrap_err().contains("inside a quoted field"));
        assert!(split(b"a,\"b\"c").unwrap_err().contains("field 2"));
        assert!(split(b"a,b\"c").unwrap_err().contains("quote inside an unquoted field"));
        assert!(is_complete(b"a,\"b\"\"c\"") && !is_complete(b"a,\"b\nc"));
    }

    #[test]
    fn cells_take_the_json_type_of_the_column_the_parser_declares() {
        let types: HashMap<String, ColumnType> = [
            ("city", ColumnType::Text),
            ("driver_id", ColumnType::Text),
            ("fare", ColumnType::Float64),
            ("n", ColumnType::Int64),
            ("ok", ColumnType::Boolean),
            ("at", ColumnType::TimestampMs),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        let header = Header::parse(b"city, driver_id,fare,n,ok,at,ignored", &types).unwrap();
        let mut out = Vec::new();
        header.to_json(b"Lisbon,0042,12.5,7,TRUE,2024-05-01T00:00:00Z,x", &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"city": "Lisbon", "driver_id": "0042", "fare": 12.5, "n": 7, "ok": true, "at": "2024-05-01T00:00:00Z", "ignored": "x"})
        );
        // A cell that does not read as the column's type stays a string for the parser
        // to refuse; an empty cell is null.
        header.to_json(b"Oslo,1,twelve,,maybe,1714521600000,", &mut out).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"city": "Oslo", "driver_id": "1", "fare": "twelve", "ok": "maybe", "at": 1714521600000i64})
        );
        assert_eq!(header.to_json(b"Oslo,1", &mut out).unwrap_err(), "CSV row has 2 fields, the header has 7");
        assert!(Header::parse(b"a,,b", &types).unwrap_err().contains("column 2 has no name"));
    }
}
