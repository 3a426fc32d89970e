//! The deployer's side of a group: asking the other hosts before a switch (`council.rs`),
//! answering their proposals, and following the versions they switched to, as
//! `weir_deployments` records them.

use std::sync::Arc;

use anyhow::Result;

use super::deploy::Deployer;
use super::stages::{short, StageId, StagePlan};
use super::swap::How;
use crate::sink::Deployment;

impl Deployer {
    /// Counts the first `stored` rows of the history it was made with as the sink's,
    /// already considered by [`follow`](Self::follow) (the rest are this start's own).
    pub(super) fn followed_from(&self, stored: usize) {
        self.live.lock().expect("live lock").followed = stored;
    }

    /// Makes deploys ask the other hosts of the group through `council` before switching.
    pub(super) fn consult(&self, council: Arc<super::council::Council>) {
        let _ = self.council.set(council);
    }

    /// Asks every other live host of the group whether it can run `candidate`.
    pub(super) fn ask_group(&self, stage: StageId, name: &str, candidate: &StagePlan) -> Result<()> {
        let Some(council) = self.council.get() else { return Ok(()) };
        let me = super::lease::holder();
        let proposal = super::council::Proposal {
            id: format!("{me}#{}", super::now_ms()),
            stage: stage.to_string(),
            plugin: name.to_string(),
            digest: candidate.component.digest.clone(),
        };
        council.ask(proposal, candidate.bytes.clone(), &me)
    }

    /// Whether this host could run the version another host proposes: loaded, wired and
    /// tried on this host's recent input like a deploy (without the dead-letter limit).
    pub(super) fn judge(&self, proposal: &super::council::Proposal, bytes: Vec<u8>) -> Result<()> {
        let stage: StageId = proposal.stage.parse()?;
        if self.plan(stage)?.component.digest == proposal.digest {
            return Ok(());
        }
        let (_, candidate) = self.load(stage, &proposal.plugin, bytes)?;
        self.trial(&candidate, f64::INFINITY).map(|_| ())
    }

    /// Switches every stage whose latest switch in the group's `history` (read from the
    /// sink: every host's, oldest first) is to another version than this host runs: a
    /// deploy, rollback or promote made through another host. Each is checked and tried
    /// like a deploy, with no limit on dead letters (the deploying host's trial decided);
    /// a host that cannot run it keeps its version and says why.
    pub(super) fn follow(&self, history: Vec<Deployment>) {
        // Only rows new since the last look, and only decisions of other hosts: their
        // deploys, rollbacks, watched files and promotions, not their follows or starts.
        let fresh: Vec<Deployment> = {
            let mut live = self.live.lock().expect("live lock");
            let from = live.followed.min(history.len());
            live.followed = history.len();
            let mine = &live.mine;
            history[from..]
                .iter()
                .filter(|d| !matches!(d.how.as_str(), "follow" | "configured"))
                .filter(|d| !mine.iter().any(|(s, g, at)| *s == d.stage && *g == d.digest && *at == d.at_ms))
                .cloned()
                .collect()
        };
        let mut latest: Vec<&Deployment> = Vec::new();
        for d in &fresh {
            match latest.iter_mut().find(|l| l.stage == d.stage) {
                Some(slot) => *slot = d,
                None => latest.push(d),
            }
        }
        let changes: Vec<(StageId, Deployment)> = latest
            .into_iter()
            .filter_map(|d| Some((d.stage.parse::<StageId>().ok()?, d.clone())))
            .filter(|(stage, d)| self.plan(*stage).is_ok_and(|p| p.component.digest != d.digest))
            .collect();
        // The group's history, so that a rollback here returns to what the group ran.
        let mut history = history;
        super::deploy::forget_old_bytes(&mut history);
        self.live.lock().expect("live lock").history = history;
        for (stage, d) in changes {
            let version = format!("{}@{}", d.plugin, short(&d.digest));
            match self.deploy(stage, &d.plugin, d.bytes.to_vec(), How::Follow, f64::INFINITY) {
                Ok(report) => {
                    eprintln!("\nfollowed the group into {stage}: {version} (was {})", short(&report.replaced))
                }
                Err(e) => eprintln!("\ncannot follow the group's switch of {stage} to {version}: {e:#}"),
            }
        }
    }
}
