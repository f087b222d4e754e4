//! Log lines of the root context's code (the root, `fleet`, `registry`) and of the shell through
//! one call.
//!
//! Each `log::warn!` (and the others) puts its target, module path, file and line in the module,
//! which no log line shows: the shell's logger writes the level and the message, and so do the
//! tests' loggers. These functions take the message (`format_args!`, formatted only when the
//! level is on, as with the macros) and log it at their level, target and location left out.

use std::fmt::Arguments;

use log::Level;

/// Logs `message` at `level`, when the maximum level lets it through (as the `log` macros do).
#[inline(never)]
pub fn at(level: Level, message: Arguments<'_>) {
    if level <= log::STATIC_MAX_LEVEL && level <= log::max_level() {
        log::logger().log(&log::Record::builder().level(level).args(message).build());
    }
}

pub fn error(message: Arguments<'_>) {
    at(Level::Error, message);
}

pub fn warn(message: Arguments<'_>) {
    at(Level::Warn, message);
}

pub fn info(message: Arguments<'_>) {
    at(Level::Info, message);
}

pub fn debug(message: Arguments<'_>) {
    at(Level::Debug, message);
}
