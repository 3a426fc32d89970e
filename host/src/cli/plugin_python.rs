//! Plugins written in Python: a project is a directory with a `pyproject.toml` whose
//! `[tool.weir]` names the kind; `weir plugin build` turns it into a component with
//! componentize-py against weir's WIT and the Python SDK, both carried inside this binary,
//! so that a `weir` on its own (and componentize-py from PyPI) builds plugins offline.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::plugin::PluginKind;

/// The componentize-py release weir is built and tested with.
pub const COMPONENTIZE_PY: &str = "0.25.0";

/// The contract, as the guests see it.
pub const WIT: [(&str, &str); 3] = [
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("imports.wit", include_str!("../../../wit/imports.wit")),
    ("plugins.wit", include_str!("../../../wit/plugins.wit")),
];

/// The Python SDK (`sdk/python/weir_sdk`).
const SDK: [(&str, &str); 5] = [
    ("__init__.py", include_str!("../../../sdk/python/weir_sdk/__init__.py")),
    ("_types.py", include_str!("../../../sdk/python/weir_sdk/_types.py")),
    ("_config.py", include_str!("../../../sdk/python/weir_sdk/_config.py")),
    ("_kinds.py", include_str!("../../../sdk/python/weir_sdk/_kinds.py")),
    ("_exports.py", include_str!("../../../sdk/python/weir_sdk/_exports.py")),
];

/// A Python plugin project.
pub struct Project {
    pub dir: PathBuf,
    /// The project's name; the component is `build/<name with _ for ->.wasm`.
    pub name: String,
    pub kind: PluginKind,
    /// The module that defines the plugin's class.
    pub module: String,
}

#[derive(Deserialize)]
struct PyProject {
    project: Option<ProjectTable>,
    tool: Option<Tool>,
}

#[derive(Deserialize)]
struct ProjectTable {
    name: String,
}

#[derive(Deserialize)]
struct Tool {
    weir: Option<WeirTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeirTable {
    kind: String,
    module: Option<String>,
}

/// The Python project at `dir`, if it is one (it has a `pyproject.toml`).
pub fn project(dir: &Path) -> Result<Option<Project>> {
    let file = dir.join("pyproject.toml");
    let Ok(text) = std::fs::read_to_string(&file) else { return Ok(None) };
    let parsed: PyProject = toml::from_str(&text).with_context(|| format!("reading {}", file.display()))?;
    let Some(weir) = parsed.tool.and_then(|t| t.weir) else {
        bail!("{}: add [tool.weir] with kind = \"validator\" (or parser, transform, aggregator)", file.display())
    };
    let kind = match weir.kind.as_str() {
        "parser" => PluginKind::Parser,
        "validator" => PluginKind::Validator,
        "transform" => PluginKind::Transform,
        "aggregator" => PluginKind::Aggregator,
        other => {
            bail!("{}: tool.weir.kind {other:?} is not parser, validator, transform or aggregator", file.display())
        }
    };
    let Some(name) = parsed.project.map(|p| p.name) else { bail!("{}: [project] name is missing", file.display()) };
    let module = weir.module.unwrap_or_else(|| name.replace('-', "_"));
    if !dir.join(format!("{module}.py")).exists() && !dir.join(&module).join("__init__.py").exists() {
        bail!("{}: tool.weir.module {module:?}: there is no {module}.py beside it", file.display());
    }
    // Absolute, so that build errors name the project's files by a path that opens.
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    Ok(Some(Project { dir, name, kind, module }))
}

/// The templates of `weir plugin new --lang python`: the plugin and its unit test.
const TEMPLATES: [(&str, &str, &str); 4] = [
    (
        "parser",
        include_str!("../../../sdk/python/templates/parser.py"),
        include_str!("../../../sdk/python/templates/parser_test.py"),
    ),
    (
        "validator",
        include_str!("../../../sdk/python/templates/validator.py"),
        include_str!("../../../sdk/python/templates/validator_test.py"),
    ),
    (
        "transform",
        include_str!("../../../sdk/python/templates/transform.py"),
        include_str!("../../../sdk/python/templates/transform_test.py"),
    ),
    (
        "aggregator",
        include_str!("../../../sdk/python/templates/aggregator.py"),
        include_str!("../../../sdk/python/templates/aggregator_test.py"),
    ),
];

const README: &str = r#"# {name}

A weir {kind} plugin in Python.

```sh
PYTHONPATH=path/to/weir/sdk/python python3 -m unittest   # the logic, in CPython
weir plugin build                                        # the component, with componentize-py
weir plugin test build/{stem}.wasm --input sample.jsonl
```

`weir plugin build` needs componentize-py ({version}): `pip install componentize-py=={version}`.
"#;

/// Makes a Python project of `kind` named `name` in `dir`, with the class `ty`.
pub fn create(dir: &Path, name: &str, kind: &str, ty: &str, sample: &str) -> Result<()> {
    let stem = name.replace('-', "_");
    let (_, source, test) = TEMPLATES.iter().find(|(k, _, _)| *k == kind).context("no template for the kind")?;
    let fill = |t: &str| t.replace("{Type}", ty).replace("{stem}", &stem);
    let pyproject = format!(
        "[project]\nname = \"{name}\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\n\n[tool.weir]\nkind = \"{kind}\"\n"
    );
    let readme = README.replace("{name}", name).replace("{kind}", kind).replace("{stem}", &stem);
    let files = [
        ("pyproject.toml".to_string(), pyproject),
        (format!("{stem}.py"), fill(source)),
        (format!("test_{stem}.py"), fill(test)),
        ("sample.jsonl".to_string(), sample.to_string()),
        (".gitignore".to_string(), "/build\n__pycache__/\n".to_string()),
        ("README.md".to_string(), readme.replace("{version}", COMPONENTIZE_PY)),
    ];
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, text) in files {
        let path = dir.join(&file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("created {kind} plugin {name} (Python) in {}", dir.display());
    println!(
        "next:\n  cd {}\n  weir plugin build\n  weir plugin test build/{stem}.wasm --input sample.jsonl",
        dir.display()
    );
    Ok(())
}

/// Writes the WIT and the SDK into `dir`, as componentize-py reads them.
fn write_toolkit(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let wit = dir.join("wit");
    let sdk = dir.join("sdk");
    std::fs::create_dir_all(&wit)?;
    std::fs::create_dir_all(sdk.join("weir_sdk"))?;
    for (file, text) in WIT {
        std::fs::write(wit.join(file), text)?;
    }
    for (file, text) in SDK {
        std::fs::write(sdk.join("weir_sdk").join(file), text)?;
    }
    Ok((wit, sdk))
}

/// Builds the project into `build/<name>.wasm` and returns its path.
pub fn build(project: &Project) -> Result<PathBuf> {
    let version = Command::new("componentize-py").arg("--version").output();
    match version {
        Err(_) => {
            bail!("componentize-py is not installed; install it with: pip install componentize-py=={COMPONENTIZE_PY}")
        }
        Ok(out) if !String::from_utf8_lossy(&out.stdout).contains(COMPONENTIZE_PY) => eprintln!(
            "warning: {} found; weir is tested with componentize-py {COMPONENTIZE_PY}",
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Ok(_) => {}
    }
    let kind = project.kind.name();
    let tmp = tempfile::tempdir().context("a directory for the build")?;
    let (wit, sdk) = write_toolkit(tmp.path())?;
    let entry = tmp.path().join("entry");
    std::fs::create_dir_all(&entry)?;
    let class = kind[..1].to_uppercase() + &kind[1..];
    let text = format!(
        "import {module}\nfrom weir_sdk import _kinds\nfrom weir_sdk._exports import export\n\n\
         _kinds.registered({kind:?})\n{class} = export({kind:?})\n",
        module = project.module
    );
    std::fs::write(entry.join("weir_entry.py"), text)?;
    let out_dir = project.dir.join("build");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join(format!("{}.wasm", project.name.replace('-', "_")));
    eprintln!("building {} ({kind}) with componentize-py", project.dir.display());
    // The project is `-p` number 0: componentize-py names its files /0/….
    let result = Command::new("componentize-py")
        .arg("-d")
        .arg(&wit)
        // No WASI at all (each import a trapping stub): a plugin computes, and its print()
        // and exceptions reach weir's log through the SDK. Without it Python's runtime
        // imports wasi:sockets, which weir grants no plugin unasked.
        .args(["-w", &format!("{kind}-plugin"), "componentize", "--stub-wasi", "-p"])
        .arg(&project.dir)
        .arg("-p")
        .arg(&sdk)
        .arg("-p")
        .arg(&entry)
        .args(["weir_entry", "-o"])
        .arg(&out)
        .stdout(Stdio::null())
        .output()
        .context("running componentize-py")?;
    if !result.status.success() {
        let shown = tool_error(&String::from_utf8_lossy(&result.stderr), &project.dir);
        bail!("componentize-py could not build {}:\n{shown}", project.dir.display());
    }
    Ok(out)
}

/// componentize-py's error without its Rust backtrace and wrapper frames, with the
/// project's files named by their paths.
fn tool_error(stderr: &str, project: &Path) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines.iter().position(|l| l.starts_with("AssertionError:")).unwrap_or(0);
    let end = lines.iter().position(|l| l.starts_with("Stack backtrace:")).unwrap_or(lines.len());
    let shown = lines[start..end.max(start)].join("\n");
    let shown = shown.trim_start_matches("AssertionError:").trim();
    shown.replace("\"/0/", &format!("\"{}/", project.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_is_shown_with_the_projects_file_and_line() {
        let stderr = "Traceback (most recent call last):\n  File \"/usr/bin/componentize-py\", line 8, in <module>\n\
                      AssertionError:   File \"/0/fares.py\", line 2\n    def broken(:\n               ^\n\
                      SyntaxError: invalid syntax\n\n\nCaused by:\n    SyntaxError: invalid syntax (fares.py, line 2)\n\n\
                      Stack backtrace:\n   0: anyhow::error\n";
        let shown = tool_error(stderr, Path::new("/home/me/fares"));
        assert!(shown.starts_with("File \"/home/me/fares/fares.py\", line 2"), "{shown}");
        assert!(shown.contains("SyntaxError: invalid syntax") && !shown.contains("anyhow"), "{shown}");
    }
}
