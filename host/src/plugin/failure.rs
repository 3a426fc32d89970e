//! Why a plugin call failed. Callers branch on the kind: a trap poisons the instance,
//! a guest error does not, and each lands in the dead-letter store under its own reason.

use std::fmt;

/// A failed plugin call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PluginFailure {
    /// The call ran past its CPU deadline and was interrupted.
    #[error("timeout: the call ran past its {0} ms deadline")]
    Timeout(u64),
    /// The plugin asked for more memory than its cap.
    #[error("memory: the plugin exceeded its {0}-byte memory cap")]
    Memory(u64),
    /// The plugin trapped: a panic, a stack overflow, an invalid operation.
    #[error("trap: {0}")]
    Trap(String),
    /// The plugin returned an error or broke the contract (e.g. wrong column types).
    #[error("plugin error: {0}")]
    Guest(String),
}

impl PluginFailure {
    /// Whether the instance must be replaced before the next call.
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, PluginFailure::Guest(_))
    }

    /// A short label for metrics and the dead-letter store.
    pub fn kind(&self) -> FailureKind {
        match self {
            PluginFailure::Timeout(_) => FailureKind::Timeout,
            PluginFailure::Memory(_) => FailureKind::Memory,
            PluginFailure::Trap(_) => FailureKind::Trap,
            PluginFailure::Guest(_) => FailureKind::Guest,
        }
    }
}

/// The kind of a [`PluginFailure`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// See [`PluginFailure::Timeout`].
    Timeout,
    /// See [`PluginFailure::Memory`].
    Memory,
    /// See [`PluginFailure::Trap`].
    Trap,
    /// See [`PluginFailure::Guest`].
    Guest,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Trap => "trap",
            FailureKind::Guest => "guest",
        })
    }
}

/// One input row that made its plugin fail, after the batch was split down to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFailure {
    /// The row's index in the batch handed to the stage.
    pub index: u32,
    /// What happened.
    pub failure: PluginFailure,
}
