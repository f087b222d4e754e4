//! Prefix affinity: a key from the start of a chat conversation (its system prompt and first
//! messages), so requests of one conversation go to the endpoint whose KV cache holds that
//! prefix. Requests without OpenAI `messages` have no key.

use crate::json::Value;

#[cfg_attr(test, derive(serde::Deserialize, Debug, PartialEq))]
struct Chat {
    messages: Vec<Value>,
}

// Read by hand, accepting what serde's derive did.
crate::json::read::text_struct!(Chat { messages });

/// FNV-1a 64 of the system messages and the first `messages` others (role and content), in
/// order; `None` when the body has no `messages` array.
pub fn affinity_key(body: &[u8], messages: u32) -> Option<u64> {
    let chat: Chat = crate::json::read::from_text(body).ok()?;
    let mut others = 0u32;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut any = false;
    for m in &chat.messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        if role != "system" {
            if others >= messages {
                break;
            }
            others += 1;
        }
        let content = m.get("content").map(Value::to_string).unwrap_or_default();
        for b in role.bytes().chain([0]).chain(content.bytes()).chain([0]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        any = true;
    }
    any.then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_decides() {
        let a = br#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"more"}]}"#;
        let b = br#"{"model":"x","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}"#;
        let c = br#"{"messages":[{"role":"system","content":"be long"},{"role":"user","content":"hi"}]}"#;
        assert_eq!(affinity_key(a, 2), affinity_key(b, 2));
        assert_ne!(affinity_key(a, 2), affinity_key(c, 2));
        assert_ne!(affinity_key(a, 3), affinity_key(b, 3));
        assert_eq!(affinity_key(br#"{"inputs":[]}"#, 2), None);
        assert_eq!(affinity_key(br#"{"messages":[]}"#, 2), None);
        assert_eq!(affinity_key(b"not json", 2), None);
    }

    #[test]
    fn read_as_serde_read_it() {
        let mut rng = crate::rng::Rng::seed_from_u64(41);
        for base in [
            r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"t"}]}]}"#,
            r#"{"messages":[]}"#,
            r#"{"messages":null}"#,
            r#"{"messages":{}}"#,
            r#"[[1,2]]"#,
            r#"{"messages":[1e400]}"#,
            r#"{"prompt":"x"}"#,
            r#"{"messages":[],"messages":[]}"#,
        ] {
            for _ in 0..200 {
                let doc = crate::json::documents_tests::respelled(base.as_bytes(), &mut rng);
                crate::json::documents_tests::reads_alike::<Chat>(&doc);
            }
            crate::json::documents_tests::reads_alike::<Chat>(base.as_bytes());
        }
    }
}
