//! Decision tokens: the `x-inference-decision` value when feedback is on.
//!
//! `<model>~<target>~<expires>~<nonce>~<tag>`: names of the model and target (names never hold
//! `~`), expiry in Unix seconds, a 64-bit nonce in hex, and the first 128 bits of
//! HMAC-SHA256(key, everything before the last `~`) in hex. Anyone can read a token; only the
//! holder of the key can make one, and each is accepted once (the host keeps spent nonces).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const TAG_BYTES: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecisionToken {
    pub model: String,
    pub target: String,
    pub expires: u64,
    pub nonce: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

impl TokenError {
    pub fn describe(&self) -> &'static str {
        match self {
            TokenError::Malformed => "the decision id is not one this router issued",
            TokenError::BadSignature => "the decision id's signature does not verify",
            TokenError::Expired => "the decision id has expired",
        }
    }
}

#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(<key>)")
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(
            *DIGITS.get(usize::from(b >> 4)).unwrap_or(&b'0'),
        ));
        s.push(char::from(
            *DIGITS.get(usize::from(b & 0xf)).unwrap_or(&b'0'),
        ));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}

impl TokenSigner {
    pub fn new(key: &[u8]) -> Self {
        TokenSigner { key: key.to_vec() }
    }

    fn mac(&self, payload: &str) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(payload.as_bytes());
        Some(mac)
    }

    pub fn sign(&self, token: &DecisionToken) -> String {
        let payload = format!(
            "{}~{}~{}~{:016x}",
            token.model, token.target, token.expires, token.nonce
        );
        let tag = self
            .mac(&payload)
            .map(|m| m.finalize().into_bytes())
            .map(|b| hex(b.get(..TAG_BYTES).unwrap_or_default()))
            .unwrap_or_default();
        format!("{payload}~{tag}")
    }

    /// Verifies signature first (constant time), then expiry against `now_unix_secs`.
    pub fn verify(&self, value: &str, now_unix_secs: u64) -> Result<DecisionToken, TokenError> {
        let (payload, tag_hex) = value.rsplit_once('~').ok_or(TokenError::Malformed)?;
        let parts: Vec<&str> = payload.split('~').collect();
        let [model, target, expires, nonce] = parts.as_slice() else {
            return Err(TokenError::Malformed);
        };
        let tag = unhex(tag_hex).ok_or(TokenError::Malformed)?;
        if tag.len() != TAG_BYTES || nonce.len() != 16 {
            return Err(TokenError::Malformed);
        }
        let mac = self.mac(payload).ok_or(TokenError::Malformed)?;
        mac.verify_truncated_left(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        let nonce = u64::from_str_radix(nonce, 16).map_err(|_| TokenError::Malformed)?;
        if now_unix_secs >= expires {
            return Err(TokenError::Expired);
        }
        Ok(DecisionToken {
            model: (*model).to_string(),
            target: (*target).to_string(),
            expires,
            nonce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> DecisionToken {
        DecisionToken {
            model: "sentiment".into(),
            target: "v2".into(),
            expires: 1_000,
            nonce: 0xdead_beef,
        }
    }

    #[test]
    fn round_trip() {
        let s = TokenSigner::new(b"secret");
        let v = s.sign(&token());
        assert!(v.starts_with("sentiment~v2~1000~00000000deadbeef~"), "{v}");
        assert_eq!(s.verify(&v, 999), Ok(token()));
    }

    #[test]
    fn forged_expired_malformed() {
        let s = TokenSigner::new(b"secret");
        let v = s.sign(&token());
        assert_eq!(s.verify(&v, 1_000), Err(TokenError::Expired));
        assert_eq!(
            TokenSigner::new(b"other").verify(&v, 0),
            Err(TokenError::BadSignature)
        );
        let tampered = v.replacen("~v2~", "~v1~", 1);
        assert_eq!(s.verify(&tampered, 0), Err(TokenError::BadSignature));
        let later = v.replacen("~1000~", "~9999~", 1);
        assert_eq!(s.verify(&later, 0), Err(TokenError::BadSignature));
        for bad in [
            "",
            "x",
            "a~b~c~d~e",
            "a~b~1~00000000deadbeef~zz",
            "~~~~",
            "a~b~1~2~3~4",
        ] {
            assert!(s.verify(bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_hmac_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = TokenSigner::new(b"Jefe")
            .mac("what do ya want for nothing?")
            .unwrap()
            .finalize()
            .into_bytes();
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
