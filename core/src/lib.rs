//! The decision and learning core of inference-router. It has no proxy-wasm dependency: the
//! compiler keeps host calls out of it, and everything here runs in native tests.
//!
//! `config` (parse → validate → compile), `payload` (body fields), `policy` (the decision),
//! `metrics` (names), `bandit` (learning strategies), `callout` (what the filter resends and
//! what the answers mean: external router, fan-out, retry, shadows), `rng`.

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
