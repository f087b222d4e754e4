//! Hostile requests: each gets a clear answer — routed with the body untouched, or the filter's
//! 400 `invalid_body` (never an upstream) — and the next request is served normally. Deep
//! nesting, huge key counts, duplicate keys, invalid UTF-8, out-of-range numbers, MessagePack
//! length bombs, empty and chunked bodies, bodies over `max_bytes` found while streaming, and
//! header values near Envoy's limit. (Non-UTF-8 header values cannot reach the filter as text.)

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

/// A default model (so a body the filter cannot use still routes), a rule on a request
/// header, and one on a numeric body field.
fn config() -> Value {
    json!({
        "default_model": "iris",
        "models": deterministic_models(),
        "rules": [
            { "name": "acme", "when": { "headers": { "x-tenant": { "prefix": "acme" } } },
              "then": { "model": "sentiment", "target": "v2" } },
            { "name": "hot", "when": { "body": { "/temperature": { "gt": 1.0 } } },
              "then": { "model": "chat", "target": "large" } }
        ]
    })
}

#[track_caller]
fn next_request_is_served(vm: &mut Vm) {
    let mut sent = vm.send(&get("/v2/models/iris/ready"), b"");
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("weighted")
    );
}

#[track_caller]
fn routed(vm: &mut Vm, content_type: &str, body: &[u8], cluster: &str) {
    let sent = vm.send(
        &[
            (":method", "POST"),
            (":path", CHAT),
            ("content-type", content_type),
        ],
        body,
    );
    assert_eq!(
        sent.action,
        Action::Continue,
        "{}",
        String::from_utf8_lossy(&body[..body.len().min(80)])
    );
    assert!(vm.host.reply().is_none());
    assert_eq!(vm.routed_cluster().as_deref(), Some(cluster));
    next_request_is_served(vm);
}

/// Answered 400 `invalid_body`, never routed; returns the detail.
#[track_caller]
fn invalid(vm: &mut Vm, content_type: &str, body: &[u8]) -> String {
    let sent = vm.send(
        &[
            (":method", "POST"),
            (":path", CHAT),
            ("content-type", content_type),
        ],
        body,
    );
    assert_eq!(sent.action, Action::Pause);
    let v = assert_error(&vm.reply(), 400, "invalid_body");
    assert_eq!(vm.routed_cluster(), None);
    next_request_is_served(vm);
    v["detail"].as_str().unwrap().to_string()
}

const JSON: &str = "application/json";
const MSGPACK: &str = "application/msgpack";

#[test]
fn hostile_json_bodies_are_routed_intact_or_refused_with_400() {
    let mut vm = Vm::start(&config());
    let n = 100_000;
    let deep_arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    // Nesting in a field routing skips: checked iteratively, well-formed, routed.
    routed(
        &mut vm,
        JSON,
        format!(r#"{{"model":"chat","x":{deep_arrays}}}"#).as_bytes(),
        "llm-small",
    );
    routed(
        &mut vm,
        JSON,
        format!(r#"{{"model":"chat","x":{deep_objects}}}"#).as_bytes(),
        "llm-small",
    );
    // In the field routing reads: its value is built, so its depth is limited.
    invalid(
        &mut vm,
        JSON,
        format!(r#"{{"model":{deep_arrays}}}"#).as_bytes(),
    );
    invalid(
        &mut vm,
        JSON,
        format!(r#"{{"model":{deep_objects}}}"#).as_bytes(),
    );
    // 100,000 keys.
    let mut many = String::from(r#"{"model":"chat""#);
    for i in 0..100_000u32 {
        many.push_str(&format!(r#","{i:x}":0"#));
    }
    many.push('}');
    routed(&mut vm, JSON, many.as_bytes(), "llm-small");
    invalid(
        &mut vm,
        JSON,
        b"{\"model\":\"chat\",\"x\":\"caf\xe9 \xff\xfe\"}",
    );
    let detail = invalid(&mut vm, JSON, br#"{"model":"chat","model":"sentiment"}"#);
    assert!(detail.contains("model"), "{detail}");
    // Well-formed, but not a model name.
    invalid(&mut vm, JSON, br#"{"model":42}"#);
    invalid(&mut vm, JSON, br#"{"model":"chat"}{"model":"iris"}"#);
    invalid(&mut vm, JSON, br#"{"model":"chat","temperature":NaN}"#);
    // Numbers: out of range where routing reads them is refused; in a skipped field, and huge
    // integers compared by value, are fine.
    routed(
        &mut vm,
        JSON,
        br#"{"model":"chat","x":1e400,"n":123456789012345678901234567890}"#,
        "llm-small",
    );
    let detail = invalid(&mut vm, JSON, br#"{"model":"chat","temperature":1e400}"#);
    assert_eq!(
        detail,
        "malformed JSON: number out of range at line 1 column 35"
    );
    routed(
        &mut vm,
        JSON,
        br#"{"model":"chat","temperature":123456789012345678901234567890}"#,
        "llm-large",
    );
    routed(
        &mut vm,
        JSON,
        br#"{"model":"chat","temperature":-1e308}"#,
        "llm-small",
    );

    assert_eq!(vm.counter("local_replies.error"), 8);
    // All but `{"model": 42}` are parse failures.
    assert_eq!(vm.counter("body.parse_failures"), 7);
    assert_eq!(
        vm.counter("requests.iris.v1"),
        14,
        "one per `next_request_is_served`"
    );
}

/// `{"model": …}` as MessagePack, the value's bytes given raw.
fn msgpack_model(value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x81, 0xa5];
    b.extend_from_slice(b"model");
    b.extend_from_slice(value);
    b
}

#[test]
fn messagepack_bombs_are_refused_without_allocating_what_they_claim() {
    let mut vm = Vm::start(&config());
    let claims: [[u8; 5]; 5] = [
        [0xdd, 0xff, 0xff, 0xff, 0xff], // array32
        [0xdf, 0xff, 0xff, 0xff, 0xff], // map32
        [0xdb, 0xff, 0xff, 0xff, 0xff], // str32
        [0xc6, 0xff, 0xff, 0xff, 0xff], // bin32
        [0xc9, 0xff, 0xff, 0xff, 0xff], // ext32
    ];
    for header in claims {
        invalid(&mut vm, MSGPACK, &header);
        invalid(&mut vm, MSGPACK, &msgpack_model(&header));
    }
    let mut deep = vec![0x91u8; 100_000];
    deep.push(0xc0);
    invalid(&mut vm, MSGPACK, &deep);
    invalid(&mut vm, MSGPACK, &msgpack_model(&deep));
    // A well-formed one routes.
    routed(
        &mut vm,
        "application/x-msgpack",
        &msgpack_model(b"\xa4chat"),
        "llm-small",
    );
    assert_eq!(vm.counter("body.parse_failures"), 12);
    assert_eq!(vm.counter("local_replies.error"), 12);
}

#[test]
fn empty_chunked_and_oversized_streaming_bodies() {
    let mut cfg = config();
    cfg["body"] = json!({ "max_bytes": 64 });
    let mut vm = Vm::start(&cfg);
    // Headers without end of stream, then an empty last chunk: nothing to read, routed by
    // headers and path (the default model).
    let mut sent = vm.start_request(&post_json(CHAT), b"");
    assert_eq!(sent.action, Action::Pause);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, 0, true),
        Action::Continue
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("weighted")
    );
    assert_eq!(vm.response_header("x-inference-body"), None);

    // A body in chunks: held until the last one.
    let body = br#"{"model":"chat","temperature":2}"#;
    let mut sent = vm.start_request(&post_json(CHAT), body);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, 10, false),
        Action::Pause
    );
    assert_eq!(vm.routed_cluster(), None);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, body.len(), true),
        Action::Continue
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-large"));

    // Chunked with no content-length: found too large at the chunk that crosses max_bytes,
    // let go at once, routed uninspected; later chunks pass.
    let big = format!(
        r#"{{"model":"chat","temperature":2,"pad":"{}"}}"#,
        "x".repeat(200)
    );
    // (The first chunk stops before `temperature`: no early decision, `early.rs`.)
    let mut sent = vm.start_request(&post_json(CHAT), big.as_bytes());
    assert_eq!(
        sent.stream.on_request_body(&vm.host, 20, false),
        Action::Pause
    );
    assert_eq!(
        sent.stream.on_request_body(&vm.host, 80, false),
        Action::Continue
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert_eq!(
        sent.stream.on_request_body(&vm.host, big.len(), true),
        Action::Continue
    );
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-body").as_deref(),
        Some("too-large")
    );
    // With a content-length over the limit: never buffered.
    let len = big.len().to_string();
    let sent = vm.start_request(
        &with(post_json(CHAT), &[("content-length", &len)]),
        big.as_bytes(),
    );
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert_eq!(vm.counter("body.too_large"), 2);
    // Trailers end a body that had no last chunk.
    let mut sent = vm.start_request(&post_json(CHAT), br#"{"model":"chat"}"#);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, 16, false),
        Action::Pause
    );
    assert_eq!(sent.stream.on_request_trailers(&vm.host), Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
}

#[test]
fn header_values_near_envoys_limit_are_read_like_any_other() {
    let mut vm = Vm::start(&config());
    let long_model = "m".repeat(56 * 1024);
    let mut sent = vm.send(
        &[
            (":method", "GET"),
            (":path", "/anything"),
            ("x-model", &long_model),
        ],
        b"",
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    vm.respond(&mut sent, OK, b"");
    // An unknown model of that name: the default model, and it is not echoed back.
    assert_eq!(
        vm.response_header("x-inference-model").as_deref(),
        Some("iris")
    );
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("default")
    );
    let tenant = format!("acme{}", "t".repeat(56 * 1024));
    let mut sent = vm.send(
        &with(get("/v2/models/iris/ready"), &[("x-tenant", &tenant)]),
        b"",
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("sentiment-v2"));
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("rule:acme")
    );
    // The client's header is passed on untouched.
    assert_eq!(vm.host.request_header_value("x-tenant"), Some(tenant));
    assert_eq!(vm.counter("decisions.default"), 1);
    assert_eq!(vm.counter("decisions.rule.acme"), 1);
}

#[test]
fn bodies_are_read_only_for_methods_and_types_that_carry_them() {
    let mut vm = Vm::start(&deterministic());
    let body = br#"{"model":"chat"}"#;
    for (method, ct, cluster) in [
        ("POST", "application/json; charset=utf-8", Some("llm-small")),
        ("POST", "application/vnd.api+json", Some("llm-small")),
        ("POST", "APPLICATION/JSON", Some("llm-small")),
        ("PUT", "application/json", Some("llm-small")),
        ("PATCH", "application/json", Some("llm-small")),
        // Not a type the filter reads, and not a method that carries a body.
        ("POST", "text/json", None),
        ("POST", "application/jsonx", None),
        ("GET", "application/json", None),
        ("DELETE", "application/json", None),
    ] {
        let sent = vm.send(
            &[(":method", method), (":path", CHAT), ("content-type", ct)],
            body,
        );
        assert_eq!(vm.routed_cluster().as_deref(), cluster, "{method} {ct}");
        if cluster.is_none() {
            // The model was never seen: no default model, so 404.
            assert_eq!(sent.action, Action::Pause);
            assert_error(&vm.reply(), 404, "unknown_model");
        }
    }
    assert_eq!(vm.counter("body.parse_failures"), 0);
}

#[test]
fn feedback_bodies_over_64_kib_are_refused_with_413() {
    let mut vm = Vm::start(&json!({
        "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), None) ],
        "feedback": feedback_section(3600),
    }));
    let big = vec![b' '; 64 * 1024 + 1];
    let mut sent = vm.start_request(&post_json(FEEDBACK_PATH), &big);
    assert_eq!(sent.action, Action::Pause);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, big.len(), false),
        Action::Pause
    );
    let v = assert_refused(&vm.reply(), 413, "too_large");
    assert_eq!(v["detail"], "feedback bodies are limited to 65536 bytes");
    assert_eq!(vm.counter("feedback.accepted"), 0);
}
