//! Text quoted in messages and logs: in double quotes, escaped as `{:?}` escapes a `str`.
//!
//! One place for the rule. It is std's `Debug` for `str` itself: std keeps that code and its
//! Unicode tables in the module whatever the filter does (std's own random-seed failure message
//! formats with it), so writing the escapes by hand would only add a second copy.

use std::fmt;

/// `text` in double quotes, escaped as `{:?}` escapes it: `format!("{}", quoted(s))`.
pub fn quoted(text: &str) -> Quoted<'_> {
    Quoted(text)
}

/// `value.to_string()` through one copy of std's `to_string` for every `Display` type, rather
/// than a copy per type (each ~120 bytes of the module).
#[inline(never)]
pub fn text(value: &dyn fmt::Display) -> String {
    value.to_string()
}

/// `parts` with `sep` between them, as `[T]::join`: one plain loop rather than std's generic
/// join (~0.5-0.7 KB per element type), for lists in messages and the host's property paths.
pub fn join<S: AsRef<str>>(parts: &[S], sep: &str) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(part.as_ref());
    }
    out
}

/// See [`quoted`].
pub struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::quoted;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(quoted("plain").to_string(), r#""plain""#);
        assert_eq!(quoted("a\"b\\c\n\t").to_string(), r#""a\"b\\c\n\t""#);
        assert_eq!(
            quoted("x\u{1b}\u{202e}y").to_string(),
            r#""x\u{1b}\u{202e}y""#
        );
        assert_eq!(quoted("modèle").to_string(), "\"modèle\"");
    }

    #[test]
    fn joins_as_std() {
        for parts in [
            &[][..],
            &["a"],
            &["a", ""],
            &["", "b", "c"],
            &["x", "y", "z", "w"],
        ] {
            let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            for sep in ["", ", ", " and ", "; ", "\0"] {
                assert_eq!(super::join(&owned, sep), owned.join(sep));
                assert_eq!(super::join(parts, sep), parts.join(sep));
            }
        }
    }
}
