//! Sensitive-data detectors fail closed, end to end (issue 10), against the real Envoy at
//! `--concurrency 2` (envoy/demo.yaml) with one rule `when.detected: ["email", "iban", "card"]`
//! that rejects with 403:
//! - every bypass of the original report is refused before any byte reaches an upstream, with the
//!   documented status and `{"error": "not_scanned", "reason": …, "rule": …}` (a key twice, no
//!   or an unread content type, a body over `body.max_bytes`, compression, text over
//!   `scan.max_bytes`, malformed or too deeply nested JSON), or rejected by the rule (lowercase
//!   or dashed IBANs, card numbers with dots or dashes, JSON escapes, integers, keys, a body on a
//!   GET); a clean request right after each is served;
//! - every payload protocol the filter routes carries the detectors' matches to a 403: OpenAI
//!   chat (string and parts), completions `prompt` (string and array), embeddings and Responses
//!   `input`, KServe v2 `BYTES` inputs and string parameters, TF-Serving `instances` / `inputs`,
//!   Seldon `data.ndarray`, `strData`, `jsonData`, and MessagePack bodies (str and bin);
//! - `scan.unscanned: "bypass"` lets an unscanned request through and counts it under
//!   `inference_router.detectors.bypassed.<reason>`; the default counts each refusal under
//!   `inference_router.detectors.not_scanned.<reason>`.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;

use common::*;
use integration::{Harness, Request, Response};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Configuration and helpers
// ---------------------------------------------------------------------------------------------

const RULE: &str = "no-pii";
const MESSAGE: &str = "sensitive data may not be sent to models";

const EMAIL: &str = "jane.doe@example.com";
/// A valid IBAN (DE89 3704 0044 0532 0130 00) as people type it: lowercase, spaced.
const IBAN_LOWER: &str = "de89 3704 0044 0532 0130 00";
/// A valid IBAN grouped by dashes.
const IBAN_DASHED: &str = "GB82-WEST-1234-5698-7654-32";
/// Luhn-valid card numbers grouped by dots and by dashes.
const CARD_DOTS: &str = "4111.1111.1111.1111";
const CARD_DASHES: &str = "5500-0055-5555-5559";

/// What every secret-carrying request is tried with: the value and the detector that must fire.
const SECRETS: [(&str, &str); 5] = [
    (EMAIL, "email"),
    (IBAN_LOWER, "iban"),
    (IBAN_DASHED, "iban"),
    (CARD_DOTS, "card"),
    (CARD_DASHES, "card"),
];

const CLEAN: &str = "Is this review positive? Great value for the price.";

/// Every `scan` refusal reason, as in the metric names.
const REASONS: [&str; 7] = [
    "content_type",
    "too_large",
    "compressed",
    "malformed",
    "duplicate_key",
    "scan_limit",
    "too_deep",
];

/// The three deterministic models (chat → llm-small, sentiment → sentiment-v1, iris → iris-v1)
/// behind one rule that rejects anything the built-in detectors find; `extra` is merged in
/// (`scan`, `body`).
fn config(extra: Value) -> Value {
    let mut c = json!({
        "models": deterministic_models(),
        "detectors": [ { "name": "email", "builtin": "email" },
                       { "name": "iban", "builtin": "iban" },
                       { "name": "card", "builtin": "card" } ],
        "rules": [
            { "name": RULE, "when": { "detected": ["email", "iban", "card"] },
              "then": { "reject": { "status": 403, "message": MESSAGE } } }
        ]
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

fn with_secret(secret: &str) -> String {
    format!("Please contact {secret} about the refund.")
}

fn describe(req: &Request) -> String {
    let body = req.body.as_deref().unwrap_or_default();
    let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    format!(
        "{} {} headers {:?} body ({} bytes) {:?}",
        req.method,
        req.path,
        req.headers,
        body.len(),
        shown
    )
}

/// Sends `req` while reading the answer (Envoy may answer before the whole body is written).
fn send_streaming(h: &Harness, req: &Request) -> Response {
    let mut conn = h.envoy.connect();
    let (resp, _written) = conn.send_streaming(req);
    conn.close();
    resp.unwrap_or_else(|e| panic!("{}: {e}", describe(req)))
}

/// Sends `req`, which must be refused as not scanned: `status`, JSON `{"error": "not_scanned",
/// "detail", "reason", "rule"}`, no detector named, no upstream contacted.
#[track_caller]
fn refused_with(h: &Harness, req: &Request, status: u16, reason: &str) -> Response {
    let before = h.upstreams.total_hits();
    let r = if req.body.as_ref().is_some_and(|b| b.len() > 256 * 1024) {
        send_streaming(h, req)
    } else {
        h.send(req)
    };
    let context = format!(
        "{}\n  → {} headers {:?} body {}",
        describe(req),
        r.status,
        r.headers,
        r.text()
    );
    assert_eq!(r.status, status, "status; {context}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type; {context}"
    );
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("refusal is not JSON ({e}); {context}"));
    assert_eq!(v["error"], "not_scanned", "{context}");
    assert_eq!(v["reason"], reason, "{context}");
    assert_eq!(v["rule"], RULE, "{context}");
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "detail; {context}"
    );
    assert_eq!(
        r.header("x-inference-detector"),
        None,
        "no detector fired; {context}"
    );
    assert_eq!(
        h.upstreams.total_hits(),
        before,
        "an unscanned request reached an upstream; {context}"
    );
    r
}

/// Sends `req`, which the rule must reject with 403 naming `detector`; no upstream contacted.
#[track_caller]
fn rejected_by(h: &Harness, req: &Request, detector: &str, secret: &str) {
    let before = h.upstreams.total_hits();
    let r = h.send(req);
    let context = format!(
        "{}\n  → {} headers {:?} body {}",
        describe(req),
        r.status,
        r.headers,
        r.text()
    );
    assert_eq!(r.status, 403, "{context}");
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("rejection is not JSON ({e}); {context}"));
    assert_eq!(
        v,
        json!({ "error": "rejected", "detail": MESSAGE, "rule": RULE, "detector": detector }),
        "{context}"
    );
    assert_eq!(
        r.header("x-inference-detector"),
        Some(detector),
        "{context}"
    );
    assert_not_leaked(&r, secret);
    assert_eq!(
        h.upstreams.total_hits(),
        before,
        "a request carrying {detector} data reached an upstream; {context}"
    );
}

/// Sends `req`, which must not reach any upstream: either refused as not scanned (its reason is
/// returned, to be counted) or rejected by the rule. For requests whose headers Envoy may hand to
/// the filter in more than one way (a header sent twice).
#[track_caller]
fn blocked(h: &Harness, req: &Request) -> Option<String> {
    let before = h.upstreams.total_hits();
    let r = h.send(req);
    let context = format!(
        "{}\n  → {} headers {:?} body {}",
        describe(req),
        r.status,
        r.headers,
        r.text()
    );
    assert_eq!(
        h.upstreams.total_hits(),
        before,
        "reached an upstream; {context}"
    );
    let v: Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("answer is not JSON ({e}); {context}"));
    assert_eq!(v["rule"], RULE, "{context}");
    match v["error"].as_str() {
        Some("rejected") => {
            assert_eq!(r.status, 403, "{context}");
            None
        }
        Some("not_scanned") => {
            let reason = v["reason"].as_str().unwrap_or_default().to_string();
            assert!(REASONS.contains(&reason.as_str()), "{context}");
            assert!(matches!(r.status, 400 | 413 | 415), "{context}");
            Some(reason)
        }
        _ => panic!("neither rejected nor not_scanned; {context}"),
    }
}

/// Sends `req`, which must be served by `cluster`'s upstream (200), its body intact; exactly one
/// upstream hit.
#[track_caller]
fn served_by(h: &Harness, req: &Request, cluster: &str) {
    let before = h.upstreams.total_hits();
    let r = h.send(req);
    assert_eq!(
        r.status,
        200,
        "a clean request must be served: {}\n  → {} headers {:?} body {}",
        describe(req),
        r.status,
        r.headers,
        r.text()
    );
    let echo = assert_upstream(&r, cluster);
    if let Some(body) = &req.body {
        assert_body_intact(&echo, body);
    }
    assert_meta(&r, "detector", None);
    assert_eq!(h.upstreams.total_hits(), before + 1, "{}", describe(req));
}

fn wasm_counters(h: &Harness, what: &str) -> BTreeMap<String, u64> {
    let stats = h.envoy.wasm_stats();
    REASONS
        .iter()
        .map(|r| {
            let name = format!("inference_router.detectors.{what}.{r}");
            let v = *stats
                .get(&name)
                .unwrap_or_else(|| panic!("{name} missing from /stats: {stats:?}"));
            (r.to_string(), v)
        })
        .collect()
}

/// Polls until the counters equal `expected` (the filter may count after the reply went out);
/// returns the last values read.
fn counters_eventually(
    h: &Harness,
    what: &str,
    expected: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let got = wasm_counters(h, what);
        if &got == expected || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

fn zero_counts() -> BTreeMap<String, u64> {
    REASONS.iter().map(|r| (r.to_string(), 0)).collect()
}

/// A chat-completions body for model `chat`.
fn chat(text: &str) -> Value {
    json!({ "model": "chat", "messages": [ { "role": "user", "content": text } ] })
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serialize JSON")
}

/// `bytes` as a gzip member (one stored deflate block): what a client that compresses sends.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 0xffff, "one stored block");
    let mut out = vec![0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff];
    out.push(0x01); // BFINAL, BTYPE=00 (stored)
    let len = data.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn gzip_stored_is_a_valid_member() {
    // CRC-32 check value, and the shape of an empty member.
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    let z = gzip_stored(b"");
    assert_eq!(z.len(), 10 + 5 + 8);
    assert_eq!(&z[10..15], &[0x01, 0x00, 0x00, 0xff, 0xff]);
}

// ---------------------------------------------------------------------------------------------
// a. Every bypass of the report: refused (or rejected), nothing upstream, the next one served
// ---------------------------------------------------------------------------------------------

#[test]
fn every_reported_bypass_is_refused_before_any_upstream_and_counted() {
    // Defaults for `scan` (max_bytes 262144, unscanned refuse) and `body.max_bytes` (1 MiB);
    // `on_invalid: default` is the setting under which a malformed body used to be routed
    // without being read.
    let h = Harness::demo(&config(json!({ "body": { "on_invalid": "default" } })));
    // Refusals by reason, as the filter must count them.
    let counts = RefCell::new(zero_counts());
    let count = |reason: &str| {
        *counts.borrow_mut().get_mut(reason).expect("a known reason") += 1;
    };
    let refused = |h: &Harness, req: &Request, status: u16, reason: &str| {
        refused_with(h, req, status, reason);
        count(reason);
    };
    let clean_chat = Request::post("/v1/chat/completions").json(&chat(CLEAN));
    let secret_chat = json_bytes(&chat(&with_secret(EMAIL)));

    // 1. The key "messages" twice, the first holding the address (a reader keeping the first
    //    value sees it; one keeping the last does not). Also nested, and keys of other objects.
    let dup = format!(
        r#"{{"model":"chat","messages":[{{"role":"user","content":"write to {EMAIL}"}}],"messages":[{{"role":"user","content":"hello"}}]}}"#
    );
    refused(
        &h,
        &Request::post("/v1/chat/completions").json_text(&dup),
        400,
        "duplicate_key",
    );
    served_by(&h, &clean_chat, "llm-small");
    let nested_dup = format!(
        r#"{{"model":"chat","messages":[{{"role":"user","content":"write to {EMAIL}","content":"hello"}}]}}"#
    );
    refused(
        &h,
        &Request::post("/v1/chat/completions").json_text(&nested_dup),
        400,
        "duplicate_key",
    );
    // The same key spelled with an escape is the same key.
    let escaped_dup = format!(
        r#"{{"model":"chat","messages":[{{"role":"user","content":"write to {EMAIL}"}}],"messag\u0065s":[]}}"#
    );
    refused(
        &h,
        &Request::post("/v1/chat/completions").json_text(&escaped_dup),
        400,
        "duplicate_key",
    );
    // The same key in different objects is fine.
    served_by(
        &h,
        &Request::post("/v1/chat/completions").json(&json!({
            "model": "chat",
            "messages": [ { "role": "system", "content": "be brief" },
                          { "role": "user", "content": CLEAN } ] })),
        "llm-small",
    );

    // 2. The same JSON body with no content type, and as text/plain (and other types the filter
    //    does not read); also a KServe v2 request whose model the path names.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut req = Request::post("/v1/chat/completions").body(secret_chat.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        refused(&h, &req, 415, "content_type");
        served_by(&h, &clean_chat, "llm-small");
    }
    refused(
        &h,
        &Request::post("/v2/models/iris/infer")
            .header("content-type", "text/plain")
            .body(format!("classify {EMAIL}")),
        415,
        "content_type",
    );
    served_by(
        &h,
        &Request::post("/v2/models/iris/infer").json(&json!({
            "inputs": [ { "name": "x", "shape": [1, 1], "datatype": "FP32", "data": [0.5] } ] })),
        "iris-v1",
    );
    // The JSON types the filter does read are scanned: the rule decides.
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.openai+json",
    ] {
        rejected_by(
            &h,
            &Request::post("/v1/chat/completions")
                .header("content-type", ct)
                .body(secret_chat.clone()),
            "email",
            EMAIL,
        );
    }

    // 3. A body over body.max_bytes (1 MiB): by content-length, and streamed (chunked).
    let mut big = chat(&with_secret(EMAIL));
    big["padding"] = json!("x".repeat(1_100_000));
    let big = json_bytes(&big);
    refused(
        &h,
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(big.clone()),
        413,
        "too_large",
    );
    served_by(&h, &clean_chat, "llm-small");
    refused(
        &h,
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(big)
            .chunked(),
        413,
        "too_large",
    );
    served_by(&h, &clean_chat, "llm-small");

    // 4. A compressed body: a real gzip of a chat request holding the address; any encoding but
    //    identity. `identity` is read as is.
    let gz = gzip_stored(&secret_chat);
    for enc in ["gzip", "GZIP", "br", "deflate", "gzip, identity"] {
        refused(
            &h,
            &Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .header("content-encoding", enc)
                .body(gz.clone()),
            415,
            "compressed",
        );
        served_by(&h, &clean_chat, "llm-small");
    }
    rejected_by(
        &h,
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .header("content-encoding", "identity")
            .body(secret_chat.clone()),
        "email",
        EMAIL,
    );
    served_by(
        &h,
        &Request::post("/v1/chat/completions")
            .header("content-encoding", "identity")
            .json(&chat(CLEAN)),
        "llm-small",
    );

    // Headers sent twice (Envoy hands the filter both values, or one): never let through.
    for (name, first, second, body) in [
        (
            "content-type",
            "application/json",
            "text/plain",
            secret_chat.clone(),
        ),
        (
            "content-type",
            "text/plain",
            "application/json",
            secret_chat.clone(),
        ),
        ("content-encoding", "identity", "gzip", gz.clone()),
        ("content-encoding", "identity", "gzip", secret_chat.clone()),
    ] {
        let mut req = Request::post("/v1/chat/completions")
            .header(name, first)
            .header(name, second)
            .body(body);
        if name == "content-encoding" {
            req = req.header("content-type", "application/json");
        }
        if let Some(reason) = blocked(&h, &req) {
            count(&reason);
        }
        served_by(&h, &clean_chat, "llm-small");
    }

    // 5. Lowercase / dashed IBANs and card numbers with dots or dashes: the rule rejects them.
    for (secret, detector) in SECRETS {
        rejected_by(
            &h,
            &Request::post("/v1/chat/completions").json(&chat(&with_secret(secret))),
            detector,
            secret,
        );
        served_by(&h, &clean_chat, "llm-small");
    }

    // 6. A KServe v2 request whose BYTES input holds the address; a card as an INT64 input; the
    //    address in an object key; the address behind JSON escapes; a body on a GET.
    let kserve_bytes = Request::post("/v2/models/iris/infer").json(&json!({
        "inputs": [ { "name": "text", "shape": [1], "datatype": "BYTES",
                      "data": [ with_secret(EMAIL) ] } ] }));
    rejected_by(&h, &kserve_bytes, "email", EMAIL);
    rejected_by(
        &h,
        &Request::post("/v2/models/iris/infer").json(&json!({
            "inputs": [ { "name": "n", "shape": [1], "datatype": "INT64",
                          "data": [ 4_111_111_111_111_111u64 ] } ] })),
        "card",
        "4111111111111111",
    );
    rejected_by(
        &h,
        &Request::post("/api/v1.0/predictions")
            .header("x-model", "iris")
            .json(&json!({ "jsonData": { EMAIL: { "vip": true } } })),
        "email",
        EMAIL,
    );
    rejected_by(
        &h,
        &Request::post("/v1/chat/completions").json_text(
            r#"{"model":"chat","messages":[{"role":"user","content":"write to jane.doe\u0040example.com"}]}"#,
        ),
        "email",
        EMAIL,
    );
    rejected_by(
        &h,
        &Request::get("/v2/models/iris/infer").json(&json!({
            "inputs": [ { "name": "text", "shape": [1], "datatype": "BYTES",
                          "data": [ with_secret(EMAIL) ] } ] })),
        "email",
        EMAIL,
    );
    // A chunked body, a body on a DELETE, a client waiting for 100-continue.
    for req in [
        Request::post("/v1/chat/completions")
            .json(&chat(&with_secret(EMAIL)))
            .chunked(),
        Request::new("DELETE", "/v1/chat/completions").json(&chat(&with_secret(EMAIL))),
        Request::post("/v1/chat/completions")
            .header("expect", "100-continue")
            .json(&chat(&with_secret(EMAIL))),
    ] {
        rejected_by(&h, &req, "email", EMAIL);
    }
    served_by(
        &h,
        &Request::post("/v2/models/iris/infer").json(&json!({
            "inputs": [ { "name": "text", "shape": [1], "datatype": "BYTES", "data": [ CLEAN ] } ] })),
        "iris-v1",
    );
    served_by(
        &h,
        &Request::post("/v1/chat/completions")
            .json(&chat(CLEAN))
            .chunked(),
        "llm-small",
    );
    // Body-less requests still route.
    served_by(&h, &Request::get("/v2/models/iris/ready"), "iris-v1");

    // 7. More text than scan.max_bytes (256 KiB by default) in a body under body.max_bytes: the
    //    address after it would otherwise go unread.
    let mut long = chat("x".repeat(300_000).as_str());
    long["messages"]
        .as_array_mut()
        .expect("messages")
        .push(json!({ "role": "user", "content": with_secret(EMAIL) }));
    refused(
        &h,
        &Request::post("/v1/chat/completions").json(&long),
        413,
        "scan_limit",
    );
    served_by(&h, &clean_chat, "llm-small");
    // Just under the limit is read: the address is found.
    let mut under = chat("x".repeat(200_000).as_str());
    under["messages"]
        .as_array_mut()
        .expect("messages")
        .push(json!({ "role": "user", "content": with_secret(EMAIL) }));
    rejected_by(
        &h,
        &Request::post("/v1/chat/completions").json(&under),
        "email",
        EMAIL,
    );

    // 8. Malformed JSON (with on_invalid: default it used to be routed unread): truncated,
    //    trailing bytes, not JSON at all, MessagePack sent as JSON, and vice versa.
    for text in [
        format!(r#"{{"model":"chat","messages":[{{"role":"user","content":"{EMAIL}"}}]"#),
        format!(r#"{{"model":"chat","messages":[]}} {EMAIL}"#),
        format!("model=chat&prompt={EMAIL}"),
    ] {
        refused(
            &h,
            &Request::post("/v1/chat/completions").json_text(&text),
            400,
            "malformed",
        );
        served_by(&h, &clean_chat, "llm-small");
    }
    let mp = rmp_serde::to_vec_named(&chat(&with_secret(EMAIL))).expect("msgpack");
    refused(
        &h,
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(mp),
        400,
        "malformed",
    );
    refused(
        &h,
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/msgpack")
            .body(secret_chat.clone()),
        400,
        "malformed",
    );
    served_by(&h, &clean_chat, "llm-small");

    // 9. Nested deeper than the scanner reads (but within what the routing parser accepts).
    let deep = format!(
        r#"{{"model":"chat","x":{}"{EMAIL}"{}}}"#,
        "[".repeat(110),
        "]".repeat(110)
    );
    refused(
        &h,
        &Request::post("/v1/chat/completions").json_text(&deep),
        400,
        "too_deep",
    );
    served_by(&h, &clean_chat, "llm-small");

    // Every refusal counted under its reason, nothing bypassed; every rejection under its
    // detector.
    let expected = counts.into_inner();
    assert_eq!(
        counters_eventually(&h, "not_scanned", &expected),
        expected,
        "inference_router.detectors.not_scanned.*"
    );
    assert_eq!(
        wasm_counters(&h, "bypassed"),
        zero_counts(),
        "inference_router.detectors.bypassed.*"
    );
    assert!(
        expected.values().all(|&n| n > 0),
        "every reason exercised: {expected:?}"
    );
}

/// A card number next to another group of digits (an expiry date, a CVV, a quantity) is still a
/// card number: the `card` detector checks every run of whole digit groups.
#[test]
fn card_numbers_next_to_other_digit_groups_are_rejected() {
    let h = Harness::demo(&config(json!({})));
    for text in [
        "pay with 4111 1111 1111 1111 12/29",
        "card 4111111111111111 123",
        "qty 2 4111 1111 1111 1111",
    ] {
        rejected_by(
            &h,
            &Request::post("/v1/chat/completions").json(&chat(text)),
            "card",
            "4111",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// b. Every payload protocol carries the detectors' matches to the rule
// ---------------------------------------------------------------------------------------------

/// A payload protocol: how a request carrying `text` is built, and where a clean one goes.
struct Protocol {
    name: &'static str,
    cluster: &'static str,
    build: fn(&str) -> Request,
}

fn msgpack_bin_map(key: &str, value: &[u8]) -> Vec<u8> {
    // {key: bin(value)}: fixmap of one, fixstr key, bin 16.
    assert!(key.len() < 32 && value.len() <= 0xffff);
    let mut out = vec![0x81, 0xa0 | key.len() as u8];
    out.extend_from_slice(key.as_bytes());
    out.push(0xc5);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    out
}

const PROTOCOLS: [Protocol; 19] = [
    Protocol {
        name: "OpenAI chat, string content",
        cluster: "llm-small",
        build: |t| Request::post("/v1/chat/completions").json(&chat(t)),
    },
    Protocol {
        name: "OpenAI chat, content parts",
        cluster: "llm-small",
        build: |t| {
            Request::post("/v1/chat/completions").json(&json!({
                "model": "chat",
                "messages": [ { "role": "system", "content": "You are helpful." },
                              { "role": "user", "content": [
                                  { "type": "text", "text": "Look at this:" },
                                  { "type": "text", "text": t } ] } ] }))
        },
    },
    Protocol {
        name: "OpenAI completions, prompt string",
        cluster: "llm-small",
        build: |t| Request::post("/v1/completions").json(&json!({ "model": "chat", "prompt": t })),
    },
    Protocol {
        name: "OpenAI completions, prompt array",
        cluster: "llm-small",
        build: |t| {
            Request::post("/v1/completions")
                .json(&json!({ "model": "chat", "prompt": ["Summarise:", t] }))
        },
    },
    Protocol {
        name: "OpenAI embeddings, input string",
        cluster: "llm-small",
        build: |t| Request::post("/v1/embeddings").json(&json!({ "model": "chat", "input": t })),
    },
    Protocol {
        name: "OpenAI embeddings, input array",
        cluster: "llm-small",
        build: |t| {
            Request::post("/v1/embeddings")
                .json(&json!({ "model": "chat", "input": ["first line", t] }))
        },
    },
    Protocol {
        name: "OpenAI Responses, input string",
        cluster: "llm-small",
        build: |t| Request::post("/v1/responses").json(&json!({ "model": "chat", "input": t })),
    },
    Protocol {
        name: "OpenAI Responses, input items",
        cluster: "llm-small",
        build: |t| {
            Request::post("/v1/responses").json(&json!({
                "model": "chat",
                "instructions": "Answer briefly.",
                "input": [ { "role": "user", "content": [ { "type": "input_text", "text": t } ] } ] }))
        },
    },
    Protocol {
        name: "KServe v2, BYTES input",
        cluster: "iris-v1",
        build: |t| {
            Request::post("/v2/models/iris/infer").json(&json!({
                "inputs": [ { "name": "features", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.5] },
                            { "name": "note", "shape": [1], "datatype": "BYTES", "data": [t] } ] }))
        },
    },
    Protocol {
        name: "KServe v2, string parameter",
        cluster: "iris-v1",
        build: |t| {
            Request::post("/v2/models/iris/infer").json(&json!({
                "id": "req-1",
                "parameters": { "customer_note": t },
                "inputs": [ { "name": "features", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.5] } ] }))
        },
    },
    Protocol {
        name: "KServe v2, input parameter",
        cluster: "iris-v1",
        build: |t| {
            Request::post("/v2/models/iris/versions/v1/infer").json(&json!({
                "inputs": [ { "name": "features", "shape": [1, 2], "datatype": "FP32", "data": [0.5, 1.5],
                              "parameters": { "source": t } } ] }))
        },
    },
    Protocol {
        name: "TF-Serving, instances",
        cluster: "sentiment-v1",
        build: |t| Request::post("/v1/models/sentiment:predict").json(&json!({ "instances": [t] })),
    },
    Protocol {
        name: "TF-Serving, inputs (columnar)",
        cluster: "sentiment-v1",
        build: |t| {
            Request::post("/v1/models/sentiment:predict")
                .json(&json!({ "signature_name": "serving_default", "inputs": { "review": [t] } }))
        },
    },
    Protocol {
        name: "Seldon, data.ndarray of strings",
        cluster: "iris-v1",
        build: |t| {
            Request::post("/api/v1.0/predictions")
                .header("x-model", "iris")
                .json(&json!({ "data": { "names": ["text"], "ndarray": [[t]] } }))
        },
    },
    Protocol {
        name: "Seldon, strData",
        cluster: "iris-v1",
        build: |t| {
            Request::post("/api/v1.0/predictions")
                .header("x-model", "iris")
                .json(&json!({ "strData": t }))
        },
    },
    Protocol {
        name: "Seldon, jsonData",
        cluster: "iris-v1",
        build: |t| {
            Request::post("/api/v1.0/predictions")
                .header("x-model", "iris")
                .json(&json!({ "jsonData": { "ticket": { "id": 7, "body": t } } }))
        },
    },
    Protocol {
        name: "MessagePack (application/msgpack), OpenAI chat",
        cluster: "llm-small",
        build: |t| Request::post("/v1/chat/completions").msgpack(&chat(t)),
    },
    Protocol {
        name: "MessagePack (application/x-msgpack), KServe v2 BYTES",
        cluster: "iris-v1",
        build: |t| {
            let body = rmp_serde::to_vec_named(&json!({
                "inputs": [ { "name": "note", "shape": [1], "datatype": "BYTES", "data": [t] } ] }))
            .expect("msgpack");
            Request::post("/v2/models/iris/infer")
                .header("content-type", "application/x-msgpack")
                .body(body)
        },
    },
    Protocol {
        name: "MessagePack (application/vnd.msgpack), Seldon bin data",
        cluster: "iris-v1",
        build: |t| {
            Request::post("/api/v1.0/predictions")
                .header("x-model", "iris")
                .header("content-type", "application/vnd.msgpack")
                .body(msgpack_bin_map("binData", t.as_bytes()))
        },
    },
];

#[test]
fn every_payload_protocol_is_scanned_and_rejected_before_any_upstream() {
    let h = Harness::demo(&config(json!({})));
    let mut fired: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &PROTOCOLS {
        // A clean request of this protocol is routed (so the refusals below are the rule's, not
        // a routing failure).
        let clean = (p.build)(CLEAN);
        let r = h.send(&clean);
        assert_eq!(
            r.status,
            200,
            "{}: clean request not served: {} → {} {}",
            p.name,
            describe(&clean),
            r.status,
            r.text()
        );
        assert_eq!(r.echo().cluster, p.cluster, "{}", p.name);
        for (secret, detector) in SECRETS {
            let req = (p.build)(&with_secret(secret));
            rejected_by(&h, &req, detector, secret);
            *fired.entry(detector).or_default() += 1;
        }
        served_by(&h, &(p.build)(CLEAN), p.cluster);
    }
    for (detector, n) in fired {
        assert_eq!(
            h.envoy
                .wasm_counter_eventually(&format!("inference_router.detectors.{detector}"), n),
            n,
            "inference_router.detectors.{detector}"
        );
    }
    assert_eq!(wasm_counters(&h, "not_scanned"), zero_counts());
}

// ---------------------------------------------------------------------------------------------
// c. scan.unscanned: bypass
// ---------------------------------------------------------------------------------------------

#[test]
fn bypass_lets_unscanned_requests_through_and_counts_them() {
    let h = Harness::demo(&config(json!({
        "scan": { "unscanned": "bypass", "max_bytes": 4096 }
    })));
    let mut expected = zero_counts();

    // text/plain, the model named by the header: served, body intact, counted as bypassed.
    let body = format!("write to {EMAIL}").into_bytes();
    served_by(
        &h,
        &Request::post("/v1/chat/completions")
            .header("x-model", "chat")
            .header("content-type", "text/plain")
            .body(body),
        "llm-small",
    );
    *expected.get_mut("content_type").expect("reason") += 1;
    assert_eq!(
        counters_eventually(&h, "bypassed", &expected),
        expected,
        "inference_router.detectors.bypassed.*"
    );

    // More text than scan.max_bytes (4096 here), a KServe path: served, counted.
    served_by(
        &h,
        &Request::post("/v2/models/iris/infer").json(&json!({
            "inputs": [ { "name": "note", "shape": [1], "datatype": "BYTES",
                          "data": ["x".repeat(5000), with_secret(EMAIL)] } ] })),
        "iris-v1",
    );
    *expected.get_mut("scan_limit").expect("reason") += 1;

    // A compressed body: served as is, counted.
    served_by(
        &h,
        &Request::post("/v1/chat/completions")
            .header("x-model", "chat")
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gzip_stored(&json_bytes(&chat(&with_secret(EMAIL))))),
        "llm-small",
    );
    *expected.get_mut("compressed").expect("reason") += 1;

    // What can be scanned is still decided by the rule; a malformed body under
    // on_invalid: reject (the default) is still the 400 it always was, never bypassed.
    rejected_by(
        &h,
        &Request::post("/v1/chat/completions").json(&chat(&with_secret(IBAN_LOWER))),
        "iban",
        IBAN_LOWER,
    );
    let before = h.upstreams.total_hits();
    let r = h.send(&Request::post("/v1/chat/completions").json_text(r#"{"model":"chat","#));
    assert_error_reply(&r, 400, "invalid_body");
    assert_no_upstream(&h, before);

    assert_eq!(
        counters_eventually(&h, "bypassed", &expected),
        expected,
        "inference_router.detectors.bypassed.*"
    );
    assert_eq!(
        wasm_counters(&h, "not_scanned"),
        zero_counts(),
        "inference_router.detectors.not_scanned.*"
    );
}
