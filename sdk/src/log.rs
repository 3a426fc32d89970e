//! Logging from a plugin into the host's structured log.

use std::sync::OnceLock;

/// A log record's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very fine detail.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something the plugin could not handle.
    Error,
}

static SINK: OnceLock<fn(Level, &str)> = OnceLock::new();

/// Writes `message` to the host's log. Natively (in unit tests) it goes to stderr.
pub fn log(level: Level, message: &str) {
    match SINK.get() {
        Some(sink) => sink(level, message),
        None => eprintln!("[{level:?}] {message}"),
    }
}

/// Routes [`log`] to the host import; the export glue calls this once.
#[doc(hidden)]
pub fn set_sink(sink: fn(Level, &str)) {
    let _ = SINK.set(sink);
}

/// Logs at info level with `format!` syntax.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Logs at warn level with `format!` syntax.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($arg)*)) };
}
