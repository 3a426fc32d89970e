//! `[deploy]`: how a new plugin version is watched once it runs. After a deploy, a
//! promote or a watched file's new version, the host that switched watches its
//! dead-letter rate for `canary`, against the previous version's over the same span
//! before the switch, and rolls it back at the next checkpoint if it is worse by more
//! than `max_dead_letter_increase`. A promoted shadow whose rows differed from the live
//! version's in more than `max_changed_rows` of the windows compared is rolled back too.

use std::time::Duration;

use anyhow::{bail, Result};
use serde::Deserialize;

use super::duration::serde_duration;

/// `[deploy]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// How long a new version is watched (e.g. `"2m"`).
    #[serde(with = "serde_duration")]
    pub canary: Duration,
    /// How many points the dead-letter rate may rise (0.02: from 1% to 3%) before the
    /// version is rolled back (default 0.02).
    #[serde(default = "two_points")]
    pub max_dead_letter_increase: f64,
    /// Records the new version must have processed before it is judged (default 1000).
    #[serde(default = "thousand")]
    pub min_records: u64,
    /// The share of compared windows a promoted shadow may have changed (e.g. 0.1).
    #[serde(default)]
    pub max_changed_rows: Option<f64>,
}

impl DeployConfig {
    /// Ranges serde cannot check.
    pub fn check(&self) -> Result<()> {
        if self.canary.is_zero() {
            bail!("deploy.canary must be positive");
        }
        if !(self.max_dead_letter_increase > 0.0 && self.max_dead_letter_increase < 1.0) {
            bail!("deploy.max_dead_letter_increase must be in (0, 1), got {}", self.max_dead_letter_increase);
        }
        if self.max_changed_rows.is_some_and(|m| !(0.0..=1.0).contains(&m)) {
            bail!("deploy.max_changed_rows is a share of windows, in [0, 1]");
        }
        if self.min_records == 0 {
            bail!("deploy.min_records must be positive");
        }
        Ok(())
    }
}

fn two_points() -> f64 {
    0.02
}

fn thousand() -> u64 {
    1000
}
