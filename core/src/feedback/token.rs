//! Decision tokens: the `x-inference-decision` value when feedback is on.
//!
//! `<model>~<target>~<expires>~<nonce>~<bound>~<key id>[~c<context>]~<tag>`: names of the model
//! and target (names never hold `~`), expiry in Unix seconds, a 64-bit nonce in hex, `-` or the
//! 64-bit tag of the principal the decision is bound to (hex), the id of the key that signed it,
//! for a contextual strategy's decision `c` and the request's features in hex (signed like the
//! rest, so feedback cannot teach the strategy a context it did not route; tokens without it
//! read as before), and the
//! first 128 bits of HMAC-SHA256(key, domain ‖ everything before the last `~`) in hex. The domain
//! names the token format and the plugin (the configuration's identity), so a token of one plugin
//! never verifies at another that shares its key. Anyone can read a token; only the holder of a
//! key can make one, and each is accepted once (the host keeps spent nonces).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const TAG_BYTES: usize = 16;
/// What the MAC covers before the token's own text: format and purpose.
const DOMAIN: &str = "inference-router/decision/2";
const UNBOUND: &str = "-";
/// Marks the context part.
const CONTEXT: &str = "c";

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct DecisionToken {
    pub model: String,
    pub target: String,
    pub expires: u64,
    pub nonce: u64,
    /// The tag of the principal the decision is bound to ([`TokenKeys::principal_tag`]).
    #[cfg_attr(test, serde(default))]
    pub bound: Option<u64>,
    /// The id of the key that signed it.
    #[cfg_attr(test, serde(default))]
    pub key: String,
    /// The request's features, when a contextual strategy decided.
    #[cfg_attr(test, serde(default))]
    pub context: Option<crate::bandit::Context>,
}

// Read by hand (the fleet's in-doubt records), accepting what serde's derive did.
crate::json::read::text_struct!(DecisionToken { model, target, expires, nonce, bound default, key default, context default });

// Written by hand (the fleet's in-doubt records), fields in declaration order as serde's derive
// wrote them.
impl crate::json::ToJson for DecisionToken {
    fn write_json(&self, out: &mut Vec<u8>) {
        crate::json::ObjectWriter::new(out)
            .field("model", &self.model)
            .field("target", &self.target)
            .field("expires", &self.expires)
            .field("nonce", &self.nonce)
            .field("bound", &self.bound)
            .field("key", &self.key)
            .field("context", &self.context)
            .end();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    UnknownKey,
    BadSignature,
    Expired,
}

impl TokenError {
    pub fn describe(&self) -> &'static str {
        match self {
            TokenError::Malformed => "the decision id is not one this router issued",
            TokenError::UnknownKey => {
                "the decision id was signed with a key this router does not hold"
            }
            TokenError::BadSignature => "the decision id's signature does not verify",
            TokenError::Expired => "the decision id has expired",
        }
    }
}

/// One signing key and its id, with its HMAC key schedule (the inner and outer hash states)
/// computed once: each tag then starts from a copy instead of hashing the padded key again.
#[derive(Clone)]
pub struct SigningKey {
    pub id: String,
    keyed: Option<HmacSha256>,
    /// The MAC state after a token tag's fixed parts (domain, plugin, key id) for the plugin
    /// it was last asked for: each tag then hashes its payload alone. With a plugin name of 16
    /// bytes or more that prefix fills a SHA-256 block, so this saves one compression of the
    /// three per token signed or verified. Set on first use (the plugin name is not known
    /// where the keys are made); a copy, so the MAC is the same as hashing every part.
    token_prefix: std::cell::RefCell<Option<(String, HmacSha256)>>,
}

impl SigningKey {
    pub fn new(id: &str, key: &[u8]) -> Self {
        SigningKey {
            id: id.to_string(),
            keyed: HmacSha256::new_from_slice(key).ok(),
            token_prefix: std::cell::RefCell::new(None),
        }
    }

    /// [`mac`] over a token tag's fixed parts for `plugin`, from the kept state when it is
    /// for the same plugin.
    fn token_prefix(&self, plugin: &str) -> Option<HmacSha256> {
        if let Ok(kept) = self.token_prefix.try_borrow() {
            if let Some((_, m)) = kept.as_ref().filter(|(p, _)| p == plugin) {
                return Some(m.clone());
            }
        }
        let m = mac(
            self,
            &[DOMAIN.as_bytes(), plugin.as_bytes(), self.id.as_bytes()],
        )?;
        if let Ok(mut kept) = self.token_prefix.try_borrow_mut() {
            *kept = Some((plugin.to_string(), m.clone()));
        }
        Some(m)
    }
}

/// The keys of a configuration: the first signs, every one verifies (rotation: add the new key
/// first, keep the old one until its last token expired).
#[derive(Clone)]
pub struct TokenKeys {
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        write!(f, "TokenKeys({ids:?})")
    }
}

fn mac(key: &SigningKey, parts: &[&[u8]]) -> Option<HmacSha256> {
    let mut mac = key.keyed.clone()?;
    feed(&mut mac, parts);
    Some(mac)
}

fn feed(mac: &mut HmacSha256, parts: &[&[u8]]) {
    for part in parts {
        // Length-prefixed: no two different part lists feed the MAC the same bytes.
        mac.update(&crate::be::to_be(
            u64::try_from(part.len()).unwrap_or(u64::MAX),
        ));
        mac.update(part);
    }
}

impl TokenKeys {
    /// `keys` must not be empty (the configuration makes sure); an empty set signs nothing
    /// verifiable.
    pub fn new(keys: Vec<SigningKey>) -> Self {
        TokenKeys { keys }
    }

    /// One key, as `feedback.signing_key` configures it.
    pub fn single(key: &[u8]) -> Self {
        TokenKeys::new(vec![SigningKey::new("k0", key)])
    }

    fn by_id(&self, id: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The MAC over domain, plugin, key id and payload (the first three kept per key).
    fn tag(key: &SigningKey, plugin: &str, payload: &str) -> Option<HmacSha256> {
        let mut mac = key.token_prefix(plugin)?;
        feed(&mut mac, &[payload.as_bytes()]);
        Some(mac)
    }

    /// What a token carries of a principal: a keyed 64-bit digest, so the token does not reveal
    /// who asked.
    pub fn principal_tag(&self, key_id: &str, plugin: &str, principal: &str) -> Option<u64> {
        let key = self.by_id(key_id)?;
        let digest = mac(
            key,
            &[
                b"inference-router/principal",
                plugin.as_bytes(),
                principal.as_bytes(),
            ],
        )?
        .finalize()
        .into_bytes();
        let first: [u8; 8] = digest.get(..8)?.try_into().ok()?;
        Some(crate::be::from_be(first))
    }

    /// Signs with the first key; `principal` binds the decision to who asked.
    pub fn sign(&self, plugin: &str, token: &DecisionToken, principal: Option<&str>) -> String {
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let bound = principal.and_then(|p| self.principal_tag(&key.id, plugin, p));
        // Written piece by piece, as `format!("{model}~{target}~{expires}~{nonce:016x}~{bound}~
        // {key id}")` would, without the formatting machinery (one token per routed request).
        let mut payload = String::with_capacity(
            token.model.len() + token.target.len() + key.id.len() + 64 + 2 * TAG_BYTES,
        );
        for part in [token.model.as_str(), "~", token.target.as_str(), "~"] {
            payload.push_str(part);
        }
        crate::hex::push_decimal(&mut payload, token.expires);
        payload.push('~');
        crate::hex::push_u64(&mut payload, token.nonce, 16);
        payload.push('~');
        match bound {
            Some(b) => crate::hex::push_u64(&mut payload, b, 16),
            None => payload.push_str(UNBOUND),
        }
        payload.push('~');
        payload.push_str(&key.id);
        if let Some(c) = &token.context {
            payload.push('~');
            payload.push_str(CONTEXT);
            payload.push_str(&c.to_hex());
        }
        let tag = Self::tag(key, plugin, &payload).map(|m| m.finalize().into_bytes());
        payload.push('~');
        if let Some(tag) = tag {
            crate::hex::push_bytes(&mut payload, tag.get(..TAG_BYTES).unwrap_or_default());
        }
        payload
    }

    /// Verifies the signature first (constant time), then expiry against `now_unix_secs`.
    pub fn verify(
        &self,
        plugin: &str,
        value: &str,
        now_unix_secs: u64,
    ) -> Result<DecisionToken, TokenError> {
        let (payload, tag_hex) =
            crate::substr::rsplit_once(value, b'~').ok_or(TokenError::Malformed)?;
        let parts: Vec<&str> = payload.split('~').collect();
        let (fixed, context) = match parts.as_slice() {
            [fixed @ .., last] if parts.len() == 7 => (fixed, Some(*last)),
            all => (all, None),
        };
        let [model, target, expires, nonce, bound, key_id] = fixed else {
            return Err(TokenError::Malformed);
        };
        let context = match context {
            None => None,
            Some(c) => Some(
                (c.strip_prefix(CONTEXT))
                    .and_then(crate::bandit::Context::from_hex)
                    .ok_or(TokenError::Malformed)?,
            ),
        };
        let tag = crate::hex::decode(tag_hex).ok_or(TokenError::Malformed)?;
        if tag.len() != TAG_BYTES || nonce.len() != 16 {
            return Err(TokenError::Malformed);
        }
        let key = self.by_id(key_id).ok_or(TokenError::UnknownKey)?;
        let mac = Self::tag(key, plugin, payload).ok_or(TokenError::Malformed)?;
        mac.verify_truncated_left(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let expires: u64 = expires.parse().map_err(|_| TokenError::Malformed)?;
        let nonce = u64::from_str_radix(nonce, 16).map_err(|_| TokenError::Malformed)?;
        let bound = match *bound {
            UNBOUND => None,
            b if b.len() == 16 => {
                Some(u64::from_str_radix(b, 16).map_err(|_| TokenError::Malformed)?)
            }
            _ => return Err(TokenError::Malformed),
        };
        if now_unix_secs >= expires {
            return Err(TokenError::Expired);
        }
        Ok(DecisionToken {
            model: (*model).to_string(),
            target: (*target).to_string(),
            expires,
            nonce,
            bound,
            key: (*key_id).to_string(),
            context,
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
            bound: None,
            key: "k0".into(),
            context: None,
        }
    }

    #[test]
    fn carries_a_signed_context() {
        let s = TokenKeys::single(b"secret");
        let c = crate::bandit::Context::from_values(&[0.5, 1.0]);
        let t = DecisionToken {
            context: Some(c),
            ..token()
        };
        let v = s.sign("p", &t, None);
        assert!(v.contains("~k0~c80ff~"), "{v}");
        assert_eq!(s.verify("p", &v, 0), Ok(t));
        let changed = v.replacen("~c80ff~", "~c00ff~", 1);
        assert_eq!(s.verify("p", &changed, 0), Err(TokenError::BadSignature));
        let dropped = v.replacen("~c80ff~", "~", 1);
        assert_eq!(s.verify("p", &dropped, 0), Err(TokenError::BadSignature));
        for bad in ["~cz1~", "~80ff~", "~c8~"] {
            let v = v.replacen("~c80ff~", bad, 1);
            assert_eq!(s.verify("p", &v, 0), Err(TokenError::Malformed), "{bad}");
        }
    }

    #[test]
    fn round_trip() {
        let s = TokenKeys::single(b"secret");
        let v = s.sign("p", &token(), None);
        assert!(
            v.starts_with("sentiment~v2~1000~00000000deadbeef~-~k0~"),
            "{v}"
        );
        assert_eq!(s.verify("p", &v, 999), Ok(token()));
    }

    #[test]
    fn bound_to_a_principal() {
        let s = TokenKeys::single(b"secret");
        let v = s.sign("p", &token(), Some("alice"));
        let t = s.verify("p", &v, 0).unwrap();
        assert_eq!(t.bound, s.principal_tag("k0", "p", "alice"));
        assert_ne!(t.bound, s.principal_tag("k0", "p", "bob"));
        assert!(!v.contains("alice"));
    }

    #[test]
    fn rotation_domain_and_forgery() {
        let old = TokenKeys::new(vec![SigningKey::new("old", b"secret-1")]);
        let both = TokenKeys::new(vec![
            SigningKey::new("new", b"secret-2"),
            SigningKey::new("old", b"secret-1"),
        ]);
        let issued = old.sign("p", &token(), None);
        assert_eq!(
            both.verify("p", &issued, 0).map(|t| t.key),
            Ok("old".into())
        );
        let fresh = both.sign("p", &token(), None);
        assert!(fresh.contains("~new~"), "{fresh}");
        assert_eq!(old.verify("p", &fresh, 0), Err(TokenError::UnknownKey));
        // Another plugin sharing the key does not accept it.
        assert_eq!(both.verify("q", &fresh, 0), Err(TokenError::BadSignature));
        // The key id is signed: relabelling a token with another id does not verify.
        let relabelled = fresh.replacen("~new~", "~old~", 1);
        assert_eq!(
            both.verify("p", &relabelled, 0),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn forged_expired_malformed() {
        let s = TokenKeys::single(b"secret");
        let v = s.sign("p", &token(), None);
        assert_eq!(s.verify("p", &v, 1_000), Err(TokenError::Expired));
        assert_eq!(
            TokenKeys::single(b"other").verify("p", &v, 0),
            Err(TokenError::BadSignature)
        );
        let tampered = v.replacen("~v2~", "~v1~", 1);
        assert_eq!(s.verify("p", &tampered, 0), Err(TokenError::BadSignature));
        let later = v.replacen("~1000~", "~9999~", 1);
        assert_eq!(s.verify("p", &later, 0), Err(TokenError::BadSignature));
        let bound = v.replacen("~-~", "~0000000000000001~", 1);
        assert_eq!(s.verify("p", &bound, 0), Err(TokenError::BadSignature));
        for bad in [
            "",
            "x",
            "a~b~c~d~e",
            "a~b~1~00000000deadbeef~zz",
            "sentiment~v2~1000~00000000deadbeef~00112233445566778899aabbccddeeff",
            "~~~~~~",
            "a~b~1~2~3~4~5~6",
        ] {
            assert!(s.verify("p", bad, 0).is_err(), "{bad}");
        }
    }

    #[test]
    fn kept_prefix_gives_the_same_tag() {
        let key = SigningKey::new("k0", b"secret");
        for plugin in [
            "inference-router",
            "p",
            "inference-router",
            "",
            "a-longer-plugin-name",
        ] {
            let whole = mac(
                &key,
                &[DOMAIN.as_bytes(), plugin.as_bytes(), b"k0", b"payload"],
            )
            .unwrap()
            .finalize()
            .into_bytes();
            let kept = TokenKeys::tag(&key, plugin, "payload")
                .unwrap()
                .finalize()
                .into_bytes();
            assert_eq!(whole, kept, "{plugin}");
        }
    }

    #[test]
    fn known_hmac_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            crate::hex::encode(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
