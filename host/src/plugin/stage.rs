//! One small trait per plugin kind, as the pipeline sees it. The WASM `Plugin`
//! implements all four; `Native` runs a `weir_sdk` plugin compiled into the host,
//! which is the baseline of the plugin benchmark and handy in unit tests.

use weir_sdk::{
    AggregatorInfo, ColumnDef, Config, EventBatch, ParseOutput, ParserInfo, RawBatch, TransformInfo, TransformOutput,
    Violation,
};

use super::failure::{PluginFailure, RecordFailure};

/// A parsed batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    /// What the parser returned, merged over any split.
    pub output: ParseOutput,
    /// Records on which the plugin itself failed.
    pub failures: Vec<RecordFailure>,
}

/// A validated batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Validated {
    /// The violations, with rows of the batch handed in.
    pub violations: Vec<Violation>,
    /// Rows on which the plugin itself failed.
    pub failures: Vec<RecordFailure>,
}

/// A transformed batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transformed {
    /// What the transform returned, merged over any split.
    pub output: TransformOutput,
    /// Rows on which the plugin itself failed.
    pub failures: Vec<RecordFailure>,
}

/// Raw records to typed events.
pub trait ParserStage {
    /// The declared outputs.
    fn info(&self) -> &ParserInfo;
    /// Parses one batch.
    fn parse(&mut self, batch: &RawBatch) -> Parsed;
}

/// Events to verdicts. `validate` gets exactly the declared inputs, in order.
pub trait ValidatorStage {
    /// The declared inputs.
    fn inputs(&self) -> &[ColumnDef];
    /// Validates one batch.
    fn validate(&mut self, events: &EventBatch) -> Validated;
}

/// Events to new events. `apply` gets exactly the declared inputs, in order.
pub trait TransformStage {
    /// The declared inputs and outputs.
    fn info(&self) -> &TransformInfo;
    /// Transforms one batch.
    fn apply(&mut self, events: &EventBatch) -> Transformed;
}

/// Events into per-group state. `fold` gets exactly the declared inputs, in order.
pub trait AggregatorStage {
    /// The declared inputs, outputs and state version.
    fn info(&self) -> &AggregatorInfo;
    /// The state of a group that has seen nothing.
    fn create(&mut self) -> Result<Vec<u8>, PluginFailure>;
    /// Folds row `i` into `states[groups[i]]`, in place. Rows the plugin failed on are skipped and returned.
    fn fold(&mut self, states: &mut [Vec<u8>], events: &EventBatch, groups: &[u32]) -> Vec<RecordFailure>;
    /// Combines two states.
    fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Vec<u8>, PluginFailure>;
    /// One output row per state.
    fn emit(&mut self, states: &[Vec<u8>]) -> Result<EventBatch, PluginFailure>;
    /// Upgrades a state from an older state version.
    fn migrate(&mut self, from_version: u32, state: &[u8]) -> Result<Vec<u8>, PluginFailure>;
}

/// A `weir_sdk` plugin compiled into the host.
pub struct Native<P, I> {
    plugin: P,
    info: I,
}

impl<P, I> Native<P, I> {
    /// The plugin and what it declared.
    pub fn info(&self) -> &I {
        &self.info
    }
}

impl<P: weir_sdk::Parser> Native<P, ParserInfo> {
    /// Configures a native parser.
    pub fn parser(config: &str) -> anyhow::Result<Self> {
        let (plugin, info) = P::init(Config::from_json(config)).map_err(anyhow::Error::msg)?;
        Ok(Native { plugin, info })
    }
}

impl<P: weir_sdk::Parser> ParserStage for Native<P, ParserInfo> {
    fn info(&self) -> &ParserInfo {
        &self.info
    }

    fn parse(&mut self, batch: &RawBatch) -> Parsed {
        Parsed { output: self.plugin.parse(batch), failures: Vec::new() }
    }
}

impl<P: weir_sdk::Validator> Native<P, Vec<ColumnDef>> {
    /// Configures a native validator.
    pub fn validator(config: &str) -> anyhow::Result<Self> {
        let (plugin, info) = P::init(Config::from_json(config)).map_err(anyhow::Error::msg)?;
        Ok(Native { plugin, info })
    }
}

impl<P: weir_sdk::Validator> ValidatorStage for Native<P, Vec<ColumnDef>> {
    fn inputs(&self) -> &[ColumnDef] {
        &self.info
    }

    fn validate(&mut self, events: &EventBatch) -> Validated {
        Validated { violations: weir_sdk::validate_all(&self.plugin, events), failures: Vec::new() }
    }
}

impl<P: weir_sdk::Transform> Native<P, TransformInfo> {
    /// Configures a native transform.
    pub fn transform(config: &str) -> anyhow::Result<Self> {
        let (plugin, info) = P::init(Config::from_json(config)).map_err(anyhow::Error::msg)?;
        Ok(Native { plugin, info })
    }
}

impl<P: weir_sdk::Transform> TransformStage for Native<P, TransformInfo> {
    fn info(&self) -> &TransformInfo {
        &self.info
    }

    fn apply(&mut self, events: &EventBatch) -> Transformed {
        Transformed { output: self.plugin.apply(events), failures: Vec::new() }
    }
}

impl<P: weir_sdk::Aggregator> Native<P, AggregatorInfo> {
    /// Configures a native aggregator.
    pub fn aggregator(config: &str) -> anyhow::Result<Self> {
        let (plugin, info) = P::init(Config::from_json(config)).map_err(anyhow::Error::msg)?;
        Ok(Native { plugin, info })
    }
}

impl<P: weir_sdk::Aggregator> AggregatorStage for Native<P, AggregatorInfo> {
    fn info(&self) -> &AggregatorInfo {
        &self.info
    }

    fn create(&mut self) -> Result<Vec<u8>, PluginFailure> {
        Ok(self.plugin.encode(&Default::default()))
    }

    fn fold(&mut self, states: &mut [Vec<u8>], events: &EventBatch, groups: &[u32]) -> Vec<RecordFailure> {
        match weir_sdk::fold_encoded(&self.plugin, states, events, groups) {
            Ok(new) => {
                states.iter_mut().zip(new).for_each(|(s, n)| *s = n);
                Vec::new()
            }
            Err(e) => (0..groups.len() as u32)
                .map(|index| RecordFailure { index, failure: PluginFailure::Guest(e.clone()) })
                .collect(),
        }
    }

    fn merge(&mut self, a: &[u8], b: &[u8]) -> Result<Vec<u8>, PluginFailure> {
        weir_sdk::merge_encoded(&self.plugin, a, b).map_err(PluginFailure::Guest)
    }

    fn emit(&mut self, states: &[Vec<u8>]) -> Result<EventBatch, PluginFailure> {
        weir_sdk::emit_encoded(&self.plugin, &self.info.outputs, states).map_err(PluginFailure::Guest)
    }

    fn migrate(&mut self, from_version: u32, state: &[u8]) -> Result<Vec<u8>, PluginFailure> {
        weir_sdk::migrate_encoded(&self.plugin, from_version, state).map_err(PluginFailure::Guest)
    }
}
