//! The pipeline file: TOML, validated strictly. Unknown keys are errors, every error
//! names the file and the key, and `${VAR}` / `${VAR:-default}` come from the
//! environment so that secrets never live in the file.

mod alerts;
mod check;
mod deploy;
mod duration;
#[cfg(test)]
mod fuzz;
mod interpolate;
mod lookups;
mod outputs;
mod pipeline;
mod quality;
mod retention;
mod schemas;
mod score;
mod sections;
mod source;

pub use alerts::AlertsConfig;
pub use deploy::DeployConfig;
pub use duration::parse_duration;
pub use interpolate::interpolate;
pub use lookups::LookupConfig;
pub use outputs::{DeltaConfig, RedisConfig};
pub use pipeline::{
    AggregatorConfig, BreakerConfig, CheckpointConfig, PipelineConfig, PluginLimits, SinkConfig, StageConfig,
    TrustConfig, WatermarkConfig, WindowConfig,
};
pub use quality::{AnomalyConfig, Check, ColumnAnomaly, Op, QualityConfig, Range, RuleConfig, Score, Severity};
pub use retention::{Keep, RetentionConfig};
pub use schemas::SchemasConfig;
pub use source::{FileFormat, PostgresMode, SourceConfig};

/// The directory a pipeline file's relative paths are relative to: the file's own, shown
/// as `.` rather than as nothing when the file was named without one.
pub fn base_dir(pipeline: &std::path::Path) -> std::path::PathBuf {
    match pipeline.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}
