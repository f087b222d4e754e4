//! The decision and learning core of inference-router. It has no proxy-wasm dependency: the
//! compiler keeps host calls out of it, and everything here runs in native tests.
//!
//! A request reads as one path: the host shell hands each proxy event to a `stream::Stream`
//! (view → decide → apply → observe → reward), and root-context events to `root::Root`; both
//! act on the proxy only through the `host::Host` interface.
//!
//! - `host`: the interface to the proxy; `testing` (feature `testing`): an in-memory host;
//! - `root`, `plugin`, `stream`: the request lifecycle, the configured plugin instance;
//! - `config` (parse → validate → compile), `payload` (body fields), `policy` (the decision),
//!   `inspect` (what a payload asks for, sensitive data), `bandit` (learning strategies),
//!   `feedback`, `learning`, `reward` (signed rewards, spent ids, health, implicit rewards),
//!   `callout` (what the filter resends, what the answers mean, the pending-callout mechanism),
//!   `metrics` (names) and `telemetry` (ids and what counts), `quote` (text quoted in
//!   messages, one place for the rule), `say` (every log line, through one call), `rng`, `sort`
//!   and `vecmap` (ordering and ordered collections without std's sorts and trees, for size),
//!   `parse_float` (decimal text to f64 as std reads it, without core's `dec2flt`, for size),
//!   `parse_int` (unsigned integers of every width through std's one `u64` parser, for size),
//!   `substr` (substring search and replacement without std's Two-Way searcher, for size),
//!   `regex` (detector patterns in regex-lite's syntax, matched by a small NFA, for size),
//!   `utf8` (lossy decoding as std's, without its chunk iterator, for size),
//!   `msgpack` (MessagePack by hand, in the forms rmp-serde wrote and read), `json` (JSON and
//!   its `Value` by hand, in serde_json's forms), `format_float` (f64 as text: ryu's shortest
//!   digits in Rust's `{}` and `{:.N}` layouts, without core's float formatting). serde,
//!   serde_json and regex-lite are references for tests only.

pub mod bandit;
pub mod be;
pub mod callout;
pub mod config;
pub mod feedback;
pub mod fleet;
pub mod format_float;
pub mod hex;
pub mod host;
pub mod inspect;
pub mod json;
pub mod learning;
pub mod load;
pub mod metrics;
pub mod msgpack;
pub mod parse_float;
pub mod parse_int;
pub mod payload;
pub mod plugin;
pub mod policy;
pub mod quote;
pub mod regex;
pub mod registry;
pub mod reward;
pub mod rng;
pub mod root;
pub mod say;
pub mod sort;
pub mod stream;
pub mod substr;
pub mod telemetry;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod utf8;
pub mod vecmap;
