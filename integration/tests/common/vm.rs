//! Is the Wasm VM still the one Envoy started? Envoy's own `wasm.*` stats (not the filter's
//! `wasmcustom.*`) count VMs created and reloads after a crash; the Envoy log carries the
//! filter's panic hook line (`inference-router: panic: …`, level critical) and V8's
//! `Function: … failed: Uncaught RuntimeError` when a VM traps.
#![allow(dead_code)]

use std::collections::BTreeMap;

use integration::Envoy;

/// VMs created by the V8 runtime (one per thread that runs the plugin, more after a reload).
pub const V8_CREATED: &str = "wasm.envoy.wasm.runtime.v8.created";
/// VMs alive.
pub const V8_ACTIVE: &str = "wasm.envoy.wasm.runtime.v8.active";
/// The plugin's reload counters under `failure_policy: FAIL_RELOAD` (`wasm.<plugin name>.*`).
pub const RELOAD: &str = "wasm.inference-router.vm_reload";
pub const RELOAD_SUCCESS: &str = "wasm.inference-router.vm_reload_success";
pub const RELOAD_FAILURE: &str = "wasm.inference-router.vm_reload_failure";
/// Requests answered 503 by Envoy because the plugin's VM is dead and the reload backoff
/// (`vm_config.reload_config`, 1 s by default) has not passed yet.
pub const RELOAD_BACKOFF: &str = "wasm.inference-router.vm_reload_backoff";

const WATCHED: [&str; 6] = [
    V8_CREATED,
    V8_ACTIVE,
    RELOAD,
    RELOAD_SUCCESS,
    RELOAD_FAILURE,
    RELOAD_BACKOFF,
];

/// The watched `wasm.*` stats now (absent ones as 0).
pub fn vm_stats(envoy: &Envoy) -> BTreeMap<&'static str, u64> {
    let all = envoy.stats();
    WATCHED
        .iter()
        .map(|k| (*k, all.get(*k).copied().unwrap_or(0)))
        .collect()
}

/// Asserts that no VM crashed, was reloaded or was created since `before` (a [`vm_stats`] taken
/// once Envoy was up), and that the Envoy log has no panic or critical line.
#[track_caller]
pub fn assert_vm_never_crashed(envoy: &Envoy, before: &BTreeMap<&'static str, u64>) {
    let now = vm_stats(envoy);
    assert_eq!(
        &now, before,
        "the Wasm VMs changed (a trap, a reload or a new VM): before {before:?}, now {now:?}"
    );
    for k in [RELOAD, RELOAD_SUCCESS, RELOAD_FAILURE, RELOAD_BACKOFF] {
        assert_eq!(now[k], 0, "{k}");
    }
    assert!(now[V8_ACTIVE] > 0, "no live VM: {now:?}");
    let bad = crash_lines(envoy);
    assert!(
        bad.is_empty(),
        "the Envoy log has panic/critical/trap lines:\n{}",
        bad.join("\n")
    );
}

/// Lines of Envoy's own log that tell of a crash: a panic, a `critical` level line, or a Wasm
/// runtime error.
pub fn crash_lines(envoy: &Envoy) -> Vec<String> {
    envoy
        .app_log()
        .lines()
        .filter(|l| {
            let lower = l.to_ascii_lowercase();
            lower.contains("panic")
                || lower.contains("[critical]")
                || lower.contains("runtimeerror")
                || lower.contains("wasm_vm.cc")
        })
        .map(str::to_string)
        .collect()
}
