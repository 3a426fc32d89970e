//! Push and pull through the OCI distribution protocol, in the Wasm artifact layout wkg
//! and wasmtime use (oci-client and oci-wasm speak the protocol).

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_wasm::{WasmClient, WasmConfig, WASM_MANIFEST_MEDIA_TYPE};

use super::reference::OciRef;
use super::store::wasm_layer;
use crate::plugin::digest;

/// How to reach registries.
#[derive(Clone, Debug, Default)]
pub struct Registries {
    /// `HOST[:PORT]`s spoken to over plain HTTP; loopback registries always are.
    pub insecure: Vec<String>,
}

impl Registries {
    fn client(&self, reference: &OciRef) -> WasmClient {
        let mut plain = self.insecure.clone();
        if reference.is_loopback() {
            plain.push(reference.registry.clone());
        }
        let config = ClientConfig { protocol: ClientProtocol::HttpsExcept(plain), ..ClientConfig::default() };
        WasmClient::new(Client::new(config))
    }

    /// Pushes a component under `reference`'s tag. Returns the manifest as the registry
    /// now serves it, and its digest.
    pub fn push(&self, reference: &OciRef, bytes: Vec<u8>) -> Result<(Vec<u8>, String)> {
        if reference.digest.is_some() {
            bail!("{reference}: push to a tag (oci://HOST/REPO:TAG); the registry assigns the digest");
        }
        let client = self.client(reference);
        let target = reference.client_ref();
        let auth = auth();
        let (config, layer) = WasmConfig::from_raw_component(bytes, None)
            .context("reading the component's WIT for the artifact config")?;
        let annotations =
            BTreeMap::from([("org.opencontainers.image.title".to_string(), reference.name().to_string())]);
        block_on(async {
            client
                .push(&target, &auth, layer, config, Some(annotations))
                .await
                .map_err(|e| anyhow!("pushing to {reference}: {e:#}"))?;
            let (manifest, digest) = client
                .pull_manifest_raw(&target, &auth, &[WASM_MANIFEST_MEDIA_TYPE])
                .await
                .map_err(|e| anyhow!("reading back the manifest of {reference}: {e:#}"))?;
            Ok((manifest.to_vec(), digest))
        })
    }

    /// Pulls the manifest and the component of `reference`, checking that the manifest
    /// hashes to the pinned digest (when pinned) and the component to the manifest's layer
    /// digest. Returns (manifest, component).
    pub fn pull(&self, reference: &OciRef) -> Result<(Vec<u8>, Vec<u8>)> {
        let client = self.client(reference);
        let target = reference.client_ref();
        let auth = auth();
        block_on(async {
            let (manifest, _) = client
                .pull_manifest_raw(&target, &auth, &[WASM_MANIFEST_MEDIA_TYPE])
                .await
                .map_err(|e| anyhow!("pulling the manifest of {reference}: {e:#}"))?;
            let actual = digest(&manifest);
            if let Some(pinned) = &reference.digest {
                if actual != *pinned {
                    bail!("the manifest the registry served for {reference} hashes to {actual}: refusing it");
                }
            }
            let layer = wasm_layer(&manifest).with_context(|| format!("{reference}"))?;
            let mut blob = Vec::new();
            // The client checks the bytes against the layer digest as they stream in;
            // the store checks them again before anything is kept.
            client
                .pull_blob(&target, &layer, &mut blob)
                .await
                .map_err(|e| anyhow!("pulling component {} of {reference}: {e:#}", layer.digest))?;
            Ok((manifest.to_vec(), blob))
        })
    }
}

/// Basic credentials from `WEIR_REGISTRY_USERNAME` and `WEIR_REGISTRY_PASSWORD`, else
/// anonymous.
fn auth() -> RegistryAuth {
    match (std::env::var("WEIR_REGISTRY_USERNAME"), std::env::var("WEIR_REGISTRY_PASSWORD")) {
        (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
        _ => RegistryAuth::Anonymous,
    }
}

fn block_on<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the registry client's runtime")?
        .block_on(work)
}
