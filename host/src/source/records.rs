//! A file read record by record in bounded memory: a record is a line, or for CSV as many
//! lines as its quotes span. A UTF-8 byte-order mark at the start is skipped. A record
//! longer than the limit is consumed to its end without being held: the caller gets its
//! first KiB, its size and its digest, for a dead letter that says what it was.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::Digest;

use super::csv;

/// The UTF-8 byte-order mark some editors write first.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How much of an oversize record is kept.
pub(super) const OVERSIZE_PREFIX: usize = 1024;

/// A record longer than the limit, consumed without being held in memory.
pub(super) struct Oversize {
    /// Its length, without the newline.
    pub(super) bytes: u64,
    /// The sha256 of the whole, in hex.
    pub(super) digest: String,
}

/// One file being read.
pub(super) struct RecordReader {
    reader: BufReader<File>,
    path: PathBuf,
}

impl RecordReader {
    /// Opens the file at `path` past its byte-order mark, if any; returns the reader and
    /// where the first record starts (the mark is no part of it, nor of a CSV header).
    pub(super) fn open(path: &Path) -> Result<(Self, u64)> {
        let handle = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, handle);
        let start = if reader.fill_buf()?.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 };
        reader.consume(start);
        Ok((RecordReader { reader, path: path.to_path_buf() }, start as u64))
    }

    /// Goes to byte `at`.
    pub(super) fn seek(&mut self, at: u64) -> Result<()> {
        self.reader.seek(SeekFrom::Start(at)).with_context(|| format!("seeking in {}", self.path.display()))?;
        Ok(())
    }

    /// Reads the next whole record into `record`, newline included. Returns the bytes
    /// consumed and, for a record longer than `max`, what it was (`record` then holds its
    /// first [`OVERSIZE_PREFIX`] bytes); `None` at the end of what is readable. A last
    /// record without a newline is whole, unless the file `may_grow`.
    pub(super) fn read(
        &mut self,
        record: &mut Vec<u8>,
        csv: bool,
        max: usize,
        may_grow: bool,
    ) -> Result<Option<(usize, Option<Oversize>)>> {
        record.clear();
        let mut consumed = 0usize;
        let mut skipped: Option<sha2::Sha256> = None;
        loop {
            let buf = self.reader.fill_buf().with_context(|| format!("reading {}", self.path.display()))?;
            if buf.is_empty() {
                return Ok((consumed > 0 && !may_grow).then(|| (consumed, finish(consumed, skipped))));
            }
            let end = memchr::memchr(b'\n', buf);
            let chunk = &buf[..end.map_or(buf.len(), |i| i + 1)];
            // The digest covers the record as its dead letter would, without the newline.
            let content = &chunk[..end.map_or(chunk.len(), |i| i)];
            match &mut skipped {
                Some(hash) => hash.update(content),
                None => {
                    record.extend_from_slice(chunk);
                    if record.len() > max {
                        let mut hash = sha2::Sha256::new();
                        hash.update(&record[..record.len() - usize::from(end.is_some())]);
                        record.truncate(OVERSIZE_PREFIX);
                        skipped = Some(hash);
                    }
                }
            }
            let n = chunk.len();
            consumed += n;
            self.reader.consume(n);
            // A CSV record's quotes may span lines; an oversize one ends at its line.
            if end.is_some() && (!csv || skipped.is_some() || csv::is_complete(record)) {
                return Ok(Some((consumed, finish(consumed - 1, skipped))));
            }
        }
    }
}

/// What an oversize record of `bytes` (without its newline) was.
fn finish(bytes: usize, skipped: Option<sha2::Sha256>) -> Option<Oversize> {
    skipped.map(|hash| Oversize {
        bytes: bytes as u64,
        digest: hash.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// `record` without its line end (`\n` or `\r\n`).
pub(super) fn trim_newline(record: &[u8]) -> &[u8] {
    let record = record.strip_suffix(b"\n").unwrap_or(record);
    record.strip_suffix(b"\r").unwrap_or(record)
}
