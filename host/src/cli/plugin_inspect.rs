//! `weir plugin inspect FILE|oci://…`.

use std::sync::Arc;

use anyhow::{Context, Result};
use weir_sdk::ColumnDef;

use super::{read_config, RuntimeArgs};
use crate::plugin::{Limits, Plugin, PluginInfo, PluginRuntime, Policy, CONTRACT_VERSION};
use crate::share::PluginBytes;

/// Arguments of `weir plugin inspect`.
#[derive(clap::Args)]
pub struct InspectArgs {
    /// The component file, or a registry reference `oci://HOST[:PORT]/REPO@sha256:…` (or `:TAG`).
    plugin: String,
    /// The plugin's config (inline JSON, or a .json/.toml file); the schemas depend on it.
    #[arg(long)]
    config: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn columns(defs: &[ColumnDef]) -> Vec<String> {
    defs.iter().map(|c| format!("{} {}{}", c.name, c.ty.name(), if c.nullable { "?" } else { "" })).collect()
}

pub fn run(args: InspectArgs) -> Result<()> {
    let runtime = PluginRuntime::new(args.runtime.options())?;
    let mut sharing = args.runtime.sharing()?;
    // Inspecting is how a tag's digest is learned; pinning applies where plugins run.
    sharing.allow_unpinned = true;
    let PluginBytes { name, bytes, reference, .. } = sharing.read(&args.plugin, std::path::Path::new(&args.plugin))?;
    // Inspect shows every import, so it loads with every capability granted, and names
    // the signer among every team's keys.
    let policy = Policy { keys: Arc::new(sharing.host.all_keys()), ..Policy::granting(vec!["*".into()]) };
    let component =
        runtime.load_bytes(&name, &bytes, &policy).with_context(|| format!("loading plugin {}", args.plugin))?;
    let refused = Policy::none().refused(&component.imports).into_iter().map(String::from).collect::<Vec<_>>();
    let config = read_config(args.config.as_deref())?;
    let schemas = match Plugin::new(component.clone(), component.kind, &config, Limits::default()) {
        Ok(plugin) => match plugin.info() {
            PluginInfo::Parser(i) => {
                serde_json::json!({"outputs": columns(&i.outputs), "event_time_column": i.event_time_column})
            }
            PluginInfo::Validator(inputs) => serde_json::json!({"inputs": columns(inputs)}),
            PluginInfo::Aggregator(i) => {
                serde_json::json!({"inputs": columns(&i.inputs), "outputs": columns(&i.outputs), "state_version": i.state_version})
            }
            PluginInfo::Transform(i) => {
                serde_json::json!({"inputs": columns(&i.inputs), "outputs": columns(&i.outputs)})
            }
        },
        Err(e) => serde_json::json!({"error": format!("{e:#}")}),
    };
    let report = serde_json::json!({
        "name": component.name,
        "plugin": args.plugin,
        "reference": reference.as_ref().map(|r| r.to_string()),
        "signature": component.signature,
        "kind": component.kind.name(),
        "world": component.kind.world().replace(CONTRACT_VERSION, &component.contract),
        "contract": component.contract,
        "host_contract": CONTRACT_VERSION,
        "size": component.size,
        "digest": component.digest,
        "imports": component.imports,
        "imports_needing_grants": refused,
        "exports": component.exports,
        "schemas": schemas,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("plugin     {}", component.name);
    println!("from       {} ({} bytes)", args.plugin, component.size);
    if let Some(reference) = &reference {
        println!("pinned     {reference}");
    }
    println!("digest     {}", component.digest);
    println!("signature  {}", component.signature);
    println!("world      {}", report["world"].as_str().unwrap_or_default());
    println!("contract   {} (host {CONTRACT_VERSION}: compatible)", component.contract);
    println!("exports    {}", component.exports.join(", "));
    println!("imports    {}", component.imports.join("\n           "));
    if !refused.is_empty() {
        println!("needs      grants for {}", refused.join(", "));
    }
    match schemas.get("error") {
        Some(error) => println!(
            "schemas    unknown: init refused the config ({}); pass --config",
            error.as_str().unwrap_or_default()
        ),
        None => {
            for (label, key) in [("inputs", "inputs"), ("outputs", "outputs")] {
                if let Some(cols) = schemas.get(key).and_then(|v| v.as_array()) {
                    let cols: Vec<&str> = cols.iter().filter_map(|c| c.as_str()).collect();
                    println!("{label:<10} {}", cols.join(", "));
                }
            }
            if let Some(t) = schemas.get("event_time_column").and_then(|v| v.as_str()) {
                println!("event time {t}");
            }
            if let Some(v) = schemas.get("state_version") {
                println!("state      version {v}");
            }
        }
    }
    Ok(())
}
