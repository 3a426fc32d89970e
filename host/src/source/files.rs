//! Files of JSON lines or CSV: one file, or every `*.jsonl`/`*.json` (or `*.csv`) file of a
//! directory, read in name order. Each file is a partition whose id is a hash of its name,
//! so adding a file never renumbers the others and a restart resumes each file where its
//! checkpoint left it. A record's offset is the byte offset where it starts.
//!
//! In follow mode the directory is watched: files that appear are announced like a
//! consumer-group assignment, and lines appended to a file are read. The newest file's
//! last line is read only once it ends with a newline, so a writer caught mid-line is
//! never cut short.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use weir_sdk::{ColumnType, RawBatch};

use super::csv::{self, Header};
use super::records::{trim_newline, Oversize, RecordReader};
use super::{Rebalance, Rejected, Source};

use crate::config::FileFormat;

/// How often follow mode lists the directory while it has nothing to read.
const SCAN_INTERVAL: Duration = Duration::from_millis(200);
/// A batch ends once its records (and the rows refused on the way) hold this much,
/// whatever `--batch` says: 4,096 records of 4 MiB would be 16 GiB in the host and in each
/// plugin's memory.
const BATCH_BYTES: usize = 16 << 20;

/// How files are read.
#[derive(Clone, Debug, Default)]
pub struct FileOptions {
    /// JSON lines, or CSV with a header.
    pub format: FileFormat,
    /// Watch for new files and appended lines.
    pub follow: bool,
    /// The columns the parser declares, which type CSV cells (see [`csv`]).
    pub columns: HashMap<String, ColumnType>,
    /// The largest record in bytes; 0 means the default (4 MiB).
    pub max_record_bytes: u64,
}

impl FileOptions {
    /// `max_record_bytes`, or its default.
    fn max_record(&self) -> u64 {
        if self.max_record_bytes == 0 {
            4 << 20
        } else {
            self.max_record_bytes
        }
    }
}

struct Tracked {
    path: PathBuf,
    id: i32,
    /// The next byte to read.
    position: u64,
    header: Option<Header>,
}

/// A set of files read in order.
pub struct FileSource {
    root: PathBuf,
    options: FileOptions,
    files: Vec<Tracked>,
    current: usize,
    reader: Option<RecordReader>,
    record: Vec<u8>,
    json: Vec<u8>,
    announced: Vec<i32>,
    last_scan: Option<Instant>,
    rejected: Vec<Rejected>,
}

/// A partition id from a file name: FNV-1a, kept non-negative.
fn partition_id(name: &str) -> i32 {
    let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193));
    (hash & 0x7fff_ffff) as i32
}

impl FileSource {
    /// Lists the files at `path`: a file, or a directory of files with the format's extension.
    pub fn open(path: &Path, options: FileOptions) -> Result<Self> {
        let meta = std::fs::metadata(path).with_context(|| format!("source.path {}", path.display()))?;
        if options.follow && !meta.is_dir() {
            bail!("source.follow watches a directory, but source.path {} is a file", path.display());
        }
        let mut source = FileSource {
            root: path.to_path_buf(),
            options,
            files: Vec::new(),
            current: 0,
            reader: None,
            record: Vec::new(),
            json: Vec::new(),
            announced: Vec::new(),
            last_scan: None,
            rejected: Vec::new(),
        };
        if meta.is_dir() {
            source.scan()?;
        } else {
            source.track(path.to_path_buf())?;
        }
        // The files present at the start are the initial assignment, not news.
        source.announced.clear();
        if source.files.is_empty() && !source.options.follow {
            bail!("source.path {} holds no {} files", path.display(), source.extensions().join(" or "));
        }
        Ok(source)
    }

    fn extensions(&self) -> &'static [&'static str] {
        match self.options.format {
            FileFormat::Jsonl => &["jsonl", "json"],
            FileFormat::Csv => &["csv"],
        }
    }

    fn track(&mut self, path: PathBuf) -> Result<()> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let id = partition_id(&name);
        if let Some(other) = self.files.iter().find(|f| f.id == id) {
            bail!("files {} and {} hash to the same partition id; rename one", other.path.display(), path.display());
        }
        self.files.push(Tracked { path, id, position: 0, header: None });
        self.announced.push(id);
        Ok(())
    }

    /// Picks up files that appeared in the directory, in name order, and moves to the
    /// first file with bytes left to read.
    fn scan(&mut self) -> Result<()> {
        self.last_scan = Some(Instant::now());
        let extensions = self.extensions();
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.root)
            .with_context(|| format!("listing {}", self.root.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| extensions.iter().any(|e| x == *e)))
            .filter(|p| !self.files.iter().any(|f| &f.path == p))
            .collect();
        found.sort();
        for path in found {
            self.track(path)?;
        }
        self.rewind()
    }

    /// Points `current` at the first file not read to its end.
    fn rewind(&mut self) -> Result<()> {
        self.reader = None;
        self.current = 0;
        while self.current < self.files.len() {
            let file = &self.files[self.current];
            let len = std::fs::metadata(&file.path).with_context(|| format!("reading {}", file.path.display()))?.len();
            if file.position < len {
                break;
            }
            self.current += 1;
        }
        Ok(())
    }

    /// Whether a record cut off at the end of the current file may still be being written.
    fn may_grow(&self) -> bool {
        self.options.follow && self.current + 1 == self.files.len()
    }

    /// Reads the current file's next record into `self.record`: the bytes consumed, and
    /// what it was if it was too long to keep (see [`RecordReader::read`]).
    fn read_record(&mut self) -> Result<Option<(usize, Option<Oversize>)>> {
        let may_grow = self.may_grow();
        let csv = self.options.format == FileFormat::Csv;
        let max = self.options.max_record() as usize;
        let reader = self.reader.as_mut().expect("the current file is open");
        reader.read(&mut self.record, csv, max, may_grow)
    }

    /// Opens the current file at its position; for CSV, reads its header first.
    /// Returns false when the file has nothing whole to read yet.
    fn open_current(&mut self) -> Result<bool> {
        // Editors on Windows start UTF-8 files with a byte-order mark: reading starts after it.
        let (reader, start) = RecordReader::open(&self.files[self.current].path)?;
        let file = &mut self.files[self.current];
        file.position = file.position.max(start);
        self.reader = Some(reader);
        if self.options.format == FileFormat::Csv && self.files[self.current].header.is_none() {
            let Some((len, _)) = self.read_record()? else { return Ok(false) };
            let row = trim_newline(&self.record);
            let file = &mut self.files[self.current];
            let header = Header::parse(row, &self.options.columns)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.path.display()))?;
            file.header = Some(header);
            file.position = file.position.max(start + len as u64);
        }
        let position = self.files[self.current].position;
        self.reader.as_mut().expect("just opened").seek(position)?;
        Ok(true)
    }

    /// Moves past the current file, rescanning once everything known is read.
    fn next_file(&mut self) {
        self.reader = None;
        self.current += 1;
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("files {}", self.root.display())
    }

    fn label(&self, partition: i32) -> String {
        match self.files.iter().find(|f| f.id == partition) {
            Some(file) => file.path.display().to_string(),
            None => format!("file #{partition}"),
        }
    }

    fn partitions(&self) -> Vec<i32> {
        self.files.iter().map(|f| f.id).collect()
    }

    fn seek(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        for &(partition, offset) in offsets {
            if let Some(file) = self.files.iter_mut().find(|f| f.id == partition) {
                file.position = offset as u64;
            }
        }
        self.rewind()
    }

    fn bounded(&self) -> bool {
        !self.options.follow
    }

    fn as_read(&mut self, partition: i32, offset: i64) -> Option<Vec<u8>> {
        if self.options.format != FileFormat::Csv {
            return None;
        }
        let file = self.files.iter().find(|f| f.id == partition)?;
        csv::row_at(&file.path, offset.max(0) as u64, self.options.max_record()).ok()
    }

    fn payload_of(&mut self, partition: i32, raw: &[u8]) -> Result<Vec<u8>, String> {
        if self.options.format != FileFormat::Csv {
            return Ok(raw.to_vec());
        }
        let Some(file) = self.files.iter_mut().find(|f| f.id == partition) else {
            return Err(format!("the CSV file of partition {partition} is gone: its header cannot be read"));
        };
        if file.header.is_none() {
            let max = self.options.max_record();
            file.header = Some(csv::header_of(&file.path, &self.options.columns, max)?);
        }
        let mut json = Vec::new();
        file.header.as_ref().expect("read above").to_json(raw, &mut json)?;
        Ok(json)
    }

    fn active(&self) -> Option<Vec<i32>> {
        Some(self.files.get(self.current).map(|f| vec![f.id]).unwrap_or_default())
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        self.files.iter().map(|f| (f.id, f.position as i64)).collect()
    }

    fn rebalance(&mut self) -> Option<Rebalance> {
        (!self.announced.is_empty()).then(|| Rebalance::Assigned(self.announced.clone()))
    }

    fn complete(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        self.announced.clear();
        self.seek(offsets)
    }

    fn rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }

    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>> {
        let mut batch = RawBatch::default();
        let refused = |rejected: &[Rejected]| rejected.iter().map(|r| r.raw.len()).sum::<usize>();
        let mut held = refused(&self.rejected);
        while batch.len() < max && batch.payloads.bytes.len() + held < BATCH_BYTES && self.announced.is_empty() {
            if self.current >= self.files.len() {
                if self.options.follow && self.last_scan.is_none_or(|at| at.elapsed() >= SCAN_INTERVAL) {
                    self.scan()?;
                    continue;
                }
                break;
            }
            if self.reader.is_none() && !self.open_current()? {
                self.next_file();
                continue;
            }
            let Some((read, oversize)) = self.read_record()? else {
                self.next_file();
                continue;
            };
            let file = &mut self.files[self.current];
            let offset = file.position as i64;
            file.position += read as u64;
            if let Some(big) = oversize {
                let max = self.options.max_record();
                let reason = format!(
                    "record of {} bytes is longer than source.max_record_bytes ({max}); its first {} bytes are kept, \
                     sha256 of the whole {}",
                    big.bytes,
                    self.record.len(),
                    big.digest
                );
                held += self.record.len();
                self.rejected.push(Rejected { partition: file.id, offset, raw: self.record.clone(), reason });
                continue;
            }
            let record = trim_newline(&self.record);
            if record.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match &file.header {
                None => batch.push(record, b"", -1, file.id, offset),
                Some(header) => match header.to_json(record, &mut self.json) {
                    Ok(()) => batch.push(&self.json, b"", -1, file.id, offset),
                    Err(reason) => {
                        held += record.len();
                        self.rejected.push(Rejected { partition: file.id, offset, raw: record.to_vec(), reason })
                    }
                },
            }
        }
        let done = self.current >= self.files.len() && !self.options.follow;
        if batch.is_empty() && self.rejected.is_empty() && done {
            return Ok(None);
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(batch: &RawBatch) -> Vec<String> {
        batch.payloads.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()
    }

    fn jsonl() -> FileOptions {
        FileOptions::default()
    }

    #[test]
    fn a_batch_of_large_records_ends_at_its_byte_bound() {
        let dir = tempfile::tempdir().unwrap();
        let record = format!("\"{}\"\n", "x".repeat(3 << 20));
        std::fs::write(dir.path().join("a.jsonl"), record.repeat(8)).unwrap();
        let mut source = FileSource::open(dir.path(), jsonl()).unwrap();
        let sizes: Vec<usize> = std::iter::from_fn(|| source.poll(4096).unwrap()).map(|b| b.len()).collect();
        // Each batch takes records until it holds 16 MiB: the sixth 3 MiB record crosses it.
        assert_eq!(sizes, [6, 2]);
    }

    #[test]
    fn an_oversize_record_is_rejected_with_its_size_prefix_and_digest_and_the_next_is_read() {
        use sha2::Digest;
        let dir = tempfile::tempdir().unwrap();
        let big = format!("{{\"city\":\"{}\"}}", "x".repeat(10_000));
        std::fs::write(dir.path().join("a.jsonl"), format!("{{\"n\":1}}\n{big}\n{{\"n\":2}}\n{big}")).unwrap();
        let mut source = FileSource::open(dir.path(), FileOptions { max_record_bytes: 5_000, ..jsonl() }).unwrap();
        let batch = source.poll(10).unwrap().unwrap();
        assert_eq!(payloads(&batch), ["{\"n\":1}", "{\"n\":2}"]);
        let rejected = source.rejected();
        assert_eq!(rejected.len(), 2, "the one without a final newline too");
        let whole: String = sha2::Sha256::digest(&big).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!((rejected[0].offset, rejected[0].raw.len()), (8, super::super::records::OVERSIZE_PREFIX));
        assert!(rejected[0].reason.contains("record of 10011 bytes"), "{}", rejected[0].reason);
        assert!(rejected[0].reason.contains(&whole), "{}", rejected[0].reason);
        assert_eq!(rejected[1].reason, rejected[0].reason, "the same record without its newline");
    }

    #[test]
    fn a_byte_order_mark_is_skipped_in_json_lines_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "\u{feff}{\"n\":1}\n{\"n\":2}\n").unwrap();
        let mut source = FileSource::open(dir.path(), jsonl()).unwrap();
        let batch = source.poll(10).unwrap().unwrap();
        assert_eq!(payloads(&batch), ["{\"n\":1}", "{\"n\":2}"]);
        assert_eq!(batch.offsets, vec![3, 11], "offsets stay byte positions in the file");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.csv"), "\u{feff}city,fare\nOslo,12\n").unwrap();
        let columns = [("city".to_string(), ColumnType::Text), ("fare".to_string(), ColumnType::Float64)];
        let options = FileOptions { format: FileFormat::Csv, columns: columns.into_iter().collect(), ..jsonl() };
        let mut source = FileSource::open(dir.path(), options).unwrap();
        let batch = source.poll(10).unwrap().unwrap();
        assert_eq!(payloads(&batch), ["{\"city\":\"Oslo\",\"fare\":12}"]);
        assert!(source.rejected().is_empty());
    }

    #[test]
    fn reads_files_in_order_and_resumes_at_a_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{\"n\":1}\n\n{\"n\":2}\r\n").unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "{\"n\":3}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let (a, b) = (partition_id("a.jsonl"), partition_id("b.jsonl"));
        let mut source = FileSource::open(dir.path(), jsonl()).unwrap();
        assert_eq!(source.partitions(), vec![a, b]);
        let all = source.poll(10).unwrap().unwrap();
        assert_eq!(payloads(&all), ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"]);
        assert_eq!((all.partitions.clone(), all.offsets.clone()), (vec![a, a, b], vec![0, 9, 0]));
        assert!(source.poll(10).unwrap().is_none());

        // Positions are where the next line starts, so a checkpoint taken after one
        // record resumes at the second.
        let mut first = FileSource::open(dir.path(), jsonl()).unwrap();
        first.poll(1).unwrap();
        assert_eq!(first.positions(), vec![(a, 8), (b, 0)]);
        let mut resumed = FileSource::open(dir.path(), jsonl()).unwrap();
        resumed.seek(&first.positions()).unwrap();
        assert_eq!(payloads(&resumed.poll(10).unwrap().unwrap()), ["{\"n\":2}", "{\"n\":3}"]);
        // The files there at the start are the initial assignment, not news.
        let mut single = FileSource::open(&dir.path().join("b.jsonl"), jsonl()).unwrap();
        assert_eq!((resumed.rebalance(), single.rebalance(), single.partitions()), (None, None, vec![b]));

        // A file that sorts first, added later, takes no other file's partition.
        std::fs::write(dir.path().join("0.jsonl"), "{\"n\":0}\n").unwrap();
        let mut grown = FileSource::open(dir.path(), jsonl()).unwrap();
        grown.seek(&first.positions()).unwrap();
        assert_eq!(payloads(&grown.poll(10).unwrap().unwrap()), ["{\"n\":0}", "{\"n\":2}", "{\"n\":3}"]);
    }

    #[test]
    fn csv_rows_become_json_objects_and_bad_rows_are_rejected_with_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let text = "city,fare,note\nLisbon,12.5,\"two\nlines\"\nOslo,3\nPorto,x,\"a, b\"\n";
        std::fs::write(dir.path().join("trips.csv"), text).unwrap();
        let columns = [("city", ColumnType::Text), ("fare", ColumnType::Float64), ("note", ColumnType::Text)];
        let columns = columns.into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        let options = FileOptions { format: FileFormat::Csv, follow: false, columns, ..FileOptions::default() };
        let mut source = FileSource::open(dir.path(), options.clone()).unwrap();
        let batch = source.poll(10).unwrap().unwrap();
        assert_eq!(
            payloads(&batch),
            [r#"{"city":"Lisbon","fare":12.5,"note":"two\nlines"}"#, r#"{"city":"Porto","fare":"x","note":"a, b"}"#]
        );
        let header = "city,fare,note\n".len() as i64;
        assert_eq!(batch.offsets, vec![header, text.find("Porto").unwrap() as i64]);
        let rejected = source.rejected();
        assert_eq!(rejected.len(), 1);
        assert_eq!(
            (rejected[0].raw.as_slice(), rejected[0].offset),
            (&b"Oslo,3"[..], text.find("Oslo").unwrap() as i64)
        );
        assert_eq!(rejected[0].reason, "CSV row has 2 fields, the header has 3");

        // Resuming mid-file reads the header again but never returns it as a row.
        let mut resumed = FileSource::open(dir.path(), options).unwrap();
        let id = partition_id("trips.csv");
        resumed.seek(&[(id, text.find("Porto").unwrap() as i64)]).unwrap();
        assert_eq!(payloads(&resumed.poll(10).unwrap().unwrap()), [r#"{"city":"Porto","fare":"x","note":"a, b"}"#]);
    }

    #[test]
    fn follow_mode_announces_new_files_and_waits_for_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let options = FileOptions { follow: true, ..jsonl() };
        let mut source = FileSource::open(dir.path(), options).unwrap();
        assert!(source.partitions().is_empty());
        assert!(source.poll(10).unwrap().unwrap().is_empty());

        std::fs::write(dir.path().join("a.jsonl"), "{\"n\":1}\n{\"n\":").unwrap();
        source.last_scan = None;
        assert!(source.poll(10).unwrap().unwrap().is_empty());
        let a = partition_id("a.jsonl");
        assert_eq!(source.rebalance(), Some(Rebalance::Assigned(vec![a])));
        source.complete(&[]).unwrap();
        // The newest file's unfinished last line waits for its newline.
        assert_eq!(payloads(&source.poll(10).unwrap().unwrap()), ["{\"n\":1}"]);
        assert_eq!(source.positions(), vec![(a, 8)]);

        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("a.jsonl"))
            .map(|mut f| {
                use std::io::Write;
                f.write_all(b"2}\n").unwrap()
            })
            .unwrap();
        source.last_scan = None;
        assert_eq!(payloads(&source.poll(10).unwrap().unwrap()), ["{\"n\":2}"]);
        assert_eq!(source.rebalance(), None);
    }
}
