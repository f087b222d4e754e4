//! Switching a running Envoy's LDS listener to another rendering: another module (an upgrade or
//! a rollback), another code source (`code.remote` with another checksum), another `vm_id`.
//!
//! [`Envoy::reload_listener`](crate::Envoy::reload_listener) re-renders the listener the Envoy
//! was started with for a new plugin configuration; this renders any [`EnvoyConfig`]'s
//! listener template (typically the start configuration `.with_wasm(other build)`) into the
//! same watched file.

use std::collections::BTreeMap;

use crate::envoy::{Envoy, EnvoyConfig, LdsCounters};

/// Renders `config`'s listener template for `ports` over `envoy`'s LDS file and waits for Envoy's
/// verdict ([`Envoy::apply_listener`]).
pub fn switch_listener(
    envoy: &Envoy,
    config: &EnvoyConfig,
    ports: &BTreeMap<String, u16>,
) -> Result<LdsCounters, LdsCounters> {
    let text = config
        .render_listener(ports)
        .expect("switch_listener: the configuration has no listener template");
    envoy.apply_listener(&text)
}
