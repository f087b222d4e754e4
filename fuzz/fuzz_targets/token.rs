//! Decision tokens: `TokenSigner::verify` on arbitrary text; and sign → verify round trips for
//! a token whose fields come from the input (names as the configuration allows them: no `~`).
#![no_main]

use fuzz_support::{COVERAGE_SIGNING_KEY, NOW};
use inference_router_core::feedback::{DecisionToken, TokenError, TokenSigner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let signer = TokenSigner::new(COVERAGE_SIGNING_KEY);
    let text = String::from_utf8_lossy(data);
    if let Ok(token) = signer.verify(&text, NOW) {
        // Only a token we signed gets here: it must say what signing it again says.
        assert_eq!(signer.verify(&signer.sign(&token), NOW), Ok(token.clone()));
        assert!(token.expires > NOW);
    }
    let _ = TokenSigner::new(data).verify(&text, NOW);

    // Round trip: model and target from the first two `~`-free pieces, expiry and nonce from
    // the bytes after them.
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
    let token = DecisionToken {
        model: model.to_string(),
        target: target.to_string(),
        expires,
        nonce,
    };
    let signed = signer.sign(&token);
    let want = if NOW >= expires {
        Err(TokenError::Expired)
    } else {
        Ok(token)
    };
    assert_eq!(signer.verify(&signed, NOW), want, "{signed}");
});
