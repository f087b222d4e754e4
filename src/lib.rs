//! inference-router: a proxy-wasm filter that decides, per request, which model deployment
//! serves an inference call.
//!
//! Everything but `host` is a pure decision core with no proxy-wasm calls, tested natively:
//! `config` (parse → validate → compile), `payload` (body fields), `policy` (the decision),
//! `metrics` (names), `bandit` (learning strategies), `callout` (what the filter resends and
//! what the answers mean: external router, fan-out, retry, shadows), `rng`. `host` is the only
//! module that talks to the proxy; it is compiled for wasm32 only.

pub mod bandit;
pub mod callout;
pub mod config;
pub mod feedback;
pub mod inspect;
pub mod learning;
pub mod metrics;
pub mod payload;
pub mod policy;
pub mod reward;
pub mod rng;

#[cfg(target_arch = "wasm32")]
mod host;
