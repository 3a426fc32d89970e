//! The checks of a pipeline file that serde cannot express: ranges, combinations, and
//! settings that only make sense together. The first problem is reported with its key.

use anyhow::{bail, Result};

use super::{PipelineConfig, SourceConfig};

impl PipelineConfig {
    /// The checks serde cannot express; the first problem is reported with its key.
    pub(super) fn check(&self) -> Result<()> {
        self.window.spec()?;
        if let Some(schemas) = &self.schemas {
            schemas.check()?;
        }
        if let Some(quality) = &self.quality {
            quality.check()?;
        }
        if let Some(deploy) = &self.deploy {
            deploy.check()?;
        }
        if let Some(alerts) = &self.alerts {
            alerts.check()?;
            if self.quality.is_none() {
                bail!(
                    "alerts.webhooks: weir posts when a [[quality.rule]] breaks or holds again, and when the \
                     [deploy] canary rolls a version back; both are watched with [quality], which this pipeline \
                     lacks (an empty [quality] section will do)"
                );
            }
        }
        self.check_outputs()?;
        for (i, lookup) in self.lookup.iter().enumerate() {
            lookup.check(i)?;
            if self.lookup[..i].iter().any(|l| l.name == lookup.name) {
                bail!("lookup[{i}]: a second lookup table named {:?}", lookup.name);
            }
        }
        if !(self.sink.url.starts_with("sqlite://")
            || self.sink.url.starts_with("postgres://")
            || self.sink.url.starts_with("postgresql://"))
        {
            bail!("sink.url {:?}: use sqlite://PATH or postgres://…", self.sink.url);
        }
        let valid_table =
            !self.sink.table.is_empty() && self.sink.table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_table {
            bail!("sink.table {:?}: use letters, digits and underscores", self.sink.table);
        }
        if !(self.breaker.dead_letter_rate > 0.0 && self.breaker.dead_letter_rate <= 1.0) {
            bail!("breaker.dead_letter_rate must be in (0, 1], got {}", self.breaker.dead_letter_rate);
        }
        if self.checkpoint.interval.is_zero() {
            bail!("checkpoint.interval must be positive");
        }
        if let SourceConfig::Producer { rate, late_share, malformed_share, .. } = &self.source {
            if *rate == 0 {
                bail!("source.rate must be positive (events per second of event time), got 0");
            }
            for (key, share) in [("source.late_share", late_share), ("source.malformed_share", malformed_share)] {
                if !(0.0..=1.0).contains(share) {
                    bail!("{key} must be in [0, 1], got {share}");
                }
            }
        }
        if let SourceConfig::Api { url, max_waiting, .. } = &self.source {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("source.url {url:?}: use http(s)://HOST/PATH");
            }
            if *max_waiting <= 0 {
                bail!("source.max_waiting must be positive: how many records may wait unread before the poller waits");
            }
        }
        if let SourceConfig::Http { max_waiting: ..=0 } = &self.source {
            bail!("source.max_waiting must be positive: how many records may wait unread before requests get 429");
        }
        if let SourceConfig::Postgres { url, table, slot, mode, cursor, publication, snapshot, .. } = &self.source {
            match (mode, cursor) {
                (super::PostgresMode::Poll, None) => {
                    bail!("source.cursor is missing: mode = \"poll\" reads rows in order of a column, e.g. updated_at")
                }
                (super::PostgresMode::Cdc, Some(_)) => {
                    bail!("source.cursor is for mode = \"poll\"; change capture reads every change, in commit order")
                }
                (super::PostgresMode::Poll, Some(_)) if slot.is_some() || publication.is_some() || !snapshot => {
                    bail!("source.slot, publication and snapshot are for mode = \"cdc\"; polling reads the rows there and every later one")
                }
                _ => {}
            }
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("source.url {url:?}: use postgres://USER@HOST[:PORT]/DB");
            }
            if table.is_empty() || table.split('.').count() > 2 || table.split('.').any(str::is_empty) {
                bail!("source.table {table:?}: use NAME or SCHEMA.NAME");
            }
            if let Some(slot) = slot {
                let valid = !slot.is_empty()
                    && slot.len() <= 63
                    && slot.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if !valid {
                    bail!("source.slot {slot:?}: PostgreSQL names slots with lowercase letters, digits and underscores, up to 63");
                }
            }
        }
        if let SourceConfig::Files { max_record_bytes: 0, .. } = &self.source {
            bail!("source.max_record_bytes must be positive");
        }
        if self.scale.keyed && !matches!(self.source, SourceConfig::Kafka { .. }) {
            bail!("scale.keyed: only a Kafka source is shared by several hosts; remove [scale] for this source");
        }
        if self.trust.require_signatures && self.trust.team.is_none() {
            bail!("trust.require_signatures needs trust.team: the team whose keys sign this pipeline's plugins");
        }
        for (id, stage) in self.stages() {
            if stage.watch && crate::share::OciRef::is_reference(&stage.plugin) {
                bail!(
                    "{id}.watch: {} is a registry reference, not a file to watch; deploy new versions with \
                     `weir plugin deploy`",
                    stage.plugin
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::window::WindowSpec;

    /// Every setting of both sources, for the mutation test.
    const EVERY_SETTING: [&str; 2] = [
        r#"
name = "all"
[source]
kind = "producer"
events = 1000
rate = 1000
seed = 42
late_share = 0.02
malformed_share = 0.01
[parser]
plugin = "json_parser"
limits = { memory_mib = 64, deadline = "250ms" }
[aggregator]
plugin = "window_stats"
[window]
kind = "hopping"
size = "5m"
slide = "1m"
key = ["city"]
max_key_bytes = 1024
[watermark]
lateness = "10m"
idle_timeout = "30s"
max_skew = "1m"
max_ahead = "1h"
[sink]
url = "sqlite://x.db"
table = "t"
[checkpoint]
interval = "1s"
[breaker]
dead_letter_rate = 0.5
interval = "1m"
min_records = 1000
cooldown = "5m"
"#,
        r#"
name = "all"
[source]
kind = "files"
path = "input"
format = "csv"
follow = true
max_record_bytes = 4096
[parser]
plugin = "json_parser"
[aggregator]
plugin = "window_stats"
[window]
kind = "session"
gap = "4m"
key = ["city"]
[sink]
url = "sqlite://x.db"
table = "t"
"#,
    ];

    /// What an accepted pipeline file must never hold.
    fn assert_in_range(c: &PipelineConfig, text: &str) {
        const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let w = &c.watermark;
        for d in [w.lateness, w.idle_timeout, w.max_skew, w.max_ahead, c.checkpoint.interval, c.breaker.interval] {
            assert!(d <= CENTURY, "{d:?} accepted in\n{text}");
        }
        assert!(!c.checkpoint.interval.is_zero(), "{text}");
        assert!(c.breaker.dead_letter_rate > 0.0 && c.breaker.dead_letter_rate <= 1.0, "{text}");
        assert!(c.window.max_key_bytes > 0, "{text}");
        match c.window.spec().expect("checked at parse") {
            WindowSpec::Tumbling { size_ms } => assert!(size_ms > 0),
            WindowSpec::Hopping { size_ms, slide_ms } => assert!(size_ms > 0 && slide_ms > 0 && slide_ms <= size_ms),
            WindowSpec::Session { gap_ms } => assert!(gap_ms > 0),
        }
        match &c.source {
            SourceConfig::Producer { rate, late_share, malformed_share, .. } => {
                assert!(*rate > 0, "{text}");
                assert!((0.0..=1.0).contains(late_share) && (0.0..=1.0).contains(malformed_share), "{text}");
            }
            SourceConfig::Files { max_record_bytes, .. } => assert!(*max_record_bytes > 0, "{text}"),
            SourceConfig::Http { max_waiting } => assert!(*max_waiting > 0, "{text}"),
            SourceConfig::Kafka { .. } | SourceConfig::Postgres { .. } | SourceConfig::Api { .. } => {}
        }
    }

    /// Each setting replaced by hostile values: nothing panics, and nothing out of range
    /// is accepted (a refusal names the key or its line).
    #[test]
    fn mutated_pipeline_files_never_panic_nor_accept_out_of_range_values() {
        let values = [
            "0",
            "-1",
            "1.5",
            "-0.1",
            "2",
            "1e309",
            "nan",
            "inf",
            "18446744073709551615",
            "\"18446744073709551615ms\"",
            "\"0s\"",
            "\"-1s\"",
            "\"1y\"",
            "\"\"",
            "\"9999999999h\"",
            "\"1m\"",
            "true",
            "[]",
            "{}",
        ];
        let mut accepted = 0;
        for text in EVERY_SETTING {
            for (i, line) in text.lines().enumerate() {
                let Some((key, _)) = line.split_once(" = ") else { continue };
                for value in values {
                    let mut lines: Vec<String> = text.lines().map(String::from).collect();
                    lines[i] = format!("{key} = {value}");
                    let mutated = lines.join("\n");
                    let parsed = std::panic::catch_unwind(|| PipelineConfig::parse(&mutated, |_| None))
                        .unwrap_or_else(|_| panic!("panicked on\n{mutated}"));
                    match parsed {
                        Ok(config) => {
                            accepted += 1;
                            assert_in_range(&config, &mutated);
                        }
                        Err(e) => {
                            let e = format!("{e:#}");
                            assert!(
                                e.contains(key.trim()) || e.contains("line"),
                                "{e} does not say where, for\n{mutated}"
                            );
                        }
                    }
                }
            }
        }
        assert!(accepted > 20, "some mutations are valid settings: {accepted}");
        let bad = b"name = \"x\"\n[source]\nkind = \"pro\xffducer\"\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), bad).unwrap();
        let err = format!("{:#}", PipelineConfig::load(&dir.path().join("p.toml")).unwrap_err());
        assert!(err.contains("line 3, column 12: not UTF-8"), "{err}");
    }
}
