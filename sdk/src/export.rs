//! `export!`: turns a type that implements one plugin trait into a component's exports.
//!
//! Everything here is tied to the ABI, so it expands only on `wasm32`; natively the
//! plugin is an ordinary library that unit tests call directly. The glue converts
//! between the types `wit-bindgen` generates in the plugin's crate and this crate's
//! types by moving their vectors, so no value is copied twice.

/// Exports a plugin type as a component of the given kind.
///
/// ```ignore
/// weir_sdk::export!(parser: MyParser);
/// weir_sdk::export!(validator: MyRules);
/// weir_sdk::export!(aggregator: MyStats);
/// weir_sdk::export!(transform: MyProjection);
/// ```
#[macro_export]
macro_rules! export {
    (parser: $ty:ty) => {
        $crate::__export_kind!(parser, $ty, __glue_parser);
    };
    (validator: $ty:ty) => {
        $crate::__export_kind!(validator, $ty, __glue_validator);
    };
    (aggregator: $ty:ty) => {
        $crate::__export_kind!(aggregator, $ty, __glue_aggregator);
    };
    (transform: $ty:ty) => {
        $crate::__export_kind!(transform, $ty, __glue_transform);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_kind {
    ($kind:ident, $ty:ty, $glue:ident) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(dead_code, unused_imports, clippy::all)]
        mod __weir_export {
            use super::*;
            $crate::__private::wit_world!($kind);
            $crate::__glue_common!();
            $crate::$glue!($ty);
            export!(Component);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __glue_common {
    () => {
        use weir::plugin::types as wit;

        fn ty_out(ty: $crate::ColumnType) -> wit::ColumnType {
            match ty {
                $crate::ColumnType::Int64 => wit::ColumnType::Int64,
                $crate::ColumnType::Float64 => wit::ColumnType::Float64,
                $crate::ColumnType::Boolean => wit::ColumnType::Boolean,
                $crate::ColumnType::Text => wit::ColumnType::Text,
                $crate::ColumnType::TimestampMs => wit::ColumnType::TimestampMs,
            }
        }

        fn defs_out(defs: Vec<$crate::ColumnDef>) -> Vec<wit::ColumnDef> {
            defs.into_iter().map(|d| wit::ColumnDef { name: d.name, ty: ty_out(d.ty), nullable: d.nullable }).collect()
        }

        fn packed_in(p: wit::PackedBytes) -> $crate::PackedBytes {
            $crate::PackedBytes { bytes: p.bytes, ends: p.ends }
        }

        fn packed_out(p: $crate::PackedBytes) -> wit::PackedBytes {
            wit::PackedBytes { bytes: p.bytes, ends: p.ends }
        }

        fn batch_in(b: wit::EventBatch) -> $crate::EventBatch {
            let columns = b.columns.into_iter().map(|c| {
                let values = match c.values {
                    wit::ColumnValues::Int64(v) => $crate::ColumnValues::Int64(v),
                    wit::ColumnValues::Float64(v) => $crate::ColumnValues::Float64(v),
                    wit::ColumnValues::Boolean(v) => $crate::ColumnValues::Boolean(v),
                    wit::ColumnValues::Text(v) => $crate::ColumnValues::Text(packed_in(v)),
                    wit::ColumnValues::TimestampMs(v) => $crate::ColumnValues::TimestampMs(v),
                };
                $crate::Column { values, valid: c.valid }
            });
            $crate::EventBatch { len: b.len, columns: columns.collect() }
        }

        fn batch_out(b: $crate::EventBatch) -> wit::EventBatch {
            let columns = b.columns.into_iter().map(|c| {
                let values = match c.values {
                    $crate::ColumnValues::Int64(v) => wit::ColumnValues::Int64(v),
                    $crate::ColumnValues::Float64(v) => wit::ColumnValues::Float64(v),
                    $crate::ColumnValues::Boolean(v) => wit::ColumnValues::Boolean(v),
                    $crate::ColumnValues::Text(v) => wit::ColumnValues::Text(packed_out(v)),
                    $crate::ColumnValues::TimestampMs(v) => wit::ColumnValues::TimestampMs(v),
                };
                wit::Column { values, valid: c.valid }
            });
            wit::EventBatch { len: b.len, columns: columns.collect() }
        }

        fn route_log() {
            use weir::plugin::host::{log, LogLevel};
            $crate::log::set_sink(|level, message| {
                let level = match level {
                    $crate::log::Level::Trace => LogLevel::Trace,
                    $crate::log::Level::Debug => LogLevel::Debug,
                    $crate::log::Level::Info => LogLevel::Info,
                    $crate::log::Level::Warn => LogLevel::Warn,
                    $crate::log::Level::Error => LogLevel::Error,
                };
                log(level, message)
            });
            $crate::resources::install(::std::sync::Arc::new(HostResources));
        }

        /// The 0.2.0 imports behind `weir_sdk::resources`.
        struct HostResources;

        fn schema_in(s: weir::plugin::schemas::Schema) -> $crate::Schema {
            let format = match s.format {
                weir::plugin::schemas::SchemaFormat::Avro => $crate::SchemaFormat::Avro,
                weir::plugin::schemas::SchemaFormat::Json => $crate::SchemaFormat::Json,
            };
            $crate::Schema { id: s.id, subject: s.subject, version: s.version, format, text: s.text }
        }

        impl $crate::resources::Resources for HostResources {
            fn schema_by_id(&self, id: u32) -> Option<$crate::Schema> {
                weir::plugin::schemas::by_id(id).map(schema_in)
            }
            fn schema_by_fingerprint(&self, fingerprint: u64) -> Option<$crate::Schema> {
                weir::plugin::schemas::by_fingerprint(fingerprint).map(schema_in)
            }
            fn reader_schema(&self) -> Option<$crate::Schema> {
                weir::plugin::schemas::reader().map(schema_in)
            }
            fn lookup_columns(&self, table: &str) -> Result<Vec<String>, String> {
                weir::plugin::lookups::columns(table)
            }
            fn lookup(
                &self,
                table: &str,
                columns: &[String],
                keys: &$crate::PackedBytes,
            ) -> Result<Vec<$crate::Column>, String> {
                let keys = wit::PackedBytes { bytes: keys.bytes.clone(), ends: keys.ends.clone() };
                let found = weir::plugin::lookups::get(table, columns, &keys)?;
                Ok(batch_in(wit::EventBatch { len: 0, columns: found }).columns)
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __glue_record_errors {
    () => {
        fn errors_out(errors: Vec<$crate::RecordError>) -> Vec<wit::RecordError> {
            errors.into_iter().map(|e| wit::RecordError { index: e.index, reason: e.reason }).collect()
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __glue_parser {
    ($ty:ty) => {
        $crate::__glue_record_errors!();
        use exports::weir::plugin::parser as api;

        static PLUGIN: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();

        struct Component;

        impl api::Guest for Component {
            fn init(config: String) -> Result<api::ParserInfo, String> {
                route_log();
                let (plugin, info) = <$ty as $crate::Parser>::init($crate::Config::from_json(config))?;
                PLUGIN.set(plugin);
                Ok(api::ParserInfo { outputs: defs_out(info.outputs), event_time_column: info.event_time_column })
            }

            fn parse(batch: wit::RawBatch) -> api::ParseOutput {
                let batch = $crate::RawBatch {
                    payloads: packed_in(batch.payloads),
                    keys: packed_in(batch.keys),
                    timestamps: batch.timestamps,
                    partitions: batch.partitions,
                    offsets: batch.offsets,
                };
                let out = PLUGIN.with(|p| <$ty as $crate::Parser>::parse(p, &batch));
                api::ParseOutput { events: batch_out(out.events), sources: out.sources, errors: errors_out(out.errors) }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __glue_validator {
    ($ty:ty) => {
        use exports::weir::plugin::validator as api;

        static PLUGIN: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();

        struct Component;

        impl api::Guest for Component {
            fn init(config: String) -> Result<api::ValidatorInfo, String> {
                route_log();
                let (plugin, inputs) = <$ty as $crate::Validator>::init($crate::Config::from_json(config))?;
                PLUGIN.set(plugin);
                Ok(api::ValidatorInfo { inputs: defs_out(inputs) })
            }

            fn validate(events: wit::EventBatch) -> Vec<wit::Violation> {
                let events = batch_in(events);
                let found = PLUGIN.with(|p| $crate::validate_all(p, &events));
                found
                    .into_iter()
                    .map(|v| wit::Violation {
                        row: v.row,
                        rule: v.rule,
                        severity: match v.severity {
                            $crate::Severity::Warn => wit::Severity::Warn,
                            $crate::Severity::Reject => wit::Severity::Reject,
                            $crate::Severity::Critical => wit::Severity::Critical,
                        },
                        message: v.message,
                    })
                    .collect()
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __glue_aggregator {
    ($ty:ty) => {
        use exports::weir::plugin::aggregator as api;

        static PLUGIN: $crate::__private::Slot<($ty, Vec<$crate::ColumnDef>)> = $crate::__private::Slot::new();

        struct Component;

        impl api::Guest for Component {
            fn init(config: String) -> Result<api::AggregatorInfo, String> {
                route_log();
                let (plugin, info) = <$ty as $crate::Aggregator>::init($crate::Config::from_json(config))?;
                PLUGIN.set((plugin, info.outputs.clone()));
                Ok(api::AggregatorInfo {
                    inputs: defs_out(info.inputs),
                    outputs: defs_out(info.outputs),
                    state_version: info.state_version,
                })
            }

            fn create() -> Vec<u8> {
                PLUGIN.with(|(p, _)| <$ty as $crate::Aggregator>::encode(p, &Default::default()))
            }

            fn fold(states: Vec<Vec<u8>>, events: wit::EventBatch, groups: Vec<u32>) -> Result<Vec<Vec<u8>>, String> {
                let events = batch_in(events);
                PLUGIN.with(|(p, _)| $crate::fold_encoded(p, &states, &events, &groups))
            }

            fn merge(a: Vec<u8>, b: Vec<u8>) -> Result<Vec<u8>, String> {
                PLUGIN.with(|(p, _)| $crate::merge_encoded(p, &a, &b))
            }

            fn emit(states: Vec<Vec<u8>>) -> Result<wit::EventBatch, String> {
                PLUGIN.with(|(p, outputs)| $crate::emit_encoded(p, outputs, &states)).map(batch_out)
            }

            fn migrate(from_version: u32, state: Vec<u8>) -> Result<Vec<u8>, String> {
                PLUGIN.with(|(p, _)| $crate::migrate_encoded(p, from_version, &state))
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __glue_transform {
    ($ty:ty) => {
        $crate::__glue_record_errors!();
        use exports::weir::plugin::transform as api;

        static PLUGIN: $crate::__private::Slot<$ty> = $crate::__private::Slot::new();

        struct Component;

        impl api::Guest for Component {
            fn init(config: String) -> Result<api::TransformInfo, String> {
                route_log();
                let (plugin, info) = <$ty as $crate::Transform>::init($crate::Config::from_json(config))?;
                PLUGIN.set(plugin);
                Ok(api::TransformInfo { inputs: defs_out(info.inputs), outputs: defs_out(info.outputs) })
            }

            fn apply(events: wit::EventBatch) -> api::TransformOutput {
                let events = batch_in(events);
                let out = PLUGIN.with(|p| <$ty as $crate::Transform>::apply(p, &events));
                api::TransformOutput {
                    events: batch_out(out.events),
                    sources: out.sources,
                    errors: errors_out(out.errors),
                }
            }
        }
    };
}
