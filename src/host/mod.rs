//! The proxy-wasm shell: the only code that talks to the proxy, with no SDK. `exports` holds
//! the ABI entry points Envoy calls and hands each to its context; `contexts` keeps the
//! contexts (the core's `Root` and `Stream`) by id and which one sent each callout; `abi`
//! declares the host calls with every status returned as a value (a panic kills the VM);
//! `wasm_host` implements the core's `Host` over them.

mod abi;
mod contexts;
mod exports;
mod wasm_host;

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// Module start (WASI reactor). Envoy refuses host calls here, so this only installs the
/// logger and the panic hook; seeds and shared state wait for `on_vm_start` / `on_configure`.
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the linker's constructor function, run once, first, as a reactor's start must.
    #[cfg(target_os = "wasi")]
    unsafe {
        __wasm_call_ctors();
    }
    let _ = log::set_logger(&abi::HostLogger);
    log::set_max_level(log::LevelFilter::Info);
    // A panic still aborts the VM; the hook makes sure the reason reaches the Envoy log first.
    std::panic::set_hook(Box::new(|info| {
        let _ = abi::log(
            abi::LOG_CRITICAL,
            &format!("inference-router: panic: {info}"),
        );
    }));
}
