//! Loading a plugin: read the file, check it is a component of a known world and a
//! compatible contract version, check its imports against the grants, compile (or
//! fetch the compiled code from the cache) and pre-link it into an `InstancePre`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::{InstancePre, Linker};

use super::bindings::HostBindings;
use super::engine::{Compiler, PluginRuntime};
use super::policy::Policy;
use super::signature::Signature;
use super::state::PluginState;

/// The contract version this host implements and `weir-sdk` builds against.
pub const CONTRACT_VERSION: &str = weir_sdk::CONTRACT_VERSION;

/// The contract lines whose components this host runs: `weir:plugin@0.1.x` (no imports
/// beyond `host`) and `weir:plugin@0.2.x` (adds `schemas` and `lookups`). Their kinds'
/// functions have the same signatures (`exports.rs`).
pub const CONTRACTS_RUN: [&str; 2] = ["0.1", "0.2"];

/// The four plugin kinds, one WIT world each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// Exports `weir:plugin/parser`.
    Parser,
    /// Exports `weir:plugin/validator`.
    Validator,
    /// Exports `weir:plugin/aggregator`.
    Aggregator,
    /// Exports `weir:plugin/transform`.
    Transform,
}

impl PluginKind {
    /// All kinds, in pipeline order.
    pub const ALL: [PluginKind; 4] =
        [PluginKind::Parser, PluginKind::Validator, PluginKind::Transform, PluginKind::Aggregator];

    /// The kind's name, as in the CLI and the WIT interface.
    pub fn name(self) -> &'static str {
        match self {
            PluginKind::Parser => "parser",
            PluginKind::Validator => "validator",
            PluginKind::Aggregator => "aggregator",
            PluginKind::Transform => "transform",
        }
    }

    /// The WIT world a plugin of this kind implements.
    pub fn world(self) -> String {
        format!("weir:plugin/{}-plugin@{CONTRACT_VERSION}", self.name())
    }

    /// The export name of this kind's interface.
    pub fn interface(self) -> String {
        format!("weir:plugin/{}@{CONTRACT_VERSION}", self.name())
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A loaded, checked and compiled plugin, ready to instantiate.
pub struct PluginComponent {
    /// The plugin's name (its file stem unless the pipeline names it).
    pub name: String,
    /// `sha256:` and the hex digest of the component's bytes.
    pub digest: String,
    /// The component's size in bytes.
    pub size: usize,
    /// Which world it implements.
    pub kind: PluginKind,
    /// The contract version it was built against.
    pub contract: String,
    /// The full name of the kind's interface it exports, e.g. `weir:plugin/parser@0.1.0`.
    pub interface: String,
    /// Its imports, by full name.
    pub imports: Vec<String>,
    /// Its exports, by full name.
    pub exports: Vec<String>,
    /// Its signature, checked against the keys of the policy it was loaded under.
    pub signature: Signature,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    pub(crate) pre: InstancePre<PluginState>,
    pub(crate) runtime: PluginRuntime,
}

impl PluginComponent {
    /// Whether it runs code from the optimizing compiler (else from the baseline one).
    pub fn optimized(&self) -> bool {
        self.runtime.compiler == Compiler::Optimizing
    }
}

impl fmt::Debug for PluginComponent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginComponent")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("digest", &self.digest)
            .finish()
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl PluginRuntime {
    /// Loads the component at `path`, named after the file.
    pub fn load(&self, path: &Path, policy: &Policy) -> Result<Arc<PluginComponent>> {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
        let bytes = std::fs::read(path).with_context(|| format!("reading plugin {name} from {}", path.display()))?;
        self.load_bytes(&name, &bytes, policy).with_context(|| format!("loading plugin {name} ({})", path.display()))
    }

    /// Loads a component to run at once: the optimizing compiler's code when the cache
    /// holds it, else the baseline compiler's, which takes a tenth of the time to make.
    /// The caller switches to optimized code later ([`PluginComponent::optimized`]).
    pub fn load_bytes_quickly(&self, name: &str, bytes: &[u8], policy: &Policy) -> Result<Arc<PluginComponent>> {
        let digest = digest(bytes);
        let cached = |dir: &Path| super::cache::holds(&self.engine, dir, &digest);
        if self.options.cache_dir.as_deref().is_some_and(cached) {
            return self.load_digested(name, bytes, digest, policy);
        }
        self.baseline()?.load_digested(name, bytes, digest, policy)
    }

    /// Loads a component from memory, if `policy` admits it.
    pub fn load_bytes(&self, name: &str, bytes: &[u8], policy: &Policy) -> Result<Arc<PluginComponent>> {
        self.load_digested(name, bytes, digest(bytes), policy)
    }

    /// [`load_bytes`](Self::load_bytes) of bytes whose digest is known.
    fn load_digested(&self, name: &str, bytes: &[u8], digest: String, policy: &Policy) -> Result<Arc<PluginComponent>> {
        check_header(bytes)?;
        // Checked before compiling: bytes nobody trusted never reach Cranelift.
        let signature = Signature::check(bytes, &policy.keys);
        policy.check_signature(&signature)?;
        let (component, from_cache) =
            super::cache::compile(&self.engine, self.options.cache_dir.as_deref(), &digest, bytes)
                .context("not a valid WebAssembly component")?;
        let ty = component.component_type();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let (kind, contract) = plugin_kind(&exports)?;
        let interface = format!("weir:plugin/{}@{contract}", kind.name());

        policy.admit(&imports)?;
        let mut linker: Linker<PluginState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(anyhow::Error::from).context("linking WASI")?;
        HostBindings::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the weir host interface")?;
        super::bindings::add_contract_0_1(&mut linker).context("linking the weir:plugin@0.1.0 host interface")?;
        let pre =
            linker.instantiate_pre(&component).map_err(anyhow::Error::from).context("linking the plugin's imports")?;
        Ok(Arc::new(PluginComponent {
            name: name.to_string(),
            digest,
            size: bytes.len(),
            kind,
            contract,
            interface,
            imports,
            exports,
            signature,
            from_cache,
            pre,
            runtime: self.clone(),
        }))
    }
}

fn check_header(bytes: &[u8]) -> Result<()> {
    match bytes.get(0..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => bail!(
            "is a core WebAssembly module, not a component; build it with `weir plugin build` \
             (cargo component, or cargo build --target wasm32-wasip2)"
        ),
        _ => bail!("is not a WebAssembly component (no `\\0asm` component header)"),
    }
}

/// Finds the one weir plugin interface among the exports and checks its version.
fn plugin_kind(exports: &[String]) -> Result<(PluginKind, String)> {
    let mut found = Vec::new();
    for export in exports {
        let Some(rest) = export.strip_prefix("weir:plugin/") else { continue };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if let Some(kind) = PluginKind::ALL.into_iter().find(|k| k.name() == interface) {
            found.push((kind, version.to_string()));
        }
    }
    let (kind, version) = match found.as_slice() {
        [one] => one.clone(),
        [] => bail!(
            "exports no weir plugin interface (it exports: {}); a plugin implements one of the worlds \
             parser-plugin, validator-plugin, aggregator-plugin or transform-plugin of weir:plugin@{CONTRACT_VERSION}",
            if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
        ),
        many => bail!("exports {} plugin interfaces; a plugin implements exactly one", many.len()),
    };
    if !CONTRACTS_RUN.iter().any(|line| compatible(&version, &format!("{line}.0"))) {
        bail!(
            "implements contract weir:plugin@{version}, which this host cannot run (it runs weir:plugin@{}); \
             rebuild it against weir-sdk {CONTRACT_VERSION}",
            CONTRACTS_RUN.map(|line| format!("{line}.x")).join(" and ")
        );
    }
    Ok((kind, version))
}

/// Semver compatibility as Cargo reads it: same major, and same minor while major is 0.
fn compatible(version: &str, host: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parts(version), parts(host)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kind_and_checks_version() {
        let exports = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (kind, version) = plugin_kind(&exports(&["weir:plugin/parser@0.1.3"])).unwrap();
        assert_eq!((kind, version.as_str()), (PluginKind::Parser, "0.1.3"));
        let (_, version) = plugin_kind(&exports(&["weir:plugin/parser@0.2.1"])).unwrap();
        assert_eq!(version, "0.2.1");
        let err = plugin_kind(&exports(&["weir:plugin/parser@0.3.0"])).unwrap_err().to_string();
        assert!(err.contains("0.3.0") && err.contains("0.1.x and 0.2.x"), "{err}");
        let err = plugin_kind(&exports(&["example:greeter/greet"])).unwrap_err().to_string();
        assert!(err.contains("example:greeter/greet"), "{err}");
    }

    #[test]
    fn refuses_files_that_are_not_components() {
        assert!(check_header(b"hello world").unwrap_err().to_string().contains("not a WebAssembly component"));
        assert!(check_header(b"\0asm\x01\0\0\0").unwrap_err().to_string().contains("core WebAssembly module"));
    }
}
