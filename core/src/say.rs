//! Every log line of the module, through one call: `say::warn(say::FLEET, format_args!(..))`,
//! or `crate::host_log!(Warn, "..", ..)` for a line that carries its whole text.
//!
//! Each `log::warn!` (and the others) puts its target, module path, file and line in the module,
//! which no log line shows: the shell's logger writes the level and the message, and so do the
//! tests' loggers. These functions take the words the line starts with (`FLEET`, …: one copy in
//! the module) and the rest of the message (`format_args!`, formatted only when the level is on,
//! as with the macros), and log the two as one message at their level, target and location
//! left out.

use std::fmt::Arguments;

use log::Level;

/// Where a message comes from, the words every such line starts with: stored once, not in
/// every message.
pub const ROOT: &str = "inference-router: ";
pub const FLEET: &str = "inference-router: fleet: ";
pub const REGISTRY: &str = "inference-router: registry: ";
/// A message that carries its whole text.
pub const NONE: &str = "";

/// `crate::host_log!(Warn, "...", ..)` logs as `log::warn!("...", ..)` does, through [`at`].
#[macro_export]
macro_rules! host_log {
    ($level:ident, $($message:tt)+) => {
        $crate::say::at(::log::Level::$level, $crate::say::NONE, format_args!($($message)+))
    };
}

/// Logs `prefix` and `message` at `level`, when the maximum level lets it through (as the
/// `log` macros do).
#[inline(never)]
pub fn at(level: Level, prefix: &str, message: Arguments<'_>) {
    if level <= log::STATIC_MAX_LEVEL && level <= log::max_level() {
        log::logger().log(
            &log::Record::builder()
                .level(level)
                .args(format_args!("{prefix}{message}"))
                .build(),
        );
    }
}

pub fn error(prefix: &str, message: Arguments<'_>) {
    at(Level::Error, prefix, message);
}

pub fn warn(prefix: &str, message: Arguments<'_>) {
    at(Level::Warn, prefix, message);
}

pub fn info(prefix: &str, message: Arguments<'_>) {
    at(Level::Info, prefix, message);
}

pub fn debug(prefix: &str, message: Arguments<'_>) {
    at(Level::Debug, prefix, message);
}
