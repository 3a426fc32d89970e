//! Pulled artifacts on disk, addressed by content: manifests by their digest, component
//! blobs by theirs. Every read re-hashes both, so a file changed on disk after the pull
//! is refused rather than run.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_wasm::{WASM_LAYER_MEDIA_TYPE, WASM_MANIFEST_CONFIG_MEDIA_TYPE};

use crate::plugin::digest;

/// A component as a registry served it, verified against its manifest.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// `sha256:` of the manifest: what a pinned reference names.
    pub manifest_digest: String,
    /// `sha256:` of the component: what the host reports as the plugin's digest.
    pub layer_digest: String,
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// Where the store keeps the component.
    pub path: PathBuf,
}

/// The content-addressed store under a directory.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir`, created on first write.
    pub fn new(dir: PathBuf) -> Self {
        Store { dir }
    }

    fn path(&self, kind: &str, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(kind).join("sha256").join(hex)
    }

    /// Checks that `manifest` is a Wasm component artifact whose one layer is `blob`, and
    /// keeps both. Returns the manifest's digest.
    pub fn put(&self, manifest: &[u8], blob: &[u8]) -> Result<Artifact> {
        let layer = wasm_layer(manifest)?.digest;
        let actual = digest(blob);
        if actual != layer {
            bail!(
                "the component does not match its manifest: the manifest names layer {layer}, \
                 the bytes hash to {actual}; refusing it (the registry's copy is damaged or was tampered with)"
            );
        }
        let manifest_digest = digest(manifest);
        write_atomic(&self.path("blobs", &layer), blob)?;
        write_atomic(&self.path("manifests", &manifest_digest), manifest)?;
        Ok(Artifact { manifest_digest, layer_digest: layer, bytes: blob.to_vec(), path: self.path("blobs", &actual) })
    }

    /// The artifact whose manifest has `manifest_digest`, re-verified, if the store has it.
    pub fn get(&self, manifest_digest: &str) -> Result<Option<Artifact>> {
        let manifest_path = self.path("manifests", manifest_digest);
        let Some(manifest) = read_if_present(&manifest_path)? else { return Ok(None) };
        let actual = digest(&manifest);
        if actual != manifest_digest {
            bail!(
                "the stored manifest {} hashes to {actual}, not {manifest_digest}: it changed on disk after it was pulled; \
                 delete it and pull again",
                manifest_path.display()
            );
        }
        let layer = wasm_layer(&manifest)?.digest;
        let path = self.path("blobs", &layer);
        let Some(bytes) = read_if_present(&path)? else { return Ok(None) };
        let actual = digest(&bytes);
        if actual != layer {
            bail!(
                "the stored component {} hashes to {actual}, not {layer} as its manifest says: it changed on disk \
                 after it was pulled; delete it and pull again",
                path.display()
            );
        }
        Ok(Some(Artifact { manifest_digest: manifest_digest.to_string(), layer_digest: layer, bytes, path }))
    }
}

/// The one `application/wasm` layer of a Wasm artifact manifest.
pub fn wasm_layer(manifest: &[u8]) -> Result<OciDescriptor> {
    let manifest: OciImageManifest =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(manifest)).map_err(|e| {
            anyhow::anyhow!("the manifest is not an OCI image manifest: at `{}`: {}", e.path(), e.inner())
        })?;
    if manifest.config.media_type != WASM_MANIFEST_CONFIG_MEDIA_TYPE {
        bail!(
            "the artifact's config has media type {:?}, not {WASM_MANIFEST_CONFIG_MEDIA_TYPE:?}: it is not a Wasm component artifact",
            manifest.config.media_type
        );
    }
    match manifest.layers.as_slice() {
        [layer] if layer.media_type == WASM_LAYER_MEDIA_TYPE => Ok(layer.clone()),
        layers => bail!(
            "a Wasm component artifact has exactly one layer of media type {WASM_LAYER_MEDIA_TYPE:?}; this one has [{}]",
            layers.iter().map(|l| l.media_type.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes then renames, so a concurrent reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("store path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(blob: &[u8]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": WASM_MANIFEST_CONFIG_MEDIA_TYPE, "digest": digest(b"{}"), "size": 2},
            "layers": [{"mediaType": WASM_LAYER_MEDIA_TYPE, "digest": digest(blob), "size": blob.len()}],
        }))
        .unwrap()
    }

    #[test]
    fn verifies_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().to_path_buf());
        let blob = b"\0asm component".to_vec();
        let put = store.put(&manifest(&blob), &blob).unwrap();
        let got = store.get(&put.manifest_digest).unwrap().unwrap();
        assert_eq!((got.bytes, got.layer_digest), (blob.clone(), digest(&blob)));
        assert!(store.get(&digest(b"other")).unwrap().is_none());

        std::fs::write(&put.path, b"\0asm tampered!").unwrap();
        let err = store.get(&put.manifest_digest).unwrap_err().to_string();
        assert!(err.contains("changed on disk"), "{err}");

        let err = store.put(&manifest(&blob), b"something else").unwrap_err().to_string();
        assert!(err.contains("does not match its manifest"), "{err}");
    }

    mod fuzz {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::*;

        /// Every key of the manifest, by its path, with the name that an error must give.
        fn keys(value: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
            match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        path.push(k.clone());
                        out.push(path.clone());
                        keys(v, path, out);
                        path.pop();
                    }
                }
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        path.push(i.to_string());
                        keys(v, path, out);
                        path.pop();
                    }
                }
                _ => {}
            }
        }

        fn slot<'a>(root: &'a mut Value, path: &[String]) -> &'a mut Value {
            path.iter().fold(root, |v, k| match v {
                Value::Array(items) => &mut items[k.parse::<usize>().unwrap()],
                other => &mut other[k.as_str()],
            })
        }

        proptest! {
            /// A manifest with one value of the wrong type, or one key missing, is refused
            /// with an error that names the key, or read the same.
            #[test]
            fn a_broken_manifest_is_refused_naming_the_key(which: prop::sample::Index, pick: u8, remove: bool) {
                let mut root: Value = serde_json::from_slice(&manifest(b"wasm")).unwrap();
                let mut found = Vec::new();
                keys(&root, &mut Vec::new(), &mut found);
                let path = found[which.index(found.len())].clone();
                let key = path.last().unwrap().clone();
                if remove {
                    let (parent, _) = path.split_at(path.len() - 1);
                    slot(&mut root, parent).as_object_mut().unwrap().remove(&key);
                } else {
                    let old = slot(&mut root, &path).clone();
                    let choices = [Value::from(-7), Value::from("wrong"), Value::from(true), Value::Null, serde_json::json!([1])];
                    let others: Vec<&Value> = choices.iter().filter(|c| std::mem::discriminant(*c) != std::mem::discriminant(&old)).collect();
                    *slot(&mut root, &path) = others[pick as usize % others.len()].clone();
                }
                if let Err(e) = wasm_layer(&serde_json::to_vec(&root).unwrap()) {
                    let e = format!("{e:#}");
                    prop_assert!(e.contains(&key) || e.contains("media type"), "{path:?}: {e}");
                }
            }
        }
    }
}
