//! `weir pipeline status|pause|resume`: a running host's admin API, from the shell.

use anyhow::{bail, Context, Result};

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

pub fn run(command: PipelineCommand) -> Result<()> {
    let out = match &command {
        PipelineCommand::Status(target) => target.call("GET", "/api/status", None)?,
        PipelineCommand::Pause(target) => target.call("POST", "/api/pipeline/pause", None)?,
        PipelineCommand::Resume(target) => target.call("POST", "/api/pipeline/resume", None)?,
    };
    print!("{}", out.trim_end());
    println!();
    Ok(())
}
