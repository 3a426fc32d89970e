//! Which imports a plugin may have. Everything a plugin can reach goes through an
//! import, so refusing unknown imports at load is the sandbox's first wall; the empty
//! WASI context behind the granted ones is the second. A signature requirement rides
//! along, so that every load answers one question: may this plugin run here?

use std::sync::Arc;

use anyhow::{bail, Result};

use super::signature::{Signature, TrustedKey};

/// Imports every plugin may have. A std guest imports the WASI cli, io, clocks and
/// random interfaces even when it does no I/O, and one built by `cargo component` (the
/// preview-1 adapter) imports the filesystem interfaces as well. The host backs them
/// all with an empty context: no preopened directories, no environment, no arguments,
/// an empty stdin. Sockets and HTTP are not in the baseline: they need a grant.
const BASELINE: &[&str] = &[
    "weir:plugin/host",
    "weir:plugin/types",
    "weir:plugin/schemas",
    "weir:plugin/lookups",
    "wasi:io/*",
    "wasi:clocks/*",
    "wasi:random/*",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
];

/// What the host demands of a plugin before it runs it: which imports it may have, and
/// whose signature it must carry. Checked on every load: at start, deploy and shadow.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Import patterns granted beyond the baseline: `wasi:filesystem/*`,
    /// `wasi:sockets/tcp`, ... `*` after a `/` matches any interface of the package.
    pub grants: Vec<String>,
    /// Allow-lists a team or a pipeline sets: every import must match each of them.
    pub allow_lists: Vec<AllowList>,
    /// The keys signatures are checked against.
    pub keys: Arc<Vec<TrustedKey>>,
    /// Who requires a verified signature, if anyone: `team rides`.
    pub signatures_required_by: Option<String>,
}

/// An allow-list of imports, and whose it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowList {
    /// `team rides` or `pipeline rides`.
    pub owner: String,
    /// Import patterns, as for grants.
    pub patterns: Vec<String>,
}

impl Policy {
    /// The baseline alone: no grants, no allow-lists, no signatures required.
    pub fn none() -> Self {
        Policy::default()
    }

    /// The baseline and `grants`.
    pub fn granting(grants: Vec<String>) -> Self {
        Policy { grants, ..Policy::default() }
    }

    /// The imports in `imports` that neither the baseline nor the grants allow.
    pub fn refused<'a>(&self, imports: &'a [String]) -> Vec<&'a str> {
        let allowed = BASELINE.iter().copied().chain(self.grants.iter().map(String::as_str));
        imports.iter().map(String::as_str).filter(|i| !any_matches(allowed.clone(), i)).collect()
    }

    /// Fails if a signature is required and `signature` is not a verified one.
    pub fn check_signature(&self, signature: &Signature) -> Result<()> {
        match &self.signatures_required_by {
            Some(who) => super::signature::require(signature, who),
            None => Ok(()),
        }
    }

    /// Checks `imports` against the grants and every allow-list; the error lists every
    /// offending import.
    pub fn admit(&self, imports: &[String]) -> Result<()> {
        let mut problems = Vec::new();
        let refused = self.refused(imports);
        if !refused.is_empty() {
            problems.push(format!(
                "imports capabilities it was not granted: {} (grant them in the pipeline's plugin config)",
                refused.join(", ")
            ));
        }
        for list in &self.allow_lists {
            let outside: Vec<&str> = imports
                .iter()
                .map(String::as_str)
                .filter(|i| !any_matches(list.patterns.iter().map(String::as_str), i))
                .collect();
            if !outside.is_empty() {
                problems.push(format!(
                    "imports what the allow_imports of {} does not list: {} (it lists: {})",
                    list.owner,
                    outside.join(", "),
                    list.patterns.join(", ")
                ));
            }
        }
        match problems.as_slice() {
            [] => Ok(()),
            _ => bail!("{}", problems.join("; and ")),
        }
    }
}

fn any_matches<'p>(mut patterns: impl Iterator<Item = &'p str>, import: &str) -> bool {
    let name = import.split('@').next().unwrap_or(import);
    patterns.any(|p| matches(p, name))
}

fn matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.split('@').next().unwrap_or(pattern);
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_and_grants() {
        let imports: Vec<String> = [
            "wasi:io/streams@0.2.6",
            "weir:plugin/host@0.1.0",
            "wasi:sockets/tcp@0.2.6",
            "wasi:http/outgoing-handler@0.2.6",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            Policy::none().refused(&imports),
            vec!["wasi:sockets/tcp@0.2.6", "wasi:http/outgoing-handler@0.2.6"]
        );
        let policy = Policy::granting(vec!["wasi:sockets/*".into()]);
        assert_eq!(policy.refused(&imports), vec!["wasi:http/outgoing-handler@0.2.6"]);
        let err = policy.admit(&imports).unwrap_err().to_string();
        assert!(err.contains("not granted: wasi:http/outgoing-handler@0.2.6"), "{err}");

        let strict = Policy {
            allow_lists: vec![AllowList { owner: "team rides".into(), patterns: vec!["weir:plugin/*".into()] }],
            signatures_required_by: Some("team rides".into()),
            ..Policy::granting(vec!["*".into()])
        };
        let err = strict.admit(&imports).unwrap_err().to_string();
        assert!(
            err.contains("team rides does not list: wasi:io/streams@0.2.6, wasi:sockets/tcp@0.2.6, wasi:http/outgoing-handler@0.2.6"),
            "{err}"
        );
        assert!(!err.contains("not granted"), "{err}");
        let err = strict.check_signature(&Signature::Unsigned).unwrap_err().to_string();
        assert!(err.contains("not signed"), "{err}");
        assert!(policy.check_signature(&Signature::Unsigned).is_ok(), "no requirement, no refusal");
    }
}
