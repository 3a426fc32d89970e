//! JSON-lines files: one file, or every `*.jsonl`/`*.json` file of a directory in name
//! order. Each file is a partition (its index in that order); a record's offset is the
//! byte offset of its line, so a restart seeks straight to the next unread line.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use weir_sdk::RawBatch;

use super::Source;

/// A set of JSON-lines files read in order.
pub struct FileSource {
    root: PathBuf,
    files: Vec<PathBuf>,
    positions: Vec<u64>,
    current: usize,
    reader: Option<BufReader<File>>,
    line: Vec<u8>,
}

impl FileSource {
    /// Lists the files at `path` (a file, or a directory of `.jsonl`/`.json` files).
    pub fn open(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).with_context(|| format!("source.path {}", path.display()))?;
        let files = if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("listing {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl" || x == "json"))
                .collect();
            files.sort();
            files
        } else {
            vec![path.to_path_buf()]
        };
        if files.is_empty() {
            bail!("source.path {} holds no .jsonl or .json files", path.display());
        }
        let positions = vec![0; files.len()];
        Ok(FileSource { root: path.to_path_buf(), files, positions, current: 0, reader: None, line: Vec::new() })
    }

    fn open_current(&mut self) -> Result<()> {
        let path = &self.files[self.current];
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.seek(SeekFrom::Start(self.positions[self.current]))?;
        self.reader = Some(BufReader::with_capacity(1 << 20, file));
        Ok(())
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("files {}", self.root.display())
    }

    fn partitions(&self) -> Vec<i32> {
        (0..self.files.len() as i32).collect()
    }

    fn seek(&mut self, offsets: &[(i32, i64)]) -> Result<()> {
        for &(partition, offset) in offsets {
            if let Some(position) = self.positions.get_mut(partition as usize) {
                *position = offset as u64;
            }
        }
        // Resume in the first file that is not read to its end.
        self.current = 0;
        while self.current < self.files.len() {
            let len = std::fs::metadata(&self.files[self.current])?.len();
            if self.positions[self.current] < len {
                break;
            }
            self.current += 1;
        }
        self.reader = None;
        Ok(())
    }

    fn active(&self) -> Option<Vec<i32>> {
        Some(if self.current < self.files.len() { vec![self.current as i32] } else { Vec::new() })
    }

    fn positions(&self) -> Vec<(i32, i64)> {
        self.positions.iter().enumerate().map(|(p, &o)| (p as i32, o as i64)).collect()
    }

    fn poll(&mut self, max: usize) -> Result<Option<RawBatch>> {
        let mut batch = RawBatch::default();
        while batch.len() < max {
            if self.current >= self.files.len() {
                break;
            }
            if self.reader.is_none() {
                self.open_current()?;
            }
            let Some(reader) = self.reader.as_mut() else { break };
            self.line.clear();
            let read = reader
                .read_until(b'\n', &mut self.line)
                .with_context(|| format!("reading {}", self.files[self.current].display()))?;
            if read == 0 {
                self.current += 1;
                self.reader = None;
                continue;
            }
            let offset = self.positions[self.current];
            self.positions[self.current] += read as u64;
            let record = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            let record = record.strip_suffix(b"\r").unwrap_or(record);
            if record.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push(record, b"", -1, self.current as i32, offset as i64);
        }
        if batch.is_empty() && self.current >= self.files.len() {
            return Ok(None);
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_in_order_and_resumes_at_a_byte_offset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "{\"n\":1}\n\n{\"n\":2}\r\n").unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "{\"n\":3}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let mut source = FileSource::open(dir.path()).unwrap();
        let all = source.poll(10).unwrap().unwrap();
        let payloads: Vec<&[u8]> = all.payloads.iter().collect();
        assert_eq!(payloads, vec![&b"{\"n\":1}"[..], b"{\"n\":2}", b"{\"n\":3}"]);
        assert_eq!((all.partitions.clone(), all.offsets.clone()), (vec![0, 0, 1], vec![0, 9, 0]));
        assert!(source.poll(10).unwrap().is_none());

        // Positions are where the next line starts, so a checkpoint taken after one
        // record resumes at the second.
        let mut first = FileSource::open(dir.path()).unwrap();
        first.poll(1).unwrap();
        assert_eq!(first.positions(), vec![(0, 8), (1, 0)]);
        let mut resumed = FileSource::open(dir.path()).unwrap();
        resumed.seek(&first.positions()).unwrap();
        let rest = resumed.poll(10).unwrap().unwrap();
        let payloads: Vec<&[u8]> = rest.payloads.iter().collect();
        assert_eq!(payloads, vec![&b"{\"n\":2}"[..], b"{\"n\":3}"]);
    }
}
