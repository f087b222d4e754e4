//! JSON by hand, in the exact forms serde_json read and wrote: [`read`] (bytes in, its errors
//! word for word), [`write`] (bytes out, number and string spelling included), [`ToJson`]
//! for the documents the filter writes, and [`Value`] (serde_json's `Value` API, equality and
//! text) with `json!` to build one.

pub mod read;
pub mod value;
pub mod write;

pub(crate) use value::json;
pub use value::{Map, Number, Value};
pub use write::{ObjectWriter, ToJson};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod documents_tests;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod value_tests;
