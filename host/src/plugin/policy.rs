//! Which imports a plugin may have. Everything a plugin can reach goes through an
//! import, so refusing unknown imports at load is the sandbox's first wall; the empty
//! WASI context behind the granted ones is the second.

/// Imports every plugin may have. A std guest imports the WASI cli, io, clocks and
/// random interfaces even when it does no I/O, and one built by `cargo component` (the
/// preview-1 adapter) imports the filesystem interfaces as well. The host backs them
/// all with an empty context: no preopened directories, no environment, no arguments,
/// an empty stdin. Sockets and HTTP are not in the baseline: they need a grant.
const BASELINE: &[&str] = &[
    "weir:plugin/host",
    "weir:plugin/types",
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

/// Capabilities granted to a plugin beyond the baseline, as import patterns:
/// `wasi:filesystem/*`, `wasi:sockets/tcp`, ...
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// The granted patterns. `*` after a `/` matches any interface of the package.
    pub allow: Vec<String>,
}

impl Grants {
    /// Grants nothing beyond the baseline.
    pub fn none() -> Self {
        Grants::default()
    }

    /// The imports in `imports` that neither the baseline nor these grants allow.
    pub fn refused<'a>(&self, imports: &'a [String]) -> Vec<&'a str> {
        imports
            .iter()
            .map(String::as_str)
            .filter(|import| {
                let name = import.split('@').next().unwrap_or(import);
                !BASELINE.iter().copied().chain(self.allow.iter().map(String::as_str)).any(|p| matches(p, name))
            })
            .collect()
    }
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
            Grants::none().refused(&imports),
            vec!["wasi:sockets/tcp@0.2.6", "wasi:http/outgoing-handler@0.2.6"]
        );
        let grants = Grants { allow: vec!["wasi:sockets/*".into()] };
        assert_eq!(grants.refused(&imports), vec!["wasi:http/outgoing-handler@0.2.6"]);
    }
}
