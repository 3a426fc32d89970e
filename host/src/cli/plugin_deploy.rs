//! `weir plugin deploy|rollback|list|shadow|diff|promote|discard`: a running host's
//! plugins, through its admin API.

use anyhow::{Context, Result};

use super::pipeline::Target;
use super::SharingArgs;

/// Deploy a new plugin version into a running pipeline, without a restart.
#[derive(clap::Args)]
pub struct DeployArgs {
    /// The component file, or a registry reference `oci://HOST[:PORT]/REPO@sha256:…`.
    plugin: String,
    #[command(flatten)]
    at: StageArgs,
    #[command(flatten)]
    sharing: SharingArgs,
    /// How many percentage points higher the new version's dead-letter rate may be than
    /// the running version's, on the recent input it is tried on.
    #[arg(long, default_value_t = 100.0 * crate::pipeline::MAX_ERROR_INCREASE)]
    max_error_increase: f64,
}

/// A stage of a pipeline, and the host that runs it.
#[derive(clap::Args)]
pub struct StageArgs {
    /// The pipeline; the host refuses the request if it runs another.
    #[arg(long)]
    pipeline: String,
    /// The stage, as the pipeline file names it: parser, validators[N], transforms[N], aggregator.
    #[arg(long)]
    stage: String,
    #[command(flatten)]
    target: Target,
}

/// List a running pipeline's stages, their versions and every switch so far, as JSON.
#[derive(clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    target: Target,
}

/// Run a candidate in the shadow of a stage: on the same records as the live version,
/// writing its rows to `<table>__shadow`, until promoted or discarded.
#[derive(clap::Args)]
pub struct ShadowArgs {
    /// The component file, or a registry reference `oci://HOST[:PORT]/REPO@sha256:…`.
    plugin: String,
    #[command(flatten)]
    at: StageArgs,
    #[command(flatten)]
    sharing: SharingArgs,
}

/// The candidate's name and bytes, from a file or a pinned reference (unless
/// --allow-unpinned). The host checks its signature and imports against the pipeline's
/// policy either way.
fn candidate(plugin: &str, sharing: &SharingArgs) -> Result<(String, Vec<u8>)> {
    let read = sharing.sharing(None)?.read(plugin, std::path::Path::new(plugin))?;
    Ok((read.name, read.bytes))
}

/// Show the windows where the shadow's rows differ from the live ones, as JSON.
#[derive(clap::Args)]
pub struct DiffArgs {
    /// The pipeline.
    #[arg(long)]
    pipeline: String,
    /// At most this many differing windows are listed (all are counted).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    #[command(flatten)]
    target: Target,
}

/// Names the pipeline whose shadow to end.
#[derive(clap::Args)]
pub struct PipelineArgs {
    /// The pipeline.
    #[arg(long)]
    pipeline: String,
    #[command(flatten)]
    target: Target,
}

fn query(pairs: &[(&str, &str)]) -> String {
    let encoded: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    encoded.join("&")
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn deploy(args: DeployArgs) -> Result<()> {
    let (name, bytes) = candidate(&args.plugin, &args.sharing)?;
    let max = (args.max_error_increase / 100.0).to_string();
    let path = format!(
        "/api/plugins/deploy?{}",
        query(&[
            ("pipeline", &args.at.pipeline),
            ("stage", &args.at.stage),
            ("name", &name),
            ("max_error_increase", &max)
        ])
    );
    eprintln!(
        "deploying {} ({} bytes) into {} of pipeline {}…",
        args.plugin,
        bytes.len(),
        args.at.stage,
        args.at.pipeline
    );
    let report = args.at.target.call("POST", &path, Some(&bytes)).context("the deployment was refused")?;
    println!("{}", report.trim_end());
    Ok(())
}

pub fn shadow(args: ShadowArgs) -> Result<()> {
    let (name, bytes) = candidate(&args.plugin, &args.sharing)?;
    let path = format!(
        "/api/plugins/shadow?{}",
        query(&[("pipeline", &args.at.pipeline), ("stage", &args.at.stage), ("name", &name)])
    );
    let report = args.at.target.call("POST", &path, Some(&bytes)).context("the shadow was refused")?;
    println!("{}", report.trim_end());
    Ok(())
}

pub fn diff(args: DiffArgs) -> Result<()> {
    let limit = args.limit.to_string();
    let path = format!("/api/plugins/diff?{}", query(&[("pipeline", &args.pipeline), ("limit", &limit)]));
    println!("{}", args.target.call("GET", &path, None)?.trim_end());
    Ok(())
}

/// `promote` or `discard`.
pub fn end_shadow(args: PipelineArgs, how: &str) -> Result<()> {
    let path = format!("/api/plugins/{how}?{}", query(&[("pipeline", &args.pipeline)]));
    let report = args.target.call("POST", &path, None).with_context(|| format!("{how} was refused"))?;
    println!("{}", report.trim_end());
    Ok(())
}

pub fn rollback(args: StageArgs) -> Result<()> {
    let path = format!("/api/plugins/rollback?{}", query(&[("pipeline", &args.pipeline), ("stage", &args.stage)]));
    let report = args.target.call("POST", &path, None).context("the rollback was refused")?;
    println!("{}", report.trim_end());
    Ok(())
}

pub fn list(args: ListArgs) -> Result<()> {
    println!("{}", args.target.call("GET", "/api/plugins", None)?.trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stage_names_survive_the_query_string() {
        assert_eq!(super::encode("validators[0]"), "validators%5B0%5D");
    }
}
