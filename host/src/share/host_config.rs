//! The host config: which teams this host runs plugins for, the keys each signs with,
//! the imports each team's plugins may have, and how to reach registries. Pipelines name
//! a team; the host, not the pipeline, says what a team is trusted with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;

use crate::plugin::TrustedKey;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostFile {
    #[serde(default)]
    teams: BTreeMap<String, TeamFile>,
    #[serde(default)]
    registries: RegistriesFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamFile {
    /// Public keys (PEM, OpenSSH or wasmsign2), relative to the host config file.
    #[serde(default)]
    keys: Vec<PathBuf>,
    /// Import patterns every plugin of the team must stay within.
    allow_imports: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RegistriesFile {
    #[serde(default)]
    insecure: Vec<String>,
}

/// A team: the keys it signs with and the imports its plugins may have.
#[derive(Clone, Debug, Default)]
pub struct Team {
    /// Its public keys.
    pub keys: Vec<TrustedKey>,
    /// Its allow-list of imports, if it has one.
    pub allow_imports: Option<Vec<String>>,
}

/// The host config, loaded: keys read and checked.
#[derive(Clone, Debug, Default)]
pub struct HostConfig {
    /// Where it was read from, for messages.
    pub path: Option<PathBuf>,
    /// Teams by name.
    pub teams: BTreeMap<String, Team>,
    /// Registries spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
}

impl HostConfig {
    /// Reads a host config file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading host config {}", path.display()))?;
        let file: HostFile = toml::from_str(&text).map_err(|e| anyhow!("host config {}: {e}", path.display()))?;
        let base = crate::config::base_dir(path);
        let mut teams = BTreeMap::new();
        for (name, team) in file.teams {
            let keys = team
                .keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    TrustedKey::read(&name, &base.join(key))
                        .with_context(|| format!("host config {}: teams.{name}.keys[{i}]", path.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            teams.insert(name, Team { keys, allow_imports: team.allow_imports });
        }
        Ok(HostConfig { path: Some(path.to_path_buf()), teams, insecure_registries: file.registries.insecure })
    }

    /// Every key of every team, to name whoever signed a plugin.
    pub fn all_keys(&self) -> Vec<TrustedKey> {
        self.teams.values().flat_map(|t| t.keys.iter().cloned()).collect()
    }

    /// The team called `name`, or an error that lists the teams there are.
    pub fn team(&self, name: &str) -> Result<&Team> {
        let Some(path) = &self.path else {
            return Err(anyhow!(
                "trust.team = {name:?}, but no host config was given to define it (--host-config or WEIR_HOST_CONFIG)"
            ));
        };
        self.teams.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.teams.keys().map(String::as_str).collect();
            anyhow!(
                "trust.team = {name:?}: host config {} has no such team (its teams: {})",
                path.display(),
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_keys_relative_to_the_file_and_names_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("keys/ci.pub"), crate::plugin::keygen().1).unwrap();
        std::fs::write(dir.path().join("keys/bad.pub"), "not a key").unwrap();
        let path = dir.path().join("host.toml");
        std::fs::write(&path, "[teams.rides]\nkeys = [\"keys/ci.pub\"]\nallow_imports = [\"weir:plugin/*\"]\n")
            .unwrap();
        let host = HostConfig::load(&path).unwrap();
        let rides = host.team("rides").unwrap();
        assert_eq!((rides.keys[0].name.as_str(), rides.keys[0].team.as_str()), ("ci", "rides"));
        let err = host.team("payments").err().unwrap().to_string();
        assert!(err.contains("no such team (its teams: rides)"), "{err}");

        std::fs::write(&path, "[teams.rides]\nkeys = [\"keys/ci.pub\", \"keys/bad.pub\"]\n").unwrap();
        let err = format!("{:#}", HostConfig::load(&path).err().unwrap());
        assert!(err.contains("teams.rides.keys[1]") && err.contains("bad.pub"), "{err}");

        std::fs::write(&path, "[teams.rides]\nkey = []\n").unwrap();
        let err = format!("{:#}", HostConfig::load(&path).err().unwrap());
        assert!(err.contains("unknown field `key`"), "{err}");
    }
}
