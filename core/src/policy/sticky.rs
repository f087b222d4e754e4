//! Sticky assignment: the same key lands on the same target on every worker and every Envoy.

/// FNV-1a over the model name, a separator and the key, finished with the murmur3 64-bit mixer
/// so that nearby keys ("user-1", "user-2") spread over the whole range.
pub fn sticky_hash(model: &str, key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in model
        .bytes()
        .chain(std::iter::once(0xff))
        .chain(key.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Maps a 64-bit hash onto `[0, total)` without modulo bias worth the name.
pub fn bucket(hash: u64, total: u64) -> u64 {
    ((u128::from(hash) * u128::from(total)) >> 64) as u64
}

/// The value of cookie `name` in a `cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        assert_eq!(sticky_hash("m", "u1"), sticky_hash("m", "u1"));
        assert_ne!(sticky_hash("m", "u1"), sticky_hash("n", "u1"));
        // Known value, so a change of the function (which would move every user) fails a test.
        assert_eq!(sticky_hash("sentiment", "alice"), 8132645237600700978);
        let mut low = 0;
        for i in 0..10_000 {
            if bucket(sticky_hash("m", &format!("user-{i}")), 100) < 10 {
                low += 1;
            }
        }
        assert!((800..1200).contains(&low), "{low}");
    }

    #[test]
    fn cookies() {
        assert_eq!(cookie_value("a=1; uid=abc; b=2", "uid"), Some("abc"));
        assert_eq!(cookie_value("uid=\"q\"", "uid"), Some("q"));
        assert_eq!(cookie_value("xuid=1", "uid"), None);
        assert_eq!(cookie_value("", "uid"), None);
    }
}
