//! `weir dead-letters list|show|purge` and `weir late list`: the dead-letter store and the
//! late lane from the shell, so that nobody needs SQL to see what was refused and why.
//! For a files source, a record's place is shown as its file and line beside the byte
//! offset the sink stores.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::{base_dir, PipelineConfig, SourceConfig};
use crate::pipeline::{inspect_sink, open_sink};
use crate::sink::{Lane, Sink, Stored};
use crate::source::{FileOptions, FileSource, Source};
use weir_sdk::time::{format_iso8601, parse_iso8601};

/// Which stored records, in either lane.
#[derive(clap::Args, Clone)]
pub struct Filter {
    /// The pipeline file (its sink and its name).
    pipeline: PathBuf,
    /// Dead letters of this kind only.
    #[arg(long, value_parser = ["malformed", "rejected", "plugin_failure"])]
    kind: Option<String>,
    /// Only records whose reason contains this text (e.g. a rule name).
    #[arg(long)]
    reason: Option<String>,
    /// Only records of this source partition (as stored; a file's is a hash of its name).
    #[arg(long)]
    partition: Option<i32>,
    /// Only records stored (dead letters) or with an event time (late events) at or after
    /// this time, ISO 8601.
    #[arg(long, value_parser = parse_time)]
    since: Option<i64>,
    /// ... and before this time.
    #[arg(long, value_parser = parse_time)]
    until: Option<i64>,
}

/// Arguments of `list`, in either lane.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    filter: Filter,
    /// Show at most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// As JSON, raw bytes included.
    #[arg(long)]
    json: bool,
}

fn parse_time(text: &str) -> Result<i64, String> {
    parse_iso8601(text.as_bytes()).ok_or_else(|| format!("{text:?} is not an ISO 8601 time (2024-05-01T08:00:00Z)"))
}

impl Filter {
    fn wants(&self, lane: Lane, r: &Stored) -> bool {
        let time = match lane {
            Lane::DeadLetters => Some(r.stored_ms),
            Lane::Late => r.event_ms,
        };
        self.kind.as_ref().is_none_or(|k| &r.kind == k)
            && self.reason.as_ref().is_none_or(|text| r.reason.contains(text.as_str()))
            && self.partition.is_none_or(|p| r.partition == p)
            && self.since.is_none_or(|s| time.is_some_and(|t| t >= s))
            && self.until.is_none_or(|u| time.is_some_and(|t| t < u))
    }
}

/// The pipeline file, its sink, and the records of `lane` that `filter` selects.
struct Selected {
    config: PipelineConfig,
    base: PathBuf,
    sink: Box<dyn Sink + Send>,
    records: Vec<Stored>,
}

impl Selected {
    /// Where the selected records are; a sink from before `weir_partitions` has no labels.
    fn places(&mut self) -> Places {
        let recorded = self.sink.labels(&self.config.name).unwrap_or_default();
        Places::new(&self.config, &self.base, &self.records, recorded)
    }
}

fn select(filter: &Filter, lane: Lane, write: bool) -> Result<Selected> {
    let config = PipelineConfig::load(&filter.pipeline)?;
    let base = base_dir(&filter.pipeline);
    // Looking never creates a database.
    let mut sink = match write {
        true => open_sink(&config, &base)?,
        false => match inspect_sink(&config, &base)? {
            Some(sink) => sink,
            None => bail!("{}: no database yet; `weir run` creates it", config.sink.url),
        },
    };
    let records = sink
        .stored(&config.name, lane)
        .with_context(|| format!("reading {} of pipeline {:?}", lane_name(lane), config.name))?
        .into_iter()
        .filter(|r| filter.wants(lane, r))
        .collect();
    Ok(Selected { config, base, sink, records })
}

fn lane_name(lane: Lane) -> &'static str {
    match lane {
        Lane::Late => "the late lane",
        Lane::DeadLetters => "the dead letters",
    }
}

/// Where records are, as a person reads it: for a files source, the file and line.
struct Places {
    /// Each file's path: as the directory lists it now, else as the sink recorded it.
    files: Option<HashMap<i32, String>>,
    lines: HashMap<(i32, i64), u64>,
}

impl Places {
    fn new(config: &PipelineConfig, base: &Path, records: &[Stored], recorded: Vec<(i32, String)>) -> Self {
        let SourceConfig::Files { path, format, .. } = &config.source else {
            return Places { files: None, lines: HashMap::new() };
        };
        let mut files: HashMap<i32, String> = recorded.into_iter().collect();
        if let Ok(listed) = FileSource::open(&base.join(path), FileOptions { format: *format, ..Default::default() }) {
            files.extend(listed.partitions().into_iter().map(|p| (p, listed.label(p))));
        }
        let mut lines = HashMap::new();
        for (&p, name) in &files {
            let mut offsets: Vec<i64> = records.iter().filter(|r| r.partition == p).map(|r| r.offset).collect();
            if offsets.is_empty() {
                continue;
            }
            offsets.sort_unstable();
            if let Ok(found) = line_numbers(Path::new(name), &offsets) {
                lines.extend(found.into_iter().map(|(offset, line)| ((p, offset), line)));
            }
        }
        Places { files: Some(files), lines }
    }

    fn of(&self, r: &Stored) -> String {
        let Some(files) = &self.files else { return format!("partition {} offset {}", r.partition, r.offset) };
        let name = files.get(&r.partition).cloned().unwrap_or_else(|| format!("file #{}", r.partition));
        match self.lines.get(&(r.partition, r.offset)) {
            Some(line) => format!("{name} line {line} (byte {})", r.offset),
            None => format!("{name} byte {}", r.offset),
        }
    }
}

/// The line of each of the sorted byte `offsets` of the file at `path`: one more than the
/// newlines before it. One streaming pass, reading no further than the last offset.
fn line_numbers(path: &Path, offsets: &[i64]) -> std::io::Result<Vec<(i64, u64)>> {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(std::fs::File::open(path)?);
    let (mut line, mut at, mut out) = (1u64, 0i64, Vec::with_capacity(offsets.len()));
    for &offset in offsets {
        while at < offset {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let take = buf.len().min((offset - at) as usize);
            line += memchr::memchr_iter(b'\n', &buf[..take]).count() as u64;
            reader.consume(take);
            at += take as i64;
        }
        out.push((offset, line));
    }
    Ok(out)
}

/// The raw bytes as text: UTF-8 as it is, anything else escaped.
fn shown(raw: &[u8]) -> String {
    String::from_utf8(raw.to_vec()).unwrap_or_else(|_| raw.escape_ascii().to_string())
}

fn clipped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `list`: one line per record, or JSON.
pub fn list(args: &ListArgs, lane: Lane) -> Result<()> {
    let ListArgs { filter, limit, json } = args;
    let (limit, json) = (*limit, *json);
    let mut selected = select(filter, lane, false)?;
    let total = selected.records.len();
    // Only the records shown are placed: finding lines reads their files.
    selected.records.truncate(limit);
    let places = selected.places();
    let Selected { config, records, .. } = selected;
    if json {
        let rows: Vec<serde_json::Value> = records.iter().map(|r| as_json(r, &places)).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    for r in &records {
        match lane {
            Lane::DeadLetters => println!(
                "#{:<6} {:<14} {:<16} {}  {}\n        {}",
                r.id,
                r.kind,
                r.plugin,
                format_iso8601(r.stored_ms),
                places.of(r),
                clipped(&r.reason, 160)
            ),
            Lane::Late => println!(
                "#{:<6} event {}  window {}  {}",
                r.id,
                r.event_ms.map_or("-".into(), format_iso8601),
                r.window.map_or("-".into(), |w| format!("[{}, {})", format_iso8601(w.start), format_iso8601(w.end))),
                places.of(r)
            ),
        }
    }
    let more = total.saturating_sub(limit);
    let tail = if more > 0 { format!(" ({more} more; --limit N shows more)") } else { String::new() };
    eprintln!("{total} record(s) of {} in pipeline {:?}{tail}", lane_name(lane), config.name);
    Ok(())
}

fn as_json(r: &Stored, places: &Places) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "kind": r.kind,
        "plugin": r.plugin,
        "reason": r.reason,
        "partition": r.partition,
        "offset": r.offset,
        "place": places.of(r),
        "stored_at": format_iso8601(r.stored_ms),
        "event_time": r.event_ms.map(format_iso8601),
        "window": r.window.map(|w| [format_iso8601(w.start), format_iso8601(w.end)]),
        "raw": shown(&r.raw),
    })
}

/// `show`: one dead letter whole, its raw bytes included.
pub fn show(filter: &Filter, id: i64) -> Result<()> {
    let mut selected = select(filter, Lane::DeadLetters, false)?;
    selected.records.retain(|r| r.id == id);
    let places = selected.places();
    let Selected { config, records, .. } = selected;
    let Some(r) = records.first() else {
        bail!("pipeline {:?} has no dead letter #{id} (weir dead-letters list shows their ids)", config.name)
    };
    println!("dead letter #{id} of pipeline {:?}", config.name);
    println!("kind:    {}", r.kind);
    println!("plugin:  {}", r.plugin);
    println!("stored:  {}", format_iso8601(r.stored_ms));
    println!("from:    {}", places.of(r));
    println!("reason:  {}", r.reason);
    println!("raw ({} bytes):\n{}", r.raw.len(), shown(&r.raw));
    Ok(())
}

/// `purge`: deletes the selected records, which are gone for good (not replayed).
pub fn purge(filter: &Filter, lane: Lane, all: bool) -> Result<()> {
    let filtered = filter.kind.is_some()
        || filter.reason.is_some()
        || filter.partition.is_some()
        || filter.since.is_some()
        || filter.until.is_some();
    if !filtered && !all {
        bail!("purge deletes records for good: name them with --kind, --reason, --partition, --since or --until, or pass --all");
    }
    let Selected { config, mut sink, records, .. } = select(filter, lane, true)?;
    let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
    let removed = sink.purge(&config.name, lane, &ids)?;
    println!("purged {removed} record(s) of {} in pipeline {:?}", lane_name(lane), config.name);
    Ok(())
}
