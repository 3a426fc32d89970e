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
    /// The last error the guest logged during the current call: a Python plugin's SDK
    /// logs an uncaught exception's traceback there just before the trap.
    pub(crate) last_error: Option<String>,
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
            last_error: None,
            resources,
        }
    }

    /// Why the guest trapped (a trap itself carries no message): a Rust panic as its
    /// runtime wrote it to stderr, or a Python traceback the SDK logged.
    pub fn failure_message(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        let logged: Vec<&str> = self.last_error.as_deref().map(|e| e.lines().collect()).unwrap_or_default();
        rust_panic(&lines).or_else(|| python_exception(&logged)).or_else(|| python_exception(&lines))
    }
}

/// `thread '…' panicked at src/lib.rs:3:5:` followed by the message.
fn rust_panic(lines: &[&str]) -> Option<String> {
    let header = lines.iter().rposition(|l| l.contains("panicked at "))?;
    let at = lines[header].split("panicked at ").nth(1).unwrap_or("").trim_end_matches(':');
    let message =
        lines[header + 1..].iter().take_while(|l| !l.starts_with("note: ")).copied().collect::<Vec<_>>().join(" ");
    Some(format!("panicked: {} (at {at})", message.trim()))
}

/// The last `Traceback (most recent call last):`: its last line is the exception, the
/// last `File "…", line N` before it where it was raised.
fn python_exception(lines: &[&str]) -> Option<String> {
    let header = lines.iter().rposition(|l| l.starts_with("Traceback (most recent call last):"))?;
    let rest = &lines[header + 1..];
    let exception = rest.iter().rev().find(|l| !l.trim().is_empty() && !l.starts_with(' '))?;
    let at = rest.iter().rev().find_map(|l| {
        let l = l.trim_start().strip_prefix("File \"")?;
        let (file, rest) = l.split_once("\", line ")?;
        let line = rest.split(',').next()?;
        Some(format!("{}:{line}", file.rsplit('/').next().unwrap_or(file)))
    });
    Some(match at {
        Some(at) => format!("raised {} (at {at})", exception.trim()),
        None => format!("raised {}", exception.trim()),
    })
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: host::LogLevel, mut message: String) {
        if matches!(level, host::LogLevel::Error) {
            self.last_error = Some(message.clone());
        }
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

#[cfg(test)]
mod failure_tests {
    use super::python_exception;

    #[test]
    fn a_python_traceback_gives_the_exception_and_where() {
        let text = "Traceback (most recent call last):\n  File \"/1/weir_sdk/_exports.py\", line 120, in call\n    \
                    return method(self, *args)\n  File \"/0/fares.py\", line 14, in validate\n    raise ValueError(f)\n\
                    ValueError: fare 13.0 is unlucky\n";
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(python_exception(&lines).unwrap(), "raised ValueError: fare 13.0 is unlucky (at fares.py:14)");
        assert_eq!(python_exception(&["nothing"]), None);
    }
}
