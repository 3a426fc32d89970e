//! The one macro that `weir-sdk` cannot write with `macro_rules!`: it expands to
//! `wit_bindgen::generate!` with weir's WIT package inlined, so a plugin author never
//! runs `wit-bindgen` and never copies the WIT files.
//!
//! Use it through `weir_sdk::export!`, never directly.

use proc_macro::TokenStream;

/// The WIT package's files. They are inlined rather than referred to by an absolute
/// path: a path baked in at compile time goes stale when the checkout moves but the
/// compiled macro is reused (a shared target directory), while `include_str!` makes
/// cargo rebuild this crate whenever the WIT changes.
const TYPES_WIT: &str = include_str!("../../../wit/types.wit");
const PLUGINS_WIT: &str = include_str!("../../../wit/plugins.wit");
const IMPORTS_WIT: &str = include_str!("../../../wit/imports.wit");

/// The package as one WIT document: every file declares the same package, so the
/// later files' declarations are dropped.
fn wit_package() -> String {
    let rest =
        |wit: &'static str| wit.lines().filter(|line| !line.starts_with("package ")).collect::<Vec<_>>().join("\n");
    format!("{TYPES_WIT}\n{}\n{}", rest(PLUGINS_WIT), rest(IMPORTS_WIT))
}

/// `wit_world!(parser)` expands to the guest bindings of the `parser-plugin` world.
#[proc_macro]
pub fn wit_world(input: TokenStream) -> TokenStream {
    let kind = input.to_string();
    let world = match kind.trim() {
        "parser" => "parser-plugin",
        "validator" => "validator-plugin",
        "aggregator" => "aggregator-plugin",
        "transform" => "transform-plugin",
        other => {
            let msg = format!("unknown plugin kind `{other}`; expected parser, validator, aggregator or transform");
            return format!("compile_error!({msg:?});").parse().expect("a valid token stream");
        }
    };
    let package = wit_package();
    format!(
        r#"::weir_sdk::__private::wit_bindgen::generate!({{
            inline: {package:?},
            world: "weir:plugin/{world}",
            runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
        }});"#
    )
    .parse()
    .expect("a valid token stream")
}

#[cfg(test)]
mod tests {
    /// A WIT file added to the package must be inlined above as well.
    #[test]
    fn every_wit_file_is_inlined() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("the wit directory")
            .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".wit"))
            .collect();
        files.sort();
        assert_eq!(files, ["imports.wit", "plugins.wit", "types.wit"]);
        assert_eq!(super::wit_package().matches("package ").count(), 1);
    }
}
