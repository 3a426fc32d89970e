//! Asking the group before a switch. A host that deploys a version (or rolls back, or
//! picks up a changed watched file) first proposes it: its row in `weir_hosts` names the
//! version, whose bytes it stores in `weir_components`. Every other live host of the
//! group loads it and tries it on its own recent input, and answers in its own row. The
//! switch goes ahead only when none refuses; a version one host cannot run is refused for
//! the whole group, with that host's reason, and the old version keeps running
//! everywhere. Rows are read and written with the heartbeat, so asking takes a few
//! heartbeats (2 s each).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::lease::LEASE_TIMEOUT_MS;
use crate::sink::{Lease, Sink};

/// How long a proposer waits for every live host's answer.
pub(super) const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A version a host asks the group about.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Proposal {
    /// Unique: the proposer and when.
    pub id: String,
    /// The stage, as the pipeline file names it.
    pub stage: String,
    /// The plugin's name.
    pub plugin: String,
    /// The component's digest, its bytes in `weir_components`.
    pub digest: String,
}

impl Proposal {
    fn text(&self) -> String {
        [&self.id, &self.stage, &self.plugin, &self.digest].map(String::as_str).join("\t")
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('\t').map(str::to_string);
        Some(Proposal { id: parts.next()?, stage: parts.next()?, plugin: parts.next()?, digest: parts.next()? })
    }
}

/// A proposal of this host's, the component's bytes, and whether they are stored.
type Open = (Proposal, Arc<Vec<u8>>, bool);

/// This host's side of asking and answering.
#[derive(Default)]
pub(super) struct Council {
    /// This host's open proposal, with the component's bytes, and whether they are stored.
    proposal: Mutex<Option<Open>>,
    /// This host's answer to the latest proposal of another: `id \t ok`, or `id \t no \t why`.
    verdict: Mutex<Option<String>>,
    /// Proposals this host has taken up.
    judged: Mutex<HashSet<String>>,
    /// The group's rows, as the last heartbeat read them.
    hosts: Mutex<Vec<Lease>>,
}

impl Council {
    /// What this host's row shows: its open proposal and its latest answer.
    pub(super) fn shown(&self) -> (Option<String>, Option<String>) {
        let proposal = self.proposal.lock().expect("council lock").as_ref().map(|(p, ..)| p.text());
        (proposal, self.verdict.lock().expect("council lock").clone())
    }

    /// On the sink thread, before this host's row is written: stores the proposed
    /// component, once, so that it is there when others read the proposal.
    pub(super) fn before_beat(&self, sink: &mut dyn Sink) -> Result<()> {
        let mut open = self.proposal.lock().expect("council lock");
        if let Some((p, bytes, stored)) = open.as_mut().filter(|(.., stored)| !stored) {
            sink.store_component(&p.digest, &p.plugin, bytes)?;
            *stored = true;
        }
        Ok(())
    }

    /// On the sink thread, after this host's row is written and the group's rows `hosts`
    /// read: the proposals of other live hosts this host has yet to answer, with their bytes.
    pub(super) fn after_beat(
        &self,
        sink: &mut dyn Sink,
        hosts: &[Lease],
        me: &str,
    ) -> Result<Vec<(Proposal, Vec<u8>)>> {
        let now = super::now_ms();
        let mut todo = Vec::new();
        for host in hosts.iter().filter(|h| h.holder != me && now - h.heartbeat_ms < LEASE_TIMEOUT_MS) {
            let Some(p) = host.proposal.as_deref().and_then(Proposal::parse) else { continue };
            if self.judged.lock().expect("council lock").insert(p.id.clone()) {
                // Stored before the proposal was shown; absent only if deleted since.
                if let Some(bytes) = sink.component(&p.digest)? {
                    todo.push((p, bytes));
                }
            }
        }
        *self.hosts.lock().expect("council lock") = hosts.to_vec();
        Ok(todo)
    }

    /// Records this host's answer to proposal `id`.
    pub(super) fn answer(&self, id: &str, outcome: Result<()>) {
        let verdict = match outcome {
            Ok(()) => format!("{id}\tok"),
            Err(e) => format!("{id}\tno\t{}", format!("{e:#}").replace(['\t', '\n'], " ")),
        };
        *self.verdict.lock().expect("council lock") = Some(verdict);
    }

    /// Proposes a version and waits until every other live run host of the group has
    /// answered: `Ok` when none refused, or the first refusal and its reason.
    pub(super) fn ask(&self, proposal: Proposal, bytes: Arc<Vec<u8>>, me: &str) -> Result<()> {
        let id = proposal.id.clone();
        *self.proposal.lock().expect("council lock") = Some((proposal, bytes, false));
        let outcome = self.wait(&id, me);
        *self.proposal.lock().expect("council lock") = None;
        outcome
    }

    fn wait(&self, id: &str, me: &str) -> Result<()> {
        let deadline = Instant::now() + ANSWER_WITHIN;
        loop {
            let hosts = self.hosts.lock().expect("council lock").clone();
            let now = super::now_ms();
            let others: Vec<&Lease> = hosts
                .iter()
                .filter(|h| h.holder != me && h.role == "run" && now - h.heartbeat_ms < LEASE_TIMEOUT_MS)
                .filter(|h| super::lease::may_run(&h.holder))
                .collect();
            let mut silent = Vec::new();
            for host in others {
                let answer: Vec<&str> = host.verdict.as_deref().unwrap_or_default().splitn(3, '\t').collect();
                match answer.as_slice() {
                    [answered, "no", why] if *answered == id => bail!("host {} cannot run it: {why}", host.holder),
                    [answered, "ok"] if *answered == id => {}
                    _ => silent.push(host.holder.clone()),
                }
            }
            if silent.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("host(s) {} did not answer within {ANSWER_WITHIN:?}", silent.join(", "));
            }
            // Answers arrive with the heartbeats: this waits on other processes.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_and_answers_read_back_as_written() {
        let p = Proposal {
            id: "h:1#5".into(),
            stage: "validators[0]".into(),
            plugin: "rules".into(),
            digest: "sha256:ab".into(),
        };
        assert_eq!(Proposal::parse(&p.text()), Some(p));
        let council = Council::default();
        council.answer("h:1#5", Err(anyhow::anyhow!("it failed on\t2 records")));
        assert_eq!(council.shown().1.as_deref(), Some("h:1#5\tno\tit failed on 2 records"));
    }
}
