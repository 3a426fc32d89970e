//! PostgreSQL's logical replication messages (`pgoutput`, protocol 1) read into changes,
//! and a row's text-format values written as one JSON object with typed values, the form
//! the parser plugins read. The snapshot's rows go through the same writer, so a row reads
//! the same whether it came from the snapshot or from a change.

use anyhow::{bail, Context, Result};

/// A column of a replicated table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Column {
    pub(super) name: String,
    pub(super) type_oid: u32,
}

/// A table as the stream last described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Relation {
    pub(super) id: u32,
    pub(super) schema: String,
    pub(super) name: String,
    pub(super) columns: Vec<Column>,
}

/// One column's value in a tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Value<'a> {
    Null,
    /// A TOASTed value the update left alone: the message does not carry it.
    Unchanged,
    Text(&'a [u8]),
}

/// What a change did to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Insert,
    Update,
    Delete,
    /// A row already there when the slot was created.
    Snapshot,
    /// A row read by polling: inserted or updated since the last poll.
    Upsert,
}

impl Op {
    pub(super) fn name(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Snapshot => "snapshot",
            Op::Upsert => "upsert",
        }
    }
}

/// One decoded message.
#[derive(Debug, PartialEq)]
pub(super) enum Message<'a> {
    Begin {
        commit_us: i64,
    },
    Commit {
        end_lsn: u64,
    },
    Relation(Relation),
    /// The row as it is after the change; for a delete, the old row (its key, or all of it
    /// with `REPLICA IDENTITY FULL`).
    Change {
        relation: u32,
        op: Op,
        row: Vec<Value<'a>>,
    },
    /// Truncate, type, origin and logical messages: not row changes.
    Other,
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Decodes one `pgoutput` message.
pub(super) fn decode(data: &[u8]) -> Result<Message<'_>> {
    let mut r = Reader { data, at: 1 };
    Ok(match data.first() {
        Some(b'B') => {
            r.take(8)?; // the commit's LSN: the commit message carries where it ends
            let commit_us = r.i64()? + PG_EPOCH_US;
            Message::Begin { commit_us }
        }
        Some(b'C') => {
            r.take(1 + 8)?; // flags, commit LSN
            Message::Commit { end_lsn: r.u64()? }
        }
        Some(b'R') => {
            let id = r.u32()?;
            let schema = r.cstr()?;
            let name = r.cstr()?;
            r.take(1)?; // replica identity
            let n = r.u16()?;
            let columns = (0..n)
                .map(|_| {
                    r.take(1)?; // flags
                    let name = r.cstr()?;
                    let type_oid = r.u32()?;
                    r.take(4)?; // type modifier
                    Ok(Column { name, type_oid })
                })
                .collect::<Result<_>>()?;
            Message::Relation(Relation { id, schema, name, columns })
        }
        Some(b'I') => {
            let relation = r.u32()?;
            r.expect(b'N')?;
            Message::Change { relation, op: Op::Insert, row: r.tuple()? }
        }
        Some(b'U') => {
            let relation = r.u32()?;
            if matches!(r.peek()?, b'K' | b'O') {
                r.take(1)?;
                r.tuple()?;
            }
            r.expect(b'N')?;
            Message::Change { relation, op: Op::Update, row: r.tuple()? }
        }
        Some(b'D') => {
            let relation = r.u32()?;
            let kind = r.peek()?;
            if !matches!(kind, b'K' | b'O') {
                bail!("a delete message without its old row");
            }
            r.take(1)?;
            Message::Change { relation, op: Op::Delete, row: r.tuple()? }
        }
        Some(_) => Message::Other,
        None => bail!("an empty replication message"),
    })
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end =
            self.at.checked_add(n).filter(|&e| e <= self.data.len()).context("a replication message ends early")?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    fn peek(&self) -> Result<u8> {
        self.data.get(self.at).copied().context("a replication message ends early")
    }
    fn expect(&mut self, tag: u8) -> Result<()> {
        if self.take(1)?[0] != tag {
            bail!("a replication message has {:?} where {:?} belongs", self.data[self.at - 1] as char, tag as char);
        }
        Ok(())
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into()?))
    }
    fn cstr(&mut self) -> Result<String> {
        let len = self.data[self.at..].iter().position(|&b| b == 0).context("a name without its end")?;
        let s = String::from_utf8_lossy(self.take(len)?).into_owned();
        self.take(1)?;
        Ok(s)
    }
    fn tuple(&mut self) -> Result<Vec<Value<'a>>> {
        let n = self.u16()?;
        (0..n)
            .map(|_| {
                Ok(match self.take(1)?[0] {
                    b'n' => Value::Null,
                    b'u' => Value::Unchanged,
                    b't' => {
                        let len = self.u32()? as usize;
                        Value::Text(self.take(len)?)
                    }
                    other => bail!("a column value of kind {:?} (weir asks for text)", other as char),
                })
            })
            .collect()
    }
}

/// A row as a JSON object: its columns with typed values, plus `_op` and `_commit_time`
/// (the transaction's commit time; for snapshot rows, the snapshot's time). Unchanged
/// TOASTed columns are left out, as the change does not carry them.
pub(super) fn row_json(out: &mut Vec<u8>, op: Op, commit_ms: i64, columns: &[Column], row: &[Value]) {
    out.extend_from_slice(b"{\"_op\":\"");
    out.extend_from_slice(op.name().as_bytes());
    out.extend_from_slice(b"\",\"_commit_time\":\"");
    out.extend_from_slice(weir_sdk::time::format_iso8601(commit_ms).as_bytes());
    out.push(b'"');
    for (column, value) in columns.iter().zip(row) {
        let text = match value {
            Value::Unchanged => continue,
            Value::Null => None,
            Value::Text(t) => Some(*t),
        };
        out.push(b',');
        string(out, column.name.as_bytes());
        out.push(b':');
        match text {
            None => out.extend_from_slice(b"null"),
            Some(t) => typed(out, column.type_oid, t),
        }
    }
    out.push(b'}');
}

/// One value by its type: numbers and booleans bare, JSON embedded, timestamps in RFC 3339,
/// anything else a string.
fn typed(out: &mut Vec<u8>, oid: u32, text: &[u8]) {
    match oid {
        16 => out.extend_from_slice(if text == b"t" { b"true" } else { b"false" }),
        20 | 21 | 23 | 26 => out.extend_from_slice(text),
        // NaN and the infinities have no JSON number.
        700 | 701 | 1700 if text.first().is_some_and(|c| c.is_ascii_digit() || *c == b'-') && text != b"-Infinity" => {
            out.extend_from_slice(text)
        }
        114 | 3802 => out.extend_from_slice(text),
        1114 | 1184 => string(out, &timestamp(text)),
        _ => string(out, text),
    }
}

/// PostgreSQL's ISO output (`2024-05-01 12:00:00.25+02`, the session in UTC) as RFC 3339:
/// `2024-05-01T12:00:00.25+02:00`; a timestamp without a zone is taken as UTC.
fn timestamp(text: &[u8]) -> Vec<u8> {
    if text.len() < 19 || text[10] != b' ' {
        return text.to_vec(); // infinity, or a year before 1 or after 9999
    }
    let mut t = text.to_vec();
    t[10] = b'T';
    match t[19..].iter().position(|&c| c == b'+' || c == b'-') {
        None => t.push(b'Z'),
        Some(at) if t.len() - (19 + at) == 3 => t.extend_from_slice(b":00"),
        Some(_) => {}
    }
    t
}

fn string(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    for &c in text {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(spec: &[(&str, u32)]) -> Vec<Column> {
        spec.iter().map(|(n, t)| Column { name: n.to_string(), type_oid: *t }).collect()
    }

    #[test]
    fn an_insert_decodes_into_a_typed_json_row() {
        let mut msg = vec![b'I', 0, 0, 0x40, 0x01, b'N', 0, 5];
        for value in [&b"42"[..], b"Lisbon", b"12.5", b"t"] {
            msg.push(b't');
            msg.extend_from_slice(&(value.len() as u32).to_be_bytes());
            msg.extend_from_slice(value);
        }
        msg.push(b'n');
        let Message::Change { relation, op, row } = decode(&msg).unwrap() else { panic!("not a change") };
        assert_eq!((relation, op), (0x4001, Op::Insert));
        let columns = cols(&[("id", 20), ("city", 25), ("fare", 1700), ("paid", 16), ("note", 25)]);
        let mut out = Vec::new();
        row_json(&mut out, op, 1_700_000_000_123, &columns, &row);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"_op": "insert", "_commit_time": "2023-11-14T22:13:20.123Z", "id": 42,
                "city": "Lisbon", "fare": 12.5, "paid": true, "note": null})
        );
    }

    #[test]
    fn values_without_a_json_number_become_strings_and_timestamps_rfc_3339() {
        let columns = cols(&[("a", 701), ("b", 1700), ("c", 1184), ("d", 1114), ("e", 25)]);
        let row = [
            Value::Text(b"NaN"),
            Value::Text(b"-Infinity"),
            Value::Text(b"2024-05-01 12:00:00.25+02"),
            Value::Text(b"2024-05-01 12:00:00"),
            Value::Text(b"say \"hi\"\n"),
        ];
        let mut out = Vec::new();
        row_json(&mut out, Op::Snapshot, 0, &columns, &row);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["a"], "NaN");
        assert_eq!(json["b"], "-Infinity");
        assert_eq!(json["c"], "2024-05-01T12:00:00.25+02:00");
        assert_eq!(json["d"], "2024-05-01T12:00:00Z");
        assert_eq!(json["e"], "say \"hi\"\n");
        assert_eq!(json["_op"], "snapshot");
    }

    #[test]
    fn a_truncated_message_is_an_error_not_a_panic() {
        assert!(decode(&[b'I', 0, 0]).is_err());
        assert!(decode(&[b'B', 1, 2]).is_err());
        assert!(decode(&[]).is_err());
        let mut msg = vec![b'D', 0, 0, 0, 1, b'N'];
        assert!(decode(&msg).is_err());
        msg.truncate(5);
        assert!(decode(&msg).is_err());
    }
}
