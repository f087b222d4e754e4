//! Bytes out as serde_json's compact writer spells them: strings with its escapes, integers in
//! decimal, floats in zmij's shortest form (`1.0`, `1e+16`, `1.5e-7`; `null` when not finite),
//! struct fields in declaration order, maps in their key order.

use crate::vecmap::{VecMap, VecSet};

/// A value that writes itself as JSON.
pub trait ToJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

/// `value` as JSON bytes.
pub fn to_vec<T: ToJson + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.write_json(&mut out);
    out
}

/// A string, quoted, with serde_json's escapes: `"` and `\`, the short forms of backspace,
/// form feed, newline, carriage return and tab, `\u00XX` (lower-case hex) for the other
/// control characters; everything else as it is.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"00");
            out.extend(HEX.get(usize::from(b >> 4)));
            out.extend(HEX.get(usize::from(b & 0xf)));
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

/// A float as serde_json writes it: the shortest digits that read back to the same value (ryu's
/// are zmij's, ties to an even digit included), in ryu's layout but for the sign of a positive
/// exponent (`1e+16`); `null` for NaN and the infinities.
pub fn float(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = crate::format_float::shortest(v, &mut buf).as_bytes();
    // Checked, not `split_at`: `e + 1` is within `text` (it ends in digits), and no panic
    // path is compiled for it.
    match text.iter().position(|&b| b == b'e') {
        Some(e) if text.get(e + 1) != Some(&b'-') => {
            let (mantissa, exp) = text.split_at_checked(e + 1).unwrap_or((text, &[]));
            out.extend_from_slice(mantissa);
            out.push(b'+');
            out.extend_from_slice(exp);
        }
        _ => out.extend_from_slice(text),
    }
}

/// `{"a":…,"b":…}`: fields written in the order given.
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, first: true }
    }

    pub fn field(&mut self, name: &str, value: &(impl ToJson + ?Sized)) -> &mut Self {
        self.key(name);
        value.write_json(self.out);
        self
    }

    /// The separator, `name` and the colon: one copy, not one per value type.
    #[inline(never)]
    fn key(&mut self, name: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        string(self.out, name);
        self.out.push(b':');
    }

    pub fn end(&mut self) {
        self.out.push(b'}');
    }
}

fn seq<'v, T: ToJson + 'v>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'v T>) {
    out.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        item.write_json(out);
    }
    out.push(b']');
}

impl ToJson for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl ToJson for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        string(out, self);
    }
}

impl ToJson for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl ToJson for f64 {
    fn write_json(&self, out: &mut Vec<u8>) {
        float(out, *self);
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl ToJson for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(self.to_string().as_bytes());
            }
        }
    )*};
}
integers!(u32, u64, i64);

impl<T: ToJson> ToJson for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: ToJson> ToJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        seq(out, self);
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        seq(out, self);
    }
}

impl<T: ToJson, const N: usize> ToJson for [T; N] {
    fn write_json(&self, out: &mut Vec<u8>) {
        seq(out, self);
    }
}

impl<T: ToJson> ToJson for VecSet<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        seq(out, self);
    }
}

impl<A: ToJson, B: ToJson> ToJson for (A, B) {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        self.0.write_json(out);
        out.push(b',');
        self.1.write_json(out);
        out.push(b']');
    }
}

impl<T: ToJson> ToJson for VecMap<String, T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        let mut o = ObjectWriter::new(out);
        for (k, v) in self {
            o.field(k, v);
        }
        o.end();
    }
}

impl ToJson for crate::json::Value {
    fn write_json(&self, out: &mut Vec<u8>) {
        use crate::json::Value;
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(b) => b.write_json(out),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => u.write_json(out),
                (None, Some(i), _) => i.write_json(out),
                (None, None, f) => float(out, f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => string(out, s),
            Value::Array(items) => seq(out, items),
            Value::Object(map) => {
                let mut o = ObjectWriter::new(out);
                for (k, v) in map {
                    o.field(k, v);
                }
                o.end();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
#[path = "write_tests.rs"]
mod tests;
