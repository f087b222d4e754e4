#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Tenants, capabilities, residency, detectors, input specs, budgets and cooldowns through the
//! decision core's public API.

mod common;

use common::Req;
use inference_router_core::bandit::ModelState;
use inference_router_core::config::{parse, Config};
use inference_router_core::payload::{extract, Fields, Format};
use inference_router_core::policy::{
    decide, Body, NoShared, Outcome, Reason, ReplyContent, Route, Shared,
};
use inference_router_core::rng::Rng;
use serde_json::{json, Value};

fn cfg(v: Value) -> Config {
    parse(v.to_string().as_bytes()).unwrap()
}

fn llm() -> Value {
    json!({
        "models": [
            { "name": "chat",
              "targets": [
                { "name": "small", "cluster": "llm-small", "weight": 1, "rank": 1,
                  "capabilities": ["tools", "json_mode", "streaming"], "max_context_tokens": 100,
                  "region": "us", "price": { "input_per_1k": 0.1, "output_per_1k": 0.2 } },
                { "name": "large", "cluster": "llm-large", "weight": 0, "rank": 3,
                  "capabilities": ["vision", "tools", "json_mode", "streaming"], "max_context_tokens": 100000,
                  "region": "eu", "tags": ["pii-safe"], "price": { "input_per_1k": 5.0, "output_per_1k": 15.0 } },
                { "name": "mid", "cluster": "llm-mid", "weight": 0, "rank": 2,
                  "capabilities": ["tools"], "max_context_tokens": 8000,
                  "region": "eu", "price": { "input_per_1k": 1.0, "output_per_1k": 2.0 } }
              ],
              "fallback": ["mid", "large"] },
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 } ],
              "input_spec": [ { "name": "input-0", "datatype": "FP32", "shape": [-1, 4] } ] }
        ],
        "tenants": { "header": "x-tenant", "list": [
            { "name": "acme", "tier": "gold", "default_model": "chat" },
            { "name": "eurocorp", "region": "eu" },
            { "name": "basic", "tier": "free", "allow": { "chat": ["small"] } }
        ] },
        "residency": { "header": "x-data-region" },
        "detectors": [ { "name": "card", "builtin": "card" }, { "name": "email", "builtin": "email" } ],
        "budget": {},
        "rules": [
            { "name": "cards-stay-in-eu", "when": { "detected": "card" }, "then": { "restrict": { "region": "eu", "tags": ["pii-safe"] } } },
            { "name": "no-emails-for-free", "when": { "tier": "free", "detected": "email" },
              "then": { "reject": { "status": 403, "message": "personal data is not accepted on the free tier" } } }
        ]
    })
}

struct Body2 {
    fields: Fields,
    raw: Vec<u8>,
}

fn body(c: &Config, v: &Value) -> Body2 {
    let raw = v.to_string().into_bytes();
    Body2 {
        fields: extract(&c.pointers, Format::Json, &raw).unwrap(),
        raw,
    }
}

fn run_with(c: &Config, req: &Req, b: Option<&Body2>, shared: &mut dyn Shared) -> Outcome {
    let body = match b {
        Some(b) => Body::Full {
            fields: &b.fields,
            raw: &b.raw,
            format: Format::Json,
        },
        None => Body::Absent,
    };
    decide(c, req, body, 1_000_000, &mut Rng::seed_from_u64(3), shared)
}

fn run(c: &Config, req: &Req, b: Option<&Body2>) -> Outcome {
    run_with(c, req, b, &mut NoShared)
}

fn target(c: &Config, o: &Outcome) -> String {
    match o {
        Outcome::Route(Route { model, target, .. }) => {
            c.models[*model].targets[*target].name.clone()
        }
        other => panic!("expected a route, got {other:?}"),
    }
}

fn error(o: &Outcome) -> (u16, Value) {
    match o {
        Outcome::Reply(r) => {
            let ReplyContent::Json(b) = &r.content else {
                panic!("{r:?}")
            };
            (r.status, serde_json::from_slice(b).unwrap())
        }
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn chat(content: Value) -> Value {
    json!({ "model": "chat", "messages": [ { "role": "user", "content": content } ] })
}

#[test]
fn capabilities_pick_a_capable_target_or_say_what_is_missing() {
    let c = cfg(llm());
    let req = Req::new("POST", "/v1/chat/completions");
    let plain = body(&c, &chat(json!("hello")));
    assert_eq!(target(&c, &run(&c, &req, Some(&plain))), "small");
    let image = body(
        &c,
        &chat(json!([{ "type": "image_url", "image_url": { "url": "x" } }])),
    );
    assert_eq!(target(&c, &run(&c, &req, Some(&image))), "large");
    // A long prompt does not fit small's 100-token context.
    let long = body(&c, &chat(json!("word ".repeat(200))));
    let t = target(&c, &run(&c, &req, Some(&long)));
    assert!(t == "mid" || t == "large", "{t}");

    let mut v = llm();
    v["models"][0]["targets"][1]["capabilities"] = json!(["tools"]);
    let c = cfg(v);
    let image = body(
        &c,
        &chat(json!([{ "type": "image_url", "image_url": { "url": "x" } }])),
    );
    let (status, e) = error(&run(&c, &req, Some(&image)));
    assert_eq!(
        (status, e["error"].as_str()),
        (422, Some("capability_unavailable"))
    );
    assert!(e["detail"].as_str().unwrap().contains("vision"), "{e}");
}

#[test]
fn capability_routing_waits_for_the_body() {
    let c = cfg(llm());
    let req = Req::new("POST", "/x").h("x-model", "chat");
    let o = decide(
        &c,
        &req,
        Body::Pending,
        0,
        &mut Rng::seed_from_u64(1),
        &mut NoShared,
    );
    assert_eq!(o, Outcome::NeedBody);
}

#[test]
fn tenants_allow_lists_defaults_and_tiers() {
    let c = cfg(llm());
    let plain = body(
        &c,
        &json!({ "messages": [ { "role": "user", "content": "hi" } ] }),
    );
    // acme: no model named → its default model.
    let o = run(
        &c,
        &Req::new("POST", "/v1/chat/completions").h("x-tenant", "acme"),
        Some(&plain),
    );
    assert_eq!(target(&c, &o), "small");
    // basic may use chat/small only.
    let (status, e) = error(&run(
        &c,
        &Req::new("POST", "/v2/models/iris/infer").h("x-tenant", "basic"),
        None,
    ));
    assert_eq!(status, 403);
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("may not use model \"iris\""),
        "{e}"
    );
    let image = body(
        &c,
        &chat(json!([{ "type": "image_url", "image_url": { "url": "x" } }])),
    );
    // The one target basic may use cannot see images: the missing capability is the answer.
    let (status, e) = error(&run(
        &c,
        &Req::new("POST", "/v1/chat/completions").h("x-tenant", "basic"),
        Some(&image),
    ));
    assert_eq!(status, 422);
    assert!(e["detail"].as_str().unwrap().contains("vision"), "{e}");
    // Required tenants.
    let mut v = llm();
    v["tenants"]["required"] = json!(true);
    let c = cfg(v);
    let (status, e) = error(&run(
        &c,
        &Req::new("GET", "/v2/models/iris/ready").h("x-tenant", "nobody"),
        None,
    ));
    assert_eq!((status, e["error"].as_str()), (403, Some("forbidden")));
}

#[test]
fn residency_from_header_or_tenant() {
    let c = cfg(llm());
    let plain = body(&c, &chat(json!("hello")));
    let o = run(
        &c,
        &Req::new("POST", "/v1/chat/completions").h("x-data-region", "eu"),
        Some(&plain),
    );
    let t = target(&c, &o);
    assert!(t == "large" || t == "mid", "{t}");
    let o = run(
        &c,
        &Req::new("POST", "/v1/chat/completions").h("x-tenant", "eurocorp"),
        Some(&plain),
    );
    assert_ne!(target(&c, &o), "small");
    let (status, e) = error(&run(
        &c,
        &Req::new("POST", "/v1/chat/completions").h("x-data-region", "apac"),
        Some(&plain),
    ));
    assert_eq!(status, 403);
    assert!(
        e["detail"].as_str().unwrap().contains("region \"apac\""),
        "{e}"
    );
}

#[test]
fn detectors_restrict_or_block_and_name_the_detector() {
    let c = cfg(llm());
    let req = Req::new("POST", "/v1/chat/completions");
    let card = body(&c, &chat(json!("my card is 4111 1111 1111 1111")));
    match run(&c, &req, Some(&card)) {
        Outcome::Route(r) => {
            assert_eq!(c.models[r.model].targets[r.target].name, "large");
            assert_eq!(r.reason, Reason::Rule(0));
            assert_eq!(r.detector, Some(0));
        }
        o => panic!("{o:?}"),
    }
    let email = body(&c, &chat(json!("reach me at jane@example.com")));
    let o = run(&c, &req.clone().h("x-tenant", "basic"), Some(&email));
    let (status, e) = error(&o);
    assert_eq!(status, 403);
    assert_eq!(e["detector"], "email");
    assert!(
        !e.to_string().contains("jane@example.com"),
        "the match must not leak: {e}"
    );
    match o {
        Outcome::Reply(r) => assert_eq!(r.detector, Some(1)),
        _ => unreachable!(),
    }
    // Same e-mail on a paid tier: no rule fires.
    let o = run(&c, &req.clone().h("x-tenant", "acme"), Some(&email));
    assert_eq!(target(&c, &o), "small");
}

#[test]
fn kserve_inputs_are_checked_before_routing() {
    let c = cfg(llm());
    let req = Req::new("POST", "/v2/models/iris/infer");
    let good = body(
        &c,
        &json!({ "inputs": [ { "name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4] } ] }),
    );
    assert_eq!(target(&c, &run(&c, &req, Some(&good))), "v1");
    let bad = body(
        &c,
        &json!({ "inputs": [ { "name": "input-0", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4] } ] }),
    );
    let (status, e) = error(&run(&c, &req, Some(&bad)));
    assert_eq!(
        (status, e["error"].as_str(), e["input"].as_str()),
        (400, Some("invalid_input"), Some("input-0"))
    );
    assert!(
        e["detail"].as_str().unwrap().contains("expected FP32"),
        "{e}"
    );
    // Not an infer call: not checked.
    assert_eq!(
        target(
            &c,
            &run(&c, &Req::new("GET", "/v2/models/iris/ready"), None)
        ),
        "v1"
    );
}

#[test]
fn budgets_pick_the_cheapest_that_fits_or_escalate() {
    let c = cfg(llm());
    let plain = body(&c, &chat(json!("hello")));
    let req = Req::new("POST", "/v1/chat/completions");
    let o = run(&c, &req.clone().h("x-max-cost", "1"), Some(&plain));
    assert_eq!(target(&c, &o), "small");
    assert!(matches!(
        o,
        Outcome::Route(Route {
            reason: Reason::Budget,
            ..
        })
    ));
    let o = run(&c, &req.clone().h("x-escalate", "true"), Some(&plain));
    assert_eq!(target(&c, &o), "large");
    assert!(matches!(
        o,
        Outcome::Route(Route {
            reason: Reason::Escalated,
            ..
        })
    ));
    let (status, e) = error(&run(
        &c,
        &req.clone().h("x-max-cost", "0.0000001"),
        Some(&plain),
    ));
    assert_eq!((status, e["error"].as_str()), (422, Some("budget_unmet")));
    let (status, _) = error(&run(
        &c,
        &req.clone().h("x-max-cost", "cheap"),
        Some(&plain),
    ));
    assert_eq!(status, 400);

    // Latency budget: targets known to be slower are skipped.
    struct Lat;
    impl Shared for Lat {
        fn bandit_state(&mut self, _: usize) -> Option<&ModelState> {
            None
        }
        fn latency_ms(&mut self, _: usize, t: usize) -> Option<f64> {
            Some(if t == 0 { 900.0 } else { 100.0 })
        }
    }
    let o = run_with(
        &c,
        &req.clone().h("x-latency-budget-ms", "500"),
        Some(&plain),
        &mut Lat,
    );
    assert_eq!(target(&c, &o), "mid");
}

#[test]
fn a_cooling_target_gives_way_to_the_fallback_order() {
    let c = cfg(llm());
    struct Cooling(Vec<u64>);
    impl Shared for Cooling {
        fn bandit_state(&mut self, _: usize) -> Option<&ModelState> {
            None
        }
        fn cooling_until(&mut self, _: usize, t: usize) -> u64 {
            self.0[t]
        }
    }
    let plain = body(&c, &chat(json!("hello")));
    let req = Req::new("POST", "/v1/chat/completions");
    let o = run_with(&c, &req, Some(&plain), &mut Cooling(vec![2_000_000, 0, 0]));
    assert_eq!(target(&c, &o), "mid");
    assert!(matches!(
        o,
        Outcome::Route(Route {
            reason: Reason::Fallback,
            ..
        })
    ));
    let o = run_with(
        &c,
        &req,
        Some(&plain),
        &mut Cooling(vec![2_000_000, 0, 2_000_000]),
    );
    assert_eq!(target(&c, &o), "large");
    // Cooldown over (now = 1,000,000): the choice stands.
    let o = run_with(&c, &req, Some(&plain), &mut Cooling(vec![999_999, 0, 0]));
    assert_eq!(target(&c, &o), "small");
}

#[test]
fn max_tokens_near_u64_max_do_not_wrap_the_context_check() {
    let c = cfg(llm());
    let req = Req::new("POST", "/v1/chat/completions");
    for max in [u64::MAX, u64::MAX - 1] {
        let b = body(
            &c,
            &json!({ "model": "chat", "prompt": "x", "max_tokens": max }),
        );
        let (status, e) = error(&run(&c, &req, Some(&b)));
        assert_eq!(
            (status, e["error"].as_str()),
            (422, Some("capability_unavailable"))
        );
    }
}

#[test]
fn policy_config_errors_name_the_field() {
    let cases = [
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1, "capabilities": ["telepathy"]}]}]}),
            "models[0].targets[0].capabilities[0]",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}], "fallback": ["z"]}]}),
            "models[0].fallback[0]",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}], "retry": true}]}),
            "models[0].retry",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}], "input_spec": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]}]}),
            "models[0].input_spec[0].datatype",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}]}], "detectors": [{"name": "d", "regex": "("}]}),
            "detectors[0].regex",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}]}], "detectors": [{"name": "d", "builtin": "ssn"}]}),
            "detectors[0].builtin",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}]}], "rules": [{"name": "r", "when": {"detected": "nope"}, "then": {"model": "m"}}]}),
            "rules[0].when.detected",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}]}], "tenants": {"list": []}}),
            "tenants",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}]}], "tenants": {"header": "x-t", "list": [{"name": "t", "allow": {"zz": []}}]}}),
            "tenants.list[0].allow.zz",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}]}], "shadows": [{"model": "m", "target": "a", "percent": 0}]}),
            "shadows[0].percent",
        ),
        (
            json!({"models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1}]}], "rules": [{"name": "r", "then": {"restrict": {}}}]}),
            "rules[0].then.restrict",
        ),
        (
            json!({"body": {"source": "metadata"}, "models": [{"name": "m", "targets": [{"name": "a", "cluster": "c", "weight": 1, "capabilities": ["vision"]}]}]}),
            "models[0]",
        ),
    ];
    for (doc, field) in cases {
        let e = parse(doc.to_string().as_bytes()).expect_err(&doc.to_string());
        assert_eq!(e.field, field, "{doc}: {e}");
    }
}
