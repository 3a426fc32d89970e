//! `weir pipeline status|pause|resume`: a running host's admin API, from the shell.

use anyhow::{bail, Context, Result};

/// Commands for a running host.
#[derive(clap::Subcommand)]
pub enum PipelineCommand {
    /// Print the host's status: counters, watermark, lag, stages, and why reading is held.
    Status(StatusArgs),
    /// Checkpoint and stop reading until resumed.
    Pause(Target),
    /// Read again: ends a pause, or closes an open circuit breaker.
    Resume(Target),
}

/// Arguments of `weir pipeline status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// The status as the admin API answers it, JSON, for scripts.
    #[arg(long)]
    json: bool,
}

/// Which host.
#[derive(clap::Args)]
pub(crate) struct Target {
    /// The host's admin address, as `weir run` printed it.
    #[arg(long, default_value = crate::admin::DEFAULT_BIND, env = "WEIR_ADMIN")]
    admin: String,
    /// The admin API's bearer token, if it has one.
    #[arg(long, env = "WEIR_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

impl Target {
    fn url(&self, path: &str) -> String {
        let base = self.admin.trim_end_matches('/');
        if base.starts_with("http://") || base.starts_with("https://") {
            format!("{base}{path}")
        } else {
            format!("http://{base}{path}")
        }
    }

    /// Calls the API; an answer other than 2xx is an error carrying the host's reason.
    pub(crate) fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> Result<String> {
        let url = self.url(path);
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let auth = self.admin_token.as_ref().map(|t| format!("Bearer {t}"));
        let response = if method == "POST" {
            let mut request = agent.post(&url);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            match body {
                Some(body) => request.header("Content-Type", "application/wasm").send(body),
                None => request.send_empty(),
            }
        } else {
            let mut request = agent.get(&url);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        };
        let mut response =
            response.with_context(|| format!("{method} {url}: is `weir run` serving its admin API there?"))?;
        let status = response.status();
        let text = response.body_mut().read_to_string().with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            bail!("{}", text.trim_end());
        }
        Ok(text)
    }
}

/// The status as a person reads it, one line per topic.
fn table(status: &serde_json::Value) -> String {
    use serde_json::Value;
    let n = |key: &str| status[key].as_u64().unwrap_or(0);
    let time = |key: &str| status[key].as_i64().map_or("-".to_string(), weir_sdk::time::format_iso8601);
    let mut lines = vec![("pipeline", status["pipeline"].as_str().unwrap_or("-").to_string())];
    let state = match (status["held"].as_str(), status["sink_error"].as_str(), status["source_error"].as_str()) {
        (_, Some(error), _) => format!("sink failing, retrying: {error}"),
        (_, None, Some(error)) => format!("source not reading: {error}"),
        (Some(held), None, None) => format!("held: {held}"),
        (None, None, None) => "running".into(),
    };
    lines.push(("state", state));
    let (records, events, dead, late) = (n("records"), n("events_windowed"), n("dead_letters"), n("late_records"));
    let (folds, pairs) = (n("windowed"), n("late"));
    lines.push((
        "records",
        format!(
            "{records} read: {events} windowed ({folds} folds), {dead} dead letters, {late} late ({pairs} late pairs)"
        ),
    ));
    lines.push(("watermark", time("watermark_ms")));
    lines.push(("checkpoints", format!("{}, the last committed at {}", n("checkpoints"), time("last_checkpoint_ms"))));
    if let Some([p50, p99]) = status["latency_ms"].as_array().map(|l| [l[0].clone(), l[1].clone()]) {
        lines.push(("latency", format!("p50 {p50} ms, p99 {p99} ms (source to sink)")));
    }
    if status["source_error"].is_string() {
        lines.push(("lag", "unknown while the source cannot read".into()));
    } else if let Some(lags) = status["lags"].as_array().filter(|l| !l.is_empty()) {
        let total: u64 = lags.iter().filter_map(|l| l[1].as_u64()).sum();
        let each: Vec<String> = lags.iter().map(|l| format!("{} {}", l[0].as_str().unwrap_or("?"), l[1])).collect();
        lines.push(("lag", format!("{total} records not yet read ({})", each.join(", "))));
    }
    if n("breaker_trips") > 0 {
        lines.push(("breaker", format!("opened {} time(s)", n("breaker_trips"))));
    }
    for stage in status["measured"]["stages"].as_array().into_iter().flatten() {
        let calls = &stage["calls"];
        let mean = match (calls["sum"].as_f64(), calls["count"].as_u64()) {
            (Some(sum), Some(count)) if count > 0 => format!("{:.2} ms a call", sum * 1000.0 / count as f64),
            _ => "no calls yet".into(),
        };
        let name = stage["stage"].as_str().unwrap_or("?");
        let version = stage["version"].as_str().unwrap_or("?");
        let short = version
            .split_once("@sha256:")
            .map_or(version.to_string(), |(n, d)| format!("{n}@{}", &d[..d.len().min(12)]));
        lines.push((
            "stage",
            format!("{name}: {short}, {} in, {} out, {mean}", stage["events_in"], stage["events_out"]),
        ));
    }
    if let Some(Value::Array(shadow)) = status.get("shadow") {
        lines.push(("shadow", format!("{} in the shadow of {}", shadow[1], shadow[0])));
    }
    lines.extend(group(&status["group"]));
    lines.iter().map(|(k, v)| format!("{k:<12} {v}")).collect::<Vec<_>>().join("\n")
}

/// The group's lines: every host with what it owns, and the group's totals, as the hosts
/// record themselves in the sink (the same whichever host answers).
fn group(group: &serde_json::Value) -> Vec<(&'static str, String)> {
    let Some(hosts) = group["hosts"].as_array() else { return Vec::new() };
    let lag = group["lag"].as_u64().map_or("lag unknown".to_string(), |l| format!("lag {l}"));
    let mut lines = vec![(
        "group",
        format!(
            "{} host(s), {:.0} events/s, {lag}, {}{} rows committed",
            hosts.len(),
            group["events_per_s"].as_f64().unwrap_or(0.0),
            group["committed_rows"],
            if group["committed_rows"].as_i64() >= Some(crate::sink::COUNTED_ROWS) { "+" } else { "" }
        ),
    )];
    for h in hosts {
        let partitions: Vec<String> = h["partitions"].as_array().into_iter().flatten().map(|p| p.to_string()).collect();
        lines.push((
            "host",
            format!(
                "{} ({}, weir {}): partitions [{}], {} records, {:.0}/s{}",
                h["holder"].as_str().unwrap_or("?"),
                h["admin"].as_str().unwrap_or("no admin API"),
                h["version"].as_str().unwrap_or("?"),
                partitions.join(", "),
                h["records"],
                h["events_per_s"].as_f64().unwrap_or(0.0),
                h["lag"].as_u64().map_or(String::new(), |l| format!(", lag {l}"))
            ),
        ));
    }
    for lost in group["lost"].as_array().into_iter().flatten() {
        lines.push(("lost", format!("{} (its heartbeat lapsed)", lost.as_str().unwrap_or("?"))));
    }
    lines
}

pub fn run(command: PipelineCommand) -> Result<()> {
    let out = match &command {
        PipelineCommand::Status(args) if args.json => args.target.call("GET", "/api/status", None)?,
        PipelineCommand::Status(args) => {
            let text = args.target.call("GET", "/api/status", None)?;
            let status: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("the host's status is not JSON: {text}"))?;
            table(&status)
        }
        PipelineCommand::Pause(target) => target.call("POST", "/api/pipeline/pause", None)?,
        PipelineCommand::Resume(target) => target.call("POST", "/api/pipeline/resume", None)?,
    };
    print!("{}", out.trim_end());
    println!();
    Ok(())
}
