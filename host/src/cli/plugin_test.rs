//! `weir plugin test FILE --input FILE.jsonl`: the plugin author's inner loop. A
//! parser reads each line as one raw record; the other kinds read each line as a JSON
//! object holding their declared input columns.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value as Json};
use weir_sdk::{BatchBuilder, ColumnDef, ColumnType, ColumnValues, EventBatch, RawBatch, Value};

use super::{read_config, RuntimeArgs};
use crate::plugin::{
    AggregatorStage, Limits, ParserStage, Plugin, PluginRuntime, Policy, TransformStage, ValidatorStage,
};
use crate::plugin::{PluginInfo, RecordFailure};

/// Arguments of `weir plugin test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// The component file.
    file: PathBuf,
    /// Input: one record (parser) or one JSON object of input columns (other kinds) per line; `-` for stdin.
    #[arg(long)]
    input: PathBuf,
    /// The plugin's config: inline JSON, or a .json/.toml file.
    #[arg(long)]
    config: Option<String>,
    /// The CPU deadline of one call, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    deadline_ms: u64,
    /// The memory cap, in MiB.
    #[arg(long, default_value_t = 256)]
    max_memory_mib: u64,
    /// Extra capabilities to grant, as import patterns (e.g. `wasi:filesystem/*`).
    #[arg(long = "grant")]
    grants: Vec<String>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub fn run(args: TestArgs) -> Result<()> {
    let runtime = PluginRuntime::new(args.runtime.options())?;
    let component = runtime.load(&args.file, &Policy::granting(args.grants.clone()))?;
    let limits = Limits {
        max_memory_bytes: args.max_memory_mib * 1024 * 1024,
        deadline: std::time::Duration::from_millis(args.deadline_ms),
    };
    let config = read_config(args.config.as_deref())?;
    let mut plugin = Plugin::new(component.clone(), component.kind, &config, limits)?;
    let lines = read_lines(&args.input)?;
    let mut out = std::io::stdout().lock();
    let summary = match plugin.info().clone() {
        PluginInfo::Parser(info) => {
            let parsed = plugin.parse(&RawBatch::from_payloads(&lines));
            for (event, &source) in
                rows_as_json(&parsed.output.events, &info.outputs).into_iter().zip(&parsed.output.sources)
            {
                writeln!(out, "{}", json!({"record": source, "event": event}))?;
            }
            for error in &parsed.output.errors {
                writeln!(out, "{}", json!({"record": error.index, "error": error.reason}))?;
            }
            print_failures(&mut out, &parsed.failures)?;
            format!(
                "{} records: {} events, {} errors, {} plugin failures",
                lines.len(),
                parsed.output.events.len,
                parsed.output.errors.len(),
                parsed.failures.len()
            )
        }
        PluginInfo::Validator(inputs) => {
            let events = rows_from_json(&lines, &inputs)?;
            let validated = plugin.validate(&events);
            for row in 0..events.len() as u32 {
                let found: Vec<_> = validated.violations.iter().filter(|v| v.row == row).collect();
                if found.is_empty() && !validated.failures.iter().any(|f| f.index == row) {
                    writeln!(out, "{}", json!({"row": row, "verdict": "pass"}))?;
                }
                for v in found {
                    writeln!(
                        out,
                        "{}",
                        json!({"row": row, "verdict": v.severity.name(), "rule": v.rule, "message": v.message})
                    )?;
                }
            }
            print_failures(&mut out, &validated.failures)?;
            format!(
                "{} events: {} violations, {} plugin failures",
                events.len,
                validated.violations.len(),
                validated.failures.len()
            )
        }
        PluginInfo::Transform(info) => {
            let events = rows_from_json(&lines, &info.inputs)?;
            let transformed = plugin.apply(&events);
            for (event, &source) in
                rows_as_json(&transformed.output.events, &info.outputs).into_iter().zip(&transformed.output.sources)
            {
                writeln!(out, "{}", json!({"source": source, "event": event}))?;
            }
            for error in &transformed.output.errors {
                writeln!(out, "{}", json!({"source": error.index, "error": error.reason}))?;
            }
            print_failures(&mut out, &transformed.failures)?;
            format!(
                "{} events in, {} out, {} plugin failures",
                events.len,
                transformed.output.events.len,
                transformed.failures.len()
            )
        }
        PluginInfo::Aggregator(info) => {
            let events = rows_from_json(&lines, &info.inputs)?;
            let mut states = vec![plugin.create().map_err(|e| anyhow::anyhow!("create failed: {e}"))?];
            let failures = plugin.fold(&mut states, &events, &vec![0; events.len()]);
            let emitted = plugin.emit(&states).map_err(|e| anyhow::anyhow!("emit failed: {e}"))?;
            for row in rows_as_json(&emitted, &info.outputs) {
                writeln!(out, "{}", json!({"output": row}))?;
            }
            print_failures(&mut out, &failures)?;
            format!(
                "{} events folded into one group, {} plugin failures; state is {} bytes",
                events.len,
                failures.len(),
                states[0].len()
            )
        }
    };
    eprintln!("{summary}");
    Ok(())
}

fn read_lines(path: &PathBuf) -> Result<Vec<String>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening input {}", path.display()))?,
        ))
    };
    let lines = reader
        .lines()
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading input {}", path.display()))?;
    Ok(lines.into_iter().filter(|l| !l.trim().is_empty()).collect())
}

fn print_failures(out: &mut impl Write, failures: &[RecordFailure]) -> Result<()> {
    for f in failures {
        writeln!(
            out,
            "{}",
            json!({"record": f.index, "failure": f.failure.kind().to_string(), "reason": f.failure.to_string()})
        )?;
    }
    Ok(())
}

/// Builds a batch with the columns of `schema` from JSON object lines.
fn rows_from_json(lines: &[String], schema: &[ColumnDef]) -> Result<EventBatch> {
    let mut builder = BatchBuilder::new(schema);
    for (n, line) in lines.iter().enumerate() {
        let at = || format!("input line {}", n + 1);
        let object: Map<String, Json> = serde_json::from_str(line).with_context(at)?;
        let mut texts = Vec::new();
        for def in schema {
            texts.push(object.get(&def.name).and_then(|v| v.as_str()).unwrap_or_default());
        }
        let row = schema
            .iter()
            .zip(&texts)
            .map(|(def, text)| {
                json_value(object.get(&def.name), def, text).with_context(|| format!("{}: column {:?}", at(), def.name))
            })
            .collect::<Result<Vec<_>>>()?;
        builder.push_row(&row).map_err(anyhow::Error::msg).with_context(at)?;
    }
    Ok(builder.finish())
}

fn json_value<'a>(value: Option<&Json>, def: &ColumnDef, text: &'a str) -> Result<Value<'a>> {
    Ok(match (value, def.ty) {
        (None | Some(Json::Null), _) => Value::Null,
        (Some(v), ColumnType::Int64) => Value::Int64(v.as_i64().context("expected an integer")?),
        (Some(v), ColumnType::Float64) => Value::Float64(v.as_f64().context("expected a number")?),
        (Some(v), ColumnType::Boolean) => Value::Boolean(v.as_bool().context("expected true or false")?),
        (Some(Json::String(_)), ColumnType::Text) => Value::Text(text),
        (Some(Json::String(s)), ColumnType::TimestampMs) => Value::TimestampMs(
            weir_sdk::time::parse_iso8601(s.as_bytes()).with_context(|| format!("invalid ISO-8601 time {s:?}"))?,
        ),
        (Some(v), ColumnType::TimestampMs) => {
            Value::TimestampMs(v.as_i64().context("expected epoch milliseconds or an ISO-8601 string")?)
        }
        (Some(_), ColumnType::Text) => bail!("expected a string"),
    })
}

/// Renders each row of `batch` as a JSON object keyed by column name.
fn rows_as_json(batch: &EventBatch, schema: &[ColumnDef]) -> Vec<Json> {
    (0..batch.len())
        .map(|row| {
            let mut object = Map::new();
            for (def, column) in schema.iter().zip(&batch.columns) {
                let value = if !column.is_valid(row) {
                    Json::Null
                } else {
                    match &column.values {
                        ColumnValues::Int64(v) => json!(v[row]),
                        ColumnValues::Float64(v) => json!(v[row]),
                        ColumnValues::Boolean(v) => json!(v[row]),
                        ColumnValues::Text(v) => json!(v.str(row)),
                        ColumnValues::TimestampMs(v) => json!(weir_sdk::time::format_iso8601(v[row])),
                    }
                };
                object.insert(def.name.clone(), value);
            }
            Json::Object(object)
        })
        .collect()
}
