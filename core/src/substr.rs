//! Substring search and replacement without std's Two-Way searcher (`str::contains`,
//! `str::replace` with a `&str` pattern link it: ~2.3 KB of module), and a split at the last
//! ASCII separator without the reverse character searcher. The patterns here are short
//! constants, so a plain scan costs no more; the texts searched are answers and configuration.

/// Whether `needle` occurs in `hay` (`true` for an empty needle, as `str::contains`).
pub fn contains(hay: &str, needle: &str) -> bool {
    find(hay.as_bytes(), needle.as_bytes(), 0).is_some()
}

/// `s` with every occurrence of `from` replaced by `to`, left to right without overlaps, as
/// `str::replace`; an empty `from` leaves `s` as it is (no caller has one).
pub fn replace(s: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = 0;
    while let Some(at) = (!from.is_empty())
        .then(|| find(s.as_bytes(), from.as_bytes(), start))
        .flatten()
    {
        // UTF-8 matches only start and end on character boundaries: these slices exist.
        out.push_str(s.get(start..at).unwrap_or_default());
        out.push_str(to);
        start = at + from.len();
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out
}

/// `s` split around the last `sep`, an ASCII byte, as `str::rsplit_once(char)` splits it,
/// without the reverse character searcher that links (~0.5 KB).
pub fn rsplit_once(s: &str, sep: u8) -> Option<(&str, &str)> {
    let at = s.bytes().rposition(|b| b == sep)?;
    // An ASCII byte is a whole character: both sides are on character boundaries.
    Some((s.get(..at)?, s.get(at + 1..)?))
}

/// The first index at or after `from` where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let rest = hay.get(from..)?;
    if needle.is_empty() {
        return Some(from);
    }
    rest.windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXTS: &[&str] = &[
        "",
        "a",
        "~",
        "~0~1",
        "~01",
        "a~1b~0c~~11",
        "{version}-{alias}",
        "{version}{version}",
        "{alias}{{version}}",
        "café ☕ {alias}",
        "etcdserver: user name is empty",
        "etcdserver: lease not found",
        "aaaa",
    ];
    const PATTERNS: &[&str] = &[
        "~1",
        "~0",
        "{version}",
        "{alias}",
        "aa",
        "a",
        "☕",
        "user name is empty",
        "lease not found",
        "auth token",
        "not there",
    ];

    #[test]
    fn contains_as_std() {
        for t in TEXTS {
            for p in PATTERNS.iter().chain(&[""]) {
                assert_eq!(contains(t, p), t.contains(p), "{t:?} {p:?}");
            }
        }
    }

    #[test]
    fn replace_as_std() {
        for t in TEXTS {
            for p in PATTERNS {
                for to in ["", "/", "~", "v2", "long replacement ☕"] {
                    assert_eq!(replace(t, p, to), t.replace(p, to), "{t:?} {p:?} {to:?}");
                }
            }
            assert_eq!(replace(t, "", "x"), *t);
        }
    }

    #[test]
    fn generated_texts_as_std() {
        let mut rng = crate::rng::Rng::seed_from_u64(5);
        let alphabet = ['a', 'b', '~', '0', '1', 'é'];
        for _ in 0..20_000 {
            let text: String = (0..rng.below(12))
                .map(|_| alphabet[rng.below(6) as usize])
                .collect();
            let pattern: String = (0..1 + rng.below(3))
                .map(|_| alphabet[rng.below(6) as usize])
                .collect();
            assert_eq!(contains(&text, &pattern), text.contains(&pattern));
            assert_eq!(replace(&text, &pattern, "-"), text.replace(&pattern, "-"));
            for sep in ['~', '0'] {
                assert_eq!(
                    rsplit_once(&text, sep as u8),
                    text.rsplit_once(sep),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn rsplit_once_as_std() {
        for t in TEXTS {
            for sep in [b'~', b':', b'}', b' '] {
                assert_eq!(rsplit_once(t, sep), t.rsplit_once(char::from(sep)), "{t:?}");
            }
        }
    }
}
