//! The host's one `bindgen!` (of the current contract, `weir:plugin@0.2.0`), and the one
//! import a 0.1.0 component has that the current contract names differently. Kept
//! private: the rest of the host speaks `weir_sdk` types, converted in `convert.rs`.

use anyhow::Result;
use wasmtime::component::Linker;

use super::state::PluginState;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host-bindings",
});

pub use self::weir::plugin::{host, lookups, schemas, types};
pub use exports::weir::plugin::{aggregator, parser, transform, validator};

/// Links `weir:plugin/host@0.1.0`: the same `log` as 0.2.0's, under the old package's
/// name (its `log-level` enum has the same cases, which is what wasmtime checks). Its
/// `types` interface holds only types, so it needs an (empty) instance and nothing more.
pub fn add_contract_0_1(linker: &mut Linker<PluginState>) -> Result<()> {
    linker.instance("weir:plugin/types@0.1.0")?;
    linker.instance("weir:plugin/host@0.1.0")?.func_wrap(
        "log",
        |mut store: wasmtime::StoreContextMut<'_, PluginState>, (level, message): (host::LogLevel, String)| {
            host::Host::log(store.data_mut(), level, message);
            Ok(())
        },
    )?;
    Ok(())
}
