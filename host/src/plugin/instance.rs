//! One live plugin instance: a fresh `Store` from the component's `InstancePre`, with
//! the memory cap and CPU deadline applied to every call. A call that traps poisons
//! the instance; the owner (`Plugin`) throws it away and never enters it again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::{Store, Trap};

use super::component::PluginComponent;
use super::exports::Exports;
use super::failure::PluginFailure;
use super::state::PluginState;

/// Per-plugin limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory the instance may have.
    pub max_memory_bytes: u64,
    /// The CPU deadline of one call.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_memory_bytes: 256 * 1024 * 1024, deadline: Duration::from_secs(1) }
    }
}

/// A live instance.
pub(crate) struct PluginInstance {
    pub store: Store<PluginState>,
    pub exports: Exports,
    deadline_ticks: Option<u64>,
    limits: Limits,
}

impl PluginInstance {
    /// Instantiates `component` in a fresh store.
    pub fn new(component: &Arc<PluginComponent>, limits: &Limits) -> Result<Self> {
        let engine = &component.runtime.engine;
        let state = PluginState::new(&component.name, limits.max_memory_bytes, component.runtime.resources.clone());
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limiter);
        let deadline_ticks = component.runtime.deadline_ticks(limits.deadline);
        if let Some(ticks) = deadline_ticks {
            store.set_epoch_deadline(ticks);
        }
        let instance = component
            .pre
            .instantiate(&mut store)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("instantiating plugin {}", component.name))?;
        let exports = super::exports::load(component.kind, &component.interface, &component.pre, &mut store, &instance)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("plugin {}", component.name))?;
        Ok(PluginInstance { store, exports, deadline_ticks, limits: limits.clone() })
    }

    /// Runs one call under the deadline and classifies a failure.
    pub fn call<R>(
        &mut self,
        f: impl FnOnce(&Exports, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginFailure> {
        if let Some(ticks) = self.deadline_ticks {
            self.store.set_epoch_deadline(ticks);
        }
        self.store.data_mut().limiter.denied = false;
        self.store.data_mut().last_error = None;
        f(&self.exports, &mut self.store).map_err(|e| self.classify(e))
    }

    fn classify(&self, error: wasmtime::Error) -> PluginFailure {
        let state = self.store.data();
        if state.limiter.denied {
            return PluginFailure::Memory(self.limits.max_memory_bytes);
        }
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginFailure::Timeout(self.limits.deadline.as_millis() as u64),
            Some(Trap::StackOverflow) => PluginFailure::Trap("stack overflow (recursion too deep)".into()),
            Some(trap) => match state.failure_message() {
                Some(reason) => PluginFailure::Trap(reason),
                None => PluginFailure::Trap(trap.to_string()),
            },
            None => PluginFailure::Trap(format!("{error:#}")),
        }
    }
}
