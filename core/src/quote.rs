//! Text quoted for messages and logs, as `{:?}` quotes a `str`, without std's Unicode tables.
//!
//! `{:?}` decides per character whether it is printable from tables of the whole of Unicode,
//! which the module would otherwise carry only for messages. Here ASCII is escaped exactly as
//! `{:?}` escapes it; beyond ASCII, the characters that hide or reorder text (C1 controls, soft
//! hyphen, zero-width and bidirectional marks, line and paragraph separators, the byte order
//! mark) are escaped as `\u{..}`, and the rest is written as it is.

use std::fmt::{self, Write as _};

/// `text` in double quotes, escaped as the module doc says: `format!("{}", quoted(s))`.
pub fn quoted(text: &str) -> Quoted<'_> {
    Quoted(text)
}

/// See [`quoted`].
pub struct Quoted<'a>(&'a str);

// Character by character: these are messages and logs, where a few bytes of code matter more
// than the calls per character.
impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            write_char(f, c)?;
        }
        f.write_char('"')
    }
}

fn write_char(f: &mut fmt::Formatter<'_>, c: char) -> fmt::Result {
    let short = match c {
        '"' => "\\\"",
        '\\' => "\\\\",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        '\0' => "\\0",
        _ => "",
    };
    if !short.is_empty() {
        return f.write_str(short);
    }
    let code = u32::from(c);
    if !(code < 0x20 || (0x7f..=0x9f).contains(&code) || hides_text(code)) {
        return f.write_char(c);
    }
    // `\u{..}` in lower-case hex without leading zeros, as `{:?}` writes it.
    f.write_str("\\u{")?;
    let digits = (32 - code.leading_zeros()).div_ceil(4).max(1);
    for at in (0..digits).rev() {
        let digit = (code >> (4 * at)) & 0xf;
        f.write_char(char::from_digit(digit, 16).unwrap_or('0'))?;
    }
    f.write_char('}')
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
