//! `ip:port` as std's `SocketAddr::from_str` accepts it, without std's parser: the configured
//! endpoints are the module's only addresses, and this check is 2.3 KB smaller than std's
//! parser, which builds the values too. Each step follows `core::net::parser`, so the same
//! strings pass; the tests compare both on hand-picked and generated strings.

/// `ip:port`: an IPv4 address, or an IPv6 one in brackets with an optional `%scope`.
pub(super) fn is_socket_addr(s: &str) -> bool {
    let mut p = Cursor(s.as_bytes());
    let ip = if p.eat(b'[') {
        p.ipv6() && (!p.eat(b'%') || p.number(10, 0, true, u32::MAX)) && p.eat(b']')
    } else {
        p.ipv4()
    };
    ip && p.eat(b':') && p.number(10, 0, true, u16::MAX.into()) && p.0.is_empty()
}

/// What is left to read. A step that fails leaves it as it was (std's `read_atomically`).
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn eat(&mut self, c: u8) -> bool {
        match self.0.split_first() {
            Some((&b, rest)) if b == c => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    /// Runs `step`; when it fails, puts the cursor back.
    fn atomic(&mut self, step: impl FnOnce(&mut Self) -> bool) -> bool {
        let start = self.0;
        let ok = step(self);
        if !ok {
            self.0 = start;
        }
        ok
    }

    /// std's `read_number`: every digit in `radix` that follows (none: fails), at most
    /// `max_digits` of them (0: any number), worth at most `max`; `zero_prefix`: "0" may lead
    /// other digits.
    fn number(&mut self, radix: u32, max_digits: usize, zero_prefix: bool, max: u32) -> bool {
        self.atomic(|p| {
            let leading_zero = p.0.first() == Some(&b'0');
            let (mut value, mut count) = (0u32, 0usize);
            while let Some((&b, rest)) = p.0.split_first() {
                let Some(digit) = char::from(b).to_digit(radix) else {
                    break;
                };
                p.0 = rest;
                count = count.saturating_add(1);
                let next = value.checked_mul(radix).and_then(|v| v.checked_add(digit));
                match next {
                    Some(v) if v <= max && (max_digits == 0 || count <= max_digits) => value = v,
                    _ => return false,
                }
            }
            count > 0 && (zero_prefix || !leading_zero || count == 1)
        })
    }

    /// `sep` (unless first, `i == 0`) then `step`, or nothing read.
    fn separated(&mut self, sep: u8, i: usize, step: impl FnOnce(&mut Self) -> bool) -> bool {
        self.atomic(|p| (i == 0 || p.eat(sep)) && step(p))
    }

    /// Four decimal octets without leading zeros.
    fn ipv4(&mut self) -> bool {
        self.atomic(|p| (0..4).all(|i| p.separated(b'.', i, |p| p.number(10, 3, false, 255))))
    }

    /// std's `read_groups`: up to `limit` groups of 1 to 4 hex digits separated by `:`, the
    /// last two of which may be an IPv4 address; how many were read, and whether the IPv4 one.
    fn groups(&mut self, limit: usize) -> (usize, bool) {
        for i in 0..limit {
            if i.saturating_add(1) < limit && self.separated(b':', i, Self::ipv4) {
                return (i.saturating_add(2), true);
            }
            if !self.separated(b':', i, |p| p.number(16, 4, true, 0xFFFF)) {
                return (i, false);
            }
        }
        (limit, false)
    }

    /// Eight groups, or fewer with `::` standing for the zero groups left out.
    fn ipv6(&mut self) -> bool {
        self.atomic(|p| {
            let (head, head_ipv4) = p.groups(8);
            if head == 8 {
                return true;
            }
            if head_ipv4 || !p.eat(b':') || !p.eat(b':') {
                return false;
            }
            p.groups(7usize.saturating_sub(head));
            true
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::is_socket_addr;

    fn std_accepts(s: &str) -> bool {
        s.parse::<std::net::SocketAddr>().is_ok()
    }

    #[test]
    fn hand_picked_addresses_pass_as_std_passes_them() {
        let cases = [
            "10.0.0.1:80",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "256.0.0.1:80",
            "1.2.3:80",
            "1.2.3.4",
            "1.2.3.4:",
            "1.2.3.4:65536",
            "1.2.3.4:0080",
            "01.2.3.4:80",
            "1.2.3.04:8",
            "1.2.3.4:80x",
            " 1.2.3.4:80",
            "1.2.3.4.5:80",
            "1234.2.3.4:80",
            "[::1]:80",
            "[::]:0",
            "[::1]",
            "::1:80",
            "[1:2:3:4:5:6:7:8]:80",
            "[1:2:3:4:5:6:7:8:9]:80",
            "[1:2:3:4:5:6:7::]:80",
            "[::1:2:3:4:5:6:7]:80",
            "[::1:2:3:4:5:6:7:8]:80",
            "[1::2::3]:80",
            "[::ffff:1.2.3.4]:80",
            "[1.2.3.4::]:80",
            "[1:2:3:4:5:6:1.2.3.4]:80",
            "[1:2:3:4:5:6:7:1.2.3.4]:80",
            "[fe80::1%2]:80",
            "[fe80::1%]:80",
            "[fe80::1%x]:80",
            "[FFFF::abcd]:1",
            "[12345::1]:80",
            "[0000::1]:80",
            "[:1]:80",
            "[1:]:80",
            "[1::]:80",
            "[::1.2.3.4]:80",
            "[::1.2.3]:80",
            "[1:2:3:4:5:6:7:1.2.3.4]:1",
            "[1::1.2.3.4]:99",
            "[fe80::1%4294967295]:80",
            "[fe80::1%4294967296]:80",
            "",
            ":80",
            "[]:80",
            "é:80",
        ];
        for s in cases {
            assert_eq!(is_socket_addr(s), std_accepts(s), "{s:?}");
        }
    }

    #[test]
    fn generated_strings_pass_as_std_passes_them() {
        const PARTS: [&str; 22] = [
            "0", "1", "00", "12", "255", "256", "ffff", "FfF", "12345", "a", "g", ".", ":", "::",
            "[", "]", "%", "1.2.3.4", "65535", "65536", "0:", "9",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % n as u64).unwrap()
        };
        let (mut passed, mut total) = (0, 0);
        for _ in 0..200_000 {
            let mut s = String::new();
            if next(2) == 0 {
                s.push('[');
            }
            for _ in 0..next(14) {
                s.push_str(PARTS[next(PARTS.len())]);
            }
            if next(3) > 0 {
                s.push_str(["]:80", ":443", "]:0", "%1]:8", ":"][next(5)]);
            }
            let std = std_accepts(&s);
            assert_eq!(is_socket_addr(&s), std, "{s:?}");
            passed += usize::from(std);
            total += 1;
        }
        // The generator reaches both answers often enough for the comparison to mean something.
        assert!(passed > 500 && passed < total - 500, "{passed} of {total}");
    }
}
