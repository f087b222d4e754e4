//! Decision tokens: `TokenKeys::verify` on arbitrary text; and sign → verify round trips for a
//! token whose fields come from the input (names as the configuration allows them: no `~`),
//! bound or not, checking that another plugin sharing the key never accepts it.
#![no_main]

use fuzz_support::{COVERAGE_SIGNING_KEY, NOW};
use inference_router_core::feedback::{DecisionToken, SigningKey, TokenError, TokenKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = TokenKeys::new(vec![
        SigningKey::new("k1", COVERAGE_SIGNING_KEY),
        SigningKey::new("k0", b"an-older-key-0123456789"),
    ]);
    let text = String::from_utf8_lossy(data);
    if let Ok(token) = keys.verify("p", &text, NOW) {
        // Only a token we signed gets here.
        assert!(token.expires > NOW);
        assert!(
            keys.verify("q", &text, NOW).is_err(),
            "accepted by another plugin"
        );
    }
    let _ = TokenKeys::single(data).verify("p", &text, NOW);

    // Round trip: model and target from the first two `~`-free pieces, expiry and nonce from
    // the bytes after them, and a principal from what is left.
    let mut parts = data.splitn(3, |&b| b == b'~');
    let (Some(model), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(model), Ok(target)) = (std::str::from_utf8(model), std::str::from_utf8(target)) else {
        return;
    };
    let rest = parts.next().unwrap_or_default();
    let mut n = [0u8; 16];
    for (slot, b) in n.iter_mut().zip(rest) {
        *slot = *b;
    }
    let (e, nonce) = n.split_at(8);
    let expires = u64::from_le_bytes(e.try_into().unwrap_or_default());
    let nonce = u64::from_le_bytes(nonce.try_into().unwrap_or_default());
    let principal = rest.get(16..).map(String::from_utf8_lossy);
    let token = DecisionToken {
        model: model.to_string(),
        target: target.to_string(),
        expires,
        nonce,
        bound: principal
            .as_deref()
            .and_then(|p| keys.principal_tag("k1", "p", p)),
        key: "k1".into(),
        context: None,
    };
    let signed = keys.sign("p", &token, principal.as_deref());
    let want = if NOW >= expires {
        Err(TokenError::Expired)
    } else {
        Ok(token)
    };
    assert_eq!(keys.verify("p", &signed, NOW), want, "{signed}");
    if NOW < expires {
        assert_eq!(
            keys.verify("q", &signed, NOW),
            Err(TokenError::BadSignature)
        );
    }
});
