//! Plugin signatures: ed25519, in the signature section of the WebAssembly tool
//! conventions, as wasmsign2 writes it. The signature travels inside the component, so
//! it survives a registry round trip, and covers every other section of it.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use wasmsign2::{Module, PublicKey, SecretKey, WSError};

/// A public key a team trusts, as the host config names it.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// The team that trusts it.
    pub team: String,
    /// The key's name: its file's stem.
    pub name: String,
    key: PublicKey,
}

impl TrustedKey {
    /// Reads a public key: PEM, OpenSSH (`ssh-ed25519 …`) or wasmsign2's raw form.
    pub fn read(team: &str, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading public key {}", path.display()))?;
        let key = PublicKey::from_any(&bytes)
            .map_err(|e| anyhow!("{}: not an ed25519 public key (PEM, OpenSSH or wasmsign2): {e}", path.display()))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(TrustedKey { team: team.to_string(), name, key: key.attach_default_key_id() })
    }

    /// The key id wasmsign2 derives from the key, in hex.
    pub fn id(&self) -> String {
        key_id_hex(self.key.key_id())
    }
}

fn key_id_hex(id: Option<&Vec<u8>>) -> String {
    id.map(|id| id.iter().map(|b| format!("{b:02x}")).collect()).unwrap_or_default()
}

/// What a component's signature says, checked against a set of trusted keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Signature {
    /// No signature section.
    Unsigned,
    /// Verified with a trusted key.
    Verified {
        /// The team that trusts the key.
        team: String,
        /// The key's name.
        key: String,
        /// Its key id.
        key_id: String,
    },
    /// Signed, but no trusted key verifies it.
    Unverified {
        /// Why, naming the key ids the signature carries.
        reason: String,
    },
}

impl Signature {
    /// Checks the signature of `bytes` against `keys`.
    pub fn check(bytes: &[u8], keys: &[TrustedKey]) -> Signature {
        let ids = match signer_ids(bytes) {
            Ok(None) => return Signature::Unsigned,
            Ok(Some(ids)) => ids,
            Err(e) => return Signature::Unverified { reason: format!("its signature section is unreadable: {e}") },
        };
        for trusted in keys {
            if trusted.key.verify(&mut &bytes[..], None).is_ok() {
                return Signature::Verified {
                    team: trusted.team.clone(),
                    key: trusted.name.clone(),
                    key_id: trusted.id(),
                };
            }
        }
        let named = if ids.is_empty() { "no key id".to_string() } else { format!("key id {}", ids.join(", ")) };
        let reason = match keys.iter().find(|k| ids.contains(&k.id())) {
            // The key is trusted but the hash does not match: the bytes changed after signing.
            Some(k) => format!(
                "it was signed with key {} of team {} ({named}), but its content no longer matches the signature: \
                 it was changed after signing",
                k.name, k.team
            ),
            None if keys.is_empty() => format!("signed with {named}; no trusted keys to check it against"),
            None => format!("signed with {named}, which no trusted key matches, or changed after signing"),
        };
        Signature::Unverified { reason }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::Unsigned => f.write_str("unsigned"),
            Signature::Verified { team, key, key_id } => {
                write!(f, "verified: signed by team {team}, key {key} ({key_id})")
            }
            Signature::Unverified { reason } => write!(f, "not verified: {reason}"),
        }
    }
}

/// The key ids in the signature section, or `None` when there is none.
fn signer_ids(bytes: &[u8]) -> Result<Option<Vec<String>>, WSError> {
    let mut reader = bytes;
    let mut sections = Module::iterate(Module::init_from_reader(&mut reader)?)?;
    let header = match sections.next() {
        Some(section) => section?,
        None => return Ok(None),
    };
    if !header.is_signature_header() {
        return Ok(None);
    }
    let wasmsign2::Section::Custom(custom) = header else { return Ok(None) };
    let data = custom.signature_data()?;
    let ids = data
        .signed_hashes_set
        .iter()
        .flat_map(|set| set.signatures.iter())
        .filter_map(|s| s.key_id.as_ref())
        .map(|id| key_id_hex(Some(id)))
        .collect();
    Ok(Some(ids))
}

/// Signs `bytes` with the secret key at `key` (PEM, OpenSSH or wasmsign2's raw form),
/// replacing any signature it had. Returns the signed bytes and the key id.
pub fn sign(bytes: &[u8], key: &Path) -> Result<(Vec<u8>, String)> {
    let data = std::fs::read(key).with_context(|| format!("reading secret key {}", key.display()))?;
    let secret = SecretKey::from_any(&data)
        .map_err(|e| anyhow!("{}: not an ed25519 secret key (PEM, OpenSSH or wasmsign2): {e}", key.display()))?;
    let public = PublicKey { pk: secret.sk.public_key(), key_id: None }.attach_default_key_id();
    let module = Module::deserialize(&mut &bytes[..]).map_err(|e| anyhow!("not a WebAssembly component: {e}"))?;
    let signed = secret.sign(module, public.key_id()).map_err(|e| anyhow!("signing: {e}"))?;
    let mut out = Vec::with_capacity(bytes.len() + 256);
    signed.serialize(&mut out).map_err(|e| anyhow!("writing the signed component: {e}"))?;
    Ok((out, key_id_hex(public.key_id())))
}

/// A new key pair, as PEM: (secret, public, key id).
pub fn keygen() -> (String, String, String) {
    let pair = wasmsign2::KeyPair::generate();
    let public = pair.pk.clone().attach_default_key_id();
    (pair.sk.to_pem(), pair.pk.to_pem(), key_id_hex(public.key_id()))
}

/// Fails unless `signature` was verified, saying why; `who` names whose keys were asked.
pub fn require(signature: &Signature, who: &str) -> Result<()> {
    match signature {
        Signature::Verified { .. } => Ok(()),
        Signature::Unsigned => bail!(
            "it is not signed, and {who} requires signatures; sign it with `weir plugin sign FILE --key KEY` \
             using a key {who} trusts"
        ),
        Signature::Unverified { reason } => bail!("its signature is refused ({who} requires signatures): {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the header alone.
    const EMPTY: &[u8] = &[0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00];

    fn keys(dir: &Path, team: &str, name: &str) -> (std::path::PathBuf, TrustedKey) {
        let (secret, public, _) = keygen();
        let (s, p) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")));
        std::fs::write(&s, secret).unwrap();
        std::fs::write(&p, public).unwrap();
        (s, TrustedKey::read(team, &p).unwrap())
    }

    #[test]
    fn sign_verify_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let (alice_secret, alice) = keys(dir.path(), "rides", "alice");
        let (mallory_secret, _) = keys(dir.path(), "other", "mallory");
        assert_eq!(Signature::check(EMPTY, std::slice::from_ref(&alice)), Signature::Unsigned);

        let (signed, id) = sign(EMPTY, &alice_secret).unwrap();
        assert_eq!(id, alice.id());
        let verdict = Signature::check(&signed, std::slice::from_ref(&alice));
        assert_eq!(verdict, Signature::Verified { team: "rides".into(), key: "alice".into(), key_id: id });

        // Re-signing replaces the signature rather than stacking a second one.
        let (resigned, _) = sign(&signed, &alice_secret).unwrap();
        assert_eq!(resigned, signed);

        let (forged, _) = sign(EMPTY, &mallory_secret).unwrap();
        let Signature::Unverified { reason } = Signature::check(&forged, std::slice::from_ref(&alice)) else {
            panic!("a stranger's signature verified")
        };
        assert!(reason.contains("which no trusted key matches"), "{reason}");

        // A custom section appended after signing changes the signed content.
        let mut tampered = signed.clone();
        tampered.extend_from_slice(&[0, 4, 1, b'x', 0, 0]);
        let Signature::Unverified { reason } = Signature::check(&tampered, &[alice]) else {
            panic!("a changed component verified")
        };
        assert!(reason.contains("changed after signing"), "{reason}");
        assert!(require(&Signature::Unsigned, "team rides").unwrap_err().to_string().contains("not signed"));
    }
}
