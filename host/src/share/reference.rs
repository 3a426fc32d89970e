//! `oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]`: how pipelines and commands name a
//! plugin in a registry.

use std::fmt;

use anyhow::{bail, Result};

/// The scheme that marks a plugin reference as an OCI one.
pub const SCHEME: &str = "oci://";

/// A parsed plugin reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciRef {
    /// `HOST[:PORT]`.
    pub registry: String,
    /// `team/name`, without tag or digest.
    pub repository: String,
    /// The tag, if named.
    pub tag: Option<String>,
    /// `sha256:<hex>` of the manifest, if pinned.
    pub digest: Option<String>,
}

impl OciRef {
    /// Whether `text` names an OCI reference rather than a file.
    pub fn is_reference(text: &str) -> bool {
        text.starts_with(SCHEME)
    }

    /// Parses `oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]`; errors quote the input.
    pub fn parse(text: &str) -> Result<Self> {
        let Some(rest) = text.strip_prefix(SCHEME) else {
            bail!(
                "{text:?} is not an OCI reference: write oci://HOST[:PORT]/REPO:TAG or oci://HOST[:PORT]/REPO@sha256:…"
            )
        };
        let (rest, digest) = match rest.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (rest, None),
        };
        let Some((registry, path)) = rest.split_once('/') else {
            bail!("{text:?}: no repository after the registry (oci://HOST[:PORT]/REPO…)")
        };
        // A colon after the last slash starts the tag; one before it is the registry's port.
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        if registry.is_empty() || repository.is_empty() {
            bail!("{text:?}: the registry and the repository must both be named");
        }
        let repo_ok = repository.split('/').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        });
        if !repo_ok {
            bail!("{text:?}: repository {repository:?} may hold only lowercase letters, digits, '.', '_', '-' and '/'");
        }
        if let Some(tag) = tag {
            let tag_ok = !tag.is_empty()
                && tag.len() <= 128
                && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !tag_ok {
                bail!("{text:?}: tag {tag:?} may hold only letters, digits, '.', '_' and '-' (at most 128)");
            }
        }
        if let Some(digest) = digest {
            check_digest(digest).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
        }
        Ok(OciRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(String::from),
            digest: digest.map(String::from),
        })
    }

    /// The plugin's name: the repository's last part.
    pub fn name(&self) -> &str {
        self.repository.rsplit('/').next().unwrap_or(&self.repository)
    }

    /// The same reference pinned to `digest`, keeping its tag for the reader.
    pub fn pinned(&self, digest: &str) -> OciRef {
        OciRef { digest: Some(digest.to_string()), ..self.clone() }
    }

    /// The reference as the OCI client takes it: by digest when pinned.
    pub fn client_ref(&self) -> oci_client::Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => {
                oci_client::Reference::with_digest(self.registry.clone(), self.repository.clone(), digest.clone())
            }
            (None, tag) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }

    /// Whether the registry is on this machine, where plain HTTP is the norm.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => &self.registry,
        };
        host == "localhost" || host == "[::1]" || host.starts_with("127.")
    }
}

impl fmt::Display for OciRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Checks `sha256:` followed by 64 lowercase hex digits.
pub fn check_digest(digest: &str) -> Result<()> {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) => Ok(()),
        _ => bail!("digest {digest:?} is not sha256: followed by 64 lowercase hex digits"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_tags_digests_and_ports() {
        let r = OciRef::parse("oci://127.0.0.1:5000/rides/json-parser:v2").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "rides/json-parser"));
        assert_eq!((r.tag.as_deref(), r.digest.as_deref(), r.name()), (Some("v2"), None, "json-parser"));
        assert!(r.is_loopback());

        let pinned = format!("oci://registry.example/rides/json-parser:v2@{DIGEST}");
        let r = OciRef::parse(&pinned).unwrap();
        assert_eq!((r.tag.as_deref(), r.digest.as_deref()), (Some("v2"), Some(DIGEST)));
        assert_eq!(r.to_string(), pinned);
        assert!(!r.is_loopback());

        let r = OciRef::parse(&format!("oci://localhost:5000/parser@{DIGEST}")).unwrap();
        assert_eq!((r.tag, r.repository.as_str()), (None, "parser"));
    }

    #[test]
    fn errors_quote_the_input() {
        for (bad, says) in [
            ("http://x/y", "not an OCI reference"),
            ("oci://registry", "no repository"),
            ("oci://r/Rides/Parser:v1", "lowercase"),
            ("oci://r/rides/parser@sha256:abc", "64 lowercase hex"),
            ("oci://r/rides/parser:v 1", "tag"),
        ] {
            let err = OciRef::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says) && err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
