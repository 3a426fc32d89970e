//! A plugin's configuration, as the pipeline file gives it.

use serde::de::DeserializeOwned;

/// The config table of one plugin in the pipeline file, handed over at init.
#[derive(Clone, Debug, Default)]
pub struct Config {
    json: String,
}

impl Config {
    /// A config from its JSON text (the host converts the pipeline's TOML to JSON).
    pub fn from_json(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The raw JSON text.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// Deserializes the config into the plugin's own config struct.
    ///
    /// An empty config reads as `{}`, so a struct whose fields all have defaults works
    /// without one. Errors name the offending key, as serde reports it.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        let text = if self.json.trim().is_empty() { "{}" } else { &self.json };
        serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))
    }
}
