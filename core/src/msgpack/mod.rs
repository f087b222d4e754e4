//! MessagePack by hand, in the forms the filter used rmp-serde for: [`write`] the primitives of
//! the shared-state documents, [`read`] the wire format item by item, [`fields`] typed reading
//! with rmp-serde's rules for those documents, [`value`] a document as a `Value`; the body readers
//! walk [`read::Reader`] by hand. (`de`, kept for tests: a `Reader` as a serde `Deserializer`
//! with rmp-serde's behaviour, the serde walks' former input.)

#[cfg(test)]
mod de;
pub mod fields;
pub mod read;
#[cfg(test)]
#[allow(clippy::indexing_slicing)]
pub mod testing;
pub mod value;
pub mod write;
