//! The rides showcase: the synthetic trip producer and the plugin configs the example,
//! the benchmark and the tests share.

mod synth;

pub use synth::{TripGenerator, TripOptions};

use anyhow::{Context, Result};
use serde::Deserialize;

/// `examples/rides/plugins.toml`, built in so the benchmark runs from any directory.
pub const PLUGINS_TOML: &str = include_str!("../../../examples/rides/plugins.toml");

/// The rides chain's plugin configs, as JSON for `init`, and its window.
#[derive(Clone, Debug)]
pub struct RidesChainConfig {
    /// The parser's component file stem and config.
    pub parser: (String, String),
    /// The validator's component file stem and config.
    pub validator: (String, String),
    /// The aggregator's component file stem and config.
    pub aggregator: (String, String),
    /// The key column.
    pub key: String,
    /// The tumbling window's size.
    pub size_ms: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    key: String,
    size_ms: i64,
}

impl RidesChainConfig {
    /// Reads the chain from the built-in `plugins.toml`.
    pub fn builtin() -> Result<Self> {
        Self::parse(PLUGINS_TOML).context("reading the built-in examples/rides/plugins.toml")
    }

    /// Reads a chain description in the format of `examples/rides/plugins.toml`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut doc: toml::Table = toml::from_str(text)?;
        let mut stage = |name: &str| -> Result<(String, String)> {
            let mut table =
                doc.remove(name).and_then(|v| v.as_table().cloned()).with_context(|| format!("missing [{name}]"))?;
            let plugin = table
                .remove("plugin")
                .and_then(|v| v.as_str().map(String::from))
                .with_context(|| format!("[{name}].plugin is missing"))?;
            Ok((plugin, serde_json::to_string(&table)?))
        };
        let (parser, validator, aggregator) = (stage("parser")?, stage("validator")?, stage("aggregator")?);
        let window: Window = doc.remove("window").context("missing [window]")?.try_into().context("[window]")?;
        Ok(RidesChainConfig { parser, validator, aggregator, key: window.key, size_ms: window.size_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_config_parses() {
        let config = RidesChainConfig::builtin().unwrap();
        assert_eq!(config.parser.0, "json_parser");
        assert!(config.validator.1.contains("fare-non-negative"));
        assert_eq!((config.key.as_str(), config.size_ms), ("city", 60_000));
    }
}
