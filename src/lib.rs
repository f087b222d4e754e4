//! inference-router: a proxy-wasm filter that decides, per request, which model deployment
//! serves an inference call. This crate is the thin shell compiled to `wasm32-wasip1`; the
//! request lifecycle and every decision live in `inference-router-core`, which has no
//! proxy-wasm dependency.

#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod runtime;
