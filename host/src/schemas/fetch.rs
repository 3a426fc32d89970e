//! The writer schemas a batch names, fetched before its parse: the plugin reads them from
//! the host's cache (contract 0.2.0's `schemas`), so a parse never waits on a network,
//! and a registry out of reach holds the pipeline (with backoff, saying why on `/readyz`)
//! instead of turning every record into a dead letter. An id the registry answers it
//! does not know is left out, and the parser makes each of its records a dead letter
//! naming the id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use weir_sdk::RawBatch;

use super::{Registered, Registry};
use crate::plugin::Resources;

/// Where writer schemas come from: weir's own registry or an external one.
pub trait SchemaSource: Send + Sync {
    /// The schema with `id`; `Ok(None)` if the registry has none, `Err` if it cannot be asked.
    fn by_id(&self, id: u32) -> Result<Option<Registered>, String>;
    /// The Avro schema with `fingerprint`, likewise.
    fn by_fingerprint(&self, fingerprint: u64) -> Result<Option<Registered>, String>;
    /// A subject's versions, oldest first (empty if it has none).
    fn versions(&self, subject: &str) -> Result<Vec<Registered>, String>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

impl SchemaSource for Registry {
    fn by_id(&self, id: u32) -> Result<Option<Registered>, String> {
        Registry::by_id(self, id).map_err(|e| format!("{e:#}"))
    }
    fn by_fingerprint(&self, fingerprint: u64) -> Result<Option<Registered>, String> {
        Registry::by_fingerprint(self, fingerprint).map_err(|e| format!("{e:#}"))
    }
    fn versions(&self, subject: &str) -> Result<Vec<Registered>, String> {
        Registry::versions(self, subject).map_err(|e| format!("{e:#}"))
    }
    fn describe(&self) -> String {
        "weir's registry in the sink".into()
    }
}

/// What a record's first bytes say of its writer schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Frame {
    /// Confluent wire format: magic byte 0, then the id.
    Id(u32),
    /// Avro single-object encoding: `C3 01`, then the fingerprint.
    Fingerprint(u64),
}

/// The frame of `payload`, if it has one.
pub fn frames(payload: &[u8]) -> Option<Frame> {
    match payload {
        [0, a, b, c, d, ..] => Some(Frame::Id(u32::from_be_bytes([*a, *b, *c, *d]))),
        [0xc3, 0x01, rest @ ..] if rest.len() >= 8 => {
            Some(Frame::Fingerprint(u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"))))
        }
        _ => None,
    }
}

/// How long an id the registry did not know is taken as unknown before asking again
/// (a producer may register it a moment later).
const UNKNOWN_FOR: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// At most this many schemas are asked for per batch: a flood of records with made-up ids
/// must not become a flood of requests to the registry. The records whose ids were not
/// asked for are dead letters naming the id, as unknown ones are.
const MAX_FETCHES_PER_BATCH: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Fetches a batch's writer schemas into the plugins' resources.
pub struct Fetcher {
    source: Arc<dyn SchemaSource>,
    resources: Arc<Resources>,
    unknown: HashMap<Frame, Instant>,
    /// Set when the run is asked to stop: a wait for the registry ends.
    pub stop: Arc<AtomicBool>,
    /// Told why the pipeline waits (`Some`) and that it no longer does (`None`).
    pub trouble: Arc<dyn Fn(Option<String>) + Send + Sync>,
}

impl Fetcher {
    pub fn new(source: Arc<dyn SchemaSource>, resources: Arc<Resources>) -> Self {
        Fetcher { source, resources, unknown: HashMap::new(), stop: Arc::default(), trouble: Arc::new(|_| {}) }
    }

    /// Makes every writer schema `batch` names available, waiting while the registry
    /// cannot be reached; an error only if the run was asked to stop meanwhile.
    pub fn prepare(&mut self, batch: &RawBatch) -> Result<()> {
        let mut wanted: Vec<Frame> = Vec::new();
        let mut previous = None;
        for payload in batch.payloads.iter() {
            let Some(frame) = frames(payload) else { continue };
            // Runs of one writer schema are the rule: each is looked at once.
            if previous.replace(frame) == Some(frame) {
                continue;
            }
            let known = match frame {
                Frame::Id(id) => self.resources.has_schema(id),
                Frame::Fingerprint(f) => self.resources.has_fingerprint(f),
            };
            let recently_unknown = self.unknown.get(&frame).is_some_and(|at| at.elapsed() < UNKNOWN_FOR);
            if !known && !recently_unknown && !wanted.contains(&frame) && wanted.len() < MAX_FETCHES_PER_BATCH {
                wanted.push(frame);
            }
        }
        for frame in wanted {
            self.fetch(frame)?;
        }
        Ok(())
    }

    fn fetch(&mut self, frame: Frame) -> Result<()> {
        let mut backoff = FIRST_BACKOFF;
        let mut waiting = false;
        loop {
            let answer = match frame {
                Frame::Id(id) => self.source.by_id(id),
                Frame::Fingerprint(f) => self.source.by_fingerprint(f),
            };
            match answer {
                Ok(found) => {
                    if waiting {
                        (self.trouble)(None);
                        tracing::info!(registry = self.source.describe(), "the schema registry answers again");
                    }
                    match found {
                        Some(schema) => {
                            let fingerprint = super::parse(schema.ty, &schema.text).ok().map(|p| p.fingerprint);
                            self.resources.add_schema(schema.to_sdk(), fingerprint);
                            self.unknown.remove(&frame);
                        }
                        None => {
                            // Made-up ids must not grow the list for ever.
                            if self.unknown.len() >= 10_000 {
                                self.unknown.retain(|_, at| at.elapsed() < UNKNOWN_FOR);
                            }
                            self.unknown.insert(frame, Instant::now());
                        }
                    }
                    return Ok(());
                }
                Err(e) => {
                    let why = format!("waiting for the schema registry ({}): {e}", self.source.describe());
                    if !waiting {
                        tracing::warn!("{why}; retrying with backoff, nothing is read meanwhile");
                        waiting = true;
                    }
                    (self.trouble)(Some(why));
                    let until = Instant::now() + backoff;
                    while Instant::now() < until {
                        if self.stop.load(Ordering::SeqCst) {
                            bail!("stopped while waiting for the schema registry ({}): {e}", self.source.describe());
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
