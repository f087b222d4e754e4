//! Sensitive-data detectors over prompt text. A detector says *that* it fired, never what it
//! matched: the matched text must not leave this function (not in headers, logs or metrics).

use crate::regex::Regex;

#[derive(Debug)]
pub enum Detector {
    /// An e-mail address (local@domain.tld).
    Email,
    /// A payment card number: 13–19 digits (spaces, dashes or dots allowed between them)
    /// passing the Luhn check.
    Card,
    /// An IBAN, in any letter case: country code, check digits, up to 30 alphanumerics
    /// (spaces or dashes allowed between groups), passing the mod-97 check.
    Iban,
    Regex(Regex),
}

impl Detector {
    pub fn builtin(name: &str) -> Option<Detector> {
        match name {
            "email" => Some(Detector::Email),
            "card" => Some(Detector::Card),
            "iban" => Some(Detector::Iban),
            _ => None,
        }
    }

    /// Compiles a user pattern; the error is a sentence for the configuration error.
    pub fn regex(pattern: &str) -> Result<Detector, String> {
        if pattern.len() > 1024 {
            return Err("the pattern is longer than 1024 characters".into());
        }
        Regex::new(pattern)
            .map(Detector::Regex)
            .map_err(|e| format!("invalid regular expression: {e}"))
    }

    pub fn fires(&self, text: &str) -> bool {
        match self {
            Detector::Email => has_email(text),
            Detector::Card => has_card(text),
            Detector::Iban => has_iban(text),
            Detector::Regex(re) => re.is_match(text),
        }
    }
}

fn has_email(text: &str) -> bool {
    let bytes = text.as_bytes();
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    bytes.windows(2).enumerate().any(|(i, pair)| {
        pair.get(1) == Some(&b'@')
            && pair.first().is_some_and(|&c| local(c))
            && is_mail_domain(bytes.get(i + 2..).unwrap_or_default())
    })
}

/// Whether the text after an `@` starts with a domain: dot-separated non-empty labels, at least
/// two, the last (the TLD) 2+ letters; trailing dots are not part of it. Works on the bytes,
/// without copies: every domain character is ASCII.
fn is_mail_domain(after: &[u8]) -> bool {
    let domain = |b: u8| b.is_ascii_alphanumeric() || b".-".contains(&b);
    let len = after
        .iter()
        .position(|&c| !domain(c))
        .unwrap_or(after.len());
    let dom = after.get(..len).unwrap_or_default();
    let end = dom.iter().rposition(|&c| c != b'.').map_or(0, |p| p + 1);
    let dom = dom.get(..end).unwrap_or_default();
    let mut labels = 0usize;
    let mut last: &[u8] = &[];
    for label in dom.split(|&c| c == b'.') {
        if label.is_empty() {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// What people type between the groups of a number.
fn separator(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.')
}

fn has_card(text: &str) -> bool {
    // Chains of digit groups, one space, dash or dot between groups. A card is any run of whole
    // consecutive groups (13–19 digits, Luhn), so a card next to other numbers ("4111 1111 1111
    // 1111 12/29", "qty 2 4111 …") is still one; inside a group longer than any card, every
    // stretch of 13–19 digits is a candidate.
    let mut digits: Vec<u8> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut last_sep = false;
    for c in text.bytes() {
        if c.is_ascii_digit() {
            digits.push(c - b'0');
            last_sep = false;
            continue;
        }
        if separator(c) && !digits.is_empty() && !last_sep {
            ends.push(digits.len());
            last_sep = true;
            continue;
        }
        if !last_sep && !digits.is_empty() {
            ends.push(digits.len());
        }
        if chain_has_card(&digits, &ends) {
            return true;
        }
        digits.clear();
        ends.clear();
        last_sep = false;
    }
    if !last_sep && !digits.is_empty() {
        ends.push(digits.len());
    }
    chain_has_card(&digits, &ends)
}

/// `ends`: where each group of `digits` ends.
fn chain_has_card(digits: &[u8], ends: &[usize]) -> bool {
    let card = |from: usize, to: usize| {
        (13..=19).contains(&(to.saturating_sub(from))) && digits.get(from..to).is_some_and(luhn)
    };
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        // Runs of whole groups starting at this group.
        let mut to_index = i;
        while let Some(&to) = ends.get(to_index) {
            if to.saturating_sub(start) > 19 {
                break;
            }
            if card(start, to) {
                return true;
            }
            to_index += 1;
        }
        // Stretches inside a group longer than any card.
        if end.saturating_sub(start) > 19
            && (start..end).any(|from| (13..=19).any(|n| from + n <= end && card(from, from + n)))
        {
            return true;
        }
        start = end;
    }
    false
}

fn iban_valid(candidate: &[u8]) -> bool {
    if !(15..=34).contains(&candidate.len()) {
        return false;
    }
    // Move the first four characters to the end, letters → 10..35, then mod 97 == 1.
    let rearranged = candidate.iter().skip(4).chain(candidate.iter().take(4));
    let mut rem: u32 = 0;
    for &c in rearranged {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

fn has_iban(text: &str) -> bool {
    // Candidates: two letters, two digits, then alphanumerics, optionally grouped by spaces or
    // dashes; letters in either case (people type "de89 3704 ...").
    let bytes: Vec<u8> = text.bytes().map(|b| b.to_ascii_uppercase()).collect();
    let mut i = 0;
    while i + 4 <= bytes.len() {
        let start_ok = i == 0 || !bytes.get(i - 1).is_some_and(u8::is_ascii_alphanumeric);
        let head = bytes.get(i..i + 4).unwrap_or_default();
        if start_ok
            && head.first().is_some_and(u8::is_ascii_uppercase)
            && head.get(1).is_some_and(u8::is_ascii_uppercase)
            && head.get(2).is_some_and(u8::is_ascii_digit)
            && head.get(3).is_some_and(u8::is_ascii_digit)
        {
            let mut candidate: Vec<u8> = Vec::with_capacity(34);
            let mut j = i;
            while let Some(&c) = bytes.get(j) {
                if c.is_ascii_uppercase() || c.is_ascii_digit() {
                    candidate.push(c);
                } else if (c == b' ' || c == b'-')
                    && bytes.get(j + 1).is_some_and(|n| n.is_ascii_alphanumeric())
                {
                } else {
                    break;
                }
                if candidate.len() > 34 {
                    break;
                }
                j += 1;
                // Try every prefix length: a grouped IBAN may be followed by other words.
                if candidate.len() >= 15 && iban_valid(&candidate) {
                    return true;
                }
            }
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email() {
        let d = Detector::Email;
        assert!(d.fires("write to jane.doe+x@example.co.uk please"));
        assert!(d.fires("a@b.io"));
        assert!(!d.fires("no at sign here"));
        assert!(!d.fires("user@localhost"));
        assert!(!d.fires("@handle on social"));
        assert!(!d.fires("x@y.1"));
        assert!(d.fires("see a@example.com."));
        assert!(d.fires("@@ a@b.io"));
        assert!(!d.fires("a@b..io"));
        assert!(!d.fires("a@.io"));
        assert!(!d.fires("a@b.io-x"));
        assert!(!d.fires("a@"));
    }

    #[test]
    fn card_with_luhn() {
        let d = Detector::Card;
        assert!(d.fires("card 4111 1111 1111 1111 exp 12/29"));
        assert!(d.fires("4111-1111-1111-1111"));
        assert!(d.fires("5500005555555559"));
        assert!(d.fires("4111.1111.1111.1111"));
        assert!(!d.fires("4111 1111 1111 1112")); // Luhn fails
                                                  // Next to other numbers, with or without a separator.
        assert!(d.fires("pay with 4111 1111 1111 1111 12/29"));
        assert!(d.fires("card 4111111111111111 123"));
        assert!(d.fires("qty 2 4111 1111 1111 1111"));
        assert!(d.fires("4111111111111111 2025 12 31"));
        assert!(d.fires("x411111111111111112345"));
        assert!(!d.fires("order 1234567890")); // too short
        assert!(!d.fires("phone +1 415 555 0100"));
    }

    #[test]
    fn iban_mod97() {
        let d = Detector::Iban;
        assert!(d.fires("pay to DE89 3704 0044 0532 0130 00 today"));
        assert!(d.fires("GB82WEST12345698765432"));
        assert!(d.fires("iban gb82west12345698765432, thanks"));
        assert!(d.fires("DE89-3704-0044-0532-0130-00"));
        assert!(!d.fires("DE89 3704 0044 0532 0130 01")); // check fails
        assert!(!d.fires("AB12 not an iban"));
    }

    #[test]
    fn user_regex() {
        let d = Detector::regex(r"EMP-[0-9]{6}").unwrap();
        assert!(d.fires("employee EMP-123456"));
        assert!(!d.fires("EMP-12"));
        assert!(Detector::regex("(").is_err());
        assert!(Detector::builtin("ssn").is_none());
    }
}
