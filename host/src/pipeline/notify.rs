//! weir's own alert notifier (`[alerts] webhooks`): a rule that breaks is posted as
//! firing, and as resolved once it holds again, in Alertmanager's webhook JSON (version
//! 4), so a receiver written for Alertmanager takes weir's alerts unchanged. Posting runs
//! on a thread of its own and retries with capped backoff; it never holds the pipeline.
//! A rule that stays broken is sent again every `repeat`, and not in between.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::rules::{shown, Change, Verdict};
use crate::config::AlertsConfig;

/// Alerts waiting to be posted at most; past this the oldest are dropped and counted.
const QUEUE: usize = 256;
/// Attempts per alert and receiver, 1 s doubling to 60 s between them (about 5 minutes in all).
const ATTEMPTS: u32 = 9;

/// What became of an alert, for the status page and the dashboard.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Sent {
    /// The rule.
    pub rule: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// When it was raised, ms since the epoch.
    pub at_ms: i64,
    /// Receivers that took it.
    pub delivered: usize,
    /// The last failure, if a receiver did not take it (yet).
    pub error: Option<String>,
}

/// The notifier's side the pipeline talks to.
pub struct Notifier {
    queue: SyncSender<Value>,
    /// When each firing rule was last sent, for `repeat`.
    /// When each firing rule was last sent, and since when it has been broken.
    fired: Mutex<HashMap<String, (Instant, i64)>>,
    repeat: Duration,
    pipeline: String,
    /// The latest alerts, newest last.
    pub log: Arc<Mutex<Vec<Sent>>>,
}

impl Notifier {
    /// Starts the posting thread for `config`'s webhooks.
    pub fn start(config: &AlertsConfig, pipeline: &str) -> anyhow::Result<Arc<Self>> {
        let (queue, alerts) = mpsc::sync_channel::<Value>(QUEUE);
        let log = Arc::new(Mutex::new(Vec::new()));
        let (urls, timeout, shared) = (config.webhooks.clone(), config.timeout, log.clone());
        std::thread::Builder::new()
            .name("weir-alerts".into())
            .spawn(move || post_all(alerts, urls, timeout, shared))?;
        Ok(Arc::new(Notifier {
            queue,
            fired: Mutex::new(HashMap::new()),
            repeat: config.repeat,
            pipeline: pipeline.to_string(),
            log,
        }))
    }

    /// Sends the changes of a judgement, and repeats rules still broken past `repeat`.
    pub fn changed(&self, changes: &[Change], verdicts: &[Verdict], now_ms: i64) {
        let mut fired = self.fired.lock().expect("notifier lock");
        let mut due: Vec<(&Verdict, bool)> = changes.iter().map(|c| (&c.verdict, c.firing)).collect();
        for v in verdicts.iter().filter(|v| v.ok == Some(false)) {
            let repeat = fired.get(&v.rule).is_some_and(|(at, _)| at.elapsed() >= self.repeat);
            if repeat && !due.iter().any(|(d, _)| d.rule == v.rule) {
                due.push((v, true));
            }
        }
        for (verdict, firing) in due {
            // A resolved alert starts when its firing did, as Alertmanager's do.
            let starts = if firing {
                fired.insert(verdict.rule.clone(), (Instant::now(), verdict.since_ms));
                verdict.since_ms
            } else {
                fired.remove(&verdict.rule).map_or(verdict.since_ms, |(_, starts)| starts)
            };
            let body = webhook_body(&self.pipeline, verdict, firing, starts, now_ms);
            self.log.lock().expect("alert log lock").push(Sent {
                rule: verdict.rule.clone(),
                status: if firing { "firing" } else { "resolved" }.into(),
                at_ms: now_ms,
                delivered: 0,
                error: None,
            });
            if self.queue.try_send(body).is_err() {
                tracing::warn!(rule = verdict.rule, "the alert queue is full; this alert is dropped");
            }
        }
        let mut log = self.log.lock().expect("alert log lock");
        let excess = log.len().saturating_sub(50);
        log.drain(..excess);
    }
}

/// RFC 3339 of ms since the epoch, in UTC.
fn rfc3339(ms: i64) -> String {
    weir_sdk::time::format_iso8601(ms)
}

/// One alert as Alertmanager's webhook posts it.
pub fn webhook_body(pipeline: &str, v: &Verdict, firing: bool, starts_ms: i64, now_ms: i64) -> Value {
    let labels = json!({
        "alertname": "WeirQualityRule",
        "pipeline": pipeline,
        "rule": v.rule,
        "score": v.score.name(),
        "severity": v.severity.name(),
    });
    let summary = format!("{}: quality rule {:?} {}", pipeline, v.rule, if firing { "broke" } else { "holds again" });
    let description =
        format!("{} over {}s is {} (rule: {})", v.score.name(), v.over_ms / 1000, shown(v.score, v.value), v.check);
    let ends = (!firing).then_some(now_ms);
    body(pipeline, &v.rule, labels, &summary, &description, starts_ms, ends)
}

/// A webhook body of one alert whose `rule` label is `rule`; resolved if it `ends`.
fn body(
    pipeline: &str,
    rule: &str,
    labels: Value,
    summary: &str,
    description: &str,
    starts: i64,
    ends: Option<i64>,
) -> Value {
    let status = if ends.is_none() { "firing" } else { "resolved" };
    let fingerprint = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{pipeline}\u{0}{rule}"));
        digest[..8].iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let alert = json!({
        "status": status,
        "labels": labels,
        "annotations": { "summary": summary, "description": description },
        "startsAt": rfc3339(starts),
        "endsAt": ends.map_or("0001-01-01T00:00:00Z".to_string(), rfc3339),
        "generatorURL": "",
        "fingerprint": fingerprint,
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{pipeline=\"{pipeline}\", rule=\"{rule}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "weir",
        "groupLabels": { "pipeline": pipeline, "rule": rule },
        "commonLabels": labels,
        "commonAnnotations": alert["annotations"].clone(),
        "externalURL": "",
        "alerts": [alert],
    })
}

impl Notifier {
    /// Posts a one-off page (an automatic rollback): `what` names it, as the `rule` label.
    pub fn page(&self, alertname: &str, what: &str, summary: &str, description: &str, now_ms: i64) {
        let labels = json!({ "alertname": alertname, "pipeline": self.pipeline, "rule": what, "severity": "page" });
        let body = body(&self.pipeline, what, labels, summary, description, now_ms, None);
        self.log.lock().expect("alert log lock").push(Sent {
            rule: what.to_string(),
            status: "firing".into(),
            at_ms: now_ms,
            delivered: 0,
            error: None,
        });
        if self.queue.try_send(body).is_err() {
            tracing::warn!(alertname, "the alert queue is full; this alert is dropped");
        }
    }
}

/// Posts each alert to every receiver in turn, retrying one that fails with backoff.
fn post_all(alerts: Receiver<Value>, urls: Vec<String>, timeout: Duration, log: Arc<Mutex<Vec<Sent>>>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(timeout)).build().into();
    for body in alerts {
        let text = body.to_string();
        let rule = body["groupLabels"]["rule"].as_str().unwrap_or_default().to_string();
        let status = body["status"].as_str().unwrap_or_default().to_string();
        for url in &urls {
            let mut wait = Duration::from_secs(1);
            let mut outcome = Err(String::new());
            for attempt in 1..=ATTEMPTS {
                outcome = agent
                    .post(url)
                    .header("Content-Type", "application/json")
                    .send(text.as_str())
                    .map(drop)
                    .map_err(|e| format!("{url}: {e}"));
                match &outcome {
                    Ok(()) => break,
                    Err(e) if attempt < ATTEMPTS => {
                        tracing::warn!(error = %e, attempt, "posting an alert failed; trying again in {wait:?}");
                        record(&log, &rule, &status, Err(e.clone()));
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(60));
                    }
                    Err(e) => tracing::error!(error = %e, "posting an alert failed {ATTEMPTS} times; giving it up"),
                }
            }
            record(&log, &rule, &status, outcome);
        }
    }
}

/// Notes on the latest alert of `rule` and `status` how a post went.
fn record(log: &Mutex<Vec<Sent>>, rule: &str, status: &str, outcome: Result<(), String>) {
    let mut log = log.lock().expect("alert log lock");
    if let Some(sent) = log.iter_mut().rev().find(|s| s.rule == rule && s.status == status) {
        match outcome {
            Ok(()) => {
                sent.delivered += 1;
                sent.error = None;
            }
            Err(e) => sent.error = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Score, Severity};

    #[test]
    fn an_alert_has_the_alertmanager_webhook_shape() {
        let v = Verdict {
            rule: "accurate".into(),
            check: "accuracy >= 0.99".into(),
            score: Score::Accuracy,
            severity: Severity::Page,
            over_ms: 300_000,
            value: Some(0.9),
            ok: Some(false),
            since_ms: 0,
            sla: None,
        };
        let body = webhook_body("rides", &v, true, 0, 60_000);
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        let alert = &body["alerts"][0];
        assert_eq!(alert["labels"]["severity"], "page");
        assert_eq!(alert["startsAt"], "1970-01-01T00:00:00.000Z");
        assert!(alert["annotations"]["description"].as_str().unwrap().contains("accuracy over 300s is 0.9000"));
        let resolved = webhook_body("rides", &v, false, 0, 60_000);
        assert_eq!(resolved["alerts"][0]["endsAt"], "1970-01-01T00:01:00.000Z");
        assert_eq!(resolved["alerts"][0]["fingerprint"], alert["fingerprint"], "one alert, two states");
    }
}
