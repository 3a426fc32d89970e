//! The plugin runtime: loading components, running them in a sandbox with limits, and
//! surviving their failures.

mod answers;
mod bindings;
mod bisect;
mod cache;
mod component;
mod configured;
mod convert;
mod engine;
mod exports;
mod failure;
mod instance;
mod policy;
mod resources;
mod signature;
mod stage;
mod state;
mod tail;

pub use component::{digest, PluginComponent, PluginKind, CONTRACTS_RUN, CONTRACT_VERSION};
pub use configured::{Plugin, PluginInfo};
pub use engine::{default_cache_dir, PluginRuntime, RuntimeOptions};
pub use failure::{FailureKind, PluginFailure, RecordFailure};
pub use instance::Limits;
pub use policy::{AllowList, Policy};
pub use resources::{LookupTable, Resources};
pub use signature::{keygen, sign, Signature, TrustedKey};
pub use stage::{AggregatorStage, Native, Parsed, ParserStage, TransformStage, Transformed, Validated, ValidatorStage};
