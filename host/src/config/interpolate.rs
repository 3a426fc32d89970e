//! `${VAR}` and `${VAR:-default}` in the pipeline file, from the environment. `$$`
//! writes a literal `$`. An unset variable without a default is an error that names
//! the variable and the line, except on a comment line, which is left as it is.

/// Replaces the references in `text`, reading variables through `lookup`.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let line = text[..text.len() - rest.len() + at].matches('\n').count() + 1;
        let end =
            body.find('}').ok_or_else(|| format!("line {line}: unclosed ${{ in {:?}", first_line(&rest[at..])))?;
        let (name, default) = match body[..end].split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (&body[..end], None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {line}: {:?} is not a variable name", name));
        }
        // An empty variable takes the default, as in the shell's `${VAR:-default}`.
        let value = lookup(name).filter(|v| !v.is_empty() || default.is_none());
        match (value, default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            // A commented-out line may name a variable this deployment does not set.
            (None, None) if in_comment(text, text.len() - rest.len() + at) => {
                out.push_str(&rest[at..at + 2 + end + 1]);
            }
            (None, None) => {
                return Err(format!(
                    "line {line}: environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"
                ))
            }
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether byte `at` of `text` is on a line that starts with `#`.
fn in_comment(text: &str, at: usize) -> bool {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    text[start..at].trim_start().starts_with('#')
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "BROKERS" => Some("localhost:9092".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn an_unset_variable_on_a_comment_line_is_left_alone() {
        let text = "# url = \"${NOPE}\"\n  # also ${NOPE:-x} and ${BROKERS}\nname = \"x\"\n";
        assert_eq!(
            interpolate(text, env).unwrap(),
            "# url = \"${NOPE}\"\n  # also x and localhost:9092\nname = \"x\"\n"
        );
        let err = interpolate("name = \"x\" # ${NOPE}\n", env).unwrap_err();
        assert!(err.contains("NOPE"), "only whole comment lines: {err}");
    }

    #[test]
    fn references_defaults_and_escapes() {
        let text =
            "brokers = \"${BROKERS}\"\ntopic = \"${TOPIC:-trips}\"\nempty = \"${EMPTY:-fallback}\"\ncost = \"$$5 $x\"";
        let out = interpolate(text, env).unwrap();
        assert_eq!(out, "brokers = \"localhost:9092\"\ntopic = \"trips\"\nempty = \"fallback\"\ncost = \"$5 $x\"");
    }

    #[test]
    fn unset_variable_names_itself_and_the_line() {
        let err = interpolate("a = 1\nurl = \"${DATABASE_URL}\"", env).unwrap_err();
        assert!(err.contains("line 2") && err.contains("DATABASE_URL"), "{err}");
        assert!(interpolate("x = \"${OOPS\"", env).unwrap_err().contains("unclosed"));
    }
}
