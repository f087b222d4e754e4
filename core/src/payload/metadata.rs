//! Body fields that Envoy's `json_to_metadata` filter lifted into dynamic metadata.
//!
//! Envoy hands the namespace over as proxy-wasm pairs (a `u32` count, the key and value
//! lengths, then each key and value NUL-terminated), each value in its CEL encoding: a string's
//! UTF-8 bytes, a number (integers too) as an 8-byte little-endian double, a bool as one byte.
//! Nothing marks the type, so an 8-byte string and a double look alike; the configuration says
//! which fields are compared as numbers, and that decides.

use std::ops::Range;

use crate::json::{Number, Value};

use super::{Fields, PointerSet};

/// Decodes the proxy-wasm pairs encoding. `None` if the bytes are not well-formed.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    let ranges = pair_ranges(bytes)?;
    let mut pairs = Vec::with_capacity(ranges.len());
    for (key, value) in ranges {
        let key = std::str::from_utf8(bytes.get(key)?).ok()?;
        pairs.push((key.to_string(), bytes.get(value)?.to_vec()));
    }
    Some(pairs)
}

/// Where each key and value of the proxy-wasm pairs encoding lies in `bytes`, in order (keys
/// not checked for UTF-8); `None` if the bytes are not well-formed. Lets a reader keep the
/// host's buffer and copy only what it looks up.
pub fn pair_ranges(bytes: &[u8]) -> Option<Vec<(Range<usize>, Range<usize>)>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = u32_at(0)?;
    let mut sizes_at = 4usize;
    let mut data_at = count.checked_mul(8)?.checked_add(4)?;
    if data_at > bytes.len() {
        return None;
    }
    let mut pairs = Vec::with_capacity(count);
    for _ in 0..count {
        let key_len = u32_at(sizes_at)?;
        let value_len = u32_at(sizes_at + 4)?;
        sizes_at += 8;
        let key = data_at..data_at.checked_add(key_len)?;
        bytes.get(key.clone())?;
        data_at = key.end.checked_add(1)?;
        let value = data_at..data_at.checked_add(value_len)?;
        bytes.get(value.clone())?;
        data_at = value.end.checked_add(1)?;
        pairs.push((key, value));
    }
    Some(pairs)
}

/// One metadata value as JSON. `numeric`: the configuration compares this field as a number.
pub fn decode_value(bytes: &[u8], numeric: bool) -> Option<Value> {
    let as_double = || {
        let b: [u8; 8] = bytes.try_into().ok()?;
        Number::from_f64(f64::from_le_bytes(b)).map(Value::Number)
    };
    if numeric && bytes.len() == 8 {
        return as_double();
    }
    if let [b] = bytes {
        if *b <= 1 {
            return Some(Value::Bool(*b == 1));
        }
    }
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => Some(Value::String(s.to_string())),
        _ => as_double(),
    }
}

/// The metadata key of a pointer: `/a/b` → `a.b`.
pub fn metadata_key(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// Fills the fields of `pointers` from a decoded namespace. `numeric[i]`: pointer `i` is
/// compared as a number somewhere in the configuration.
pub fn fields_from_metadata(
    pointers: &PointerSet,
    numeric: &[bool],
    namespace: &[(String, Vec<u8>)],
) -> Fields {
    let mut fields = Fields::with_len(pointers.len());
    for (i, pointer) in pointers.iter().enumerate() {
        let key = metadata_key(pointer);
        let Some((_, raw)) = namespace.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        if let Some(v) = decode_value(raw, numeric.get(i).copied().unwrap_or(false)) {
            fields.set(i, v);
        }
    }
    fields
}

/// The proxy-wasm pairs encoding of a namespace, the inverse of [`decode_pairs`]: how Envoy hands
/// dynamic metadata to wasm (tests, fuzzing and seeds build it with this).
pub fn encode_pairs<K: AsRef<str>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = len(pairs.len()).to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&len(k.as_ref().len()));
        out.extend_from_slice(&len(v.as_ref().len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    fn pairs(items: &[(&str, &[u8])]) -> Vec<u8> {
        encode_pairs(items)
    }

    #[test]
    fn decodes_pairs_and_values() {
        let t = 1.5f64.to_le_bytes();
        let bytes = pairs(&[("model", b"iris"), ("temperature", &t), ("stream", &[1])]);
        let p = decode_pairs(&bytes).unwrap();
        assert_eq!(p.len(), 3);
        let mut set = PointerSet::new();
        let temp = set.insert("/temperature").unwrap();
        let stream = set.insert("/stream").unwrap();
        let numeric = vec![false, true, false];
        let f = fields_from_metadata(&set, &numeric, &p);
        assert_eq!(f.get(0), Some(&json!("iris")));
        assert_eq!(f.get(temp), Some(&json!(1.5)));
        assert_eq!(f.get(stream), Some(&json!(true)));
    }

    #[test]
    fn numeric_hint_decides_printable_doubles() {
        // 34.509803921568626 is the bytes "AAAAAAA@": printable, yet a number.
        let raw = f64::from_le_bytes(*b"AAAAAAA@").to_le_bytes();
        assert_eq!(
            decode_value(&raw, true),
            Some(json!(f64::from_le_bytes(*b"AAAAAAA@")))
        );
        assert_eq!(decode_value(&raw, false), Some(json!("AAAAAAA@")));
        // An 8-character model name stays a string where no number is expected.
        assert_eq!(decode_value(b"gpt-4o-m", false), Some(json!("gpt-4o-m")));
        // Non-printable 8 bytes are a double whatever the hint.
        assert_eq!(decode_value(&0.7f64.to_le_bytes(), false), Some(json!(0.7)));
    }

    #[test]
    fn malformed_pairs_are_none() {
        assert_eq!(decode_pairs(&[]), Some(Vec::new()));
        for bad in [
            &[1u8, 0, 0][..],
            &[1, 0, 0, 0],
            &[1, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0],
            &[0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(decode_pairs(bad).is_none(), "{bad:?}");
        }
    }
}
