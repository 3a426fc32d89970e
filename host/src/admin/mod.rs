//! The admin HTTP API of a running host: the live dashboard at `/` (fed by server-sent
//! events from `/api/events`), `/healthz`, `/readyz`, `/metrics` (Prometheus text),
//! `/api/status`, `/api/results`, `POST /api/pipeline/pause|resume`, and plugin deploy,
//! rollback and list under `/api/plugins`. It serves from its own
//! thread: the run loop publishes a [`Status`] snapshot and takes [`Command`]s between
//! batches, so serving never touches the hot path. It binds to loopback by default and
//! demands a bearer token when bound anywhere else.

mod board;
mod compare;
mod dashboard;
pub mod ingest;
mod metrics;
mod quality;
mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::Serialize;

pub use board::Board;
pub use quality::QualityView;
pub use server::{start, AdminOptions, DEFAULT_BIND};

/// What the run loop last published.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// The pipeline's name.
    pub pipeline: String,
    /// Raw records read.
    pub records: u64,
    /// Events folded into at least one window.
    pub events_windowed: u64,
    /// Folds into windows (an event once per window it counts in).
    pub windowed: u64,
    /// Dead letters, committed and pending.
    pub dead_letters: u64,
    /// Late events, committed and pending: a row per (record, window).
    pub late: u64,
    /// Records late for every window they belong to.
    pub late_records: u64,
    /// Checkpoints committed.
    pub checkpoints: u64,
    /// The watermark, ms since the epoch.
    pub watermark_ms: Option<i64>,
    /// When the last checkpoint committed, ms since the epoch.
    pub last_checkpoint_ms: Option<i64>,
    /// Why reading is held (the circuit breaker, or a pause command), if it is.
    pub held: Option<String>,
    /// Times the circuit breaker opened.
    pub breaker_trips: u64,
    /// The last sink failure, while checkpoints are being retried.
    pub sink_error: Option<String>,
    /// Why the source cannot read now (a broker out of reach, no partition assigned).
    pub source_error: Option<String>,
    /// Plugin versions switched in while running.
    pub swaps: u64,
    /// The stage a candidate runs in the shadow of, and the candidate.
    pub shadow: Option<(String, String)>,
    /// Event-to-row latency over the last commits, p50 and p99 in ms: from a record's
    /// source timestamp to the commit that made its effect visible.
    pub latency_ms: Option<(u64, u64)>,
    /// Records not yet read, per partition (by its label), where the source can tell.
    pub lags: Vec<(String, u64)>,
    /// Per-stage counts and call times, dead letters by kind, checkpoint durations.
    pub measured: crate::pipeline::Measured,
    /// The whole group, as the hosts record themselves in the sink.
    pub group: Option<GroupView>,
    /// What keeps the pipeline from being all right though it runs: its schema registry
    /// out of reach, a lookup table that fails to load.
    pub troubles: Vec<String>,
    /// The data's quality: scores, rules and SLAs, anomalies, alerts (`[quality]`).
    pub quality: Option<QualityView>,
}

/// Every host working on the pipeline, read from the sink (`weir_hosts`), so that each
/// host's status page shows the same group.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GroupView {
    /// The hosts with a live heartbeat, by name: what each owns, reads and lags.
    pub hosts: Vec<crate::sink::Lease>,
    /// Hosts whose heartbeat lapsed (killed, or their machine lost), by name.
    pub lost: Vec<String>,
    /// Records per second over the group.
    pub events_per_s: f64,
    /// Records not read yet over the group, if every host knows its own.
    pub lag: Option<u64>,
    /// Rows the output table holds, as committed, counted up to 1,000,000 (a count of
    /// 1,000,000 means at least that many).
    pub committed_rows: i64,
    /// When the sink was read, ms since the epoch.
    pub read_ms: i64,
}

impl GroupView {
    /// The group as `hosts` (every row of `weir_hosts`) shows it at `now_ms`.
    pub fn of(hosts: Vec<crate::sink::Lease>, committed_rows: i64, now_ms: i64, lapse_ms: i64) -> Self {
        let (live, lost): (Vec<_>, Vec<_>) = hosts.into_iter().partition(|h| now_ms - h.heartbeat_ms < lapse_ms);
        GroupView {
            events_per_s: live.iter().map(|h| h.events_per_s).sum(),
            lag: live.iter().map(|h| h.lag).sum(),
            hosts: live,
            // A host gone for good (its process killed long ago) stops being news.
            lost: lost.into_iter().filter(|h| now_ms - h.heartbeat_ms < 600_000).map(|h| h.holder).collect(),
            committed_rows,
            read_ms: now_ms,
        }
    }
}

/// A command for the run loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Stop reading (after a checkpoint) until resumed.
    Pause,
    /// Read again: ends a pause, or closes an open circuit breaker.
    Resume,
}

/// A plugin version to deploy, as the admin API received it.
#[derive(Clone, Debug, Default)]
pub struct DeployRequest {
    /// The pipeline it is meant for; refused if the host runs another.
    pub pipeline: Option<String>,
    /// The stage, as the pipeline file names it.
    pub stage: String,
    /// The plugin's name (the file's stem).
    pub name: Option<String>,
    /// How much higher its dead-letter rate may be in the trial, as a fraction.
    pub max_error_increase: Option<f64>,
    /// The component.
    pub bytes: Vec<u8>,
}

/// What the admin API can ask of the running pipeline's plugins. Calls block until done.
pub trait PluginControl: Send + Sync {
    /// Deploys a new version into a stage.
    fn deploy(&self, request: DeployRequest) -> anyhow::Result<serde_json::Value>;
    /// Returns a stage to the version before the current one.
    fn rollback(&self, pipeline: Option<&str>, stage: &str) -> anyhow::Result<serde_json::Value>;
    /// The stages, their versions and the deployment history.
    fn list(&self) -> serde_json::Value;
    /// Runs a candidate in the shadow of a stage.
    fn shadow(&self, request: DeployRequest) -> anyhow::Result<serde_json::Value>;
    /// Switches the shadowed stage to the candidate.
    fn promote(&self, pipeline: Option<&str>) -> anyhow::Result<serde_json::Value>;
    /// Ends the shadow.
    fn discard(&self, pipeline: Option<&str>) -> anyhow::Result<serde_json::Value>;
}

/// State shared between the run loop and the server.
#[derive(Default)]
pub struct Shared {
    status: Mutex<Status>,
    command: Mutex<Option<Command>>,
    plugins: std::sync::OnceLock<Arc<dyn PluginControl>>,
    board: Mutex<Board>,
    comparison: Mutex<Option<compare::Comparison>>,
    /// weir's schema registry, served under the Confluent API's paths once the pipeline opened it.
    pub(crate) registry: crate::schemas::api::Slot,
    /// The pipeline's HTTP ingest inbox, served at `/ingest/PIPELINE` once it is open.
    pub(crate) ingest: ingest::Slot,
    /// What keeps the pipeline from being all right though it runs, by what: `registry`
    /// while it waits for its schema registry, `lookups` while a lookup table fails to load.
    troubles: Mutex<std::collections::BTreeMap<&'static str, String>>,
}

impl Shared {
    /// Replaces the published status.
    pub fn publish(&self, status: Status) {
        *self.status.lock().expect("admin status lock") = status;
    }

    /// Takes in the group as the sink holds it, and, where rows are merged in the sink,
    /// the latest committed rows for the board.
    pub fn group(&self, view: GroupView, rows: Option<Vec<crate::sink::WindowRow>>) {
        self.status.lock().expect("admin status lock").group = Some(view);
        if let Some(rows) = rows {
            self.board.lock().expect("admin board lock").replace(&rows);
        }
    }

    /// Records a sink failure (or its end), without waiting for the next snapshot.
    pub fn sink_error(&self, error: Option<String>) {
        self.status.lock().expect("admin status lock").sink_error = error;
    }

    /// The published status.
    pub fn status(&self) -> Status {
        let mut status = self.status.lock().expect("admin status lock").clone();
        status.troubles = self.troubles();
        status
    }

    /// Starts the results board for the pipeline's output table.
    pub fn show(&self, table: &crate::sink::TableSchema) {
        *self.board.lock().expect("admin board lock") = Board::new(table);
    }

    /// Takes in the rows of a commit that has landed, live and shadow, and those the sink
    /// `merged` from partial states.
    pub fn committed(&self, checkpoint: &crate::sink::Checkpoint, merged: &[crate::sink::WindowRow]) {
        let mut board = self.board.lock().expect("admin board lock");
        board.committed(&checkpoint.retracted, &checkpoint.rows);
        board.put(&[], merged);
        drop(board);
        compare::Comparison::committed(&mut self.comparison.lock().expect("admin comparison lock"), checkpoint);
    }

    /// The windows where the shadow differs from the live version (up to `limit`), if a
    /// shadow runs.
    pub fn diff(&self, limit: usize) -> Option<serde_json::Value> {
        self.comparison.lock().expect("admin comparison lock").as_ref().map(|c| c.report(limit))
    }

    /// The committed results of the most recent windows.
    pub fn board(&self) -> Board {
        self.board.lock().expect("admin board lock").snapshot()
    }

    /// Commits landed since start, without copying the board.
    pub fn commits(&self) -> u64 {
        self.board.lock().expect("admin board lock").commits
    }

    /// Queues a command; a later one replaces an earlier one not yet taken.
    pub fn command(&self, command: Command) {
        *self.command.lock().expect("admin command lock") = Some(command);
    }

    /// Takes the queued command.
    pub fn take_command(&self) -> Option<Command> {
        self.command.lock().expect("admin command lock").take()
    }

    /// Lets the API deploy, roll back and list the pipeline's plugins.
    pub fn attach(&self, plugins: Arc<dyn PluginControl>) {
        let _ = self.plugins.set(plugins);
    }

    /// The pipeline's plugins, once attached.
    pub fn plugins(&self) -> Option<Arc<dyn PluginControl>> {
        self.plugins.get().cloned()
    }

    /// Records what troubles `what` (or that nothing does any more).
    pub fn trouble(&self, what: &'static str, trouble: Option<String>) {
        let mut troubles = self.troubles.lock().expect("admin troubles lock");
        match trouble {
            Some(t) => troubles.insert(what, t),
            None => troubles.remove(what),
        };
    }

    fn troubles(&self) -> Vec<String> {
        self.troubles.lock().expect("admin troubles lock").values().cloned().collect()
    }

    /// Why the host is not ready, if it is not: a trouble (its registry out of reach, a
    /// lookup that fails to load), the sink failing, or reading held.
    pub fn not_ready(&self) -> Option<String> {
        if let Some(trouble) = self.troubles().into_iter().next() {
            return Some(trouble);
        }
        let status = self.status();
        match (status.sink_error, status.source_error, status.held) {
            (Some(e), _, _) => Some(format!("the sink cannot commit: {e}")),
            (None, Some(e), _) => Some(format!("the source cannot read: {e}")),
            (None, None, Some(held)) => Some(format!("reading is held: {held}")),
            (None, None, None) => None,
        }
    }
}

/// A running admin server.
pub struct Admin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it serves and the commands it took.
    pub shared: Arc<Shared>,
}
