#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! The decision core through its public API: model resolution, rules, weighted and sticky picks.

mod common;

use common::Req;
use inference_router_core::config::{parse, Config};
use inference_router_core::payload::{extract, Format};
use inference_router_core::policy::{
    decide, Body, NoShared, Outcome, Reason, ReplyContent, ReplyKind, Route,
};
use inference_router_core::rng::Rng;
use serde_json::json;

fn cfg(v: serde_json::Value) -> Config {
    parse(v.to_string().as_bytes()).unwrap()
}

fn base() -> serde_json::Value {
    json!({
        "models": [
            { "name": "sentiment",
              "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 90 },
                           { "name": "v2", "cluster": "sentiment-v2", "weight": 10 } ],
              "strategy": { "type": "weighted", "sticky": { "header": "x-user-id" } } },
            { "name": "chat",
              "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 },
                           { "name": "large", "cluster": "llm-large", "weight": 0 } ] }
        ],
        "rules": [
            { "name": "acme-canary",
              "when": { "headers": { "x-tenant": { "exact": "acme" } },
                        "body": { "/temperature": { "gt": 1.0 } } },
              "then": { "model": "sentiment", "target": "v2" } },
            { "name": "big", "when": { "body": { "/max_tokens": { "gt": 1000 } } },
              "then": { "target": "large" } },
            { "name": "none", "when": { "headers": { "x-route": { "exact": "none" } } },
              "then": { "reply": { "status": 200, "echo": true } } },
            { "name": "blocked", "when": { "headers": { "x-tenant": { "prefix": "evil" } } },
              "then": { "reject": { "status": 403, "message": "tenant blocked" } } }
        ]
    })
}

fn run(c: &Config, req: &Req, body: Body) -> Outcome {
    decide(c, req, body, 0, &mut Rng::seed_from_u64(1), &mut NoShared)
}

fn route(o: Outcome) -> Route {
    match o {
        Outcome::Route(r) => r,
        other => panic!("expected a route, got {other:?}"),
    }
}

fn json_body(c: &Config, v: serde_json::Value) -> inference_router_core::payload::Fields {
    extract(&c.pointers, Format::Json, v.to_string().as_bytes()).unwrap()
}

#[test]
fn model_from_header_path_and_body() {
    let c = cfg(base());
    let r = route(run(
        &c,
        &Req::new("POST", "/x").h("x-model", "chat"),
        Body::Absent,
    ));
    assert_eq!((r.model, r.target), (1, 0));

    let r = route(run(
        &c,
        &Req::new("POST", "/v2/models/chat/infer"),
        Body::Absent,
    ));
    assert_eq!(r.model, 1);

    let r = route(run(
        &c,
        &Req::new("POST", "/v1/models/sentiment/versions/v2:predict"),
        Body::Absent,
    ));
    assert_eq!((r.model, r.target, r.reason), (0, 1, Reason::PathVersion));

    // No header, no model path: the body must be read.
    assert_eq!(
        run(&c, &Req::new("POST", "/v1/chat/completions"), Body::Pending),
        Outcome::NeedBody
    );
    let f = json_body(&c, json!({"model": "chat", "messages": []}));
    let r = route(run(
        &c,
        &Req::new("POST", "/v1/chat/completions"),
        Body::Fields(&f),
    ));
    assert_eq!(r.model, 1);
}

#[test]
fn unknown_model_and_version() {
    let c = cfg(base());
    match run(
        &c,
        &Req::new("POST", "/x").h("x-model", "nope"),
        Body::Absent,
    ) {
        Outcome::Reply(r) => {
            assert_eq!(r.status, 404);
            let ReplyContent::Json(b) = r.content else {
                panic!()
            };
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(v["error"], "unknown_model");
            assert!(v["detail"].as_str().unwrap().contains("nope"));
        }
        o => panic!("{o:?}"),
    }
    match run(
        &c,
        &Req::new("POST", "/v2/models/chat/versions/v9/infer"),
        Body::Absent,
    ) {
        Outcome::Reply(r) => assert_eq!(r.status, 404),
        o => panic!("{o:?}"),
    }
    // With a default model, unknown names go to its default target.
    let mut v = base();
    v["default_model"] = json!("sentiment");
    let c = cfg(v);
    let r = route(run(
        &c,
        &Req::new("POST", "/x").h("x-model", "nope"),
        Body::Absent,
    ));
    assert_eq!((r.model, r.target, r.reason), (0, 0, Reason::Default));
    // Nothing named: the default model's strategy picks.
    let r = route(run(&c, &Req::new("GET", "/healthz"), Body::Absent));
    assert_eq!(r.model, 0);
    assert!(matches!(r.reason, Reason::Weighted));
}

#[test]
fn non_string_model_is_invalid_body() {
    let c = cfg(base());
    let f = json_body(&c, json!({"model": 42}));
    match run(&c, &Req::new("POST", "/v1/completions"), Body::Fields(&f)) {
        Outcome::Reply(r) => assert_eq!((r.status, r.kind), (400, ReplyKind::Error)),
        o => panic!("{o:?}"),
    }
}

#[test]
fn rules_first_match_and_laziness() {
    let c = cfg(base());
    let acme = Req::new("POST", "/v2/models/sentiment/infer").h("x-tenant", "acme");
    // Header matches, body condition pending → need the body.
    assert_eq!(run(&c, &acme, Body::Pending), Outcome::NeedBody);
    let hot = json_body(&c, json!({"temperature": 1.5}));
    let r = route(run(&c, &acme, Body::Fields(&hot)));
    assert_eq!((r.model, r.target, r.reason), (0, 1, Reason::Rule(0)));
    let cold = json_body(&c, json!({"temperature": 0.5}));
    let r = route(run(&c, &acme, Body::Fields(&cold)));
    assert_ne!(r.reason, Reason::Rule(0));

    // Target-only rule applies to the addressed model only if it has that target.
    let big = json_body(&c, json!({"max_tokens": 4096}));
    let r = route(run(
        &c,
        &Req::new("POST", "/x").h("x-model", "chat"),
        Body::Fields(&big),
    ));
    assert_eq!((r.model, r.target, r.reason), (1, 1, Reason::Rule(1)));
    let r = route(run(
        &c,
        &Req::new("POST", "/x").h("x-model", "sentiment"),
        Body::Fields(&big),
    ));
    assert_ne!(r.reason, Reason::Rule(1));
}

#[test]
fn header_only_request_never_waits_for_the_body() {
    // No body rules before a header rule matches, model named by header: no buffering.
    let c = cfg(json!({
        "models": [{ "name": "m", "targets": [{ "name": "a", "cluster": "c", "weight": 1 }] }],
        "rules": [{ "name": "h", "when": { "headers": { "x-a": { "present": true } } },
                    "then": { "model": "m", "target": "a" } }]
    }));
    let r = route(run(
        &c,
        &Req::new("POST", "/").h("x-model", "m"),
        Body::Pending,
    ));
    assert_eq!(r.model, 0);
}

#[test]
fn echo_reject_and_reply() {
    let c = cfg(base());
    let req = Req::new("POST", "/x").h("x-route", "none");
    assert_eq!(run(&c, &req, Body::Pending), Outcome::NeedBody);
    match run(&c, &req, Body::Absent) {
        Outcome::Reply(r) => assert_eq!(
            (r.status, r.kind, r.content, r.rule),
            (200, ReplyKind::Echo, ReplyContent::Echo, Some(2))
        ),
        o => panic!("{o:?}"),
    }
    match run(
        &c,
        &Req::new("GET", "/").h("x-tenant", "evil-corp"),
        Body::Absent,
    ) {
        Outcome::Reply(r) => {
            assert_eq!((r.status, r.kind), (403, ReplyKind::Reject));
            let ReplyContent::Json(b) = r.content else {
                panic!()
            };
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            assert_eq!(
                v,
                json!({"error": "rejected", "detail": "tenant blocked", "rule": "blocked"})
            );
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn weighted_split_matches_weights() {
    let c = cfg(base());
    let mut rng = Rng::seed_from_u64(99);
    let req = Req::new("POST", "/x").h("x-model", "sentiment");
    let mut v2 = 0;
    for _ in 0..20_000 {
        if route(decide(&c, &req, Body::Absent, 0, &mut rng, &mut NoShared)).target == 1 {
            v2 += 1;
        }
    }
    // 10% of 20,000 = 2,000, sd ≈ 42: ±6 sd.
    assert!((1_750..2_250).contains(&v2), "{v2}");
}

#[test]
fn zero_weight_target_only_when_pinned() {
    let c = cfg(base());
    let mut rng = Rng::seed_from_u64(5);
    let req = Req::new("POST", "/x").h("x-model", "chat");
    for _ in 0..1000 {
        assert_eq!(
            route(decide(&c, &req, Body::Absent, 0, &mut rng, &mut NoShared)).target,
            0
        );
    }
}

#[test]
fn sticky_is_deterministic_and_spreads() {
    let c = cfg(base());
    let mut v2_users = 0;
    for u in 0..2000 {
        let req = Req::new("POST", "/x")
            .h("x-model", "sentiment")
            .h("x-user-id", &format!("user-{u}"));
        let first = route(decide(
            &c,
            &req,
            Body::Absent,
            0,
            &mut Rng::seed_from_u64(1),
            &mut NoShared,
        ));
        let again = route(decide(
            &c,
            &req,
            Body::Absent,
            0,
            &mut Rng::seed_from_u64(777),
            &mut NoShared,
        ));
        assert_eq!(first, again);
        assert_eq!(first.reason, Reason::Sticky);
        if first.target == 1 {
            v2_users += 1;
        }
    }
    assert!((120..280).contains(&v2_users), "{v2_users}");
}

#[test]
fn sticky_cookie() {
    let mut v = base();
    v["models"][0]["strategy"] = json!({"type": "weighted", "sticky": {"cookie": "uid"}});
    let c = cfg(v);
    let req = Req::new("GET", "/v2/models/sentiment/infer").h("cookie", "a=b; uid=42");
    let r = route(run(&c, &req, Body::Absent));
    assert_eq!(r.reason, Reason::Sticky);
    let r = route(run(
        &c,
        &Req::new("GET", "/v2/models/sentiment/infer"),
        Body::Absent,
    ));
    assert_eq!(r.reason, Reason::Weighted);
}

#[test]
fn time_window_wraps_midnight() {
    let c = cfg(json!({
        "models": [{ "name": "m", "targets": [{ "name": "a", "cluster": "c", "weight": 1 },
                                               { "name": "b", "cluster": "d", "weight": 0 }] }],
        "rules": [{ "name": "night", "when": { "time_utc": { "from": "22:00", "to": "06:00" } },
                    "then": { "model": "m", "target": "b" } }]
    }));
    let req = Req::new("GET", "/").h("x-model", "m");
    let at = |h: u64, m: u64| {
        route(decide(
            &c,
            &req,
            Body::Absent,
            86_400 * 20_000 + h * 3600 + m * 60,
            &mut Rng::seed_from_u64(1),
            &mut NoShared,
        ))
        .target
    };
    assert_eq!(at(23, 0), 1);
    assert_eq!(at(3, 0), 1);
    assert_eq!(at(5, 59), 1);
    assert_eq!(at(6, 0), 0);
    assert_eq!(at(12, 0), 0);
    assert_eq!(at(22, 0), 1);
}

#[test]
fn body_conditions() {
    let c = cfg(json!({
        "models": [{ "name": "m", "targets": [{ "name": "a", "cluster": "c", "weight": 1 },
                                               { "name": "b", "cluster": "d", "weight": 0 }] }],
        "default_model": "m",
        "rules": [
            { "name": "one-of", "when": { "body": { "/tier": { "one_of": ["gold", 1] } } }, "then": { "target": "b" } },
            { "name": "range", "when": { "body": { "/n": { "gt": 1, "lt": 3 } } }, "then": { "target": "b" } },
            { "name": "present", "when": { "body": { "/tools": { "present": true } } }, "then": { "target": "b" } },
            { "name": "exact", "when": { "body": { "/messages/0/role": { "exact": "system" } } }, "then": { "target": "b" } }
        ]
    }));
    let req = Req::new("POST", "/").h("x-model", "m");
    let rule = |v: serde_json::Value| {
        let f = json_body(&c, v);
        match route(run(&c, &req, Body::Fields(&f))).reason {
            Reason::Rule(i) => Some(c.rules[i].name.clone()),
            _ => None,
        }
    };
    assert_eq!(rule(json!({"tier": "gold"})).as_deref(), Some("one-of"));
    assert_eq!(rule(json!({"tier": 1.0})).as_deref(), Some("one-of"));
    assert_eq!(rule(json!({"tier": "silver"})), None);
    assert_eq!(rule(json!({"n": 2})).as_deref(), Some("range"));
    assert_eq!(rule(json!({"n": 3})), None);
    assert_eq!(rule(json!({"n": "2"})), None);
    assert_eq!(rule(json!({"tools": null})).as_deref(), Some("present"));
    assert_eq!(
        rule(json!({"messages": [{"role": "system"}]})).as_deref(),
        Some("exact")
    );
    assert_eq!(rule(json!({"messages": [{"role": "user"}]})), None);
}

#[test]
fn method_and_path_prefix() {
    let c = cfg(json!({
        "models": [{ "name": "m", "targets": [{ "name": "a", "cluster": "c", "weight": 1 },
                                               { "name": "b", "cluster": "d", "weight": 0 }] }],
        "rules": [{ "name": "r", "when": { "method": ["PUT", "PATCH"], "path_prefix": "/v1/chat/" },
                    "then": { "model": "m", "target": "b" } }]
    }));
    let t =
        |m: &str, p: &str| route(run(&c, &Req::new(m, p).h("x-model", "m"), Body::Absent)).target;
    assert_eq!(t("PUT", "/v1/chat/completions?x=1"), 1);
    assert_eq!(t("POST", "/v1/chat/completions"), 0);
    assert_eq!(t("PUT", "/v1/completions"), 0);
}
