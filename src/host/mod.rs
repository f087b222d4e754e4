//! The proxy-wasm shell: the only code that talks to the proxy. `abi` declares the host calls
//! with every status returned as a value (the SDK's `hostcalls` panic on statuses they do not
//! expect, and a panic kills the VM); `wasm_host` implements the core's `Host` over them;
//! `contexts` hands each SDK callback to the core's `Root` or `Stream` and returns its answer.

mod abi;
mod contexts;
mod wasm_host;

use proxy_wasm::traits::RootContext;

proxy_wasm::main! {{
    // Our own logger and panic hook: the SDK's unwrap the host's status. A panic still aborts
    // the VM; the hook makes sure the reason reaches the Envoy log first.
    let _ = log::set_logger(&abi::HostLogger);
    log::set_max_level(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| {
        let _ = abi::log(abi::LOG_CRITICAL, &format!("inference-router: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(contexts::RootShell::new()) });
}}
