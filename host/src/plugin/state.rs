//! What each plugin store holds: the empty WASI context, the memory limiter, and the
//! captured stderr that turns a guest panic into a readable failure reason.

use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;

use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{host, lookups, schemas, types};
use super::resources::Resources;
use super::tail::TailPipe;

/// How much of a guest's stderr is kept (enough for a panic message).
const STDERR_CAPACITY: usize = 16 * 1024;

/// How many log lines a plugin instance may write per second, and how long each may be:
/// a plugin that logs every record must not bury the host's own log.
const LOG_LINES_PER_S: f64 = 50.0;
const LOG_LINE_BYTES: usize = 2048;

/// The data of one plugin store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryCap,
    pub(crate) stderr: TailPipe,
    plugin: String,
    log: LogBudget,
    resources: Arc<Resources>,
}

impl PluginState {
    pub fn new(plugin: &str, max_memory_bytes: u64, resources: Arc<Resources>) -> Self {
        let stderr = TailPipe::new(STDERR_CAPACITY);
        // No preopens, no environment, no arguments, no network: the sandbox.
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryCap { max_bytes: max_memory_bytes, denied: false },
            stderr,
            plugin: plugin.to_string(),
            log: LogBudget::new(),
            resources,
        }
    }

    /// The message of a guest panic, read from what the Rust runtime wrote to stderr:
    /// `thread '…' panicked at src/lib.rs:3:5:` followed by the message.
    pub fn panic_message(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().rposition(|l| l.contains("panicked at "))?;
        let at = lines[header].split("panicked at ").nth(1).unwrap_or("").trim_end_matches(':');
        let message =
            lines[header + 1..].iter().take_while(|l| !l.starts_with("note: ")).copied().collect::<Vec<_>>().join(" ");
        Some(format!("{} (at {at})", message.trim()))
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: host::LogLevel, mut message: String) {
        let plugin = self.plugin.as_str();
        let Some(suppressed) = self.log.take(Instant::now()) else { return };
        if suppressed > 0 {
            tracing::warn!(
                plugin,
                suppressed,
                "the plugin logged faster than {LOG_LINES_PER_S} lines/s; lines dropped"
            );
        }
        if message.len() > LOG_LINE_BYTES {
            let cut = (0..=LOG_LINE_BYTES).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
            let more = message.len() - cut;
            message.truncate(cut);
            message.push_str(&format!("… ({more} more bytes)"));
        }
        match level {
            host::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            host::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            host::LogLevel::Info => tracing::info!(plugin, "{message}"),
            host::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            host::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

fn schema_out(s: weir_sdk::Schema) -> schemas::Schema {
    let format = match s.format {
        weir_sdk::SchemaFormat::Avro => schemas::SchemaFormat::Avro,
        weir_sdk::SchemaFormat::Json => schemas::SchemaFormat::Json,
    };
    schemas::Schema { id: s.id, subject: s.subject, version: s.version, format, text: s.text }
}

impl schemas::Host for PluginState {
    fn by_id(&mut self, id: u32) -> Option<schemas::Schema> {
        self.resources.schema_by_id(id).map(schema_out)
    }

    fn by_fingerprint(&mut self, fingerprint: u64) -> Option<schemas::Schema> {
        self.resources.schema_by_fingerprint(fingerprint).map(schema_out)
    }

    fn reader(&mut self) -> Option<schemas::Schema> {
        self.resources.reader().map(schema_out)
    }
}

impl lookups::Host for PluginState {
    fn columns(&mut self, table: String) -> Result<Vec<String>, String> {
        self.resources.lookup_table(&table).map(|t| t.columns.clone())
    }

    fn get(
        &mut self,
        table: String,
        columns: Vec<String>,
        keys: types::PackedBytes,
    ) -> Result<Vec<types::Column>, String> {
        let keys = weir_sdk::PackedBytes { bytes: keys.bytes, ends: keys.ends };
        let found = self.resources.lookup(&table, &columns, &keys)?;
        let all: Vec<usize> = (0..found.len()).collect();
        let batch = weir_sdk::EventBatch { len: keys.len() as u32, columns: found };
        Ok(super::convert::batch_out(&batch, &all).columns)
    }
}

/// A token bucket for a plugin's log lines, counting what it drops.
struct LogBudget {
    tokens: f64,
    at: Instant,
    suppressed: u64,
}

impl LogBudget {
    fn new() -> Self {
        LogBudget { tokens: LOG_LINES_PER_S, at: Instant::now(), suppressed: 0 }
    }

    /// Whether a line may be written now: `Some(lines dropped since the last one)`.
    fn take(&mut self, now: Instant) -> Option<u64> {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * LOG_LINES_PER_S;
        self.tokens = (self.tokens + refill).min(LOG_LINES_PER_S);
        self.at = now;
        if self.tokens < 1.0 {
            self.suppressed += 1;
            return None;
        }
        self.tokens -= 1.0;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Caps a store's linear memory and remembers a refusal, so the trap that follows an
/// out-of-memory abort is reported as a memory failure.
pub struct MemoryCap {
    pub max_bytes: u64,
    pub denied: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = desired as u64 <= self.max_bytes;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
