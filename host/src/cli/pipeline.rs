//! `weir pipeline status|pause|resume`: a running host's admin API, from the shell.

use anyhow::{Context, Result};

/// Commands for a running host.
#[derive(clap::Subcommand)]
pub enum PipelineCommand {
    /// Print the host's status as JSON: counters, watermark, and why reading is held.
    Status(Target),
    /// Checkpoint and stop reading until resumed.
    Pause(Target),
    /// Read again: ends a pause, or closes an open circuit breaker.
    Resume(Target),
}

/// Which host.
#[derive(clap::Args)]
pub struct Target {
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

    fn call(&self, method: &str, path: &str) -> Result<String> {
        let url = self.url(path);
        let auth = self.admin_token.as_ref().map(|t| format!("Bearer {t}"));
        let response = match method {
            "POST" => {
                let request = ureq::post(&url);
                let request = match &auth {
                    Some(auth) => request.header("Authorization", auth),
                    None => request,
                };
                request.send_empty()
            }
            _ => {
                let request = ureq::get(&url);
                let request = match &auth {
                    Some(auth) => request.header("Authorization", auth),
                    None => request,
                };
                request.call()
            }
        };
        let mut response =
            response.with_context(|| format!("{method} {url}: is `weir run` serving its admin API there?"))?;
        response.body_mut().read_to_string().with_context(|| format!("reading the answer of {url}"))
    }
}

pub fn run(command: PipelineCommand) -> Result<()> {
    let out = match &command {
        PipelineCommand::Status(target) => target.call("GET", "/api/status")?,
        PipelineCommand::Pause(target) => target.call("POST", "/api/pipeline/pause")?,
        PipelineCommand::Resume(target) => target.call("POST", "/api/pipeline/resume")?,
    };
    print!("{}", out.trim_end());
    println!();
    Ok(())
}
