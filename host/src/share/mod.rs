//! Sharing plugins between teams: OCI references pinned by digest, a content-addressed
//! store of what was pulled, and the host config that says whose signatures to trust and
//! what each team's plugins may import.

mod host_config;
mod reference;
mod registry;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

pub use host_config::{HostConfig, Team};
pub use reference::{OciRef, SCHEME};
pub use registry::Registries;
pub use store::{Artifact, Store};

use crate::config::PipelineConfig;
use crate::plugin::{AllowList, Policy};

/// A plugin's component as read: its name, its bytes, the file they are in, and the
/// pinned reference when it came from a registry.
pub struct PluginBytes {
    /// The file's stem, or the repository's last part.
    pub name: String,
    /// The component.
    pub bytes: Vec<u8>,
    /// The file named, or the store's verified copy.
    pub path: PathBuf,
    /// The reference, pinned, when it came from a registry.
    pub reference: Option<OciRef>,
}

/// Where pulled plugins are kept, whom to trust, and whether tags may stand for digests.
#[derive(Clone, Debug)]
pub struct Sharing {
    /// The host config (empty when none was given).
    pub host: Arc<HostConfig>,
    /// The content store of pulled artifacts.
    pub store: Store,
    /// Run references that name a tag but no digest.
    pub allow_unpinned: bool,
}

impl Sharing {
    /// The store under `cache_dir` (default: weir's cache directory) in `oci/`.
    pub fn new(cache_dir: Option<PathBuf>, host: Arc<HostConfig>, allow_unpinned: bool) -> Self {
        let dir = cache_dir.or_else(crate::plugin::default_cache_dir).unwrap_or_else(|| PathBuf::from(".weir-cache"));
        Sharing { host, store: Store::new(dir.join("oci")), allow_unpinned }
    }

    /// How to reach registries, from the host config.
    pub fn registries(&self) -> Registries {
        Registries { insecure: self.host.insecure_registries.clone() }
    }

    /// The component `plugin` names: a registry reference, fetched as [`Sharing::fetch`]
    /// does, or else the file at `file`.
    pub fn read(&self, plugin: &str, file: &Path) -> Result<PluginBytes> {
        if OciRef::is_reference(plugin) {
            let (reference, artifact) = self.fetch(plugin)?;
            let name = reference.name().to_string();
            return Ok(PluginBytes { name, bytes: artifact.bytes, path: artifact.path, reference: Some(reference) });
        }
        let bytes = std::fs::read(file).with_context(|| {
            if file.exists() || plugin.ends_with(".wasm") {
                format!("reading plugin {}", file.display())
            } else {
                // A bare name is looked up in the plugin directory: say where that is set.
                format!(
                    "plugin {plugin:?} is not in the plugin directory: {} does not exist. Point `--plugins DIR` \
                     or $WEIR_PLUGIN_DIR at the directory of built plugins (`cargo xtask plugins` builds the \
                     reference ones into target/plugins/)",
                    file.display()
                )
            }
        })?;
        let name = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
        Ok(PluginBytes { name, bytes, path: file.to_path_buf(), reference: None })
    }

    /// The component `text` names, from the store when pinned and present, else pulled
    /// into the store first. Either way it is verified against its digests as it is read.
    pub fn fetch(&self, text: &str) -> Result<(OciRef, Artifact)> {
        let reference = OciRef::parse(text)?;
        if let Some(digest) = &reference.digest {
            if let Some(artifact) = self.store.get(digest)? {
                return Ok((reference, artifact));
            }
        } else if !self.allow_unpinned {
            bail!(
                "{reference} names a tag, which can move; pin it by digest (…@sha256:…, as `weir plugin pull` and \
                 `weir plugin push` print it), or pass --allow-unpinned to run whatever the tag names now"
            );
        }
        let (manifest, blob) = self.registries().pull(&reference)?;
        let artifact = self.store.put(&manifest, &blob).with_context(|| format!("{reference}"))?;
        let pinned = reference.pinned(&artifact.manifest_digest);
        if reference.digest.is_none() {
            eprintln!("note: {reference} is not pinned; it names {pinned} now");
        }
        Ok((pinned, artifact))
    }

    /// What a plugin of `config` must satisfy, before the stage's own grants: the
    /// allow-lists of its team and of the pipeline, and the team's signature when the
    /// pipeline requires one.
    pub fn policy(&self, config: &PipelineConfig) -> Result<Policy> {
        let trust = &config.trust;
        if trust.team.is_none() && !self.host.teams.is_empty() {
            // Otherwise leaving the team out would escape its allow-list and its keys.
            let teams: Vec<&str> = self.host.teams.keys().map(String::as_str).collect();
            bail!(
                "trust.team: this host runs plugins for named teams only ({}); name the pipeline's team in [trust]",
                teams.join(", ")
            );
        }
        let team = trust.team.as_deref().map(|name| self.host.team(name).map(|team| (name, team))).transpose()?;
        let mut allow_lists = Vec::new();
        if let Some((name, Team { allow_imports: Some(patterns), .. })) = team {
            allow_lists.push(AllowList { owner: format!("team {name}"), patterns: patterns.clone() });
        }
        if let Some(patterns) = &trust.allow_imports {
            allow_lists.push(AllowList { owner: format!("pipeline {}", config.name), patterns: patterns.clone() });
        }
        let keys = match team {
            Some((_, team)) => team.keys.clone(),
            // No team: any known key may still name a signer, but none is required.
            None => self.host.all_keys(),
        };
        let signatures_required_by = match (trust.require_signatures, team) {
            (true, Some((name, team))) if team.keys.is_empty() => {
                bail!("trust.require_signatures: team {name} has no keys in the host config to check signatures with")
            }
            (true, Some((name, _))) => Some(format!("pipeline {} (keys of team {name})", config.name)),
            _ => None,
        };
        Ok(Policy { grants: Vec::new(), allow_lists, keys: Arc::new(keys), signatures_required_by })
    }
}
