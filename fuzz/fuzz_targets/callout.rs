//! What the filter resends and what comes back (`src/callout`): `rewrite_model` of JSON and
//! MessagePack bodies, checked against serde_json / rmp-serde (the rewritten body reads as the
//! original with only `model` changed; a body they read as an object/map is never refused;
//! no `model` key means no rewrite), `is_streamed`, an external router's answer
//! (`parse_router_answer`: a chosen child is in range), `classify`, and the documents built from
//! untrusted bytes (`forward_message`, `fan_out_reply`) staying valid JSON.
#![no_main]

use inference_router_core::callout::answer::classify;
use inference_router_core::callout::body::{is_streamed, rewrite_model};
use inference_router_core::callout::fanout::{fan_out_reply, TargetResult};
use inference_router_core::callout::router::{forward_message, parse_router_answer, RouterChoice};
use inference_router_core::payload::Format;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn with_model(mut v: Value, model: &str) -> Value {
    if let Value::Object(map) = &mut v {
        map.insert("model".into(), Value::String(model.into()));
    }
    v
}

fuzz_target!(|data: &[u8]| {
    for children in [0, 1, 3] {
        if let Ok(RouterChoice::Child(i)) = parse_router_answer(data, children) {
            assert!(i < children, "child {i} of {children}");
        }
    }
    let text = String::from_utf8_lossy(data);
    let status = text.lines().next();
    let _ = classify(status, data);
    let forwarded = forward_message("chat", 1, 0.5, data);
    assert!(
        serde_json::from_slice::<Value>(&forwarded).is_ok(),
        "forwarded feedback is not JSON"
    );
    let results = [
        TargetResult {
            target: "a".into(),
            status: Some("200".into()),
            content_type: Some("application/json".into()),
            body: data.to_vec(),
        },
        TargetResult {
            target: "b".into(),
            status: status.map(str::to_string),
            content_type: None,
            body: data.to_vec(),
        },
    ];
    let reply = fan_out_reply("chat", &results);
    assert!(
        serde_json::from_slice::<Value>(&reply.body).is_ok(),
        "fan-out reply is not JSON"
    );
    let _ = is_streamed(Some(Format::Json), data, None);
    let _ = is_streamed(Some(Format::MessagePack), data, Some("application/json"));

    let json = serde_json::from_slice::<Value>(data).ok();
    let msgpack = rmp_serde::from_slice::<Value>(data).ok();
    for model in [
        "shadow",
        "a\"b\\c/\u{1F600}\u{7f}",
        "a-model-name-longer-than-thirty-two-bytes",
    ] {
        match (rewrite_model(Format::Json, data, model), &json) {
            (Ok(Some(out)), Some(orig)) => {
                let new = serde_json::from_slice::<Value>(&out);
                assert!(new.is_ok(), "rewritten JSON does not parse: {new:?}");
                assert_eq!(
                    new.ok(),
                    Some(with_model(orig.clone(), model)),
                    "JSON rewrite"
                );
            }
            (Ok(None), Some(Value::Object(map))) => {
                assert!(!map.contains_key("model"), "JSON model key not rewritten")
            }
            (Err(e), Some(Value::Object(_))) => panic!("JSON object refused: {e}"),
            _ => {}
        }
        match (rewrite_model(Format::MessagePack, data, model), &msgpack) {
            (Ok(Some(out)), Some(orig)) => {
                let new = rmp_serde::from_slice::<Value>(&out);
                assert!(
                    new.is_ok(),
                    "rewritten MessagePack does not decode: {new:?}"
                );
                assert_eq!(
                    new.ok(),
                    Some(with_model(orig.clone(), model)),
                    "MessagePack rewrite"
                );
            }
            (Ok(None), Some(Value::Object(map))) => {
                assert!(
                    !map.contains_key("model"),
                    "MessagePack model key not rewritten"
                )
            }
            _ => {}
        }
    }
});
