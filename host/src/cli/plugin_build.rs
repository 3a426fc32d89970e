//! `weir plugin build [PATH]`: a plugin crate into a component, with `cargo component`
//! where it is installed and the wasm32-wasip2 target otherwise; a Python project (a
//! `pyproject.toml`) with componentize-py (`plugin_python.rs`).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::RuntimeArgs;
use crate::plugin::{PluginRuntime, Policy};

/// Arguments of `weir plugin build`.
#[derive(clap::Args)]
pub struct BuildArgs {
    /// The plugin's directory: a Rust crate, or a Python project.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// Use plain `cargo build --target wasm32-wasip2` even if cargo component is installed.
    #[arg(long)]
    no_cargo_component: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn has_cargo_component() -> bool {
    Command::new("cargo")
        .args(["component", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Builds the crate at `dir` and returns the component's path.
pub fn build(dir: &Path, use_cargo_component: bool) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.exists() {
        bail!("{} is not a plugin project: it has no Cargo.toml (Rust) or pyproject.toml (Python)", dir.display());
    }
    let mut cmd = Command::new("cargo");
    if use_cargo_component {
        cmd.args(["component", "build", "--release"]);
    } else {
        cmd.args(["build", "--release", "--target", "wasm32-wasip2"]);
    }
    cmd.args(["--message-format", "json-render-diagnostics", "--manifest-path"]).arg(&manifest);
    let tool = if use_cargo_component { "cargo component build" } else { "cargo build --target wasm32-wasip2" };
    eprintln!("building {} with {tool}", dir.display());
    // Cargo's progress and diagnostics go straight to the terminal; its JSON names the artifact.
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().with_context(|| format!("running {tool}"))?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut artifact = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["reason"] == "compiler-artifact" {
            let files = message["filenames"].as_array().cloned().unwrap_or_default();
            if let Some(wasm) = files.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(".wasm")) {
                artifact = Some(PathBuf::from(wasm));
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        let hint =
            if use_cargo_component { "" } else { " (is the target installed? `rustup target add wasm32-wasip2`)" };
        bail!("{tool} failed for {}{hint}", dir.display());
    }
    artifact.with_context(|| format!("{tool} built no .wasm for {}; is the crate a cdylib?", dir.display()))
}

pub fn run(args: BuildArgs) -> Result<()> {
    let path = match super::plugin_python::project(&args.path)? {
        Some(project) => super::plugin_python::build(&project)?,
        None => build(&args.path, !args.no_cargo_component && has_cargo_component())?,
    };
    let runtime = PluginRuntime::new(args.runtime.options())?;
    let component = runtime.load(&path, &Policy::none())?;
    println!("{}", path.display());
    eprintln!("built {} plugin {} ({}, {} bytes)", component.kind, component.name, component.digest, component.size);
    Ok(())
}
