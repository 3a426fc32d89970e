//! `[alerts]`: where weir itself posts alerts when a quality rule breaks or holds again,
//! for teams without an Alertmanager (with one, `weir alerts rules` feeds Prometheus).

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use super::duration::serde_duration;

/// `[alerts]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// URLs that receive Alertmanager's webhook JSON (`http://…`).
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// How often a rule that stays broken is sent again (default 4h, as Alertmanager's `repeat_interval`).
    #[serde(default = "four_hours", with = "serde_duration")]
    pub repeat: Duration,
    /// How long one post may take before it counts as failed (default 5s).
    #[serde(default = "five_seconds", with = "serde_duration")]
    pub timeout: Duration,
}

impl AlertsConfig {
    /// Every URL must be plain HTTP(S) with a host.
    pub fn check(&self) -> Result<()> {
        for (i, url) in self.webhooks.iter().enumerate() {
            let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                bail!("alerts.webhooks[{i}] {url:?}: write http://HOST[:PORT]/PATH");
            }
        }
        if self.repeat.is_zero() || self.timeout.is_zero() {
            bail!("alerts.repeat and alerts.timeout must be positive");
        }
        Ok(())
    }
}

fn four_hours() -> Duration {
    Duration::from_secs(4 * 3600)
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}
