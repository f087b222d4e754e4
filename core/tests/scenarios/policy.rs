//! Policy routing (docs/policy.md): capabilities and context windows (422), KServe input specs
//! (400 `invalid_input`), tenants from a header or a verified JWT claim (allow-lists, defaults,
//! tiers, `required`), residency and sensitive-data detectors (restrict or reject, the detector
//! named, never what it matched), cost and latency budgets and escalation, and fallback while a
//! failing target cools down.

use std::collections::BTreeSet;

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

fn chat(model: Option<&str>, content: &str) -> Value {
    let mut v = json!({ "messages": [ { "role": "user", "content": content } ] });
    if let Some(m) = model {
        v["model"] = json!(m);
    }
    v
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Routes `body` to `path` with `extra` headers; the (cluster, target, reason) it got.
#[track_caller]
fn route(
    vm: &mut Vm,
    path: &str,
    extra: &[(&str, &str)],
    body: &Value,
) -> (String, String, String) {
    let mut sent = vm.send(&with(post_json(path), extra), &bytes(body));
    assert_eq!(
        sent.action,
        Action::Continue,
        "{:?}",
        vm.host.reply().map(|r| r.text())
    );
    let cluster = vm.routed_cluster().unwrap();
    vm.respond(&mut sent, OK, b"{}");
    let h = |n: &str| vm.response_header(n).unwrap();
    (cluster, h("x-inference-target"), h("x-inference-reason"))
}

/// The filter's refusal of `body` at `path`.
#[track_caller]
fn refuse(vm: &mut Vm, path: &str, extra: &[(&str, &str)], body: &Value) -> LocalReply {
    let sent = vm.send(&with(post_json(path), extra), &bytes(body));
    assert_eq!(sent.action, Action::Pause);
    assert_eq!(vm.routed_cluster(), None);
    vm.reply()
}

#[test]
fn capabilities_and_context_windows_pick_the_target_or_answer_422() {
    let mut vm = Vm::start(&json!({
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
              "targets": [ { "name": "a", "cluster": "llm-small", "weight": 1,
                             "capabilities": ["tools", "json_mode", "streaming"], "max_context_tokens": 4096 } ] }
        ]
    }));
    let mut image = chat(Some("chat"), "");
    image["messages"][0]["content"] = json!([
        { "type": "text", "text": "What is in this picture?" },
        { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } }
    ]);
    let mut tools = chat(Some("chat"), "Weather?");
    tools["tools"] = json!([{ "type": "function", "function": { "name": "w", "parameters": {} } }]);
    let mut functions = chat(Some("chat"), "Weather?");
    functions["functions"] = json!([{ "name": "w", "parameters": {} }]);
    let mut json_object = chat(Some("chat"), "JSON please");
    json_object["response_format"] = json!({ "type": "json_object" });
    let mut streamed = chat(Some("chat"), "A story");
    streamed["stream"] = json!(true);
    let long = chat(
        Some("chat"),
        &"All work and no play. ".repeat(50_000 / 22 + 1),
    );
    // 32,000 characters = 8,000 tokens + 4 for the message: fits 8,192 with max_tokens 100,
    // not with 200.
    let mut fits = chat(Some("chat"), &"abcd".repeat(8000));
    fits["max_tokens"] = json!(100);
    let mut too_long = fits.clone();
    too_long["max_tokens"] = json!(200);
    for (body, target, cluster) in [
        (&image, "vision", "llm-large"),
        (&tools, "tools", "sentiment-v1"),
        (&functions, "tools", "sentiment-v1"),
        (&json_object, "json", "sentiment-v2"),
        (&streamed, "stream", "iris-v1"),
        (&long, "long", "iris-v2"),
        (&too_long, "long", "iris-v2"),
    ] {
        for _ in 0..4 {
            let got = route(&mut vm, CHAT, &[], body);
            assert_eq!(
                got,
                (
                    cluster.to_string(),
                    target.to_string(),
                    "weighted".to_string()
                )
            );
        }
    }
    assert_eq!(vm.counter("requests.chat.tools"), 8);
    assert_eq!(vm.counter("requests.chat.long"), 8);
    // Unrestricted: spread over the six.
    let seen: BTreeSet<String> = (0..30)
        .map(|_| route(&mut vm, CHAT, &[], &fits).1)
        .collect();
    assert_eq!(seen.len(), 6, "{seen:?}");

    let mut vision_text_only = image.clone();
    vision_text_only["model"] = json!("text-only");
    let r = refuse(&mut vm, CHAT, &[], &vision_text_only);
    let v = assert_error(&r, 422, "capability_unavailable");
    assert_eq!(
        v["detail"],
        "no target of model \"text-only\" offers vision"
    );
    assert_eq!(r.header("x-inference-model"), Some("text-only"));
    let mut long_text_only = long.clone();
    long_text_only["model"] = json!("text-only");
    let v = assert_error(
        &refuse(&mut vm, CHAT, &[], &long_text_only),
        422,
        "capability_unavailable",
    );
    assert!(v["detail"].as_str().unwrap().contains("context"), "{v}");
    assert_eq!(vm.counter("local_replies.error"), 2);
}

fn input(name: &str, datatype: &str, shape: Value, data: Value) -> Value {
    json!({ "name": name, "datatype": datatype, "shape": shape, "data": data })
}

#[test]
fn kserve_input_specs_refuse_mismatches_before_any_upstream() {
    let mut vm = Vm::start(&json!({
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
    assert_eq!(
        route(
            &mut vm,
            "/v2/models/iris/infer",
            &[],
            &json!({ "inputs": [good, scale] })
        )
        .0,
        "iris-v1"
    );
    let nested = json!({ "id": "42", "inputs": [scale, input("input-0", "FP32", json!([1, 4]), json!([[1.0, 2.0, 3.0, 4.0]]))] });
    assert_eq!(
        route(&mut vm, "/v2/models/iris/infer", &[], &nested).0,
        "iris-v1"
    );
    assert_eq!(
        route(
            &mut vm,
            "/v2/models/iris/versions/v2/infer",
            &[],
            &json!({ "inputs": [good, scale] })
        )
        .0,
        "iris-v2"
    );
    // A GET is not checked.
    vm.send(&get("/v2/models/iris/ready"), b"");
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));

    let refusals: Vec<(Value, &str, &str)> = vec![
        (
            json!([
                input("input-0", "INT64", json!([1, 4]), json!([1, 2, 3, 4])),
                scale
            ]),
            "input-0",
            "input \"input-0\" has datatype INT64, expected FP32",
        ),
        (
            json!([
                input("input-0", "FP32", json!([1, 3]), json!([1.0, 2.0, 3.0])),
                scale
            ]),
            "input-0",
            "input \"input-0\" has shape [1, 3], expected [-1, 4]",
        ),
        (
            json!([
                input("input-0", "FP32", json!([4]), json!([1.0, 2.0, 3.0, 4.0])),
                scale
            ]),
            "input-0",
            "input \"input-0\" has shape [4], expected [-1, 4]",
        ),
        (
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
        (json!([good]), "scale", "input \"scale\" is missing"),
        (
            json!([
                good,
                scale,
                input("bogus", "FP32", json!([1]), json!([0.0]))
            ]),
            "bogus",
            "input \"bogus\" is not an input of this model (inputs: input-0, scale)",
        ),
    ];
    for (inputs, name, detail) in &refusals {
        for path in ["/v2/models/iris/infer", "/v2/models/iris/versions/v2/infer"] {
            let r = refuse(&mut vm, path, &[], &json!({ "inputs": inputs }));
            let v = assert_error(&r, 400, "invalid_input");
            assert_eq!(
                (v["input"].as_str(), v["detail"].as_str()),
                (Some(*name), Some(*detail)),
                "{v}"
            );
            assert_eq!(r.header("x-inference-model"), Some("iris"));
        }
    }
    assert_eq!(vm.counter("local_replies.error"), 12);
    assert_eq!(vm.counter("requests.iris.v1"), 3);
    assert_eq!(vm.counter("requests.iris.v2"), 1);
}

fn tenant_config(source: (&str, Value)) -> Value {
    let mut tenants = json!({
        "required": true,
        "list": [
            { "name": "acme", "tier": "gold", "default_model": "chat" },
            { "name": "hobbyist", "tier": "free", "default_model": "chat", "allow": { "chat": ["small"] } },
            { "name": "lab", "default_model": "iris", "allow": { "iris": [], "sentiment": [] } }
        ]
    });
    tenants[source.0] = source.1;
    json!({
        "models": [
            { "name": "chat",
              "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 },
                           { "name": "large", "cluster": "llm-large", "weight": 1 } ] },
            { "name": "sentiment", "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 1 } ] },
            { "name": "iris", "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 } ] }
        ],
        "tenants": tenants,
        "rules": [
            { "name": "gold-gets-large", "when": { "tier": "gold", "path_prefix": "/v1/chat/" },
              "then": { "model": "chat", "target": "large" } }
        ]
    })
}

/// Makes the next requests carry a tenant; the headers to add.
type AsTenant<'a> = dyn Fn(&Vm, &str) -> Vec<(&'static str, String)> + 'a;

/// The tenant behaviours both sources share; `as_tenant(vm, name)` makes the next requests
/// carry that tenant and returns the headers to add.
fn check_tenant_policy(vm: &mut Vm, as_tenant: &AsTenant<'_>) {
    let send = |vm: &mut Vm, tenant: &str, headers: Vec<(&str, &str)>, body: &[u8]| {
        let extra = as_tenant(vm, tenant);
        let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut sent = vm.send(&with(headers, &extra), body);
        if vm.host.reply().is_none() {
            vm.respond(&mut sent, OK, b"");
        }
        sent.action
    };
    let forbidden = |vm: &Vm| {
        assert_error(&vm.reply(), 403, "forbidden")["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // hobbyist may not use sentiment, whatever names it.
    for (headers, body) in [
        (get("/v2/models/sentiment/ready"), Vec::new()),
        (
            post_json("/v1/completions"),
            bytes(&chat(Some("sentiment"), "hi")),
        ),
        (
            with(get("/anything"), &[("x-model", "sentiment")]),
            Vec::new(),
        ),
    ] {
        assert_eq!(send(vm, "hobbyist", headers, &body), Action::Pause);
        assert_eq!(
            forbidden(vm),
            "tenant \"hobbyist\" may not use model \"sentiment\""
        );
    }
    // Nor chat's large.
    send(
        vm,
        "hobbyist",
        get("/v2/models/chat/versions/large/ready"),
        b"",
    );
    assert!(forbidden(vm).contains("hobbyist"));
    send(
        vm,
        "lab",
        post_json(CHAT),
        &bytes(&chat(Some("chat"), "hi")),
    );
    forbidden(vm);
    // hobbyist's chat requests (named, or by its default model) all go to small.
    for i in 0..12 {
        let body = bytes(&chat((i % 2 == 0).then_some("chat"), "hello"));
        assert_eq!(
            send(vm, "hobbyist", post_json("/v1/completions"), &body),
            Action::Continue
        );
        assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
        assert_eq!(
            vm.response_header("x-inference-reason").as_deref(),
            Some("weighted")
        );
    }
    // The tier rule: gold on /v1/chat/ → chat/large, whatever the body names.
    for model in [None, Some("sentiment")] {
        send(vm, "acme", post_json(CHAT), &bytes(&chat(model, "hello")));
        assert_eq!(vm.routed_cluster().as_deref(), Some("llm-large"));
        assert_eq!(
            vm.response_header("x-inference-reason").as_deref(),
            Some("rule:gold-gets-large")
        );
    }
    // hobbyist is not gold; lab's default model is iris, and it may use sentiment.
    send(
        vm,
        "hobbyist",
        post_json(CHAT),
        &bytes(&chat(None, "hello")),
    );
    assert_eq!(
        vm.response_header("x-inference-target").as_deref(),
        Some("small")
    );
    send(
        vm,
        "lab",
        post_json("/v1/completions"),
        &bytes(&json!({ "prompt": "x" })),
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    send(vm, "lab", get("/v2/models/sentiment/ready"), b"");
    assert_eq!(vm.routed_cluster().as_deref(), Some("sentiment-v1"));
    assert_eq!(vm.counter("decisions.rule.gold-gets-large"), 2);
}

#[test]
fn tenants_from_a_header_or_a_verified_jwt_claim() {
    let mut vm = Vm::start(&tenant_config(("header", json!("x-tenant"))));
    check_tenant_policy(&mut vm, &|_, name| vec![("x-tenant", name.to_string())]);
    // required: none, empty, unknown, another case.
    for tenant in [None, Some(""), Some("nobody"), Some("ACME")] {
        let mut headers = get("/v2/models/iris/ready");
        if let Some(t) = tenant {
            headers.push(("x-tenant", t));
        }
        vm.send(&headers, b"");
        let v = assert_error(&vm.reply(), 403, "forbidden");
        assert_eq!(
            v["detail"], "the request names no known tenant",
            "{tenant:?}"
        );
    }

    // From the claim jwt_authn wrote to dynamic metadata; a header naming a tenant is ignored.
    let mut vm = Vm::start(&tenant_config((
        "jwt",
        json!({ "payload_key": "jwt_payload", "claim": "tenant" }),
    )));
    let claim = [
        "metadata",
        "filter_metadata",
        "envoy.filters.http.jwt_authn",
        "jwt_payload",
        "tenant",
    ];
    check_tenant_policy(&mut vm, &|vm, name| {
        vm.host.set_property(&claim, name.as_bytes());
        vec![("x-tenant", "acme".to_string())]
    });
    vm.host.set_property(&claim, b"");
    vm.send(
        &with(get("/v2/models/iris/ready"), &[("x-tenant", "acme")]),
        b"",
    );
    assert_eq!(
        assert_error(&vm.reply(), 403, "forbidden")["detail"],
        "the request names no known tenant"
    );
}

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
        "tenants": { "header": "x-tenant",
                     "list": [ { "name": "eu-corp", "region": "eu" }, { "name": "ap-corp", "region": "ap" },
                               { "name": "plain-corp" } ] },
        "residency": { "header": "x-data-region" },
        "detectors": [ { "name": "card", "builtin": "card" }, { "name": "email", "builtin": "email" },
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

fn clusters_for(vm: &mut Vm, headers: &[(&str, &str)], n: usize) -> BTreeSet<String> {
    let body = chat(Some("chat"), "Summarise the quarterly report.");
    (0..n)
        .map(|_| {
            let (c, _, _) = route(vm, CHAT, headers, &body);
            assert_eq!(vm.response_header("x-inference-detector"), None);
            c
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn residency_keeps_data_in_the_required_region() {
    let mut vm = Vm::start(&residency_config());
    let (eu, us) = (
        set(&["llm-large", "iris-v2"]),
        set(&["llm-small", "iris-v1"]),
    );
    assert_eq!(clusters_for(&mut vm, &[("x-data-region", "eu")], 30), eu);
    assert_eq!(clusters_for(&mut vm, &[("x-data-region", "us")], 30), us);
    assert_eq!(clusters_for(&mut vm, &[("x-tenant", "eu-corp")], 30), eu);
    // The header wins over the tenant's region.
    assert_eq!(
        clusters_for(
            &mut vm,
            &[("x-tenant", "eu-corp"), ("x-data-region", "us")],
            20
        ),
        us
    );
    assert_eq!(
        clusters_for(&mut vm, &[("x-tenant", "plain-corp")], 40).len(),
        4
    );
    for (k, v, region) in [
        ("x-data-region", "mars", "mars"),
        ("x-tenant", "ap-corp", "ap"),
    ] {
        let r = refuse(&mut vm, CHAT, &[(k, v)], &chat(Some("chat"), "hello"));
        let j = assert_error(&r, 403, "forbidden");
        assert_eq!(
            j["detail"],
            format!("no target of model \"chat\" keeps data in region \"{region}\"")
        );
        vm.send(&with(get("/v2/models/chat/ready"), &[(k, v)]), b"");
        assert_error(&vm.reply(), 403, "forbidden");
    }
}

#[test]
fn detectors_restrict_or_reject_and_never_leak_what_they_matched() {
    let mut vm = Vm::start(&residency_config());
    // Luhn-valid, spaced, dashed, bare, in a content part.
    let card = "4111111111111111";
    for text in [
        "Please charge 4111 1111 1111 1111 for the order.",
        "Card: 4111-1111-1111-1111",
        card,
    ] {
        let got = route(&mut vm, CHAT, &[], &chat(Some("chat"), text));
        assert_eq!(
            got,
            (
                "llm-large".into(),
                "eu".into(),
                "rule:pii-stays-safe".into()
            )
        );
        assert_eq!(
            vm.response_header("x-inference-detector").as_deref(),
            Some("card")
        );
    }
    let mut parts = chat(Some("chat"), "");
    parts["messages"] = json!([{ "role": "user", "content": [ { "type": "text", "text": "my card is 4111 1111 1111 1111" } ] }]);
    assert_eq!(route(&mut vm, CHAT, &[], &parts).0, "llm-large");
    // Restriction and residency together leave nothing: 403, the detector still named.
    let r = refuse(
        &mut vm,
        CHAT,
        &[("x-data-region", "us")],
        &chat(Some("chat"), &format!("card {card}")),
    );
    assert_error(&r, 403, "forbidden");
    assert_eq!(r.header("x-inference-detector"), Some("card"));
    assert!(!r.text().contains(card));
    // E-mail: rejected (first matching rule wins, a card in the same prompt notwithstanding).
    for text in [
        "Write to jane.doe@example.org about it.",
        "jane.doe@example.org paid with 4111111111111111",
    ] {
        let r = refuse(&mut vm, CHAT, &[], &chat(Some("chat"), text));
        assert_eq!(r.status, 403);
        assert_eq!(
            r.json(),
            json!({ "error": "rejected", "detail": "e-mail addresses may not be sent to models",
                    "rule": "no-email", "detector": "email" })
        );
        assert_eq!(r.header("x-inference-detector"), Some("email"));
        assert_eq!(r.header("x-inference-reason"), Some("rule:no-email"));
        assert!(
            r.headers.iter().all(|(_, v)| !v.contains("jane.doe")),
            "{r:?}"
        );
    }
    // In an embeddings input list, and the user regex in a completions prompt.
    let r = refuse(
        &mut vm,
        "/v1/embeddings",
        &[],
        &json!({ "model": "chat", "input": ["first", "contact: a@b.example"] }),
    );
    assert_eq!(r.json()["detector"], "email");
    let r = refuse(
        &mut vm,
        "/v1/completions",
        &[],
        &json!({ "model": "chat", "prompt": "Employee EMP-123456 asks" }),
    );
    assert_eq!(
        (r.json()["rule"].as_str(), r.json()["detector"].as_str()),
        (Some("no-employee-ids"), Some("employee-id"))
    );
    // Near misses do not fire.
    for text in [
        "Charge 4111 1111 1111 1112 now",
        "Order 4111 1111 1111",
        "Employee EMP-12345 asks",
        "ping me @ noon",
    ] {
        let (_, _, reason) = route(&mut vm, CHAT, &[], &chat(Some("chat"), text));
        assert_eq!(reason, "weighted", "{text}");
        assert_eq!(vm.response_header("x-inference-detector"), None, "{text}");
    }
    assert_eq!(vm.counter("detectors.card"), 5);
    assert_eq!(vm.counter("detectors.email"), 3);
    assert_eq!(vm.counter("detectors.employee-id"), 1);
    assert_eq!(vm.counter("decisions.rule.pii-stays-safe"), 4);
    assert_eq!(vm.counter("local_replies.reject"), 4);
}

#[test]
fn cost_budgets_pick_the_cheapest_fitting_target_and_escalation_the_strongest() {
    let caps = json!(["vision", "tools", "json_mode", "streaming"]);
    let mut vm = Vm::start(&json!({
        "models": [
            { "name": "chat",
              "targets": [
                { "name": "small", "cluster": "llm-small", "weight": 1, "rank": 1,
                  "capabilities": ["tools", "json_mode", "streaming"],
                  "price": { "input_per_1k": 0.15, "output_per_1k": 0.6 } },
                { "name": "medium", "cluster": "sentiment-v1", "weight": 0, "rank": 2, "capabilities": caps.clone(),
                  "price": { "input_per_1k": 1.0, "output_per_1k": 4.0 } },
                { "name": "large", "cluster": "llm-large", "weight": 0, "rank": 3, "capabilities": caps,
                  "price": { "input_per_1k": 2.5, "output_per_1k": 10.0 } } ] }
        ],
        "budget": { "cost_header": "x-max-cost", "latency_header": "x-latency-budget-ms",
                    "escalate_header": "x-escalate", "default_output_tokens": 256 }
    }));
    // 400 characters + one message = 104 prompt tokens. max_tokens 100: small 0.0756, medium
    // 0.504, large 1.26. Without max_tokens (256): small 0.1692.
    let prompt = "x".repeat(400);
    let mut text = chat(Some("chat"), &prompt);
    text["max_tokens"] = json!(100);
    let default_output = chat(Some("chat"), &prompt);
    let mut vision = text.clone();
    vision["messages"][0]["content"] = json!([{ "type": "text", "text": prompt },
                                               { "type": "image_url", "image_url": { "url": "https://example.org/cat.png" } }]);
    for (body, header, target, reason) in [
        (&text, ("x-max-cost", "1.0"), "small", "budget"),
        (&text, ("x-max-cost", "0.0757"), "small", "budget"),
        (&default_output, ("x-max-cost", "0.17"), "small", "budget"),
        (&vision, ("x-max-cost", "0.51"), "medium", "budget"),
        (&vision, ("x-max-cost", "100"), "medium", "budget"),
        (&text, ("x-escalate", "true"), "large", "escalated"),
        (&vision, ("x-escalate", "yes"), "large", "escalated"),
        (&text, ("x-escalate", "false"), "small", "weighted"),
    ] {
        let (_, t, r) = route(&mut vm, CHAT, &[header], body);
        assert_eq!((t.as_str(), r.as_str()), (target, reason), "{header:?}");
    }
    for (body, cost) in [
        (&text, "0.0755"),
        (&text, "0"),
        (&default_output, "0.1"),
        (&vision, "0.5"),
    ] {
        let r = refuse(&mut vm, CHAT, &[("x-max-cost", cost)], body);
        let v = assert_error(&r, 422, "budget_unmet");
        assert!(
            v["detail"].as_str().unwrap().contains("cost at most"),
            "{cost}: {v}"
        );
        assert_eq!(r.header("x-inference-model"), Some("chat"));
    }
    for (header, value) in [
        ("x-max-cost", "cheap"),
        ("x-max-cost", "-1"),
        ("x-max-cost", "NaN"),
        ("x-max-cost", "inf"),
        ("x-max-cost", ""),
        ("x-latency-budget-ms", "soon"),
        ("x-latency-budget-ms", "-5"),
    ] {
        let v = assert_error(
            &refuse(&mut vm, CHAT, &[(header, value)], &text),
            400,
            "invalid_budget",
        );
        assert!(
            v["detail"].as_str().unwrap().contains(header),
            "{header}={value:?}: {v}"
        );
    }
    assert_eq!(vm.counter("decisions.budget"), 5);
    assert_eq!(vm.counter("decisions.escalated"), 2);
}

#[test]
fn a_latency_budget_learns_from_responses_and_avoids_the_slow_target() {
    let mut vm = Vm::start(&json!({
        "models": [
            { "name": "chat",
              "targets": [ { "name": "slow", "cluster": "llm-large", "weight": 1 },
                           { "name": "fast", "cluster": "llm-small", "weight": 1,
                             "price": { "input_per_1k": 0.01, "output_per_1k": 0.01 } } ] }
        ],
        "budget": {}
    }));
    let budget = |vm: &mut Vm, ms: &str, latency: u64| {
        let mut sent = vm.send(
            &with(get("/v2/models/chat/ready"), &[("x-latency-budget-ms", ms)]),
            b"",
        );
        if vm.host.reply().is_some() {
            return None;
        }
        vm.host.advance_ms(latency);
        vm.respond(&mut sent, OK, b"");
        Some((
            vm.routed_cluster().unwrap(),
            vm.response_header("x-inference-reason").unwrap(),
        ))
    };
    // No estimate yet: assumed to fit, so the cheapest (slow, free) is taken.
    assert_eq!(
        budget(&mut vm, "200", 400),
        Some(("llm-large".into(), "budget".into()))
    );
    // fast answers in 40 ms (a pinned request teaches its estimate too).
    let mut sent = vm.send(&get("/v2/models/chat/versions/fast/ready"), b"");
    vm.host.advance_ms(40);
    vm.respond(&mut sent, OK, b"");
    let key = "inference-router/v1/inference-router/health/chat";
    assert!(
        vm.host.shared_value(key).is_some(),
        "{:?}",
        vm.host.shared_keys()
    );
    assert_eq!(
        budget(&mut vm, "200", 40),
        Some(("llm-small".into(), "budget".into()))
    );
    assert_eq!(
        budget(&mut vm, "5000", 400),
        Some(("llm-large".into(), "budget".into()))
    );
    assert_eq!(budget(&mut vm, "10", 0), None);
    let v = assert_error(&vm.reply(), 422, "budget_unmet");
    assert!(
        v["detail"].as_str().unwrap().contains("latency at most 10"),
        "{v}"
    );
}

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

/// A chat request answered with `response`: (target, reason).
fn chat_ready(vm: &mut Vm, response: &[(&str, &str)]) -> (String, String) {
    let mut sent = vm.send(&get("/v2/models/chat/ready"), b"");
    assert_eq!(sent.action, Action::Continue);
    vm.respond(&mut sent, response, b"");
    let h = |n: &str| vm.response_header(n).unwrap();
    (h("x-inference-target"), h("x-inference-reason"))
}

fn pair(t: &str, r: &str) -> (String, String) {
    (t.to_string(), r.to_string())
}

#[test]
fn a_failing_target_cools_down_and_its_fallback_serves_meanwhile() {
    let mut vm = Vm::start(&fallback_config(3));
    // The first failure goes to the client as it is; then the primary cools down for 3 s.
    assert_eq!(
        chat_ready(&mut vm, &status("503")),
        pair("primary", "weighted")
    );
    for _ in 0..4 {
        assert_eq!(chat_ready(&mut vm, OK), pair("backup", "fallback"));
    }
    vm.host.advance_secs(2);
    assert_eq!(chat_ready(&mut vm, OK), pair("backup", "fallback"));
    vm.host.advance_secs(1);
    assert_eq!(chat_ready(&mut vm, OK), pair("primary", "weighted"));
    assert_eq!(chat_ready(&mut vm, OK), pair("primary", "weighted"));
    assert_eq!(vm.counter("decisions.fallback"), 5);
    assert_eq!(vm.counter("requests.chat.backup"), 5);

    // Retry-After sets the cooldown (an hour by configuration, 2 s by the upstream's word);
    // Envoy's own 503 counts as a failure too.
    let mut vm = Vm::start(&fallback_config(3600));
    assert_eq!(
        chat_ready(&mut vm, &[(":status", "429"), ("retry-after", "2")]),
        pair("primary", "weighted")
    );
    assert_eq!(chat_ready(&mut vm, OK), pair("backup", "fallback"));
    vm.host.advance_secs(2);
    assert_eq!(
        chat_ready(
            &mut vm,
            &[(":status", "503"), ("content-type", "text/plain")]
        ),
        pair("primary", "weighted")
    );
    vm.host.advance_secs(3599);
    assert_eq!(chat_ready(&mut vm, OK), pair("backup", "fallback"));
    vm.host.advance_secs(1);
    assert_eq!(chat_ready(&mut vm, OK), pair("primary", "weighted"));
}

#[test]
fn the_fallback_order_is_followed_until_every_fallback_cools_too() {
    let mut vm = Vm::start(&json!({
        "models": [
            { "name": "chat",
              "targets": [ { "name": "primary", "cluster": "llm-large", "weight": 1 },
                           { "name": "b1", "cluster": "llm-small", "weight": 0 },
                           { "name": "b2", "cluster": "sentiment-v1", "weight": 0 } ],
              "fallback": ["b1", "b2"], "cooldown_seconds": 60 }
        ]
    }));
    assert_eq!(
        chat_ready(&mut vm, &status("500")),
        pair("primary", "weighted")
    );
    assert_eq!(chat_ready(&mut vm, &status("500")), pair("b1", "fallback"));
    assert_eq!(chat_ready(&mut vm, OK), pair("b2", "fallback"));
    assert_eq!(chat_ready(&mut vm, &status("502")), pair("b2", "fallback"));
    // Every fallback cools: the choice stands.
    for _ in 0..3 {
        assert_eq!(
            chat_ready(&mut vm, &status("500")),
            pair("primary", "weighted")
        );
    }
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-large"));
}

#[test]
fn the_cooldown_counts_from_the_end_of_the_failed_response_and_retry_after_is_bounded() {
    let mut vm = Vm::start(&fallback_config(3));
    // The failed response ends 10 s after its headers: the 3 s count from then.
    let mut sent = vm.send(&get("/v2/models/chat/ready"), b"");
    vm.response_headers(&mut sent, &status("503"), b"");
    vm.host.advance_secs(10);
    vm.done(&mut sent);
    vm.host.advance_secs(2);
    assert_eq!(chat_ready(&mut vm, OK), pair("backup", "fallback"));
    vm.host.advance_secs(1);
    assert_eq!(chat_ready(&mut vm, OK), pair("primary", "weighted"));

    // An HTTP-date Retry-After is not parsed: the configured cooldown applies.
    let mut vm = Vm::start(&fallback_config(5));
    chat_ready(
        &mut vm,
        &[
            (":status", "503"),
            ("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ],
    );
    vm.host.advance_secs(4);
    assert_eq!(chat_ready(&mut vm, OK), pair("backup", "fallback"));
    vm.host.advance_secs(1);
    assert_eq!(chat_ready(&mut vm, OK), pair("primary", "weighted"));
    // Retry-After is capped at an hour; it is not read from an answer that is not a failure.
    chat_ready(&mut vm, &[(":status", "429"), ("retry-after", "86400")]);
    vm.host.advance_secs(3599);
    assert_eq!(
        chat_ready(&mut vm, &[(":status", "200"), ("retry-after", "86400")]),
        pair("backup", "fallback")
    );
    vm.host.advance_secs(1);
    assert_eq!(
        chat_ready(&mut vm, &[(":status", "200"), ("retry-after", "86400")]),
        pair("primary", "weighted")
    );
    assert_eq!(chat_ready(&mut vm, OK), pair("primary", "weighted"));
}
