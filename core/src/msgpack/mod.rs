//! MessagePack by hand, in the forms the filter used rmp-serde for: [`write`] the primitives of
//! the shared-state documents, [`read`] the wire format item by item, [`fields`] typed reading
//! with rmp-serde's rules for those documents, and (`de`) a [`read::Reader`] is a serde
//! `Deserializer` with rmp-serde's behaviour for the body readers' serde walks.

mod de;
pub mod fields;
pub mod read;
#[cfg(test)]
#[allow(clippy::indexing_slicing)]
pub mod testing;
pub mod value;
pub mod write;
