//! The one macro that `weir-sdk` cannot write with `macro_rules!`: it expands to
//! `wit_bindgen::generate!` with the absolute path of weir's WIT package baked in, so a
//! plugin author never runs `wit-bindgen` and never copies the WIT files.
//!
//! Use it through `weir_sdk::export!`, never directly.

use proc_macro::TokenStream;

/// The WIT package, resolved when this crate is compiled.
const WIT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../wit");

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
    format!(
        r#"::weir_sdk::__private::wit_bindgen::generate!({{
            path: {WIT_PATH:?},
            world: "weir:plugin/{world}",
            runtime_path: "::weir_sdk::__private::wit_bindgen::rt",
        }});"#
    )
    .parse()
    .expect("a valid token stream")
}
