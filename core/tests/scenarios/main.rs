//! Native scenario tests: whole requests driven through the core's lifecycle (`Root`, `Stream`)
//! against the in-memory `TestHost`, asserting the exact host effects — headers set and
//! removed, local replies, callouts dispatched, counters, shared-data writes. One module per
//! family of the end-to-end suite (integration/tests), which stays the judge against Envoy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod driver;
mod fake_etcd;

mod body;
mod change_detection;
mod config;
mod contextual;
mod early;
mod evaluator;
mod external_router;
mod fan_out;
mod faults;
mod feedback;
mod fleet;
mod grpc;
mod host_calls;
mod hostile;
mod learning;
mod load;
mod metadata_mode;
mod observability;
mod policy;
mod registry;
mod reload;
mod retry;
mod routing;
mod rules;
mod security;
mod shadow;
mod split;
mod trust;
