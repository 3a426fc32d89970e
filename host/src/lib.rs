//! # weir
//!
//! A streaming ETL host whose parsing, validation and aggregation run as sandboxed
//! WebAssembly components. This library is what the `weir` binary and the end-to-end
//! tests drive.
//!
//! ```no_run
//! use weir::plugin::{Policy, Limits, Plugin, PluginKind, PluginRuntime, ParserStage, RuntimeOptions};
//! # fn main() -> anyhow::Result<()> {
//! let runtime = PluginRuntime::new(RuntimeOptions::default())?;
//! let component = runtime.load("json_parser.wasm".as_ref(), &Policy::none())?;
//! let config = r#"{"event_time":"t","fields":[{"name":"t","type":"timestamp"}]}"#;
//! let mut parser = Plugin::new(component, PluginKind::Parser, config, Limits::default())?;
//! let parsed = parser.parse(&weir_sdk::RawBatch::from_payloads([r#"{"t":"2024-05-01T00:00:00Z"}"#]));
//! assert_eq!(parsed.output.events.len, 1);
//! # Ok(()) }
//! ```

pub mod admin;
pub mod bench;
pub mod cli;
pub mod config;
pub mod lookup;
pub mod pipeline;
pub mod plugin;
pub mod rides;
pub mod schemas;
pub mod share;
pub mod sink;
pub mod source;
pub mod window;
