//! Text quoted for messages and logs, as `{:?}` quotes a `str`, without std's Unicode tables.
//!
//! `{:?}` decides per character whether it is printable from tables of the whole of Unicode,
//! which the module would otherwise carry only for messages. Here ASCII is escaped exactly as
//! `{:?}` escapes it; beyond ASCII, the characters that hide or reorder text (C1 controls, soft
//! hyphen, zero-width and bidirectional marks, line and paragraph separators, the byte order
//! mark) are escaped as `\u{..}`, and the rest is written as it is.

use std::fmt;

/// `text` in double quotes, escaped as the module doc says: `format!("{}", quoted(s))`.
pub fn quoted(text: &str) -> Quoted<'_> {
    Quoted(text)
}

/// See [`quoted`].
pub struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        let mut plain = 0;
        for (at, c) in self.0.char_indices() {
            let Some(escape) = escape(c) else {
                continue;
            };
            f.write_str(self.0.get(plain..at).unwrap_or_default())?;
            escape.write(f)?;
            plain = at + c.len_utf8();
        }
        f.write_str(self.0.get(plain..).unwrap_or_default())?;
        f.write_str("\"")
    }
}

enum Escape {
    Short(&'static str),
    Unicode(u32),
}

impl Escape {
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Escape::Short(s) => f.write_str(s),
            Escape::Unicode(code) => write!(f, "\\u{{{code:x}}}"),
        }
    }
}

fn escape(c: char) -> Option<Escape> {
    let code = u32::from(c);
    Some(match c {
        '"' => Escape::Short("\\\""),
        '\\' => Escape::Short("\\\\"),
        '\n' => Escape::Short("\\n"),
        '\r' => Escape::Short("\\r"),
        '\t' => Escape::Short("\\t"),
        '\0' => Escape::Short("\\0"),
        _ if code < 0x20 || (0x7f..=0x9f).contains(&code) || hides_text(code) => {
            Escape::Unicode(code)
        }
        _ => return None,
    })
}

/// Characters beyond the C1 controls that change how text reads without showing themselves.
fn hides_text(code: u32) -> bool {
    matches!(
        code,
        0xad | 0x061c
            | 0x180e
            | 0x200b..=0x200f
            | 0x2028..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
    )
}

#[cfg(test)]
mod tests {
    use super::quoted;

    fn debug(s: &str) -> String {
        format!("{s:?}")
    }

    #[test]
    fn ascii_is_quoted_as_debug_quotes_it() {
        let all: String = (0u8..=0x7f).map(char::from).collect();
        assert_eq!(quoted(&all).to_string(), debug(&all));
        for b in 0u8..=0x7f {
            let one = format!("a{}b", char::from(b));
            assert_eq!(quoted(&one).to_string(), debug(&one), "byte {b:#x}");
        }
        assert_eq!(quoted("").to_string(), "\"\"");
    }

    #[test]
    fn hidden_characters_are_escaped_as_debug_escapes_them() {
        for c in [
            '\u{80}', '\u{9f}', '\u{ad}', '\u{200b}', '\u{202e}', '\u{2066}', '\u{feff}',
        ] {
            let s = format!("x{c}y");
            assert_eq!(quoted(&s).to_string(), debug(&s), "{:x}", u32::from(c));
        }
    }

    #[test]
    fn printable_text_beyond_ascii_is_written_as_it_is() {
        for s in ["modèle", "模型-7b", "Ωmega ✓", "emoji 🦀"] {
            assert_eq!(quoted(s).to_string(), debug(s));
        }
    }
}
