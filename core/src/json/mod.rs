//! JSON by hand, in the exact forms serde_json wrote: [`write`] (bytes out, number and string
//! spelling included) and [`ToJson`] for the documents the filter writes.

pub mod write;

pub use write::{ObjectWriter, ToJson};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod documents_tests;
