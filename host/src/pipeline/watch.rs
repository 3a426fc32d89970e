//! Watching the data's quality while a pipeline runs (`[quality]`): with each heartbeat,
//! on the sink thread, the rules are judged from the sink, broken and mended rules are
//! logged and posted to the webhooks, a broken `stop` rule reaches the breaker, and the
//! status page, `/metrics` and the dashboard get the judgement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::anomaly::Detector;

use super::notify::Notifier;
use super::rules::{shown, Rules, SPAN_MS};
use crate::admin::{QualityView, Shared};
use crate::config::PipelineConfig;
use crate::sink::{Checkpoint, Sink, TableSchema, WindowRow};

/// Anomalies shown on the status page and the dashboard.
const SHOWN_ANOMALIES: i64 = 20;

/// The pipeline's quality watch.
pub struct Watch {
    pipeline: String,
    /// The rules and their verdicts.
    pub rules: Rules,
    notifier: Option<Arc<Notifier>>,
    admin: Option<Arc<Shared>>,
    /// Anomalies this host flagged.
    pub flagged: AtomicU64,
    detector: Mutex<Option<Detector>>,
}

impl Watch {
    /// The watch of `config`, if it has `[quality]`.
    pub fn start(
        config: &PipelineConfig,
        table: &TableSchema,
        admin: Option<Arc<Shared>>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(quality) = &config.quality else { return Ok(None) };
        let notifier = config.alerts.as_ref().map(|a| Notifier::start(a, &config.name)).transpose()?;
        Ok(Some(Arc::new(Watch {
            pipeline: config.name.clone(),
            rules: Rules::new(quality),
            notifier,
            admin,
            flagged: AtomicU64::new(0),
            detector: Mutex::new(Detector::new(&quality.anomalies, table)),
        })))
    }

    /// Pages about an automatic rollback through the webhooks, if any.
    pub fn rolled_back(&self, stage: &str, summary: &str, reason: &str) {
        if let Some(notifier) = &self.notifier {
            notifier.page("WeirAutoRollback", stage, summary, reason, super::now_ms());
        }
    }

    /// Judges the final rows a commit has just landed (its own, and those the sink
    /// merged), and stores what is strange in `weir_anomalies`.
    pub fn committed(&self, sink: &mut dyn Sink, checkpoint: &Checkpoint, merged: &[WindowRow]) {
        let mut detector = self.detector.lock().expect("detector lock");
        let Some(detector) = detector.as_mut() else { return };
        let mut found = detector.observe(&checkpoint.rows);
        found.extend(detector.observe(merged));
        if found.is_empty() {
            return;
        }
        for a in &found {
            tracing::warn!(
                pipeline = self.pipeline,
                key = a.key,
                column = a.column,
                value = a.value,
                baseline = a.baseline,
                score = a.score,
                "anomaly"
            );
        }
        self.flagged.fetch_add(found.len() as u64, Ordering::Relaxed);
        if let Err(e) = sink.store_anomalies(&self.pipeline, &found) {
            tracing::warn!(error = %format!("{e:#}"), "storing anomalies failed");
        }
    }

    /// Judges the rules at `now_ms`; `up` says whether the pipeline is reading and
    /// committing. Failures only warn: the next heartbeat judges again.
    pub fn judge(&self, sink: &mut dyn Sink, now_ms: i64, up: bool) {
        let judged = match self.rules.judge(sink, &self.pipeline, now_ms, up) {
            Ok(judged) => judged,
            Err(e) => {
                tracing::warn!(pipeline = self.pipeline, error = %format!("{e:#}"), "judging the quality rules failed");
                return;
            }
        };
        for change in &judged.changes {
            let v = &change.verdict;
            let (what, value) = (v.score.name(), shown(v.score, v.value));
            if change.firing {
                tracing::warn!(
                    pipeline = self.pipeline,
                    rule = v.rule,
                    severity = v.severity.name(),
                    "quality rule broke: {what} is {value} ({})",
                    v.check
                );
                eprintln!("\nquality rule {:?} broke ({}): {what} is {value}", v.rule, v.check);
            } else {
                tracing::info!(pipeline = self.pipeline, rule = v.rule, "quality rule holds again: {what} is {value}");
                eprintln!("\nquality rule {:?} holds again: {what} is {value}", v.rule);
            }
        }
        if let Some(notifier) = &self.notifier {
            notifier.changed(&judged.changes, &judged.verdicts, now_ms);
        }
        let Some(admin) = &self.admin else { return };
        let anomalies = sink.anomalies(&self.pipeline, SHOWN_ANOMALIES).unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "reading anomalies failed");
            Vec::new()
        });
        admin.quality(QualityView {
            judged_ms: now_ms,
            over_ms: SPAN_MS,
            scores: judged.scores,
            rules: judged.verdicts,
            anomalies,
            anomalies_flagged: self.flagged.load(Ordering::Relaxed),
            alerts: self.notifier.as_ref().map(|n| n.log.lock().expect("alert log lock").clone()).unwrap_or_default(),
        });
    }
}
