//! What the status page, `/metrics` and the dashboard show of the data's quality: the
//! scores now, each rule's verdict and SLA, the latest anomalies and alerts.

use serde::Serialize;

use crate::config::Score;
use crate::pipeline::{Sent, Verdict};
use crate::sink::Anomaly;

/// The quality of the pipeline's data, as last judged (every heartbeat).
#[derive(Clone, Debug, Default, Serialize)]
pub struct QualityView {
    /// When it was judged, ms since the epoch.
    pub judged_ms: i64,
    /// The span the scores are taken over, ms of event time.
    pub over_ms: i64,
    /// Every score over that span; `None` without data.
    pub scores: Vec<(Score, Option<f64>)>,
    /// The rules' verdicts.
    pub rules: Vec<Verdict>,
    /// The latest anomalies, newest first.
    pub anomalies: Vec<Anomaly>,
    /// Anomalies flagged since this host started.
    pub anomalies_flagged: u64,
    /// The latest alerts weir posted, newest last.
    pub alerts: Vec<Sent>,
}

impl super::Shared {
    /// Takes in a new judgement.
    pub fn quality(&self, view: QualityView) {
        self.status.lock().expect("admin status lock").quality = Some(view);
    }
}
