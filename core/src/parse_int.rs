//! Unsigned integers from text as std's `from_str_radix` reads them, through one copy of std's
//! parser (`u64`'s, which the module needs anyway): every integer type read from text has its
//! own ~330 bytes of parser otherwise.

/// `text` as a `T` in `radix`: an optional `+`, then digits, nothing else; `None` exactly where
/// `T::from_str_radix` fails (no digits, another character, or past `T::MAX`).
pub fn unsigned<T: TryFrom<u64>>(text: &str, radix: u32) -> Option<T> {
    u64::from_str_radix(text, radix)
        .ok()
        .and_then(|n| T::try_from(n).ok())
}

#[cfg(test)]
mod tests {
    use super::unsigned;

    /// Against each type's own parser, in base 10 and 16, on edge cases and generated strings.
    #[test]
    fn reads_what_std_reads() {
        let mut texts: Vec<String> = [
            "",
            "+",
            "-",
            "-0",
            "+0",
            "0",
            "00",
            "255",
            "256",
            "65535",
            "65536",
            "4294967295",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "ff",
            "FF",
            "fF",
            "100",
            "10000",
            "ffffffff",
            "100000000",
            "1_0",
            " 1",
            "1 ",
            "++1",
            "+-1",
            "0x10",
            "１",
            "٣",
            "1e3",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut rng = crate::rng::Rng::seed_from_u64(3);
        let alphabet = b"+-0123456789abfAF9 ";
        for _ in 0..20_000 {
            let len = rng.below(12);
            let text: String = (0..len)
                .map(|_| char::from(alphabet[rng.below(alphabet.len() as u64) as usize]))
                .collect();
            texts.push(text);
        }
        for text in &texts {
            for radix in [10, 16] {
                assert_eq!(
                    unsigned::<u8>(text, radix),
                    u8::from_str_radix(text, radix).ok()
                );
                assert_eq!(
                    unsigned::<u16>(text, radix),
                    u16::from_str_radix(text, radix).ok()
                );
                assert_eq!(
                    unsigned::<u32>(text, radix),
                    u32::from_str_radix(text, radix).ok()
                );
            }
        }
    }
}
