//! `Plugin`: a configured WASM plugin that survives its own failures. After a trap it
//! starts a fresh instance (and re-runs `init` with the same config) before the next
//! call, and it splits a failing batch to pin the failure on the rows that cause it.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use weir_sdk::{
    AggregatorInfo, ColumnDef, EventBatch, ParseOutput, ParserInfo, RawBatch, RecordError, TransformInfo,
    TransformOutput, Violation,
};

use super::answers::Answers;
use super::bindings::types as wit;
use super::bisect::bisect;
use super::component::{PluginComponent, PluginKind};
use super::convert::{self, check_batch, check_indices, RawBatchRef};
use super::exports::Exports;
use super::failure::{PluginFailure, RecordFailure};
use super::instance::{Limits, PluginInstance};
use super::stage::{AggregatorStage, Parsed, ParserStage, TransformStage, Transformed, Validated, ValidatorStage};

/// What a plugin declared at init.
#[derive(Clone, Debug, PartialEq)]
pub enum PluginInfo {
    /// A parser's declaration.
    Parser(ParserInfo),
    /// A validator's input columns.
    Validator(Vec<ColumnDef>),
    /// An aggregator's declaration.
    Aggregator(AggregatorInfo),
    /// A transform's declaration.
    Transform(TransformInfo),
}

/// A configured plugin.
pub struct Plugin {
    component: Arc<PluginComponent>,
    config: String,
    limits: Limits,
    instance: Option<PluginInstance>,
    info: PluginInfo,
    restarts: u64,
}

impl Plugin {
    /// Instantiates `component`, which must be of `kind`, and configures it with `config` (JSON).
    ///
    /// The kind is fixed here, so each stage trait below is only ever used on its own kind.
    pub fn new(component: Arc<PluginComponent>, kind: PluginKind, config: &str, limits: Limits) -> Result<Self> {
        if component.kind != kind {
            bail!("plugin {} is a {}; this stage needs a {kind}", component.name, component.kind);
        }
        let (instance, info) = start(&component, config, &limits)?;
        Ok(Plugin { component, config: config.to_string(), limits, instance: Some(instance), info, restarts: 0 })
    }

    /// The loaded component.
    pub fn component(&self) -> &Arc<PluginComponent> {
        &self.component
    }

    /// What it declared at init.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// How many times a failure made it start a fresh instance.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// One call, on a fresh instance if the last one failed.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&Exports, &mut wasmtime::Store<super::state::PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFailure> {
        let instance = match &mut self.instance {
            Some(instance) => instance,
            None => {
                let (instance, _) = start(&self.component, &self.config, &self.limits)
                    .map_err(|e| PluginFailure::Trap(format!("could not start a fresh instance: {e:#}")))?;
                self.restarts += 1;
                self.instance.insert(instance)
            }
        };
        let result = instance.call(f);
        if let Err(failure) = &result {
            if failure.poisons_instance() {
                // A trapped instance may hold broken invariants; it is never entered again.
                self.instance = None;
            }
        }
        result
    }
}

/// Instantiates and runs `init`.
fn start(component: &Arc<PluginComponent>, config: &str, limits: &Limits) -> Result<(PluginInstance, PluginInfo)> {
    let mut instance = PluginInstance::new(component, limits)?;
    let name = &component.name;
    let refused = |e: String| anyhow!("plugin {name} refused its config: {e}");
    let failed = |e: PluginFailure| anyhow!("plugin {name} failed in init: {e}");
    let info = instance
        .call(|exports, store| {
            Ok(match exports.kind {
                PluginKind::Parser => exports.init_parser(store, config)?.map(|i| {
                    PluginInfo::Parser(ParserInfo {
                        outputs: convert::column_defs(i.outputs),
                        event_time_column: i.event_time_column,
                    })
                }),
                PluginKind::Validator => exports
                    .init_validator(store, config)?
                    .map(|i| PluginInfo::Validator(convert::column_defs(i.inputs))),
                PluginKind::Aggregator => exports.init_aggregator(store, config)?.map(|i| {
                    PluginInfo::Aggregator(AggregatorInfo {
                        inputs: convert::column_defs(i.inputs),
                        outputs: convert::column_defs(i.outputs),
                        state_version: i.state_version,
                    })
                }),
                PluginKind::Transform => exports.init_transform(store, config)?.map(|i| {
                    PluginInfo::Transform(TransformInfo {
                        inputs: convert::column_defs(i.inputs),
                        outputs: convert::column_defs(i.outputs),
                    })
                }),
            })
        })
        .map_err(failed)?
        .map_err(refused)?;
    check_declaration(&info).map_err(|e| anyhow!("plugin {name} declares an unusable schema: {e}"))?;
    Ok((instance, info))
}

/// Refuses declarations the host cannot wire: duplicate or empty column names, a
/// parser without a timestamp event-time column, an aggregator that writes nothing.
fn check_declaration(info: &PluginInfo) -> Result<(), String> {
    let unique = |what: &str, columns: &[ColumnDef]| -> Result<(), String> {
        for (i, c) in columns.iter().enumerate() {
            if c.name.is_empty() {
                return Err(format!("{what} column {i} has no name"));
            }
            if columns[..i].iter().any(|d| d.name == c.name) {
                return Err(format!("{what} column {:?} is declared twice", c.name));
            }
        }
        Ok(())
    };
    match info {
        PluginInfo::Parser(i) => {
            unique("output", &i.outputs)?;
            match i.outputs.iter().find(|c| c.name == i.event_time_column) {
                Some(c) if c.ty == weir_sdk::ColumnType::TimestampMs => Ok(()),
                Some(c) => Err(format!("event-time column {:?} is {}, not timestamp", c.name, c.ty.name())),
                None => Err(format!("event-time column {:?} is not among its outputs", i.event_time_column)),
            }
        }
        PluginInfo::Validator(inputs) => unique("input", inputs),
        PluginInfo::Aggregator(i) if i.outputs.is_empty() => Err("it writes no output column".into()),
        PluginInfo::Aggregator(i) => unique("input", &i.inputs).and_then(|_| unique("output", &i.outputs)),
        PluginInfo::Transform(i) => unique("input", &i.inputs).and_then(|_| unique("output", &i.outputs)),
    }
}

/// What parsers and transforms return: rows, the input row each came from, and errors.
struct Mapped {
    events: EventBatch,
    sources: Vec<u32>,
    errors: Vec<RecordError>,
}

impl Mapped {
    /// A guest's mapped rows, in host types.
    fn from_guest(events: wit::EventBatch, sources: Vec<u32>, errors: Vec<wit::RecordError>) -> Self {
        Mapped { events: convert::batch_in(events), sources, errors: convert::errors_in(errors) }
    }

    /// Checks the output of one call over `input_len` rows against the declared `outputs`.
    fn checked(self, outputs: &[ColumnDef], input_len: usize) -> Result<Self, PluginFailure> {
        check_batch(&self.events, outputs).map_err(PluginFailure::Guest)?;
        if self.sources.len() != self.events.len() {
            let (sources, rows) = (self.sources.len(), self.events.len());
            return Err(PluginFailure::Guest(format!("{sources} sources for {rows} rows")));
        }
        check_indices("source", self.sources.iter().copied(), input_len).map_err(PluginFailure::Guest)?;
        check_indices("error", self.errors.iter().map(|e| e.index), input_len).map_err(PluginFailure::Guest)?;
        Ok(self)
    }

    /// Joins the outputs of a split batch, shifting indices by where each part started.
    fn merge(done: Vec<(usize, Mapped)>, outputs: &[ColumnDef]) -> Mapped {
        let mut merged = Mapped { events: EventBatch::empty(outputs), sources: Vec::new(), errors: Vec::new() };
        for (start, part) in done {
            let shift = start as u32;
            merged.events.append(part.events);
            merged.sources.extend(part.sources.iter().map(|s| s + shift));
            merged.errors.extend(part.errors.into_iter().map(|e| RecordError { index: e.index + shift, ..e }));
        }
        merged
    }

    /// See [`Answers::settle`].
    fn settle(
        self,
        outputs: &[ColumnDef],
        input_len: usize,
        every_row_answers: bool,
        failures: &mut Vec<RecordFailure>,
    ) -> Answers {
        Answers { events: self.events, sources: self.sources, errors: self.errors }.settle(
            outputs,
            input_len,
            every_row_answers,
            failures,
        )
    }
}

fn rows<'a>(events: &'a EventBatch, range: &Range<usize>) -> Cow<'a, EventBatch> {
    if range.start == 0 && range.end == events.len() {
        Cow::Borrowed(events)
    } else {
        Cow::Owned(events.take(&(range.start as u32..range.end as u32).collect::<Vec<_>>()))
    }
}

fn all_columns(events: &EventBatch) -> Vec<usize> {
    (0..events.columns.len()).collect()
}

impl ParserStage for Plugin {
    fn info(&self) -> &ParserInfo {
        match &self.info {
            PluginInfo::Parser(info) => info,
            _ => unreachable!("Plugin::new checked the kind"),
        }
    }

    fn parse(&mut self, batch: &RawBatch) -> Parsed {
        let outputs = ParserStage::info(self).outputs.clone();
        let (done, failures) = bisect(0..batch.len(), &mut |range| {
            let part =
                if range.len() == batch.len() { Cow::Borrowed(batch) } else { Cow::Owned(batch.slice(range.clone())) };
            let out = self.call(|exports, store| exports.parse(store, RawBatchRef::of(&part)))?;
            Mapped::from_guest(out.events, out.sources, out.errors).checked(&outputs, part.len())
        });
        let mut failures = failures;
        let merged = Mapped::merge(done, &outputs).settle(&outputs, batch.len(), true, &mut failures);
        Parsed {
            output: ParseOutput { events: merged.events, sources: merged.sources, errors: merged.errors },
            failures,
        }
    }
}

impl ValidatorStage for Plugin {
    fn inputs(&self) -> &[ColumnDef] {
        match &self.info {
            PluginInfo::Validator(inputs) => inputs,
            _ => unreachable!("Plugin::new checked the kind"),
        }
    }

    fn validate(&mut self, events: &EventBatch) -> Validated {
        let (done, failures) = bisect(0..events.len(), &mut |range| {
            let part = rows(events, &range);
            let found =
                self.call(|exports, store| exports.validate(store, &convert::batch_out(&part, &all_columns(&part))))?;
            check_indices("violation row", found.iter().map(|v| v.row), part.len()).map_err(PluginFailure::Guest)?;
            Ok(convert::violations_in(found))
        });
        let violations = done
            .into_iter()
            .flat_map(|(start, found)| found.into_iter().map(move |v| Violation { row: v.row + start as u32, ..v }))
            .collect();
        Validated { violations, failures }
    }
}

impl TransformStage for Plugin {
    fn info(&self) -> &TransformInfo {
        match &self.info {
            PluginInfo::Transform(info) => info,
            _ => unreachable!("Plugin::new checked the kind"),
        }
    }

    fn apply(&mut self, events: &EventBatch) -> Transformed {
        let outputs = TransformStage::info(self).outputs.clone();
        let (done, failures) = bisect(0..events.len(), &mut |range| {
            let part = rows(events, &range);
            let out =
                self.call(|exports, store| exports.apply(store, &convert::batch_out(&part, &all_columns(&part))))?;
            Mapped::from_guest(out.events, out.sources, out.errors).checked(&outputs, part.len())
        });
        let mut failures = failures;
        let merged = Mapped::merge(done, &outputs).settle(&outputs, events.len(), false, &mut failures);
        let output = TransformOutput { events: merged.events, sources: merged.sources, errors: merged.errors };
        Transformed { output, failures }
    }
}

impl AggregatorStage for Plugin {
    fn info(&self) -> &AggregatorInfo {
        match &self.info {
            PluginInfo::Aggregator(info) => info,
            _ => unreachable!("Plugin::new checked the kind"),
        }
    }

    fn create(&mut self) -> Result<Vec<u8>, PluginFailure> {
        self.call(|exports, store| exports.create(store))
    }

    fn fold(&mut self, states: &mut [Vec<u8>], events: &EventBatch, groups: &[u32]) -> Vec<RecordFailure> {
        // Ranges are folded in row order, each into the states the previous one left,
        // so a split batch folds exactly the rows that did not fail.
        let (_, failures) = bisect(0..events.len(), &mut |range| {
            let part = rows(events, &range);
            let new = self
                .call(|exports, store| {
                    exports.fold(store, states, &convert::batch_out(&part, &all_columns(&part)), &groups[range.clone()])
                })?
                .map_err(PluginFailure::Guest)?;
            if new.len() != states.len() {
                return Err(PluginFailure::Guest(format!("fold returned {} states for {}", new.len(), states.len())));
            }
            states.iter_mut().zip(new).for_each(|(s, n)| *s = n);
            Ok(())
        });
        failures
    }

    fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Vec<u8>, PluginFailure> {
        self.call(|exports, store| exports.merge(store, a, b))?.map_err(PluginFailure::Guest)
    }

    fn emit(&mut self, states: &[Vec<u8>]) -> Result<EventBatch, PluginFailure> {
        let outputs = AggregatorStage::info(self).outputs.clone();
        let out = self.call(|exports, store| exports.emit(store, states))?.map_err(PluginFailure::Guest)?;
        let out = convert::batch_in(out);
        check_batch(&out, &outputs).map_err(PluginFailure::Guest)?;
        if out.len() != states.len() {
            return Err(PluginFailure::Guest(format!("emit returned {} rows for {} states", out.len(), states.len())));
        }
        Ok(out)
    }

    fn migrate(&mut self, from_version: u32, state: &[u8]) -> Result<Vec<u8>, PluginFailure> {
        self.call(|exports, store| exports.migrate(store, from_version, state))?.map_err(PluginFailure::Guest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::ColumnType;

    #[test]
    fn unusable_declarations_are_refused() {
        let parser = |time: &str, names: &[&str]| {
            let outputs = names.iter().map(|n| ColumnDef::new(*n, ColumnType::TimestampMs)).collect();
            PluginInfo::Parser(ParserInfo { outputs, event_time_column: time.into() })
        };
        assert!(check_declaration(&parser("t", &["t", "u"])).is_ok());
        assert!(check_declaration(&parser("t", &["t", "t"])).unwrap_err().contains("declared twice"));
        assert!(check_declaration(&parser("x", &["t"])).unwrap_err().contains("\"x\""));
        let text = PluginInfo::Parser(ParserInfo {
            outputs: vec![ColumnDef::new("t", ColumnType::Text)],
            event_time_column: "t".into(),
        });
        assert!(check_declaration(&text).unwrap_err().contains("not timestamp"));
        let empty = PluginInfo::Aggregator(AggregatorInfo { inputs: vec![], outputs: vec![], state_version: 1 });
        assert!(check_declaration(&empty).is_err());
    }
}
