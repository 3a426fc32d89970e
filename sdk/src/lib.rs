//! # weir-sdk
//!
//! Write weir plugins in plain Rust. A plugin implements one of four traits —
//! [`Parser`], [`Validator`], [`Aggregator`] or [`Transform`] — and names its type in
//! [`export!`]. `cargo build --target wasm32-wasip2` (or `cargo component build`) then
//! produces a WebAssembly component that the weir host loads; natively the same code is
//! an ordinary library, so `cargo test` exercises the logic without any WASM.
//!
//! ```
//! use weir_sdk::{ColumnDef, ColumnType, Config, EventBatch, Severity, Validator, Violation};
//!
//! /// Rejects trips with a negative fare.
//! struct NonNegativeFare;
//!
//! impl Validator for NonNegativeFare {
//!     fn init(_config: Config) -> Result<(Self, Vec<ColumnDef>), String> {
//!         Ok((NonNegativeFare, vec![ColumnDef::new("fare", ColumnType::Float64)]))
//!     }
//!
//!     fn validate(&self, events: &EventBatch, out: &mut Vec<Violation>) {
//!         for row in 0..events.len() {
//!             let fare = events.columns[0].values.f64(row).unwrap_or(0.0);
//!             if fare < 0.0 {
//!                 let message = format!("fare {fare} is negative");
//!                 out.push(Violation { row: row as u32, rule: "fare".into(), severity: Severity::Reject, message });
//!             }
//!         }
//!     }
//! }
//!
//! weir_sdk::export!(validator: NonNegativeFare);
//!
//! // Natively, the plugin is plain Rust:
//! let (rules, _) = NonNegativeFare::init(Config::default()).unwrap();
//! let events = EventBatch { len: 2, columns: vec![weir_sdk::Column::new(weir_sdk::ColumnValues::Float64(vec![3.0, -1.0]))] };
//! assert_eq!(weir_sdk::validate_all(&rules, &events)[0].row, 1);
//! ```

pub mod batch;
pub mod builder;
pub mod config;
mod export;
pub mod log;
pub mod plugin;
pub mod resources;
pub mod time;

pub use batch::{
    Column, ColumnDef, ColumnType, ColumnValues, EventBatch, PackedBytes, RawBatch, RecordError, Severity, Violation,
};
pub use builder::{BatchBuilder, Value};
pub use config::Config;
pub use plugin::{
    emit_encoded, fold_encoded, merge_encoded, migrate_encoded, validate_all, Aggregator, AggregatorInfo, ParseOutput,
    Parser, ParserInfo, Transform, TransformInfo, TransformOutput, Validator,
};
pub use resources::{Schema, SchemaFormat};

/// The version of the WIT contract this SDK implements (`weir:plugin@0.2.0`).
pub const CONTRACT_VERSION: &str = "0.2.0";

#[doc(hidden)]
pub mod __private {
    pub use weir_sdk_macros::wit_world;
    #[cfg(target_arch = "wasm32")]
    pub use wit_bindgen;

    use std::cell::RefCell;

    /// The configured plugin of this instance.
    pub struct Slot<T>(RefCell<Option<T>>);

    // SAFETY: a component instance runs on one thread; the slot is never shared across threads.
    unsafe impl<T> Sync for Slot<T> {}

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Slot::new()
        }
    }

    impl<T> Slot<T> {
        /// An empty slot.
        pub const fn new() -> Self {
            Slot(RefCell::new(None))
        }

        /// Stores the configured plugin.
        pub fn set(&self, value: T) {
            *self.0.borrow_mut() = Some(value);
        }

        /// Runs `f` on the configured plugin.
        pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            let slot = self.0.borrow();
            f(slot.as_ref().expect("weir called the plugin before init"))
        }
    }
}
