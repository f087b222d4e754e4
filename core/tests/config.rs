#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Configuration refusals name the field and the reason; the documented examples load.

use inference_router_core::config::parse;
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "models": [{ "name": "m", "targets": [{ "name": "a", "cluster": "c-a", "weight": 1 },
                                               { "name": "b", "cluster": "c-b", "weight": 1 }] }]
    })
}

fn with(path: &str, value: Value) -> Value {
    let mut doc = base();
    let mut cur = &mut doc;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        if let Ok(idx) = p.parse::<usize>() {
            if last {
                cur[idx] = value.clone();
            } else {
                cur = &mut cur[idx];
            }
        } else if last {
            cur[*p] = value.clone();
        } else {
            if cur.get(*p).is_none() {
                cur[*p] = json!({});
            }
            cur = &mut cur[*p];
        }
    }
    doc
}

#[test]
fn refusals_name_field_and_reason() {
    let rule = |when: Value, then: Value| json!([{ "name": "r", "when": when, "then": then }]);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "models", "missing field"),
        (json!({"models": []}), "models", "at least one model"),
        (
            with("models.0.targets", json!([])),
            "models[0].targets",
            "at least one target",
        ),
        (
            with("models.0.targets.0.weight", json!(-1)),
            "models[0].targets[0].weight",
            "invalid value",
        ),
        (
            with("models.0.targets.0.weight", json!(2_000_000)),
            "models[0].targets[0].weight",
            "at most",
        ),
        (
            with("models.0.targets.1.name", json!("a")),
            "models[0].targets[1].name",
            "earlier target",
        ),
        (
            with("models.0.targets.0.name", json!("bad name")),
            "models[0].targets[0].name",
            "may hold only",
        ),
        (
            with("models.0.targets.0.cluster", json!("")),
            "models[0].targets[0].cluster",
            "non-empty",
        ),
        (
            with("models.0.targets.0.colour", json!("x")),
            "models[0].targets[0].colour",
            "unknown field",
        ),
        (
            with("models.0.strategy", json!({"type": "magic"})),
            "models[0].strategy.type",
            "unknown variant",
        ),
        (
            with(
                "models.0.strategy",
                json!({"type": "weighted", "sticky": {"header": "X-User"}}),
            ),
            "models[0].strategy.sticky.header",
            "lowercase",
        ),
        (
            with("models.0.default_target", json!("z")),
            "models[0].default_target",
            "not a target",
        ),
        (
            with("default_model", json!("zz")),
            "default_model",
            "not the name of a configured model",
        ),
        (
            with("route_header", json!(":authority")),
            "route_header",
            "pseudo-header",
        ),
        (
            with("target_header", json!("x-inference-cluster")),
            "target_header",
            "must differ",
        ),
        (
            with("body.max_bytes", json!(0)),
            "body.max_bytes",
            "between 1 and",
        ),
        (
            with("body.on_invalid", json!("ignore")),
            "body.on_invalid",
            "unknown variant",
        ),
        (
            with("rules", rule(json!({}), json!({}))),
            "rules[0].then",
            "exactly one of",
        ),
        (
            with(
                "rules",
                rule(
                    json!({}),
                    json!({"model": "m", "reject": {"status": 403, "message": "x"}}),
                ),
            ),
            "rules[0].then",
            "exactly one of",
        ),
        (
            with("rules", rule(json!({}), json!({"model": "nope"}))),
            "rules[0].then.model",
            "not the name",
        ),
        (
            with(
                "rules",
                rule(json!({}), json!({"model": "m", "target": "z"})),
            ),
            "rules[0].then.target",
            "not a target",
        ),
        (
            with("rules", rule(json!({}), json!({"target": "z"}))),
            "rules[0].then.target",
            "no model has",
        ),
        (
            with(
                "rules",
                rule(
                    json!({}),
                    json!({"reject": {"status": 200, "message": "x"}}),
                ),
            ),
            "rules[0].then.reject.status",
            "400 to 599",
        ),
        (
            with(
                "rules",
                rule(json!({}), json!({"reply": {"echo": true, "body": {}}})),
            ),
            "rules[0].then.reply",
            "exclude",
        ),
        (
            with(
                "rules",
                rule(json!({"headers": {"x-a": {}}}), json!({"model": "m"})),
            ),
            "rules[0].when.headers.x-a",
            "exactly one",
        ),
        (
            with(
                "rules",
                rule(
                    json!({"headers": {"x-a": {"exact": "1", "prefix": "2"}}}),
                    json!({"model": "m"}),
                ),
            ),
            "rules[0].when.headers.x-a",
            "exactly one",
        ),
        (
            with(
                "rules",
                rule(
                    json!({"body": {"temperature": {"gt": 1}}}),
                    json!({"model": "m"}),
                ),
            ),
            "rules[0].when.body.temperature",
            "start with '/'",
        ),
        (
            with(
                "rules",
                rule(
                    json!({"body": {"/t": {"gt": 2, "lt": 1}}}),
                    json!({"model": "m"}),
                ),
            ),
            "rules[0].when.body./t",
            "nothing could match",
        ),
        (
            with(
                "rules",
                rule(
                    json!({"body": {"/t": {"exact": 1, "gt": 0}}}),
                    json!({"model": "m"}),
                ),
            ),
            "rules[0].when.body./t",
            "exactly one",
        ),
        (
            with(
                "rules",
                rule(
                    json!({"body": {"/t": {"one_of": []}}}),
                    json!({"model": "m"}),
                ),
            ),
            "rules[0].when.body./t.one_of",
            "at least one",
        ),
        (
            with(
                "rules",
                rule(
                    json!({"time_utc": {"from": "25:00", "to": "01:00"}}),
                    json!({"model": "m"}),
                ),
            ),
            "rules[0].when.time_utc.from",
            "HH:MM",
        ),
        (
            with(
                "rules",
                rule(
                    json!({"time_utc": {"from": "01:00", "to": "01:00"}}),
                    json!({"model": "m"}),
                ),
            ),
            "rules[0].when.time_utc",
            "empty",
        ),
        (
            with(
                "rules",
                rule(json!({"method": "post"}), json!({"model": "m"})),
            ),
            "rules[0].when.method",
            "uppercase",
        ),
        (
            with(
                "rules",
                rule(json!({"path_prefix": "v1"}), json!({"model": "m"})),
            ),
            "rules[0].when.path_prefix",
            "start with '/'",
        ),
        (
            with(
                "rules",
                json!([{"name": "r", "then": {"model": "m"}}, {"name": "r", "then": {"model": "m"}}]),
            ),
            "rules[1].name",
            "earlier rule",
        ),
        (
            with(
                "rules",
                json!([{"name": "a.b", "then": {"model": "m"}}, {"name": "a_b", "then": {"model": "m"}}]),
            ),
            "rules[1].name",
            "same metric name",
        ),
    ];
    assert_refusals(cases);
}

/// A bandit model with a fleet section (and `extra` fields in it).
fn fleet_doc(extra: Value, decay: Option<Value>) -> Value {
    let mut doc = base();
    doc["models"][0]["strategy"] = json!({ "type": "thompson" });
    if let Some(d) = decay {
        doc["models"][0]["strategy"]["decay"] = d;
    }
    let mut fleet = json!({ "cluster": "etcd" });
    for (k, v) in extra.as_object().unwrap() {
        fleet[k] = v.clone();
    }
    doc["fleet"] = fleet;
    doc
}

#[test]
fn fleet_refusals_name_field_and_reason() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            fleet_doc(json!({ "cluster": "" }), None),
            "fleet.cluster",
            "cluster name",
        ),
        (
            fleet_doc(json!({ "prefix": "ir" }), None),
            "fleet.prefix",
            "start with '/'",
        ),
        (
            fleet_doc(json!({ "prefix": "/ir/" }), None),
            "fleet.prefix",
            "not end with '/'",
        ),
        (
            fleet_doc(json!({ "prefix": "/a b" }), None),
            "fleet.prefix",
            "without spaces",
        ),
        (
            fleet_doc(json!({ "sync_ms": 50 }), None),
            "fleet.sync_ms",
            "between 100 and",
        ),
        (
            fleet_doc(json!({ "sync_ms": 500, "timeout_ms": 600 }), None),
            "fleet.timeout_ms",
            "sync rounds do not overlap",
        ),
        (
            fleet_doc(json!({ "replica": "a/b" }), None),
            "fleet.replica",
            "without '/'",
        ),
        (
            fleet_doc(json!({ "sync_ms": 5000, "retire_after_seconds": 20 }), None),
            "fleet.retire_after_seconds",
            "10 sync periods",
        ),
        (
            fleet_doc(json!({ "auth": { "username": "u", "password": "" } }), None),
            "fleet.auth.password",
            "must not be empty",
        ),
        (
            fleet_doc(json!({ "syncms": 1 }), None),
            "fleet.syncms",
            "unknown field",
        ),
        (
            fleet_doc(json!({}), Some(json!({ "half_life": 100 }))),
            "models[0].strategy.decay",
            "half_life_seconds",
        ),
        (
            fleet_doc(json!({}), Some(json!({ "gamma": 0.99 }))),
            "models[0].strategy.decay",
            "does not add up across a fleet",
        ),
        (
            fleet_doc(json!({}), Some(json!({ "half_life_seconds": 0.5 }))),
            "models[0].strategy.decay.half_life_seconds",
            "number of seconds",
        ),
        (
            with("fleet", json!({ "cluster": "etcd" })),
            "fleet",
            "nothing to share",
        ),
    ];
    assert_refusals(cases);
    let c = parse(
        fleet_doc(json!({}), Some(json!({ "half_life_seconds": 60 })))
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let f = c.fleet.unwrap();
    assert_eq!(
        (
            f.prefix.as_str(),
            f.sync_ms,
            f.timeout_ms,
            f.retire_after_ms
        ),
        ("/inference-router", 1000, 1000, 600_000)
    );
    assert_eq!(
        (f.authority.as_str(), f.warm_start, f.replica),
        ("etcd", true, None)
    );
}

#[test]
fn change_detection_refusals_name_the_field() {
    let watched = |kind: &str, change: Value| {
        with(
            "models.0.strategy",
            json!({ "type": kind, "change_detection": change }),
        )
    };
    let field = "models[0].strategy.change_detection";
    let cases: Vec<(Value, String, &str)> = vec![
        (
            watched("thompson", json!({ "min_change": 0 })),
            format!("{field}.min_change"),
            "within (0, 0.5], got 0",
        ),
        (
            watched("ucb1", json!({ "false_alarm_rate": 0.1 })),
            format!("{field}.false_alarm_rate"),
            "within (0, 0.01], got 0.1",
        ),
        (
            watched("thompson", json!({ "warmup": 0 })),
            format!("{field}.warmup"),
            "from 1 to 10000",
        ),
        (
            watched("thompson", json!({ "warmup": -3 })),
            format!("{field}.warmup"),
            "invalid value",
        ),
        (
            watched("thompson", json!({ "threshold": 5 })),
            format!("{field}.threshold"),
            "unknown field",
        ),
        (
            with(
                "models.0.strategy",
                json!({ "type": "epsilon_greedy", "epsilon": 0.1, "change_detection": {} }),
            ),
            field.to_owned(),
            "unknown field",
        ),
        (
            {
                let mut doc = fleet_doc(json!({}), None);
                doc["models"][0]["strategy"]["change_detection"] = json!({});
                doc
            },
            field.to_owned(),
            "cannot be used with fleet",
        ),
    ];
    for (doc, field, reason) in &cases {
        assert_refusals(vec![(doc.clone(), field.as_str(), reason)]);
    }
    // Every field is optional.
    let c = parse(watched("ucb1", json!({})).to_string().as_bytes()).unwrap();
    let b = c.models[0].bandit().unwrap();
    assert_eq!(
        b.change_detection(),
        Some(inference_router_core::bandit::ChangeParams::default())
    );
}

/// Each document is refused, naming that field, with a reason containing that text.
#[track_caller]
fn assert_refusals(cases: Vec<(Value, &str, &str)>) {
    for (doc, field, reason) in cases {
        let e = parse(doc.to_string().as_bytes()).expect_err(&format!("accepted {doc}"));
        assert_eq!(e.field, field, "wrong field for {doc}: {e}");
        assert!(
            e.reason.contains(reason),
            "reason {:?} lacks {reason:?} for {doc}",
            e.reason
        );
    }
}

#[test]
fn echo_is_refused_in_metadata_mode() {
    let mut doc = base();
    doc["body"] = json!({"source": "metadata"});
    doc["rules"] = json!([{"name": "e", "then": {"reply": {"echo": true}}}]);
    let e = parse(doc.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.field, "rules[0].then.reply.echo");
}

#[test]
fn empty_and_non_json_configuration() {
    assert!(parse(b"").unwrap_err().reason.contains("empty"));
    assert!(parse(b"  \n").unwrap_err().reason.contains("empty"));
    assert!(parse(b"not json").is_err());
    assert!(parse(b"[]").is_err());
    // A document pasted twice, or with a stray brace: refused, not half read.
    let twice = format!("{0}\n{0}", base());
    let e = parse(twice.as_bytes()).unwrap_err();
    assert_eq!(e.field, "");
    assert!(e.reason.starts_with("trailing characters"), "{}", e.reason);
    assert!(parse(format!("{}}}", base()).as_bytes()).is_err());
    assert!(parse(format!("\n{}\n", base()).as_bytes()).is_ok());
}

#[test]
fn defaults() {
    let c = parse(base().to_string().as_bytes()).unwrap();
    assert_eq!(c.route_header, "x-inference-cluster");
    assert_eq!(c.target_header, "x-inference-target");
    assert_eq!(c.model_header, "x-model");
    assert!(c.response_metadata);
    assert_eq!(c.body.max_bytes, 1_048_576);
    assert_eq!(c.models[0].default_target, 0);
}

/// Every ```json block in docs/ that is a full configuration loads.
#[test]
fn documented_examples_load() {
    // The docs are the workspace's, one level above this crate.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut checked = 0;
    for entry in std::fs::read_dir(format!("{root}/docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("```json\n") {
            let after = &rest[start + 8..];
            let end = after.find("```").unwrap();
            let block = &after[..end];
            rest = &after[end + 3..];
            let v: Value = serde_json::from_str(block).unwrap_or_else(|e| {
                panic!(
                    "{}: a json block does not parse: {e}\n{block}",
                    path.display()
                )
            });
            if v.get("models").is_some() {
                if let Err(e) = parse(block.as_bytes()) {
                    panic!(
                        "{}: documented configuration refused: {e}\n{block}",
                        path.display()
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no documented configuration found");
}

#[test]
fn feedback_trust_and_state_endpoint_refusals_name_the_field() {
    const KEY: &str = "0123456789abcdef";
    let fb = |extra: Value| {
        let mut f = json!({ "signing_key": KEY });
        if let (Some(f), Some(e)) = (f.as_object_mut(), extra.as_object()) {
            f.extend(e.clone());
        }
        with("feedback", f)
    };
    let keys = |list: Value| with("feedback", json!({ "signing_keys": list }));
    let state = |s: Value| with("state_endpoint", s);
    let cases = vec![
        (
            with("feedback", json!({})),
            "feedback.signing_keys",
            "is required",
        ),
        (
            fb(json!({ "signing_keys": [{"id": "a", "key": KEY}] })),
            "feedback",
            "not both",
        ),
        (keys(json!([])), "feedback.signing_keys", "1 to 8 keys"),
        (
            keys(json!([{"id": "a b", "key": KEY}])),
            "feedback.signing_keys[0].id",
            "letters",
        ),
        (
            keys(json!([{"id": "a", "key": KEY}, {"id": "a", "key": KEY}])),
            "feedback.signing_keys[1].id",
            "unique",
        ),
        (
            keys(json!([{"id": "a", "key": "short"}])),
            "feedback.signing_keys[0].key",
            "16",
        ),
        (fb(json!({ "bind": {} })), "feedback.bind", "exactly one"),
        (
            fb(json!({ "bind": {"header": "x-user", "tenant": true} })),
            "feedback.bind",
            "exactly one",
        ),
        (
            fb(json!({ "bind": {"tenant": true} })),
            "feedback.bind.tenant",
            "tenants",
        ),
        (
            fb(json!({ "bind": {"header": "X-User"} })),
            "feedback.bind.header",
            "lowercase",
        ),
        (
            fb(json!({ "evaluators": ["grader"] })),
            "feedback.evaluators",
            "needs feedback.bind",
        ),
        (
            fb(json!({ "bind": {"header": "x-user"}, "evaluators": ["g", "g"] })),
            "feedback.evaluators[1]",
            "once",
        ),
        (
            fb(json!({ "budget_per_minute": 5 })),
            "feedback.budget_per_minute",
            "per principal",
        ),
        (
            fb(json!({ "bind": {"header": "x-user"}, "budget_per_minute": 0 })),
            "feedback.budget_per_minute",
            "at least 1",
        ),
        (
            fb(json!({ "max_accepted_per_hour": 10 })),
            "feedback.max_accepted_per_hour",
            "between",
        ),
        (
            state(json!({ "path": "/state" })),
            "state_endpoint.token",
            "public",
        ),
        (
            state(json!({ "path": "/state", "token": "short" })),
            "state_endpoint.token",
            "16",
        ),
        (
            state(json!({ "path": "/state", "token": "0123456789abcdef", "public": true })),
            "state_endpoint.public",
            "no token",
        ),
        (
            with("budget", json!({ "jwt": { "payload_key": "" } })),
            "budget.jwt",
            "must not be empty",
        ),
    ];
    assert_refusals(cases);
    // What is accepted.
    for doc in [
        state(json!({ "path": "/state", "public": true })),
        state(json!({ "path": "/state", "token": "0123456789abcdef" })),
        fb(json!({ "bind": {"header": "x-user"}, "evaluators": ["g"], "budget_per_minute": 1 })),
        keys(json!([{"id": "2026-12_a.b", "key": KEY}])),
    ] {
        assert!(parse(doc.to_string().as_bytes()).is_ok(), "{doc}");
    }
}

/// A `linucb` model with these strategy fields (beside `"type": "linucb"`).
fn linucb_doc(fields: Value) -> Value {
    let mut strategy = json!({ "type": "linucb" });
    for (k, v) in fields.as_object().unwrap() {
        strategy[k] = v.clone();
    }
    with("models.0.strategy", strategy)
}

#[test]
fn linucb_refusals_name_field_and_reason() {
    let features = json!(["prompt_tokens"]);
    let mut with_fleet = linucb_doc(json!({ "features": features }));
    with_fleet["fleet"] = json!({ "cluster": "etcd" });
    let mut with_tenant = linucb_doc(json!({ "features": ["tenant:gold"] }));
    with_tenant["tenants"] = json!({ "header": "x-tenant", "list": [{ "name": "silver" }] });
    assert_refusals(vec![
        (
            linucb_doc(json!({})),
            "models[0].strategy.features",
            "missing field",
        ),
        (
            linucb_doc(json!({ "features": [] })),
            "models[0].strategy.features",
            "1 to 8 features",
        ),
        (
            linucb_doc(json!({ "features": ["prompt_tokens", "colour"] })),
            "models[0].strategy.features[1]",
            "\"colour\" is not a feature",
        ),
        (
            linucb_doc(json!({ "features": ["tools", "tools"] })),
            "models[0].strategy.features[1]",
            "listed twice",
        ),
        (
            linucb_doc(json!({ "features": features, "alpha": 101 })),
            "models[0].strategy.alpha",
            "within [0, 100]",
        ),
        (
            linucb_doc(json!({ "features": features, "ridge": 0 })),
            "models[0].strategy.ridge",
            "above 0",
        ),
        (
            linucb_doc(json!({ "features": features, "decay": { "half_life_seconds": 60 } })),
            "models[0].strategy.decay.half_life_seconds",
            "per observation only",
        ),
        (
            with_fleet,
            "models[0].strategy.type",
            "linucb learns on this Envoy only",
        ),
        (
            with_tenant,
            "models[0].strategy.features[0]",
            "tenant \"gold\" is not in tenants.list",
        ),
    ]);
    let ok = linucb_doc(
        json!({ "features": ["prompt_tokens", "path:/v1/embeddings"],
                                "decay": { "half_life": 500 }, "min_share": 0.05 }),
    );
    parse(ok.to_string().as_bytes()).unwrap();
}
