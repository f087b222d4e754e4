//! JSON by hand, in the exact forms serde_json read and wrote: [`read`] (bytes in, its errors
//! word for word), [`write`] (bytes out, number and string spelling included) and [`ToJson`]
//! for the documents the filter writes.

pub mod read;
pub mod write;

pub use write::{ObjectWriter, ToJson};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod documents_tests;
