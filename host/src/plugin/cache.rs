//! Compiled components on disk, keyed by the component's digest and the engine's
//! compatibility hash, so a restart skips Cranelift and an engine upgrade never loads
//! stale code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where the compiled form of `digest` lives for this engine.
fn entry(dir: &Path, engine: &Engine, digest: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
}

/// Whether `dir` holds this engine's compiled form of `digest`.
pub fn holds(engine: &Engine, dir: &Path, digest: &str) -> bool {
    entry(dir, engine, digest).exists()
}

/// Returns the compiled component and whether it came from the cache.
pub fn compile(engine: &Engine, dir: Option<&Path>, digest: &str, bytes: &[u8]) -> Result<(Component, bool)> {
    let Some(dir) = dir else {
        return Ok((Component::new(engine, bytes)?, false));
    };
    let path = entry(dir, engine, digest);
    if path.exists() {
        // SAFETY: the file was written by `Component::serialize` of an engine with the same
        // compatibility hash (it is in the name), into weir's own cache directory.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok((component, true)),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "ignoring unreadable cache entry"),
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&path, &component) {
        tracing::warn!(path = %path.display(), error = %e, "could not cache compiled plugin");
    }
    Ok((component, false))
}

fn store(path: &Path, component: &Component) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
