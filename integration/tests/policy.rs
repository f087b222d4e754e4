//! Policy routing end to end (docs/policy.md, docs/configuration.md), against the real Envoy at
//! `--concurrency 2` with fake upstreams that echo which cluster served:
//! - capability routing (vision, tools, JSON mode, streaming, context window) and its 422;
//! - KServe v2 input specs: every refusal is a 400 `invalid_input` that no upstream sees;
//! - tenants from a header (allow-lists, default models, tiers in rules, `required`) and from a
//!   JWT claim verified by Envoy's own `jwt_authn` filter (envoy/jwt.yaml);
//! - residency (header and tenant region) and sensitive-data detectors (card, e-mail, user
//!   regex), whose matches never reach a header, a counter or Envoy's log;
//! - cost and latency budgets and escalation;
//! - fallback while a failing target cools down (5xx, 429 + `Retry-After`, refused connection),
//!   shared by both workers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::jwt::*;
use common::*;
use integration::{
    envoy_dir, Behaviour, Envoy, EnvoyConfig, Harness, RefusedPort, Request, Response, Upstreams,
};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A POST of `body` as JSON, and the exact bytes sent (to check they arrive intact).
fn post_json(path: &str, body: &Value) -> (Request, Vec<u8>) {
    let bytes = serde_json::to_vec(body).expect("serialize body");
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(bytes.clone());
    (req, bytes)
}

/// A one-message chat-completions body for `model` (None: the body names no model).
fn chat(model: Option<&str>, content: &str) -> Value {
    let mut v = json!({ "messages": [ { "role": "user", "content": content } ] });
    if let Some(m) = model {
        v["model"] = json!(m);
    }
    v
}

/// The cluster that served a response, or a panic naming what came back.
#[track_caller]
fn served_by(r: &Response) -> String {
    assert_eq!(
        r.status,
        200,
        "expected an upstream answer, got {} headers {:?} body {}",
        r.status,
        r.headers,
        r.text()
    );
    r.echo().cluster
}

/// 15 digits unique to this run (process id and clock), for card numbers nobody else sends.
fn unique_digits(salt: u64) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64;
    let n = (nanos ^ (u64::from(std::process::id()) << 40)).wrapping_add(salt.wrapping_mul(7919))
        % 100_000_000_000_000;
    format!("4{n:014}")
}

/// The Luhn check digit that completes `digits`.
fn luhn_check_digit(digits: &str) -> u32 {
    let mut sum = 0;
    for (i, c) in digits.chars().rev().enumerate() {
        let mut d = c.to_digit(10).expect("a digit");
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    (10 - sum % 10) % 10
}

/// A 16-digit Luhn-valid card number unique to this run, and one that fails the check.
fn card_numbers(salt: u64) -> (String, String) {
    let body = unique_digits(salt);
    let check = luhn_check_digit(&body);
    let valid = format!("{body}{check}");
    let invalid = format!("{body}{}", (check + 1) % 10);
    (valid, invalid)
}

/// `1234567812345678` → `1234 5678 1234 5678` (or with dashes).
fn grouped(number: &str, sep: &str) -> String {
    number
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Opens connections and sends `req` on each until both workers have served at least one of
/// them (at most 64), returning every response. Proves a behaviour holds on both workers' VMs.
fn on_both_workers(envoy: &Envoy, req: &Request) -> Vec<Response> {
    let before = envoy.worker_connections();
    let mut out = Vec::new();
    for _ in 0..64 {
        out.push(envoy.send(req));
        let now = envoy.worker_connections();
        let workers = now
            .iter()
            .filter(|(w, n)| **n > before.get(w).copied().unwrap_or(0))
            .count();
        if workers >= 2 && out.len() >= 6 {
            return out;
        }
    }
    panic!(
        "64 connections all landed on one worker: {:?}",
        envoy.worker_connections()
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Capability routing
// ---------------------------------------------------------------------------------------------

/// Six targets, one per need: exactly one target offers each capability, and only `long` has a
/// context window above 8,192 tokens. `text-only` offers no vision and a 4,096-token window.
fn capability_config() -> Value {
    json!({
        "models": [
            { "name": "chat",
              "targets": [
                { "name": "plain",  "cluster": "llm-small",    "weight": 1, "max_context_tokens": 8192 },
                { "name": "vision", "cluster": "llm-large",    "weight": 1, "capabilities": ["vision"], "max_context_tokens": 8192 },
                { "name": "tools",  "cluster": "sentiment-v1", "weight": 1, "capabilities": ["tools"], "max_context_tokens": 8192 },
                { "name": "json",   "cluster": "sentiment-v2", "weight": 1, "capabilities": ["json_mode"], "max_context_tokens": 8192 },
                { "name": "stream", "cluster": "iris-v1",      "weight": 1, "capabilities": ["streaming"], "max_context_tokens": 8192 },
                { "name": "long",   "cluster": "iris-v2",      "weight": 1, "max_context_tokens": 128000 } ] },
            { "name": "text-only",
              "targets": [
                { "name": "a", "cluster": "llm-small", "weight": 1,
                  "capabilities": ["tools", "json_mode", "streaming"], "max_context_tokens": 4096 } ] }
        ]
    })
}

#[test]
fn capability_routing_sends_each_need_to_a_target_that_offers_it() {
    let h = Harness::demo(&capability_config());
    let image = json!([
        { "type": "text", "text": "What is in this picture?" },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } }
    ]);
    let tool = json!([{ "type": "function",
                        "function": { "name": "get_weather",
                                      "parameters": { "type": "object", "properties": {} } } }]);
    let mut with_image = chat(Some("chat"), "");
    with_image["messages"][0]["content"] = image.clone();
    let mut with_tools = chat(Some("chat"), "What is the weather in Paris?");
    with_tools["tools"] = tool.clone();
    let mut with_functions = chat(Some("chat"), "What is the weather in Paris?");
    with_functions["functions"] = json!([{ "name": "get_weather", "parameters": {} }]);
    let mut json_object = chat(Some("chat"), "Answer in JSON.");
    json_object["response_format"] = json!({ "type": "json_object" });
    let mut json_schema = chat(Some("chat"), "Answer in JSON.");
    json_schema["response_format"] = json!({ "type": "json_schema",
        "json_schema": { "name": "a", "schema": { "type": "object" } } });
    let mut streamed = chat(Some("chat"), "Tell me a story.");
    streamed["stream"] = json!(true);
    // 50,000 characters: ~12,504 tokens, over every window but `long`'s.
    let long = chat(
        Some("chat"),
        &"All work and no play. ".repeat(50_000 / 22 + 1),
    );
    // 32,000 characters = 8,000 tokens + 4 for the message: fits 8,192 with max_tokens 100
    // (8,104), not with 200 (8,204): the requested output counts.
    let mut fits = chat(Some("chat"), &"abcd".repeat(8000));
    fits["max_tokens"] = json!(100);
    let mut too_long_with_output = fits.clone();
    too_long_with_output["max_tokens"] = json!(200);
    let mut too_long_with_completion = fits.clone();
    too_long_with_completion
        .as_object_mut()
        .unwrap()
        .remove("max_tokens");
    too_long_with_completion["max_completion_tokens"] = json!(200);

    let cases: [(&str, &Value, &str, &str); 9] = [
        ("image part", &with_image, "vision", "llm-large"),
        ("tools", &with_tools, "tools", "sentiment-v1"),
        ("functions", &with_functions, "tools", "sentiment-v1"),
        ("json_object", &json_object, "json", "sentiment-v2"),
        ("json_schema", &json_schema, "json", "sentiment-v2"),
        ("stream", &streamed, "stream", "iris-v1"),
        ("50k-char prompt", &long, "long", "iris-v2"),
        ("8,204 tokens", &too_long_with_output, "long", "iris-v2"),
        (
            "8,204 tokens (max_completion_tokens)",
            &too_long_with_completion,
            "long",
            "iris-v2",
        ),
    ];
    // Each need leaves one candidate among six equally weighted targets: 4 requests each all on
    // the right one cannot be luck.
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for (what, body, target, cluster) in cases {
        for _ in 0..4 {
            let (req, bytes) = post_json("/v1/chat/completions", body);
            let r = h.send(&req);
            assert_eq!(
                r.status,
                200,
                "{what}: {} {:?}",
                r.text(),
                r.inference_headers()
            );
            let echo = assert_upstream(&r, cluster);
            assert_decision(&r, "chat", target, "weighted");
            // The filter read the body and let it through byte for byte.
            assert_body_intact(&echo, &bytes);
            *counts.entry(target).or_default() += 1;
        }
    }

    for (target, n) in &counts {
        assert_eq!(
            h.envoy
                .wasm_counter_eventually(&format!("inference_router.requests.chat.{target}"), *n),
            *n
        );
    }

    // A prompt that fits every window, and a request without a body, are not restricted.
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        let (req, bytes) = post_json("/v1/chat/completions", &fits);
        let r = h.send(&req);
        let echo = r.echo();
        assert_eq!(r.status, 200);
        assert_body_intact(&echo, &bytes);
        seen.insert(echo.cluster);
    }
    assert!(
        seen.len() >= 2,
        "an unrestricted request should be spread over the six targets: {seen:?}"
    );
    let r = h.send(&Request::get("/v2/models/chat/ready"));
    assert_eq!(r.status, 200, "{}", r.text());

    // No capable target: 422 naming the capability; nothing reaches an upstream.
    let before = h.upstreams.total_hits();
    let mut vision_text_only = with_image.clone();
    vision_text_only["model"] = json!("text-only");
    let (req, _) = post_json("/v1/chat/completions", &vision_text_only);
    let r = h.send(&req);
    let v = assert_error_reply(&r, 422, "capability_unavailable");
    assert_eq!(
        v["detail"], "no target of model \"text-only\" offers vision",
        "{v}"
    );
    assert_meta(&r, "model", Some("text-only"));
    // Context: 50,000 characters do not fit 4,096 tokens.
    let mut long_text_only = long.clone();
    long_text_only["model"] = json!("text-only");
    let (req, _) = post_json("/v1/chat/completions", &long_text_only);
    let v = assert_error_reply(&h.send(&req), 422, "capability_unavailable");
    assert!(
        v["detail"].as_str().unwrap().contains("context"),
        "a context refusal should say so: {v}"
    );
    // Two needs no single target offers (vision + tools).
    let mut vision_and_tools = with_image.clone();
    vision_and_tools["tools"] = tool;
    let (req, _) = post_json("/v1/chat/completions", &vision_and_tools);
    let v = assert_error_reply(&h.send(&req), 422, "capability_unavailable");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("no target of model \"chat\" offers ")
            && (detail.ends_with("vision") || detail.ends_with("tools")),
        "{v}"
    );
    assert_no_upstream(&h, before);

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.error", 3),
        3
    );
}

// ---------------------------------------------------------------------------------------------
// 2. KServe v2 input specs
// ---------------------------------------------------------------------------------------------

fn input(name: &str, datatype: &str, shape: Value, data: Value) -> Value {
    json!({ "name": name, "datatype": datatype, "shape": shape, "data": data })
}

#[test]
fn kserve_input_spec_refuses_mismatches_before_any_upstream() {
    let h = Harness::demo(&json!({
        "models": [
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 0 } ],
              "input_spec": [ { "name": "input-0", "datatype": "FP32", "shape": [-1, 4] },
                              { "name": "scale", "datatype": "INT64", "shape": [1] } ] }
        ]
    }));
    let good = input(
        "input-0",
        "FP32",
        json!([2, 4]),
        json!([5.1, 3.5, 1.4, 0.2, 6.2, 2.9, 4.3, 1.3]),
    );
    let scale = input("scale", "INT64", json!([1]), json!([3]));

    // Valid: routed, body intact. Nested data, extra KServe fields (id, parameters, outputs)
    // and a pinned version are fine too.
    let valid = [
        (
            "/v2/models/iris/infer",
            json!({ "inputs": [good, scale] }),
            "iris-v1",
        ),
        (
            "/v2/models/iris/infer",
            json!({ "id": "42", "parameters": { "p": 1 }, "outputs": [{ "name": "out" }],
                 "inputs": [ scale,
                             input("input-0", "FP32", json!([1, 4]), json!([[1.0, 2.0, 3.0, 4.0]])) ] }),
            "iris-v1",
        ),
        (
            "/v2/models/iris/versions/v2/infer",
            json!({ "inputs": [good, scale] }),
            "iris-v2",
        ),
    ];
    for (path, body, cluster) in &valid {
        let (req, bytes) = post_json(path, body);
        let r = h.send(&req);
        assert_body_intact(&assert_upstream(&r, cluster), &bytes);
    }
    // `…/ready` (and any GET) is not checked.
    let r = h.send(&Request::get("/v2/models/iris/ready"));
    assert_upstream(&r, "iris-v1");
    let hits = (h.upstreams.hits("iris-v1"), h.upstreams.hits("iris-v2"));
    let before = h.upstreams.total_hits();

    // (what, inputs, the input named, a phrase of the expected-value sentence)
    let refusals: Vec<(&str, Value, &str, &str)> = vec![
        (
            "wrong datatype",
            json!([
                input("input-0", "INT64", json!([1, 4]), json!([1, 2, 3, 4])),
                scale
            ]),
            "input-0",
            "input \"input-0\" has datatype INT64, expected FP32",
        ),
        (
            "wrong dimension",
            json!([
                input("input-0", "FP32", json!([1, 3]), json!([1.0, 2.0, 3.0])),
                scale
            ]),
            "input-0",
            "input \"input-0\" has shape [1, 3], expected [-1, 4]",
        ),
        (
            "wrong rank",
            json!([
                input("input-0", "FP32", json!([4]), json!([1.0, 2.0, 3.0, 4.0])),
                scale
            ]),
            "input-0",
            "input \"input-0\" has shape [4], expected [-1, 4]",
        ),
        (
            "wrong value count",
            json!([
                input(
                    "input-0",
                    "FP32",
                    json!([2, 4]),
                    json!([1.0, 2.0, 3.0, 4.0])
                ),
                scale
            ]),
            "input-0",
            "input \"input-0\" has 4 values, expected 8 for shape [2, 4]",
        ),
        (
            "wrong value count (second input)",
            json!([good, input("scale", "INT64", json!([1]), json!([1, 2]))]),
            "scale",
            "input \"scale\" has 2 values, expected 1 for shape [1]",
        ),
        (
            "missing input",
            json!([good]),
            "scale",
            "input \"scale\" is missing",
        ),
        (
            "extra input",
            json!([
                good,
                scale,
                input("bogus", "FP32", json!([1]), json!([0.0]))
            ]),
            "bogus",
            "input \"bogus\" is not an input of this model (inputs: input-0, scale)",
        ),
    ];
    for (what, inputs, name, sentence) in &refusals {
        for path in ["/v2/models/iris/infer", "/v2/models/iris/versions/v2/infer"] {
            let (req, _) = post_json(path, &json!({ "inputs": inputs }));
            let r = h.send(&req);
            let v = assert_error_reply(&r, 400, "invalid_input");
            assert_eq!(v["input"], *name, "{what}: {v}");
            assert_eq!(v["detail"], *sentence, "{what}: {v}");
            assert!(
                v["detail"].as_str().unwrap().contains("expected")
                    || what.contains("missing")
                    || what.contains("extra"),
                "{what}: the detail should say what was expected: {v}"
            );
            assert_meta(&r, "model", Some("iris"));
        }
    }
    // Not a KServe v2 request at all (a v1 `instances` body) on an `…/infer` path.
    let (req, _) = post_json(
        "/v2/models/iris/infer",
        &json!({ "instances": [[1, 2, 3, 4]] }),
    );
    let v = assert_error_reply(&h.send(&req), 400, "invalid_input");
    assert!(v.get("input").is_some(), "`input` is always present: {v}");
    assert!(v["detail"].as_str().unwrap().contains("expected"), "{v}");

    assert_no_upstream(&h, before);
    assert_eq!(
        (h.upstreams.hits("iris-v1"), h.upstreams.hits("iris-v2")),
        hits,
        "a refused request must not reach the model server"
    );
    let errors = (refusals.len() * 2 + 1) as u64;
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.error", errors),
        errors
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.iris.v1", 3),
        3,
        "only the valid requests count as routed"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Tenants
// ---------------------------------------------------------------------------------------------

fn tenant_models() -> Value {
    json!([
        { "name": "chat",
          "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 },
                       { "name": "large", "cluster": "llm-large", "weight": 1 } ] },
        { "name": "sentiment",
          "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 1 } ] },
        { "name": "iris",
          "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 } ] }
    ])
}

/// The tenants of docs/policy.md ("Tenants"), plus `lab`, with the given source.
fn tenant_config(source: (&str, Value)) -> Value {
    let mut tenants = json!({
        "required": true,
        "list": [
            { "name": "acme", "tier": "gold", "default_model": "chat" },
            { "name": "hobbyist", "tier": "free", "default_model": "chat",
              "allow": { "chat": ["small"] } },
            { "name": "lab", "default_model": "iris",
              "allow": { "iris": [], "sentiment": [] } }
        ]
    });
    tenants[source.0] = source.1;
    json!({
        "models": tenant_models(),
        "tenants": tenants,
        "rules": [
            { "name": "gold-gets-large", "when": { "tier": "gold", "path_prefix": "/v1/chat/" },
              "then": { "model": "chat", "target": "large" } }
        ]
    })
}

/// Applies a tenant's credential (a header, a token) to a request.
type Auth<'a> = &'a dyn Fn(Request) -> Request;
type Credential = Box<dyn Fn(Request) -> Request>;

/// The tenant behaviours both sources share: allow-lists (model and target), default models,
/// the tier rule. `as_tenant(name)` makes a request carry that tenant.
fn check_tenant_policy(h: &Harness, as_tenant: &dyn Fn(&str) -> Credential) {
    let hobbyist = as_tenant("hobbyist");
    let acme = as_tenant("acme");
    let lab = as_tenant("lab");
    let send = |auth: Auth<'_>, req: Request| h.send(&auth(req));
    let before = h.upstreams.total_hits();

    // hobbyist may not use sentiment: 403, whatever names the model (header, path, body).
    for req in [
        Request::get("/v2/models/sentiment/ready"),
        Request::post("/v1/completions").json(&chat(Some("sentiment"), "hi")),
        Request::get("/anything").header("x-model", "sentiment"),
    ] {
        let r = send(&*hobbyist, req);
        let v = assert_error_reply(&r, 403, "forbidden");
        assert_eq!(
            v["detail"], "tenant \"hobbyist\" may not use model \"sentiment\"",
            "{v}"
        );
    }
    // hobbyist may use chat's `small` only: pinning `large` is refused.
    let r = send(
        &*hobbyist,
        Request::get("/v2/models/chat/versions/large/ready"),
    );
    let v = assert_error_reply(&r, 403, "forbidden");
    assert!(v["detail"].as_str().unwrap().contains("hobbyist"), "{v}");
    // lab's allow-list has no chat.
    let r = send(
        &*lab,
        Request::post("/v1/chat/completions").json(&chat(Some("chat"), "hi")),
    );
    assert_error_reply(&r, 403, "forbidden");
    assert_no_upstream(h, before);

    // hobbyist's chat requests (named, or by its default model) all go to `small`, though chat
    // is weighted 1:1.
    for i in 0..12 {
        let model = if i % 2 == 0 { Some("chat") } else { None };
        let (req, bytes) = post_json("/v1/completions", &chat(model, "hello"));
        let r = send(&*hobbyist, req);
        assert_body_intact(&assert_upstream(&r, "llm-small"), &bytes);
        assert_decision(&r, "chat", "small", "weighted");
    }
    // The tier rule: gold + /v1/chat/ → chat/large, the body naming no model (acme's default
    // model is chat too) or another model.
    for model in [None, Some("sentiment")] {
        let r = send(
            &*acme,
            Request::post("/v1/chat/completions").json(&chat(model, "hello")),
        );
        assert_upstream(&r, "llm-large");
        assert_decision(&r, "chat", "large", "rule:gold-gets-large");
    }
    // Outside the rule's path acme has no allow-list: every model, every target.
    let r = send(&*acme, Request::get("/v2/models/sentiment/ready"));
    assert_upstream(&r, "sentiment-v1");
    let r = send(&*acme, Request::get("/v2/models/chat/versions/small/ready"));
    assert_decision(&r, "chat", "small", "path-version");
    // hobbyist is not gold: the same request is not pinned to large.
    let r = send(
        &*hobbyist,
        Request::post("/v1/chat/completions").json(&chat(None, "hello")),
    );
    assert_decision(&r, "chat", "small", "weighted");
    // lab's default model is iris; lab may use sentiment (an empty list: every target).
    let r = send(
        &*lab,
        Request::post("/v1/completions").json(&json!({"prompt": "x"})),
    );
    assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "weighted");
    let r = send(&*lab, Request::get("/v2/models/sentiment/ready"));
    assert_upstream(&r, "sentiment-v1");
    assert!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.rule.gold-gets-large", 2)
            >= 2
    );
}

#[test]
fn tenants_from_a_header_allow_lists_defaults_tiers_and_required() {
    let h = Harness::demo(&tenant_config(("header", json!("x-tenant"))));
    check_tenant_policy(&h, &|name: &str| {
        let name = name.to_string();
        Box::new(move |r: Request| r.header("x-tenant", &name))
    });

    // `required: true`: no tenant, an empty one, or an unknown one is refused.
    let before = h.upstreams.total_hits();
    for req in [
        Request::get("/v2/models/iris/ready"),
        Request::get("/v2/models/iris/ready").header("x-tenant", ""),
        Request::get("/v2/models/iris/ready").header("x-tenant", "nobody"),
        Request::get("/v2/models/iris/ready").header("x-tenant", "ACME"),
        Request::post("/v1/chat/completions")
            .header("x-tenant", "mallory")
            .json(&chat(Some("chat"), "hi")),
    ] {
        let r = h.send(&req);
        let v = assert_error_reply(&r, 403, "forbidden");
        assert_eq!(v["detail"], "the request names no known tenant", "{v}");
    }
    assert_no_upstream(&h, before);
}

fn claims(tenant: Option<&str>) -> Value {
    let mut c = json!({ "iss": JWT_ISSUER, "sub": "e2e-user", "iat": now_unix(),
                        "exp": now_unix() + 3600 });
    if let Some(t) = tenant {
        c["tenant"] = json!(t);
    }
    c
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn b64url_matches_known_vectors() {
    assert_eq!(b64url(b""), "");
    assert_eq!(b64url(b"f"), "Zg");
    assert_eq!(b64url(b"fo"), "Zm8");
    assert_eq!(b64url(b"foo"), "Zm9v");
    assert_eq!(b64url(b"foob"), "Zm9vYg");
    assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    // RFC 7515 A.1's HMAC key is this JWK `k`; the JWKS of envoy/jwt.yaml holds JWT_KEY's.
    let template = std::fs::read_to_string(envoy_dir().join("jwt.yaml")).expect("envoy/jwt.yaml");
    assert!(
        template.contains(&format!("\"k\":\"{}\"", b64url(JWT_KEY))),
        "envoy/jwt.yaml's JWKS must hold the key the tests sign with"
    );
    assert!(template.contains(&format!("issuer: {JWT_ISSUER}")));
}

/// envoy/jwt.yaml is envoy/demo.yaml plus the jwt_authn filter: apart from comments and that
/// block, they must not drift apart.
#[test]
fn jwt_template_is_the_demo_template_plus_jwt_authn() {
    let code = |name: &str| -> Vec<String> {
        let text = std::fs::read_to_string(envoy_dir().join(name)).expect("read template");
        let mut out = Vec::new();
        let mut skipping = None;
        for line in text.lines() {
            if line.trim_start().starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            if let Some(i) = skipping {
                if indent > i {
                    continue;
                }
                skipping = None;
            }
            if line.trim_start() == "- name: envoy.filters.http.jwt_authn" {
                skipping = Some(indent);
                continue;
            }
            out.push(line.to_string());
        }
        out
    };
    let demo = code("demo.yaml");
    let jwt = code("jwt.yaml");
    assert_eq!(
        demo, jwt,
        "envoy/jwt.yaml drifted from envoy/demo.yaml (beyond the jwt_authn filter)"
    );
}

#[test]
fn tenants_from_a_verified_jwt_claim() {
    let cfg = tenant_config((
        "jwt",
        json!({ "payload_key": "jwt_payload", "claim": "tenant" }),
    ));
    let h = Harness::start(&EnvoyConfig::new("jwt.yaml", cfg.to_string()));

    // The claim selects the tenant; a tenant header the client adds is ignored (it names a
    // more privileged tenant each time).
    check_tenant_policy(&h, &|name: &str| {
        let token = sign_hs256(JWT_KEY, &claims(Some(name)));
        let other = if name == "acme" { "hobbyist" } else { "acme" };
        Box::new(move |r: Request| {
            r.header("authorization", &bearer(&token))
                .header("x-tenant", other)
                .header("x-tenant-id", other)
        })
    });

    // jwt_authn forwards the token (`forward: true`); the model server sees it.
    let token = sign_hs256(JWT_KEY, &claims(Some("hobbyist")));
    let r = h.send(&Request::get("/v2/models/chat/ready").header("authorization", &bearer(&token)));
    let echo = assert_upstream(&r, "llm-small");
    assert_eq!(
        echo.headers.get("authorization").map(String::as_str),
        Some(bearer(&token).as_str())
    );

    // The plugin's refusals: no token (jwt_authn allows a missing one), an unknown tenant, a
    // token without the claim, a claim that is not a string. A tenant header does not help.
    let before = h.upstreams.total_hits();
    let no_claim = sign_hs256(JWT_KEY, &claims(None));
    let mut numeric = claims(None);
    numeric["tenant"] = json!(7);
    let numeric = sign_hs256(JWT_KEY, &numeric);
    let unknown = sign_hs256(JWT_KEY, &claims(Some("mallory")));
    for (what, req) in [
        ("no token", Request::get("/v2/models/iris/ready")),
        (
            "no token, tenant header",
            Request::get("/v2/models/iris/ready").header("x-tenant", "acme"),
        ),
        (
            "unknown tenant",
            Request::get("/v2/models/iris/ready").header("authorization", &bearer(&unknown)),
        ),
        (
            "no tenant claim",
            Request::get("/v2/models/iris/ready")
                .header("authorization", &bearer(&no_claim))
                .header("x-tenant", "acme"),
        ),
        (
            "numeric tenant claim",
            Request::get("/v2/models/iris/ready").header("authorization", &bearer(&numeric)),
        ),
    ] {
        let r = h.send(&req);
        assert_eq!(r.status, 403, "{what}: {} {:?}", r.text(), r.headers);
        let v = assert_error_reply(&r, 403, "forbidden");
        assert_eq!(
            v["detail"], "the request names no known tenant",
            "{what}: {v}"
        );
    }

    // Envoy's refusals (401, before the plugin): a token signed with another key, an expired
    // one, one from another issuer, a malformed one, `alg: none`.
    let forged = sign_hs256(
        b"another-key-of-the-same-length-as-the-real-one!!",
        &claims(Some("acme")),
    );
    let mut expired = claims(Some("acme"));
    expired["exp"] = json!(now_unix() - 600);
    let expired = sign_hs256(JWT_KEY, &expired);
    let mut stranger = claims(Some("acme"));
    stranger["iss"] = json!("someone-else");
    let stranger = sign_hs256(JWT_KEY, &stranger);
    let unsigned = format!(
        "{}.{}.",
        b64url(
            json!({ "alg": "none", "typ": "JWT" })
                .to_string()
                .as_bytes()
        ),
        b64url(claims(Some("acme")).to_string().as_bytes())
    );
    let mut tampered = sign_hs256(JWT_KEY, &claims(Some("hobbyist")));
    // Swap the payload for acme's while keeping hobbyist's signature.
    let acme_payload = b64url(claims(Some("acme")).to_string().as_bytes());
    let parts: Vec<&str> = tampered.split('.').collect();
    tampered = format!("{}.{}.{}", parts[0], acme_payload, parts[2]);
    for (what, token) in [
        ("wrong key", forged.as_str()),
        ("expired", expired.as_str()),
        ("other issuer", stranger.as_str()),
        ("malformed", "not-a-jwt"),
        ("alg none", unsigned.as_str()),
        ("tampered payload", tampered.as_str()),
    ] {
        let r = h.send(
            &Request::post("/v1/chat/completions")
                .header("authorization", &bearer(token))
                .header("x-tenant", "acme")
                .json(&chat(Some("chat"), "hi")),
        );
        assert_eq!(r.status, 401, "{what}: {} {:?}", r.text(), r.headers);
        assert!(
            r.header("x-inference-model").is_none() && r.header("x-inference-target").is_none(),
            "{what}: refused before any routing decision: {:?}",
            r.headers
        );
    }
    assert_no_upstream(&h, before);
    assert!(
        h.envoy.counter("http.inference.jwt_authn.denied") >= 6,
        "jwt_authn stats: {:?}",
        h.envoy
            .stats()
            .into_iter()
            .filter(|(k, _)| k.contains("jwt_authn"))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Residency and sensitive data
// ---------------------------------------------------------------------------------------------

fn residency_config() -> Value {
    json!({
        "models": [
            { "name": "chat",
              "targets": [
                { "name": "us",       "cluster": "llm-small", "weight": 1, "region": "us" },
                { "name": "us-safe",  "cluster": "iris-v1",   "weight": 1, "region": "us", "tags": ["pii-safe"] },
                { "name": "eu",       "cluster": "llm-large", "weight": 1, "region": "eu", "tags": ["pii-safe"] },
                { "name": "eu-plain", "cluster": "iris-v2",   "weight": 1, "region": "eu" } ] }
        ],
        "tenants": {
            "header": "x-tenant",
            "list": [ { "name": "eu-corp", "region": "eu" },
                      { "name": "ap-corp", "region": "ap" },
                      { "name": "plain-corp" } ]
        },
        "residency": { "header": "x-data-region" },
        "detectors": [ { "name": "card", "builtin": "card" },
                       { "name": "email", "builtin": "email" },
                       { "name": "employee-id", "regex": "EMP-[0-9]{6}" } ],
        "rules": [
            { "name": "no-email", "when": { "detected": "email" },
              "then": { "reject": { "status": 403, "message": "e-mail addresses may not be sent to models" } } },
            { "name": "no-employee-ids", "when": { "detected": "employee-id" },
              "then": { "reject": { "status": 403, "message": "employee identifiers may not be sent to models" } } },
            { "name": "pii-stays-safe", "when": { "detected": ["card"] },
              "then": { "restrict": { "region": "eu", "tags": ["pii-safe"] } } }
        ]
    })
}

/// Sends `n` chat requests with these headers; the set of clusters that served them.
fn clusters_for(h: &Harness, headers: &[(&str, &str)], n: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for _ in 0..n {
        let mut req = Request::post("/v1/chat/completions")
            .json(&chat(Some("chat"), "Summarise the quarterly report."));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let r = h.send(&req);
        assert_meta(&r, "detector", None);
        out.insert(served_by(&r));
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn residency_keeps_data_in_the_required_region() {
    let h = Harness::demo(&residency_config());
    let eu = set(&["llm-large", "iris-v2"]);
    let us = set(&["llm-small", "iris-v1"]);

    // 30 draws over two equal targets: both show up (a miss has probability 2^-29).
    assert_eq!(clusters_for(&h, &[("x-data-region", "eu")], 30), eu);
    assert_eq!(clusters_for(&h, &[("x-data-region", "us")], 30), us);
    // The tenant's region, when the request names none.
    assert_eq!(clusters_for(&h, &[("x-tenant", "eu-corp")], 30), eu);
    // The header wins over the tenant's region.
    assert_eq!(
        clusters_for(&h, &[("x-tenant", "eu-corp"), ("x-data-region", "us")], 20),
        us
    );
    // No region required: every target.
    assert_eq!(
        clusters_for(&h, &[("x-tenant", "plain-corp")], 40).len(),
        4,
        "without a region every target serves"
    );

    // A region no target is in: 403, from the header or from the tenant.
    let before = h.upstreams.total_hits();
    for (k, v, region) in [
        ("x-data-region", "mars", "mars"),
        ("x-tenant", "ap-corp", "ap"),
    ] {
        let r = h.send(
            &Request::post("/v1/chat/completions")
                .header(k, v)
                .json(&chat(Some("chat"), "hello")),
        );
        let j = assert_error_reply(&r, 403, "forbidden");
        assert_eq!(
            j["detail"],
            format!("no target of model \"chat\" keeps data in region \"{region}\""),
            "{j}"
        );
        // Also for a request without a body.
        let r = h.send(&Request::get("/v2/models/chat/ready").header(k, v));
        assert_error_reply(&r, 403, "forbidden");
    }
    assert_no_upstream(&h, before);
}

#[test]
fn detectors_restrict_or_reject_and_never_leak_what_they_matched() {
    let h = Harness::start(&EnvoyConfig::demo(&residency_config()).wasm_debug(true));
    let (card, bad_card) = card_numbers(1);
    let (card2, _) = card_numbers(2);
    let email = format!("e2e.{}@example.org", &unique_digits(3)[1..]);
    let employee = format!("EMP-{}", &unique_digits(4)[9..15]);
    assert_eq!(employee.len(), 10);

    // A Luhn-valid card number, spaced, dashed, bare, inside a content part: only the eu +
    // pii-safe target, reason the restricting rule, detector named, body intact.
    let texts = [
        format!("Please charge {} for the order.", grouped(&card, " ")),
        format!("Card: {}", grouped(&card2, "-")),
        card.clone(),
    ];
    let mut card_hits = 0;
    for text in &texts {
        for _ in 0..4 {
            let (req, bytes) = post_json("/v1/chat/completions", &chat(Some("chat"), text));
            let r = h.send(&req);
            assert_body_intact(&assert_upstream(&r, "llm-large"), &bytes);
            assert_decision(&r, "chat", "eu", "rule:pii-stays-safe");
            assert_meta(&r, "detector", Some("card"));
            assert_not_leaked(&r, &card);
            card_hits += 1;
        }
    }
    let mut parts = chat(Some("chat"), "");
    parts["messages"] = json!([
        { "role": "system", "content": "You are a billing assistant." },
        { "role": "user", "content": [ { "type": "text", "text": format!("my card is {}", grouped(&card, " ")) } ] }
    ]);
    let (req, bytes) = post_json("/v1/chat/completions", &parts);
    let r = h.send(&req);
    assert_body_intact(&assert_upstream(&r, "llm-large"), &bytes);
    assert_meta(&r, "detector", Some("card"));
    card_hits += 1;

    // The same in a MessagePack body.
    let mp = rmp_serde::to_vec_named(&chat(Some("chat"), &grouped(&card2, " "))).unwrap();
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("content-type", "application/msgpack")
            .body(mp.clone()),
    );
    assert_body_intact(&assert_upstream(&r, "llm-large"), &mp);
    assert_decision(&r, "chat", "eu", "rule:pii-stays-safe");
    assert_meta(&r, "detector", Some("card"));
    card_hits += 1;

    // Restriction and residency together leave nothing: 403, the detector still named.
    let before = h.upstreams.total_hits();
    let r = h.send(
        &Request::post("/v1/chat/completions")
            .header("x-data-region", "us")
            .json(&chat(Some("chat"), &format!("card {card}"))),
    );
    assert_error_reply(&r, 403, "forbidden");
    assert_meta(&r, "detector", Some("card"));
    assert_not_leaked(&r, &card);
    card_hits += 1;

    // An e-mail address: rejected with the rule's status and the detector's name, never the
    // address. Also when a card is in the same prompt (the first matching rule wins).
    for text in [
        format!("Write to {email} about it."),
        format!("{email} paid with {card}"),
    ] {
        let r = h.send(&Request::post("/v1/chat/completions").json(&chat(Some("chat"), &text)));
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(
            r.json(),
            json!({ "error": "rejected", "detail": "e-mail addresses may not be sent to models",
                    "rule": "no-email", "detector": "email" })
        );
        assert_meta(&r, "detector", Some("email"));
        assert_meta(&r, "reason", Some("rule:no-email"));
        assert_not_leaked(&r, &email);
        assert_not_leaked(&r, &card);
    }
    // In an embeddings `input` list.
    let r =
        h.send(&Request::post("/v1/embeddings").json(
            &json!({ "model": "chat", "input": ["first line", format!("contact: {email}")] }),
        ));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["detector"], "email");
    assert_not_leaked(&r, &email);
    // The user regex detector, in `prompt` (completions) rather than messages.
    let r = h.send(
        &Request::post("/v1/completions")
            .json(&json!({ "model": "chat", "prompt": format!("Employee {employee} asks") })),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let v = r.json();
    assert_eq!(v["rule"], "no-employee-ids");
    assert_eq!(v["detector"], "employee-id");
    assert_meta(&r, "detector", Some("employee-id"));
    assert_not_leaked(&r, &employee);
    assert_no_upstream(&h, before);

    // Near misses do not fire: a number failing Luhn, 12 digits, five-digit employee ids, an
    // at-sign without a domain. They are routed like any request (any of the four targets).
    let near_misses = [
        format!("Please charge {} for the order.", grouped(&bad_card, " ")),
        "Order 4111 1111 1111".to_string(),
        "Employee EMP-12345 asks".to_string(),
        "ping me @ noon".to_string(),
    ];
    for text in &near_misses {
        let r = h.send(&Request::post("/v1/chat/completions").json(&chat(Some("chat"), text)));
        assert_eq!(r.status, 200, "{text:?}: {} {:?}", r.text(), r.headers);
        assert_meta(&r, "detector", None);
        assert_meta(&r, "reason", Some("weighted"));
    }

    // Counters: decisions in which each detector fired, nothing else.
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.detectors.card", card_hits),
        card_hits
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.detectors.email", 3),
        3
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.detectors.employee-id", 1),
        1
    );
    assert_eq!(
        h.envoy.wasm_counter_eventually(
            "inference_router.decisions.rule.pii-stays-safe",
            card_hits - 1
        ),
        card_hits - 1
    );
    for (name, _) in h.envoy.wasm_stats() {
        for secret in [&card, &email, &employee] {
            assert!(
                !name.contains(secret.as_str()),
                "metric {name} leaks a match"
            );
        }
    }

    // Envoy's log (the filter's lines, at wasm debug level, and the access log) never holds
    // what matched. The log file is flushed every 100 ms: wait for the access log lines.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.envoy.stdout_log().matches("[access]").count() < 20
        && std::time::Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
    thread::sleep(Duration::from_millis(300));
    let log = format!("{}\n{}", h.envoy.app_log(), h.envoy.stdout_log());
    assert!(log.contains("[access]"), "no access log lines: {log}");
    assert!(log.contains("inference-router"), "no filter log lines");
    for secret in [
        card.clone(),
        grouped(&card, " "),
        grouped(&card2, "-"),
        card2.clone(),
        email.clone(),
        employee.clone(),
    ] {
        assert!(
            !log.contains(&secret),
            "Envoy's log contains a detected value {secret:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Budgets
// ---------------------------------------------------------------------------------------------

#[test]
fn cost_budget_picks_the_cheapest_fitting_target_and_escalation_the_strongest() {
    let caps = json!(["vision", "tools", "json_mode", "streaming"]);
    let h = Harness::demo(&json!({
        "models": [
            { "name": "chat",
              "targets": [
                { "name": "small", "cluster": "llm-small", "weight": 1, "rank": 1,
                  "capabilities": ["tools", "json_mode", "streaming"],
                  "price": { "input_per_1k": 0.15, "output_per_1k": 0.6 } },
                { "name": "medium", "cluster": "sentiment-v1", "weight": 0, "rank": 2,
                  "capabilities": caps.clone(),
                  "price": { "input_per_1k": 1.0, "output_per_1k": 4.0 } },
                { "name": "large", "cluster": "llm-large", "weight": 0, "rank": 3,
                  "capabilities": caps,
                  "price": { "input_per_1k": 2.5, "output_per_1k": 10.0 } } ] }
        ],
        "budget": { "cost_header": "x-max-cost", "latency_header": "x-latency-budget-ms",
                    "escalate_header": "x-escalate", "default_output_tokens": 256 }
    }));
    // 400 characters + one message = 104 prompt tokens. With max_tokens 100:
    //   small 0.104·0.15 + 0.1·0.6 = 0.0756; medium 0.104 + 0.4 = 0.504; large 0.26 + 1 = 1.26.
    // Without max_tokens (256 output tokens): small 0.0156 + 0.1536 = 0.1692.
    let prompt = "x".repeat(400);
    let mut text = chat(Some("chat"), &prompt);
    text["max_tokens"] = json!(100);
    let text_default_output = chat(Some("chat"), &prompt);
    let mut vision = text.clone();
    vision["messages"][0]["content"] = json!([
        { "type": "text", "text": prompt },
        { "type": "image_url", "image_url": { "url": "https://example.org/cat.png" } }
    ]);

    let send = |body: &Value, headers: &[(&str, &str)]| {
        let (mut req, bytes) = post_json("/v1/chat/completions", body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        (h.send(&req), bytes)
    };
    // (body, headers, target, cluster, reason)
    type Case<'a> = (
        &'a Value,
        Vec<(&'a str, &'a str)>,
        &'a str,
        &'a str,
        &'a str,
    );
    let routed: Vec<Case<'_>> = vec![
        (
            &text,
            vec![("x-max-cost", "1.0")],
            "small",
            "llm-small",
            "budget",
        ),
        (
            &text,
            vec![("x-max-cost", "0.1")],
            "small",
            "llm-small",
            "budget",
        ),
        (
            &text,
            vec![("x-max-cost", "0.0757")],
            "small",
            "llm-small",
            "budget",
        ),
        (
            &text_default_output,
            vec![("x-max-cost", "0.17")],
            "small",
            "llm-small",
            "budget",
        ),
        // Vision leaves medium and large: the cheaper one that fits.
        (
            &vision,
            vec![("x-max-cost", "0.51")],
            "medium",
            "sentiment-v1",
            "budget",
        ),
        (
            &vision,
            vec![("x-max-cost", "100")],
            "medium",
            "sentiment-v1",
            "budget",
        ),
        (
            &vision,
            vec![("x-max-cost", "1.3")],
            "medium",
            "sentiment-v1",
            "budget",
        ),
        // Escalation: the highest rank among the candidates.
        (
            &text,
            vec![("x-escalate", "true")],
            "large",
            "llm-large",
            "escalated",
        ),
        (
            &text,
            vec![("x-escalate", "1")],
            "large",
            "llm-large",
            "escalated",
        ),
        (
            &vision,
            vec![("x-escalate", "yes")],
            "large",
            "llm-large",
            "escalated",
        ),
        // No budget asked for: the weighted strategy (only small has weight).
        (
            &text,
            vec![("x-escalate", "false")],
            "small",
            "llm-small",
            "weighted",
        ),
        (&text, vec![], "small", "llm-small", "weighted"),
    ];
    for (body, headers, target, cluster, reason) in &routed {
        let (r, bytes) = send(body, headers);
        assert_eq!(r.status, 200, "{headers:?}: {} {:?}", r.text(), r.headers);
        assert_body_intact(&assert_upstream(&r, cluster), &bytes);
        assert_decision(&r, "chat", target, reason);
    }

    let before = h.upstreams.total_hits();
    // Budgets nothing fits: 422 budget_unmet.
    for (body, cost) in [
        (&text, "0.05"),
        (&text, "0"),
        (&text_default_output, "0.1"),
        (&vision, "0.5"),
    ] {
        let (r, _) = send(body, &[("x-max-cost", cost)]);
        let v = assert_error_reply(&r, 422, "budget_unmet");
        assert!(
            v["detail"].as_str().unwrap().contains("cost at most"),
            "{cost}: {v}"
        );
        assert_meta(&r, "model", Some("chat"));
    }
    // Malformed budgets: 400 invalid_budget.
    for (header, value) in [
        ("x-max-cost", "cheap"),
        ("x-max-cost", "-1"),
        ("x-max-cost", "NaN"),
        ("x-max-cost", "inf"),
        ("x-max-cost", ""),
        ("x-latency-budget-ms", "soon"),
        ("x-latency-budget-ms", "-5"),
    ] {
        let (r, _) = send(&text, &[(header, value)]);
        let v = assert_error_reply(&r, 400, "invalid_budget");
        assert!(
            v["detail"].as_str().unwrap().contains(header),
            "{header}: {value:?}: {v}"
        );
    }
    assert_no_upstream(&h, before);

    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.budget", 7),
        7
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.escalated", 3),
        3
    );
}

#[test]
fn latency_budget_learns_from_responses_and_avoids_the_slow_target() {
    let upstreams = Upstreams::start_default();
    upstreams.set_behaviour(
        "llm-large",
        Behaviour::default().with_delay(Duration::from_millis(400)),
    );
    upstreams.set_behaviour(
        "llm-small",
        Behaviour::default().with_delay(Duration::from_millis(40)),
    );
    // `slow` is free and listed first, so a budget choice takes it unless its latency estimate
    // rules it out.
    let cfg = json!({
        "models": [
            { "name": "chat",
              "targets": [
                { "name": "slow", "cluster": "llm-large", "weight": 1 },
                { "name": "fast", "cluster": "llm-small", "weight": 1,
                  "price": { "input_per_1k": 0.01, "output_per_1k": 0.01 } } ] }
        ],
        "budget": {}
    });
    let envoy = Envoy::start(&EnvoyConfig::demo(&cfg), &upstreams);
    let h = Harness { envoy, upstreams };
    let budget = |ms: &str| Request::get("/v2/models/chat/ready").header("x-latency-budget-ms", ms);

    // No estimate yet: a target is assumed to fit, so the cheapest (slow) is taken.
    let r = h.send(&budget("200"));
    assert_upstream(&r, "llm-large");
    assert_decision(&r, "chat", "slow", "budget");
    // Teach both estimates (from responses, on whichever worker): pinned requests.
    for _ in 0..3 {
        assert_upstream(
            &h.send(&Request::get("/v2/models/chat/versions/slow/ready")),
            "llm-large",
        );
        assert_upstream(
            &h.send(&Request::get("/v2/models/chat/versions/fast/ready")),
            "llm-small",
        );
    }
    // 200 ms: slow (~400 ms) no longer fits, on both workers.
    for r in on_both_workers(&h.envoy, &budget("200")) {
        assert_upstream(&r, "llm-small");
        assert_decision(&r, "chat", "fast", "budget");
    }
    // A generous budget: both fit, the cheaper (slow) wins.
    let r = h.send(&budget("5000"));
    assert_upstream(&r, "llm-large");
    assert_decision(&r, "chat", "slow", "budget");
    // Below both estimates: 422.
    let before = h.upstreams.total_hits();
    let r = h.send(&budget("10"));
    let v = assert_error_reply(&r, 422, "budget_unmet");
    assert!(
        v["detail"].as_str().unwrap().contains("latency at most 10"),
        "{v}"
    );
    assert_no_upstream(&h, before);
}

// ---------------------------------------------------------------------------------------------
// 6. Fallback and cooldown
// ---------------------------------------------------------------------------------------------

fn fallback_config(cooldown_seconds: u64) -> Value {
    json!({
        "models": [
            { "name": "chat",
              "targets": [ { "name": "primary", "cluster": "llm-large", "weight": 1 },
                           { "name": "backup", "cluster": "llm-small", "weight": 0 } ],
              "fallback": ["backup"], "cooldown_seconds": cooldown_seconds }
        ]
    })
}

fn chat_ready() -> Request {
    Request::get("/v2/models/chat/ready")
}

/// While `primary` cools down every request, on both workers, goes to `backup`.
#[track_caller]
fn assert_falls_back(h: &Harness) -> usize {
    let rs = on_both_workers(&h.envoy, &chat_ready());
    for r in &rs {
        assert_upstream(r, "llm-small");
        assert_decision(r, "chat", "backup", "fallback");
    }
    rs.len()
}

/// Polls (one request every 250 ms, at most 10 s) until a request is sent to `primary` again;
/// every request before that must have gone to `backup`. Returns that response and how many
/// went to `backup` meanwhile.
#[track_caller]
fn wait_for_primary(h: &Harness) -> (Response, usize) {
    for fallbacks in 0..40 {
        let r = h.send(&chat_ready());
        if r.header("x-inference-target") == Some("primary") {
            return (r, fallbacks);
        }
        assert_upstream(&r, "llm-small");
        assert_decision(&r, "chat", "backup", "fallback");
        thread::sleep(Duration::from_millis(250));
    }
    panic!("the primary target was not used again within 10 s of its cooldown");
}

#[test]
fn fallback_while_a_failing_target_cools_down_then_back() {
    let h = Harness::demo(&fallback_config(3));
    h.upstreams
        .set_behaviour("llm-large", Behaviour::default().with_failures(1.0, 503));

    // Healthy so far: the primary serves; the first failure goes to the client as it is.
    let r = h.send(&chat_ready());
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["cluster"], "llm-large");
    assert_decision(&r, "chat", "primary", "weighted");
    // The primary is healthy again, but cools down for 3 s (2–3 s, whole seconds): requests
    // on both workers go to the fallback meanwhile.
    h.upstreams.set_behaviour("llm-large", Behaviour::default());
    let mut fallbacks = assert_falls_back(&h);
    // Then the primary is used again, and stays in use.
    let (r, more) = wait_for_primary(&h);
    fallbacks += more;
    assert_upstream(&r, "llm-large");
    assert_decision(&r, "chat", "primary", "weighted");
    for _ in 0..5 {
        assert_upstream(&h.send(&chat_ready()), "llm-large");
    }
    assert_eq!(h.upstreams.failures("llm-large"), 1);
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.decisions.fallback", fallbacks as u64),
        fallbacks as u64
    );
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.requests.chat.backup", fallbacks as u64),
        fallbacks as u64
    );
}

#[test]
fn retry_after_sets_the_cooldown_of_a_429() {
    // cooldown_seconds is an hour: only the upstream's `Retry-After: 2` can bring the primary
    // back within the test's bounded wait.
    let h = Harness::demo(&fallback_config(3600));
    h.upstreams.set_behaviour(
        "llm-large",
        Behaviour::default()
            .with_failures(1.0, 429)
            .with_header("retry-after", "2"),
    );
    let r = h.send(&chat_ready());
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_decision(&r, "chat", "primary", "weighted");
    h.upstreams.set_behaviour("llm-large", Behaviour::default());
    assert_falls_back(&h);
    let (r, _) = wait_for_primary(&h);
    assert_upstream(&r, "llm-large");
    assert_decision(&r, "chat", "primary", "weighted");
}

#[test]
fn an_unreachable_target_cools_down_too() {
    let upstreams = Upstreams::start_default();
    let refused = RefusedPort::new();
    let mut ports = upstreams.ports();
    ports.insert("llm-large".into(), refused.port());
    let envoy = Envoy::start_with_ports(&EnvoyConfig::demo(&fallback_config(2)), &ports);
    let h = Harness { envoy, upstreams };

    // Envoy's own 503 (connection refused) counts as a failure.
    let r = h.send(&chat_ready());
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.upstream_cluster().is_none(),
        "Envoy answered, not a fake upstream"
    );
    assert_decision(&r, "chat", "primary", "weighted");
    assert_falls_back(&h);
    // After the cooldown the primary is tried again (and fails again: Envoy's 503)...
    let (r, _) = wait_for_primary(&h);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.upstream_cluster().is_none());
    // ... which starts a new cooldown.
    assert_falls_back(&h);
    assert!(
        h.envoy
            .counter("cluster.llm-large.upstream_cx_connect_fail")
            >= 2
    );
}

#[test]
fn fallback_order_and_every_fallback_cooling() {
    let h = Harness::demo(&json!({
        "models": [
            { "name": "chat",
              "targets": [ { "name": "primary", "cluster": "llm-large", "weight": 1 },
                           { "name": "b1", "cluster": "llm-small", "weight": 0 },
                           { "name": "b2", "cluster": "sentiment-v1", "weight": 0 } ],
              "fallback": ["b1", "b2"], "cooldown_seconds": 60 }
        ]
    }));
    for c in ["llm-large", "llm-small"] {
        h.upstreams
            .set_behaviour(c, Behaviour::default().with_failures(1.0, 500));
    }
    // primary fails → b1 (first of the fallback list) fails → b2.
    let r = h.send(&chat_ready());
    assert_eq!(r.status, 500);
    assert_decision(&r, "chat", "primary", "weighted");
    let r = h.send(&chat_ready());
    assert_eq!(r.status, 500);
    assert_eq!(r.json()["cluster"], "llm-small");
    assert_decision(&r, "chat", "b1", "fallback");
    let r = h.send(&chat_ready());
    assert_upstream(&r, "sentiment-v1");
    assert_decision(&r, "chat", "b2", "fallback");
    // b2 fails too: every fallback cools, so the choice stands (primary, weighted).
    h.upstreams
        .set_behaviour("sentiment-v1", Behaviour::default().with_failures(1.0, 502));
    let r = h.send(&chat_ready());
    assert_eq!(r.status, 502);
    assert_decision(&r, "chat", "b2", "fallback");
    for _ in 0..3 {
        let r = h.send(&chat_ready());
        assert_eq!(r.status, 500, "{}", r.text());
        assert_eq!(r.json()["cluster"], "llm-large");
        assert_decision(&r, "chat", "primary", "weighted");
    }
}

/// `budget.jwt`: cost, latency and escalation come from claims of the token Envoy verified,
/// string or number, and the client's headers of the same names are ignored.
#[test]
fn budget_values_from_a_verified_jwt_and_never_from_headers() {
    let cfg = json!({
        "models": [
            { "name": "chat",
              "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1, "rank": 1,
                             "price": { "input_per_1k": 0.15, "output_per_1k": 0.6 } },
                           { "name": "large", "cluster": "llm-large", "weight": 0, "rank": 2,
                             "price": { "input_per_1k": 2.5, "output_per_1k": 10.0 } } ] }
        ],
        "budget": { "cost_header": "max_cost", "escalate_header": "escalate",
                    "latency_header": "latency_budget_ms",
                    "jwt": { "payload_key": "jwt_payload" } }
    });
    let h = Harness::start(&EnvoyConfig::new("jwt.yaml", cfg.to_string()));
    let with_claims = |extra: Value| {
        let mut c = claims(None);
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        bearer(&sign_hs256(JWT_KEY, &c))
    };
    let ask = |auth: Option<String>, headers: &[(&str, &str)]| {
        let mut r = Request::get("/v2/models/chat/ready");
        if let Some(a) = auth {
            r = r.header("authorization", &a);
        }
        for (n, v) in headers {
            r = r.header(n, v);
        }
        h.send(&r)
    };
    let reason = |r: &Response| {
        r.header("x-inference-reason")
            .unwrap_or_default()
            .to_string()
    };

    // Escalation by claim, as a string or a boolean-like string.
    for escalate in [json!("true"), json!("1")] {
        let r = ask(Some(with_claims(json!({ "escalate": escalate }))), &[]);
        assert_upstream(&r, "llm-large");
        assert_eq!(reason(&r), "escalated");
    }
    // The same names as client headers change nothing, with or without a token.
    for auth in [None, Some(with_claims(json!({})))] {
        let r = ask(auth, &[("escalate", "true"), ("max_cost", "0.0001")]);
        assert_upstream(&r, "llm-small");
        assert_eq!(reason(&r), "weighted");
    }
    // A cost budget as a number claim and as a string claim: 256 output tokens cost 0.15 on
    // small and 2.56 on large.
    for max_cost in [json!(1.0), json!("1.0")] {
        let r = ask(Some(with_claims(json!({ "max_cost": max_cost }))), &[]);
        assert_upstream(&r, "llm-small");
        assert_eq!(reason(&r), "budget");
    }
    for max_cost in [json!(0.001), json!("0.001")] {
        let r = ask(Some(with_claims(json!({ "max_cost": max_cost }))), &[]);
        assert_eq!(r.status, 422, "{max_cost}: {}", r.text());
        assert_eq!(r.json()["error"], "budget_unmet");
    }
}
