//! The pipeline file: TOML, validated strictly. Unknown keys are errors, every error
//! names the file and the key, and `${VAR}` / `${VAR:-default}` come from the
//! environment so that secrets never live in the file.

mod duration;
mod interpolate;
mod pipeline;

pub use duration::parse_duration;
pub use interpolate::interpolate;
pub use pipeline::{
    AggregatorConfig, BreakerConfig, CheckpointConfig, FileFormat, PipelineConfig, PluginLimits, SinkConfig,
    SourceConfig, StageConfig, WatermarkConfig, WindowConfig,
};
