//! The words of the bound and repetition checks, which the shared message writers build: each
//! refused configuration names its field and says why, byte for byte as before they were shared.

use crate::json::{json, Value};

/// One model with two targets (capacity, endpoints), a rule and the feedback endpoint: each case
/// changes one field.
fn base() -> Value {
    json!({
        "models": [ { "name": "m", "fallback": ["a"], "targets": [
            { "name": "a", "cluster": "c1", "weight": 1, "capacity": 2 },
            { "name": "b", "cluster": "c2", "weight": 1, "endpoints": ["10.0.0.1:80"] } ] } ],
        "rules": [ { "name": "r", "when": { "path_prefix": "/x" }, "then": { "reject": { "status": 403, "message": "no" } } } ],
        "feedback": { "path": "/feedback", "signing_key": "e2e-signing-key-0123456789abcdef" }
    })
}

/// A change to [`base`] and the message refusing it.
type Case = (Box<dyn FnOnce(&mut Value)>, &'static str);

fn refused(change: impl FnOnce(&mut Value)) -> String {
    let mut cfg = base();
    change(&mut cfg);
    let bytes = crate::json::write::to_vec(&cfg);
    crate::config::parse(&bytes).err().unwrap().to_string()
}

#[test]
fn the_base_configuration_is_accepted() {
    let bytes = crate::json::write::to_vec(&base());
    assert!(crate::config::parse(&bytes).is_ok());
}

#[test]
fn numbers_out_of_range_name_the_bounds_and_the_value() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|c| c["rules"][0]["then"] = json!({ "reply": { "status": 100 } })),
            "rules[0].then.reply.status: must be 200 to 599, got 100",
        ),
        (
            Box::new(|c| {
                c["rules"][0]["then"] = json!({ "reject": { "status": 200, "message": "no" } })
            }),
            "rules[0].then.reject.status: must be 400 to 599, got 200",
        ),
        (
            Box::new(|c| c["models"][0]["targets"][0]["weight"] = json!(1_000_001)),
            "models[0].targets[0].weight: must be at most 1000000, got 1000001",
        ),
        (
            Box::new(|c| c["models"][0]["cooldown_seconds"] = json!(3601)),
            "models[0].cooldown_seconds: must be at most 3600, got 3601",
        ),
        (
            Box::new(|c| c["models"][0]["affinity"] = json!({ "messages": 65 })),
            "models[0].affinity.messages: must be 1 to 64, got 65",
        ),
        (
            Box::new(|c| c["load"] = json!({ "stale_ms": 99 })),
            "load.stale_ms: must be 100 to 3600000, got 99",
        ),
        (
            Box::new(|c| c["load"] = json!({ "retry_after_seconds": 0 })),
            "load.retry_after_seconds: must be 1 to 3600, got 0",
        ),
        (
            Box::new(|c| c["body"] = json!({ "max_bytes": 0 })),
            "body.max_bytes: must be between 1 and 67108864, got 0",
        ),
        (
            Box::new(|c| {
                c["detectors"] = json!([{ "name": "email", "builtin": "email" }]);
                c["rules"][0]["when"] = json!({ "detected": "email" });
                c["scan"] = json!({ "max_bytes": 16_777_217 });
            }),
            "scan.max_bytes: must be between 1 and 16777216, got 16777217",
        ),
        (
            Box::new(|c| c["feedback"]["max_accepted_per_hour"] = json!(1023)),
            "feedback.max_accepted_per_hour: must be between 1024 and 4194304, got 1023",
        ),
        (
            Box::new(|c| c["fleet"] = json!({ "cluster": "etcd", "prefix": "/t", "sync_ms": 99 })),
            "fleet.sync_ms: must be between 100 and 600000, got 99",
        ),
        (
            Box::new(|c| {
                c["models"][0]["router"] = json!({ "cluster": "r", "timeout_ms": 60_001 })
            }),
            "models[0].router.timeout_ms: must be between 1 and 60000, got 60001",
        ),
    ];
    for (change, message) in cases {
        assert_eq!(refused(change), message);
    }
}

#[test]
fn an_entry_listed_twice_is_named() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|c| c["models"][0]["fallback"] = json!(["a", "b", "a"])),
            "models[0].fallback[2]: \"a\" is listed twice",
        ),
        (
            Box::new(|c| {
                c["models"][0]["targets"][1]["endpoints"] = json!(["10.0.0.1:80", "10.0.0.1:80"])
            }),
            "models[0].targets[1].endpoints[1]: \"10.0.0.1:80\" is listed twice",
        ),
        (
            Box::new(|c| {
                c["models"][0]["strategy"] =
                    json!({ "type": "linucb", "features": ["stream", "tools", "stream"] });
                c["models"][0]["fallback"] = json!([]);
            }),
            "models[0].strategy.features[2]: \"stream\" is listed twice",
        ),
    ];
    for (change, message) in cases {
        assert_eq!(refused(change), message);
    }
}

#[test]
fn the_lists_in_words_are_the_lists() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|c| c["models"][0]["targets"][0]["capabilities"] = json!(["smell"])),
            "capabilities[0]: \"smell\" is not a capability",
        ),
        (
            Box::new(|c| {
                c["models"][0]["input_spec"] =
                    json!([{ "name": "x", "datatype": "FP8", "shape": [1] }])
            }),
            "datatype: \"FP8\" is not a KServe v2 datatype",
        ),
    ];
    let lists = [
        crate::config::CAPABILITIES.join(", "),
        crate::inspect::kserve::DATATYPES.join(", "),
    ];
    for ((change, words), list) in cases.into_iter().zip(lists) {
        let message = refused(change);
        assert!(message.ends_with(&format!("{words} ({list})")), "{message}");
    }
}

#[test]
fn the_first_feature_in_conflict_is_named() {
    let cases: Vec<Case> = vec![
        (
            Box::new(|c| c["models"][0]["retry"] = json!(true)),
            "models[0].retry: cannot be combined with load tracking (least_loaded, capacity, endpoints): requests the filter resends by callout hold no slot",
        ),
        (
            Box::new(|c| {
                c["models"][0]["retry"] = json!(true);
                c["models"][0]["fan_out"] = json!({ "timeout_ms": 100 });
            }),
            "models[0].fan_out: cannot be combined with load tracking (least_loaded, capacity, endpoints): requests the filter resends by callout hold no slot",
        ),
        (
            Box::new(|c| {
                c["body"] = json!({ "source": "metadata", "metadata_namespace": "ns" });
                c["models"][0]["targets"] = json!([
                    { "name": "a", "cluster": "c1", "weight": 1 },
                    { "name": "b", "cluster": "c2", "weight": 1 } ]);
                c["models"][0]["retry"] = json!(true);
                c["models"][0]["router"] = json!({ "cluster": "r", "path": "/route" });
            }),
            "models[0]: retry needs the request body, which body.source \"metadata\" does not give; use \"buffer\"",
        ),
    ];
    for (change, message) in cases {
        assert_eq!(refused(change), message);
    }
}

/// Header and cookie names are checked byte by byte, with the outcomes they had char by char: a
/// non-ASCII character is refused in a header name and allowed in a cookie name.
#[test]
fn header_and_cookie_names_refuse_what_they_did_char_by_char() {
    let header = |name: &str| refused(|c| c["model_header"] = json!(name));
    for name in ["x-café", "x-m\u{2013}del", "x model", "x\u{0085}y"] {
        assert_eq!(
            header(name),
            format!("model_header: {:?} is not a valid HTTP header name", name)
        );
    }
    let mut ok = base();
    ok["model_header"] = json!("x-!#$%&'*+-.^_`|~09az");
    let parsed = crate::config::parse(&crate::json::write::to_vec(&ok));
    assert!(parsed.is_ok(), "{:?}", parsed.err().map(|e| e.to_string()));

    let cookie = |name: &str| {
        refused(|c| {
            c["models"][0]["strategy"] = json!({ "type": "weighted", "sticky": { "cookie": name } })
        })
    };
    for name in ["a b", "a;b", "a=b", "a\u{7f}"] {
        assert_eq!(
            cookie(name),
            "models[0].strategy.sticky.cookie: must be a valid cookie name"
        );
    }
    let mut ok = base();
    ok["models"][0]["strategy"] =
        json!({ "type": "weighted", "sticky": { "cookie": "sid-\u{00e9}" } });
    assert!(crate::config::parse(&crate::json::write::to_vec(&ok)).is_ok());
}
