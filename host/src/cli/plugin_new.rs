//! `weir plugin new NAME --kind KIND [--lang rust|python]`: a plugin project that builds
//! and passes its own test out of the box, with a sample input for `weir plugin test`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::KindArg;

/// Arguments of `weir plugin new`.
#[derive(clap::Args)]
pub struct NewArgs {
    /// The crate's name (lowercase, digits and dashes).
    name: String,
    /// The plugin kind.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// The language it is written in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create it (default: ./NAME).
    #[arg(long)]
    path: Option<PathBuf>,
    /// The weir-sdk crate to depend on (default: the SDK this weir was built from).
    #[arg(long, env = "WEIR_SDK_PATH")]
    sdk: Option<PathBuf>,
}

/// The languages a plugin project can be made in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    Rust,
    Python,
}

/// The SDK next to the sources this binary was built from.
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk")
}

fn type_name(name: &str) -> String {
    name.split(['-', '_']).filter(|p| !p.is_empty()).map(|p| p[..1].to_uppercase() + &p[1..]).collect()
}

pub fn run(args: NewArgs) -> Result<()> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !valid {
        bail!("plugin name {name:?}: use lowercase letters, digits, '-' and '_', starting with a letter");
    }
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty", dir.display());
    }
    let kind = format!("{:?}", args.kind).to_lowercase();
    let sample = match args.kind {
        KindArg::Parser => PARSER_SAMPLE,
        KindArg::Validator => VALIDATOR_SAMPLE,
        KindArg::Aggregator => AGGREGATOR_SAMPLE,
        KindArg::Transform => TRANSFORM_SAMPLE,
    };
    if args.lang == Lang::Python {
        return super::plugin_python::create(&dir, name, &kind, &type_name(name), sample);
    }
    let sdk = args.sdk.clone().unwrap_or_else(default_sdk);
    let sdk =
        sdk.canonicalize().with_context(|| format!("weir-sdk not found at {}; pass --sdk PATH", sdk.display()))?;
    let ty = type_name(name);
    let source = match args.kind {
        KindArg::Parser => PARSER,
        KindArg::Validator => VALIDATOR,
        KindArg::Aggregator => AGGREGATOR,
        KindArg::Transform => TRANSFORM,
    };
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("Cargo.toml", CARGO_TOML.replace("{name}", name).replace("{sdk}", &sdk.display().to_string())),
        ("src/lib.rs", source.replace("{Type}", &ty)),
        ("sample.jsonl", sample.to_string()),
        (".gitignore", "/target\nCargo.lock\n".to_string()),
        (
            "README.md",
            README.replace("{name}", name).replace("{kind}", &kind).replace("{stem}", &name.replace('-', "_")),
        ),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("created {kind} plugin {name} in {}", dir.display());
    println!("next:\n  cd {}\n  cargo test\n  weir plugin build\n  weir plugin test target/wasm32-wasip2/release/{}.wasm --input sample.jsonl", dir.display(), name.replace('-', "_"));
    Ok(())
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-sdk = { path = "{sdk}" }

[profile.release]
codegen-units = 1
strip = "debuginfo"

# A plugin is a workspace of its own, even when created inside another one.
[workspace]
"#;

const README: &str = r#"# {name}

A weir {kind} plugin.

```sh
cargo test                                   # the logic, natively
weir plugin build                            # the component
weir plugin test target/wasm32-wasip2/release/{stem}.wasm --input sample.jsonl
```

`weir plugin build` uses `cargo component build` when it is installed (the component
then lands in `target/wasm32-wasip1/release/`).
"#;

const PARSER: &str = r#"//! Parses `city,fare,epoch_millis` lines.

use weir_sdk::{BatchBuilder, ColumnDef, ColumnType, Config, ParseOutput, Parser, ParserInfo, RawBatch, RecordError, Value};

pub struct {Type} {
    outputs: Vec<ColumnDef>,
}

impl Parser for {Type} {
    fn init(_config: Config) -> Result<(Self, ParserInfo), String> {
        let outputs = vec![
            ColumnDef::new("city", ColumnType::Text),
            ColumnDef::new("fare", ColumnType::Float64),
            ColumnDef::new("time", ColumnType::TimestampMs),
        ];
        let info = ParserInfo { outputs: outputs.clone(), event_time_column: "time".into() };
        Ok(({Type} { outputs }, info))
    }

    fn parse(&self, batch: &RawBatch) -> ParseOutput {
        let (mut out, mut sources, mut errors) = (BatchBuilder::new(&self.outputs), Vec::new(), Vec::new());
        for (i, record) in batch.payloads.iter().enumerate() {
            let text = String::from_utf8_lossy(record);
            let fields: Vec<&str> = text.trim().split(',').collect();
            let row = match fields.as_slice() {
                [city, fare, time] => match (fare.parse::<f64>(), time.parse::<i64>()) {
                    (Ok(fare), Ok(time)) => Ok([Value::Text(city), Value::Float64(fare), Value::TimestampMs(time)]),
                    _ => Err(format!("bad number in {text:?}")),
                },
                _ => Err(format!("expected 3 fields, got {}", fields.len())),
            };
            match row.and_then(|row| out.push_row(&row)) {
                Ok(()) => sources.push(i as u32),
                Err(reason) => errors.push(RecordError { index: i as u32, reason }),
            }
        }
        ParseOutput { events: out.finish(), sources, errors }
    }
}

weir_sdk::export!(parser: {Type});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_lines_and_reports_bad_ones() {
        let (parser, _) = {Type}::init(Config::default()).unwrap();
        let out = parser.parse(&RawBatch::from_payloads(["Oslo,12.5,1714521600000", "garbage"]));
        assert_eq!(out.sources, vec![0]);
        assert_eq!(out.errors[0].index, 1);
    }
}
"#;

const PARSER_SAMPLE: &str = "Oslo,12.5,1714521600000\nDenver,30.25,1714521601000\nnot a record\n";

const VALIDATOR: &str = r#"//! Rejects negative fares.

use weir_sdk::{ColumnDef, ColumnType, Config, EventBatch, Severity, Validator, Violation};

pub struct {Type};

impl Validator for {Type} {
    fn init(_config: Config) -> Result<(Self, Vec<ColumnDef>), String> {
        Ok(({Type}, vec![ColumnDef::nullable("fare", ColumnType::Float64)]))
    }

    fn validate(&self, events: &EventBatch, out: &mut Vec<Violation>) {
        for row in 0..events.len() {
            match events.columns[0].values.f64(row) {
                Some(fare) if fare < 0.0 => out.push(Violation {
                    row: row as u32,
                    rule: "fare-non-negative".into(),
                    severity: Severity::Reject,
                    message: format!("fare {fare} is negative"),
                }),
                _ => {}
            }
        }
    }
}

weir_sdk::export!(validator: {Type});

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{validate_all, Column, ColumnValues};

    #[test]
    fn rejects_negative_fares() {
        let (rules, _) = {Type}::init(Config::default()).unwrap();
        let events = EventBatch { len: 2, columns: vec![Column::new(ColumnValues::Float64(vec![3.0, -1.0]))] };
        assert_eq!(validate_all(&rules, &events)[0].row, 1);
    }
}
"#;

const VALIDATOR_SAMPLE: &str = "{\"fare\": 12.5}\n{\"fare\": -3}\n{\"fare\": null}\n";

const AGGREGATOR: &str = r#"//! Counts events and sums fares.

use weir_sdk::{Aggregator, AggregatorInfo, BatchBuilder, ColumnDef, ColumnType, Config, EventBatch, Value};

pub struct {Type};

#[derive(Default)]
pub struct Totals {
    count: i64,
    fares: f64,
}

impl Aggregator for {Type} {
    type State = Totals;

    fn init(_config: Config) -> Result<(Self, AggregatorInfo), String> {
        let inputs = vec![ColumnDef::nullable("fare", ColumnType::Float64)];
        let outputs = vec![ColumnDef::new("count", ColumnType::Int64), ColumnDef::new("total_fare", ColumnType::Float64)];
        Ok(({Type}, AggregatorInfo { inputs, outputs, state_version: 1 }))
    }

    fn fold(&self, state: &mut Totals, events: &EventBatch, row: usize) {
        state.count += 1;
        state.fares += events.columns[0].values.f64(row).unwrap_or(0.0);
    }

    fn merge(&self, into: &mut Totals, other: Totals) {
        into.count += other.count;
        into.fares += other.fares;
    }

    fn emit(&self, state: &Totals, out: &mut BatchBuilder) -> Result<(), String> {
        out.push_row(&[Value::Int64(state.count), Value::Float64(state.fares)])
    }

    fn encode(&self, state: &Totals) -> Vec<u8> {
        [state.count.to_le_bytes(), state.fares.to_le_bytes()].concat()
    }

    fn decode(&self, bytes: &[u8]) -> Result<Totals, String> {
        match bytes.len() {
            0 => Ok(Totals::default()),
            16 => Ok(Totals {
                count: i64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()),
                fares: f64::from_le_bytes(bytes[8..].try_into().unwrap_or_default()),
            }),
            n => Err(format!("state is {n} bytes, expected 16")),
        }
    }
}

weir_sdk::export!(aggregator: {Type});

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{fold_encoded, Column, ColumnValues};

    #[test]
    fn counts_and_sums() {
        let (agg, _) = {Type}::init(Config::default()).unwrap();
        let events = EventBatch { len: 2, columns: vec![Column::new(ColumnValues::Float64(vec![3.0, 4.5]))] };
        let states = fold_encoded(&agg, &[Vec::new()], &events, &[0, 0]).unwrap();
        let totals = agg.decode(&states[0]).unwrap();
        assert_eq!((totals.count, totals.fares), (2, 7.5));
    }
}
"#;

const AGGREGATOR_SAMPLE: &str = "{\"fare\": 12.5}\n{\"fare\": 30}\n{\"fare\": null}\n";

const TRANSFORM: &str = r#"//! Keeps events whose fare is at least 10.

use weir_sdk::{ColumnDef, ColumnType, Config, EventBatch, Transform, TransformInfo, TransformOutput};

pub struct {Type};

impl Transform for {Type} {
    fn init(_config: Config) -> Result<(Self, TransformInfo), String> {
        let columns = vec![ColumnDef::nullable("city", ColumnType::Text), ColumnDef::nullable("fare", ColumnType::Float64)];
        Ok(({Type}, TransformInfo { inputs: columns.clone(), outputs: columns }))
    }

    fn apply(&self, events: &EventBatch) -> TransformOutput {
        let sources: Vec<u32> =
            (0..events.len()).filter(|&r| events.columns[1].values.f64(r).is_some_and(|f| f >= 10.0)).map(|r| r as u32).collect();
        TransformOutput { events: events.take(&sources), sources, errors: Vec::new() }
    }
}

weir_sdk::export!(transform: {Type});

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{Column, ColumnValues};

    #[test]
    fn keeps_big_fares() {
        let (t, _) = {Type}::init(Config::default()).unwrap();
        let events = EventBatch {
            len: 2,
            columns: vec![
                Column::new(ColumnValues::Text(["Oslo", "Lima"].into_iter().collect())),
                Column::new(ColumnValues::Float64(vec![5.0, 25.0])),
            ],
        };
        assert_eq!(t.apply(&events).sources, vec![1]);
    }
}
"#;

const TRANSFORM_SAMPLE: &str = "{\"city\": \"Oslo\", \"fare\": 5}\n{\"city\": \"Lima\", \"fare\": 25}\n";
