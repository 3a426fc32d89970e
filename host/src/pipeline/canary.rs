//! The canary (`[deploy] canary`): after this host switched a stage to a new version (a
//! deploy, a promote, a watched file), the dead-letter rate of the records it processes
//! is compared with the rate over the same span before the switch, when the previous
//! version ran. Worse by more than `max_dead_letter_increase` once `min_records` were
//! seen, and the version is rolled back; the rollback is switched in at a checkpoint, as
//! any other, so every offset is still processed by exactly one version.

use std::collections::VecDeque;
use std::time::Instant;

use std::sync::Arc;

use super::stages::StageId;
use crate::admin::Shared;
use crate::config::DeployConfig;
use crate::sink::Deployment;

/// A new version under watch.
struct Watching {
    stage: StageId,
    version: String,
    since: Instant,
    records: u64,
    dead: u64,
    /// Records and dead letters of the previous version over the canary's span.
    baseline: (u64, u64),
}

/// A version the canary condemned.
#[derive(Clone, Debug, PartialEq)]
pub struct Condemned {
    /// Its stage.
    pub stage: StageId,
    /// Why, with the figures.
    pub reason: String,
}

/// The canary of one run.
pub struct Canary {
    config: DeployConfig,
    /// Batches of the last canary span: (when, records, dead letters).
    recent: VecDeque<(Instant, u64, u64)>,
    watching: Option<Watching>,
}

impl Canary {
    /// A canary with `config`.
    pub fn new(config: DeployConfig) -> Self {
        Canary { config, recent: VecDeque::new(), watching: None }
    }

    /// Starts watching `version`, just switched into `stage`. A promoted shadow comes
    /// with its comparison, `(differing, compared)` windows, and is condemned at once if
    /// it changed more than `max_changed_rows` of them.
    pub fn started(
        &mut self,
        stage: StageId,
        version: String,
        now: Instant,
        shadow: Option<(u64, u64)>,
    ) -> Option<Condemned> {
        if let (Some(max), Some((differing, compared))) = (self.config.max_changed_rows, shadow) {
            let share = differing as f64 / compared.max(1) as f64;
            if compared > 0 && share > max {
                self.watching = None;
                let reason = format!(
                    "canary: as a shadow, {version} wrote rows differing from the live version's in {differing} of \
                     {compared} windows ({:.1}%), more than deploy.max_changed_rows = {max}",
                    100.0 * share
                );
                return Some(Condemned { stage, reason });
            }
        }
        let baseline = self.recent.iter().fold((0, 0), |(r, d), &(_, records, dead)| (r + records, d + dead));
        self.recent.clear();
        self.watching = Some(Watching { stage, version, since: now, records: 0, dead: 0, baseline });
        None
    }

    /// Takes in a version the run loop just switched in (`d`, as `weir_deployments` will
    /// record it): a deploy, promote or watched file of this host is watched (a promoted
    /// shadow judged on its comparison, which `admin` holds until the next commit lands);
    /// any other switch of the stage ends the watch.
    pub fn switched(&mut self, d: &Deployment, admin: Option<&Shared>) -> anyhow::Result<Option<Condemned>> {
        let how = d.how.as_str();
        if !matches!(how, "deploy" | "promote" | "watch") {
            self.ended();
            return Ok(None);
        }
        let version = format!("{}@{}", d.plugin, super::stages::short(&d.digest));
        let diff = admin.filter(|_| how == "promote").and_then(|a| a.diff(0));
        let shadow = diff.map(|d| (d["differing"].as_u64().unwrap_or(0), d["windows_compared"].as_u64().unwrap_or(0)));
        Ok(self.started(d.stage.parse()?, version, Instant::now(), shadow))
    }

    /// Stops watching: the stage was rolled back or switched again.
    pub fn ended(&mut self) {
        self.watching = None;
    }

    /// Counts a batch of `records`, `dead` of them dead letters. Returns the version to
    /// roll back, once.
    pub fn observe(&mut self, now: Instant, records: u64, dead: u64) -> Option<Condemned> {
        self.recent.push_back((now, records, dead));
        while self.recent.front().is_some_and(|&(at, _, _)| now.duration_since(at) > self.config.canary) {
            self.recent.pop_front();
        }
        let w = self.watching.as_mut()?;
        w.records += records;
        w.dead += dead;
        let rate = |dead: u64, records: u64| dead as f64 / records.max(1) as f64;
        let (new, old) = (rate(w.dead, w.records), rate(w.baseline.1, w.baseline.0));
        if w.records >= self.config.min_records && new > old + self.config.max_dead_letter_increase {
            let reason = format!(
                "canary: {} of the {} records {} processed were dead letters ({:.2}%), against {:.2}% of {} for the \
                 version before it; more than deploy.max_dead_letter_increase = {} higher",
                w.dead,
                w.records,
                w.version,
                100.0 * new,
                100.0 * old,
                w.baseline.0,
                self.config.max_dead_letter_increase
            );
            let stage = w.stage;
            self.watching = None;
            return Some(Condemned { stage, reason });
        }
        if now.duration_since(w.since) >= self.config.canary {
            eprintln!(
                "\ncanary passed: {} in {} after {} records ({:.2}% dead letters, {:.2}% before)",
                w.version,
                w.stage,
                w.records,
                100.0 * new,
                100.0 * old
            );
            self.watching = None;
        }
        None
    }
}

/// Rolls back the version the canary condemned, on a thread of its own (the rollback
/// waits for this loop to switch it in). A rollback that fails (the previous version no
/// longer loads) keeps the running version and says so on `/readyz` and `/api/status`.
pub(super) fn roll_back(
    deployer: &Arc<super::Deployer>,
    condemned: super::canary::Condemned,
    admin: Option<Arc<Shared>>,
    watch: Option<Arc<super::watch::Watch>>,
) {
    let deployer = deployer.clone();
    let super::canary::Condemned { stage, reason } = condemned;
    eprintln!("\n{stage}: {reason}; rolling back");
    tracing::error!(stage = %stage, reason, "the canary condemned a new version; rolling back");
    let spawned = std::thread::Builder::new().name("weir-rollback".into()).spawn(move || {
        let stage_name = stage.to_string();
        match deployer.rollback_because(stage, reason.clone()) {
            Ok(report) => {
                let summary = format!("{stage}: rolled back to {} automatically", report.version);
                eprintln!("\n{summary}");
                if let Some(watch) = &watch {
                    watch.rolled_back(&stage_name, &summary, &reason);
                }
            }
            Err(e) => {
                let why = format!("{stage}: the automatic rollback failed and the condemned version runs on: {e:#}");
                if let Some(watch) = &watch {
                    watch.rolled_back(&stage_name, &why, &reason);
                }
                tracing::error!("{why}");
                eprintln!("\n{why}");
                if let Some(admin) = admin {
                    admin.trouble("rollback", Some(why));
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the rollback");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config() -> DeployConfig {
        DeployConfig {
            canary: Duration::from_secs(60),
            max_dead_letter_increase: 0.02,
            min_records: 1000,
            max_changed_rows: Some(0.1),
        }
    }

    #[test]
    fn a_version_with_more_dead_letters_than_the_last_is_condemned_once_and_a_good_one_passes() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut canary = Canary::new(config());
        for s in 0..10 {
            assert_eq!(canary.observe(at(s), 1000, 10), None, "nothing watched yet");
        }
        assert_eq!(canary.started(StageId::Validator(0), "v2".into(), at(10), None), None);
        assert_eq!(canary.observe(at(11), 500, 100), None, "too few records to judge");
        let condemned = canary.observe(at(12), 500, 100).expect("20% against 1%");
        assert_eq!(condemned.stage, StageId::Validator(0));
        assert!(condemned.reason.contains("(20.00%), against 1.00% of 10000"), "{}", condemned.reason);
        assert_eq!(canary.observe(at(13), 1000, 500), None, "once");

        assert_eq!(canary.started(StageId::Validator(0), "v3".into(), at(20), Some((5, 100))), None, "5% changed");
        for s in 21..90 {
            assert_eq!(
                canary.observe(at(s), 1000, 25),
                None,
                "2.5% is below the rate before it (the condemned version's)"
            );
        }
        assert!(canary.watching.is_none(), "passed after the canary span");
        let promoted = canary.started(StageId::Aggregator, "v4".into(), at(100), Some((30, 100)));
        assert!(promoted.unwrap().reason.contains("in 30 of 100 windows (30.0%)"));
    }
}
