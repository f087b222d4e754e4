//! What the Rust runtime needs from below, chosen for the module's size.
//!
//! - **Allocator:** talc, in place of the C library's malloc (dlmalloc), which the default
//!   `System` allocator calls.
//! - **`getenv` and `getcwd`:** std's panic path calls them (`RUST_BACKTRACE`, and a backtrace's
//!   paths). The C library's versions read the process environment through WASI (`environ_get`)
//!   into memory from its own malloc, which would link dlmalloc again. These return "unset" and
//!   "unknown", which is what a panic sees on Envoy anyway: wasm has no backtraces, and nothing
//!   in the module reads the environment.

use core::ffi::c_char;
use core::ptr::null_mut;

// SAFETY: Envoy runs each wasm VM on one thread; talc's wasm lock is a no-op that assumes it.
#[global_allocator]
static ALLOCATOR: talc::TalckWasm = unsafe { talc::TalckWasm::new_global() };

/// C's `getenv`: no variable is set.
#[no_mangle]
pub extern "C" fn getenv(_name: *const c_char) -> *mut c_char {
    null_mut()
}

/// C's `getcwd`: no working directory (NULL, as for an error).
#[no_mangle]
pub extern "C" fn getcwd(_buf: *mut c_char, _size: usize) -> *mut c_char {
    null_mut()
}
