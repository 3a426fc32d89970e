//! The shared Wasmtime engine: compilation settings, the epoch ticker that enforces
//! CPU deadlines, and the on-disk cache of compiled code.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::{Config, Engine, Strategy};

use super::resources::Resources;

/// Engine-wide settings. Per-plugin limits are in [`Limits`](super::Limits).
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// How often the epoch advances; a deadline is enforced to within one tick.
    pub epoch_tick: Duration,
    /// The most stack a plugin call may use. Wasmtime sets this per engine.
    pub max_stack_bytes: usize,
    /// Where compiled components are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Enforce CPU deadlines by epoch interruption. Turning it off removes the deadline
    /// and exists only so the benchmark can report what the deadline costs.
    pub epoch_interruption: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            epoch_tick: Duration::from_millis(10),
            max_stack_bytes: 512 * 1024,
            cache_dir: default_cache_dir(),
            epoch_interruption: true,
        }
    }
}

/// `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else `~/.cache/weir`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("weir"))
}

/// Which compiler an engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compiler {
    /// Cranelift: slow to compile, fast to run. Every plugin ends up on it.
    Optimizing,
    /// Winch, a single-pass compiler: about a tenth of Cranelift's compile time for code
    /// that runs about a third slower. A plugin version never compiled on this machine
    /// starts on it, and `weir run` switches to optimized code once that is ready
    /// (docs/DECISIONS.md, "Tiered start").
    Baseline,
}

/// The engine plus the thread that ticks its epoch. Cheap to clone.
#[derive(Clone)]
pub struct PluginRuntime {
    pub(crate) engine: Engine,
    pub(crate) options: RuntimeOptions,
    pub(crate) compiler: Compiler,
    /// The baseline runtime beside this one, made on first use.
    baseline: Arc<OnceLock<PluginRuntime>>,
    /// Schemas and lookup tables for every instance of this runtime (and its baseline twin).
    pub(crate) resources: Arc<Resources>,
    _ticker: Arc<Ticker>,
}

struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl PluginRuntime {
    /// Builds the optimizing engine and starts the epoch ticker.
    pub fn new(options: RuntimeOptions) -> Result<Self> {
        Self::with_compiler(options, Compiler::Optimizing, Arc::default())
    }

    /// What its plugins may read besides their batches.
    pub fn resources(&self) -> &Arc<Resources> {
        &self.resources
    }

    fn with_compiler(options: RuntimeOptions, compiler: Compiler, resources: Arc<Resources>) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(options.epoch_interruption);
        config.max_wasm_stack(options.max_stack_bytes);
        match compiler {
            Compiler::Optimizing => {
                config.strategy(Strategy::Cranelift);
                config.cranelift_opt_level(wasmtime::OptLevel::Speed);
                // Plugins share much of their code (std, serde, the SDK, WASI trampolines),
                // and a new version of a plugin shares most of the old one's: Cranelift
                // compiles each distinct function once per process. On the rides plugins
                // this takes about a tenth off a first compile (docs/BENCHMARKS.md).
                config.enable_incremental_compilation(Arc::new(FunctionCache::default()))?;
            }
            Compiler::Baseline => {
                config.strategy(Strategy::Winch);
            }
        }
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("configuring the WebAssembly engine")?;

        let stop = Arc::new(AtomicBool::new(false));
        let (thread_engine, thread_stop, tick) = (engine.clone(), stop.clone(), options.epoch_tick);
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !thread_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    thread_engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker")?;
        Ok(PluginRuntime {
            engine,
            options,
            compiler,
            baseline: Arc::default(),
            resources,
            _ticker: Arc::new(Ticker(stop)),
        })
    }

    /// The baseline-compiler runtime with the same settings, shared by all clones of this one.
    pub fn baseline(&self) -> Result<PluginRuntime> {
        if self.compiler == Compiler::Baseline {
            return Ok(self.clone());
        }
        if let Some(runtime) = self.baseline.get() {
            return Ok(runtime.clone());
        }
        let runtime = PluginRuntime::with_compiler(self.options.clone(), Compiler::Baseline, self.resources.clone())?;
        Ok(self.baseline.get_or_init(|| runtime).clone())
    }

    /// The number of epoch ticks that cover `deadline`, at least one; `None` without epoch interruption.
    pub(crate) fn deadline_ticks(&self, deadline: Duration) -> Option<u64> {
        if !self.options.epoch_interruption {
            return None;
        }
        let tick = self.options.epoch_tick.as_nanos().max(1);
        Some((deadline.as_nanos().div_ceil(tick) as u64).max(1))
    }
}

/// Compiled functions by Cranelift's key for them, kept for the life of the process.
/// It grows by the distinct functions of each plugin version loaded: 858 entries,
/// 1.4 MB, for the three rides plugins.
#[derive(Debug, Default)]
struct FunctionCache(std::sync::Mutex<std::collections::HashMap<Vec<u8>, Vec<u8>>>);

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.0.lock().ok()?.get(key).cloned().map(std::borrow::Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.0.lock().map(|mut entries| entries.insert(key.to_vec(), value)).is_ok()
    }
}
