//! The host's one `bindgen!`. Kept private: the rest of the host speaks `weir_sdk`
//! types, converted in `convert.rs`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host-bindings",
});

pub use self::weir::plugin::{host, types};
pub use exports::weir::plugin::{aggregator, parser, transform, validator};
