//! Request payloads: which fields routing reads (`PointerSet`), and reading only those fields out
//! of a JSON or MessagePack body in one pass (`extract`), without building a document tree.

mod extract;
pub mod grpc;
mod metadata;
mod pointer;
mod prefix;

pub use extract::{extract, ExtractError, Fields, Format};
pub use metadata::{
    decode_pairs, decode_value, encode_pairs, fields_from_metadata, metadata_key, pair_ranges,
};
pub use pointer::{parse_pointer, PointerSet};
pub use prefix::{PrefixScan, Progress};

/// A `content-type`'s media type, lowercase, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Which payload format a `content-type` names, if the filter reads it.
pub fn format_of_content_type(content_type: &str) -> Option<Format> {
    match media_type(content_type).as_str() {
        "application/json" => Some(Format::Json),
        "application/msgpack" | "application/x-msgpack" | "application/vnd.msgpack" => {
            Some(Format::MessagePack)
        }
        e if e.starts_with("application/") && e.ends_with("+json") => Some(Format::Json),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            format_of_content_type("application/json"),
            Some(Format::Json)
        );
        assert_eq!(
            format_of_content_type("Application/JSON; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(
            format_of_content_type("application/cloudevents+json"),
            Some(Format::Json)
        );
        assert_eq!(
            format_of_content_type("application/x-msgpack"),
            Some(Format::MessagePack)
        );
        assert_eq!(format_of_content_type("text/plain"), None);
        assert_eq!(format_of_content_type(""), None);
    }
}
