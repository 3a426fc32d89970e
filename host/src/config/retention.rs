//! How long weir keeps its own records in the sink: the checkpoint log, the dead letters
//! and the late lane would otherwise grow for as long as a pipeline runs.

use std::time::Duration;

use serde::Deserialize;

use super::duration::serde_duration;

/// `[retention]`: each lane keeps what is younger than `age` and, of that, the newest
/// `rows` of this pipeline; a lane with neither keeps everything. Expired rows are
/// removed every `every` and once more when a run ends.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// `weir_checkpoint_log` (default: 7 days, at most 100,000 rows).
    #[serde(default = "checkpoint_log")]
    pub checkpoint_log: Keep,
    /// `weir_dead_letters` (default: 30 days).
    #[serde(default = "thirty_days")]
    pub dead_letters: Keep,
    /// `weir_late_events` (default: 30 days).
    #[serde(default = "thirty_days")]
    pub late_events: Keep,
    /// How often expired rows are removed (default 1m).
    #[serde(default = "default_every", with = "serde_duration")]
    pub every: Duration,
}

/// What one lane keeps.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// Rows older than this go (`"30d"`, `"12h"`).
    #[serde(default, deserialize_with = "optional_duration")]
    pub age: Option<Duration>,
    /// At most this many rows stay, the newest.
    #[serde(default)]
    pub rows: Option<u64>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            checkpoint_log: checkpoint_log(),
            dead_letters: thirty_days(),
            late_events: thirty_days(),
            every: default_every(),
        }
    }
}

fn checkpoint_log() -> Keep {
    Keep { age: Some(Duration::from_secs(7 * 86_400)), rows: Some(100_000) }
}

fn thirty_days() -> Keep {
    Keep { age: Some(Duration::from_secs(30 * 86_400)), rows: None }
}

fn default_every() -> Duration {
    Duration::from_secs(60)
}

fn optional_duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    serde_duration::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_a_bounded_history_and_a_lane_may_keep_everything() {
        let config: RetentionConfig = toml::from_str("dead_letters = {}\nlate_events = { rows = 10 }").unwrap();
        assert_eq!(config.dead_letters, Keep::default(), "neither: everything is kept");
        assert_eq!(config.late_events, Keep { age: None, rows: Some(10) });
        assert_eq!(config.checkpoint_log, checkpoint_log());
        let wrong = toml::from_str::<RetentionConfig>("dead_letters = { age = \"a month\" }").unwrap_err();
        assert!(wrong.to_string().contains("not a duration"), "{wrong}");
        let unknown = toml::from_str::<RetentionConfig>("dead_letter = {}").unwrap_err();
        assert!(unknown.to_string().contains("unknown field `dead_letter`"), "{unknown}");
    }
}
