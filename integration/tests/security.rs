//! What a hostile client or upstream cannot do, against the real Envoy at `--concurrency 2`
//! (envoy/demo.yaml): pick its own cluster or subset with the router's own headers (any case,
//! repeated); forge the router's response metadata; read the learned state unless the state
//! endpoint is enabled (and then only with its token, whatever the path spelling); or get request
//! data into Envoy's log at the harness's `info` level.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::learning::*;
use common::vm::*;
use common::*;
use integration::{Behaviour, Harness, Request, Response};
use serde_json::{json, Value};

/// The router's request headers, spelled as a client might send them.
const FORGED: [(&str, &str); 6] = [
    ("x-inference-cluster", "llm-large"),
    ("X-INFERENCE-CLUSTER", "iris-v2"),
    ("X-Inference-Cluster", "sentiment-v2"),
    ("x-inference-target", "large"),
    ("X-INFERENCE-TARGET", "v2"),
    ("X-Inference-Target", "v2"),
];

fn forged(mut req: Request) -> Request {
    for (n, v) in FORGED {
        req = req.header(n, v);
    }
    req
}

/// No request reached the clusters the forged headers name.
#[track_caller]
fn forged_clusters_untouched(h: &Harness) {
    for c in ["llm-large", "iris-v2", "sentiment-v2"] {
        assert_eq!(h.upstreams.hits(c), 0, "a client reached {c} by naming it");
    }
}

/// The upstream saw exactly one routing header and one target header, the router's.
#[track_caller]
fn upstream_saw_only_the_router(r: &Response, cluster: &str, target: &str) {
    let echo = assert_upstream(r, cluster);
    // The fake upstream joins repeated headers with ',': equality proves a single value.
    assert_eq!(
        echo.headers.get("x-inference-cluster").map(String::as_str),
        Some(cluster)
    );
    assert_eq!(
        echo.headers.get("x-inference-target").map(String::as_str),
        Some(target)
    );
}

#[test]
fn forged_route_headers_are_ignored_and_upstream_metadata_is_replaced() {
    let h = Harness::demo(&json!({
        "models": deterministic_models(),
        "feedback": feedback_section(3600),
    }));
    let vm_before = vm_stats(&h.envoy);

    // Routed by path, by header, by body; and a body too large to read: the router's values
    // replace every spelling and repetition of the client's.
    let r = h.send(&forged(Request::get("/v2/models/iris/ready")));
    upstream_saw_only_the_router(&r, "iris-v1", "v1");
    let r = h.send(&forged(Request::get("/anything").header("x-model", "chat")));
    upstream_saw_only_the_router(&r, "llm-small", "small");
    let body = serde_json::to_vec(&chat_body("chat")).unwrap();
    let r = h.send(&forged(
        Request::post("/v1/chat/completions")
            .header("content-type", "application/json")
            .body(body.clone()),
    ));
    upstream_saw_only_the_router(&r, "llm-small", "small");
    let mut big = br#"{"model":"chat","pad":""#.to_vec();
    big.resize(2 << 20, b' ');
    big.extend_from_slice(b"\"}");
    let r = h.send(&forged(
        Request::post("/v2/models/sentiment/infer")
            .header("content-type", "application/json")
            .body(big),
    ));
    upstream_saw_only_the_router(&r, "sentiment-v1", "v1");
    assert_meta(&r, "body", Some("too-large"));

    // Answered by the filter itself: nothing goes anywhere.
    let before = h.upstreams.total_hits();
    let r = h.send(&forged(Request::get("/v2/models/nosuch/ready")));
    assert_error_reply(&r, 404, "unknown_model");
    let r = h.send(&forged(
        Request::post("/v1/chat/completions").json_text(r#"{"model": "chat""#),
    ));
    assert_error_reply(&r, 400, "invalid_body");
    let r = h.send(&forged(Request::get("/v2/models/iris/versions/v9/ready")));
    assert_error_reply(&r, 404, "unknown_version");
    assert_no_upstream(&h, before);
    forged_clusters_untouched(&h);

    // An upstream that sends the router's response headers (several spellings, repeated): the
    // client sees each once, with the router's values.
    h.upstreams.set_behaviour(
        "iris-v1",
        Behaviour::default()
            .with_header("x-inference-model", "forged")
            .with_header("X-Inference-Model", "forged-again")
            .with_header("x-inference-target", "forged")
            .with_header("X-INFERENCE-REASON", "forged")
            .with_header("x-inference-decision", "forged~decision"),
    );
    let r = h.send(&Request::get("/v2/models/iris/ready"));
    assert_upstream(&r, "iris-v1");
    for (name, want) in [
        ("x-inference-model", Some("iris")),
        ("x-inference-target", Some("v1")),
        ("x-inference-reason", Some("weighted")),
    ] {
        assert_eq!(
            r.header_all(name),
            want.into_iter().collect::<Vec<_>>(),
            "{name}: {:?}",
            r.headers
        );
    }
    let decision = r.header_all("x-inference-decision");
    assert_eq!(decision.len(), 1, "{:?}", r.headers);
    assert!(decision[0].starts_with("iris~v1~"), "{decision:?}");
    // It is the router's signed id: feedback recognises it (and refuses it only because iris
    // does not learn).
    assert_refused(
        &send_feedback(&h.envoy, decision[0], 1.0),
        422,
        "not_learning",
    );
    assert_refused(
        &send_feedback(&h.envoy, "forged~decision", 1.0),
        403,
        "forged",
    );
    assert_vm_never_crashed(&h.envoy, &vm_before);
}

/// `x-inference-body` is the router's statement that it did not use the body. The filter sets it
/// only when it has something to say, and with `response_metadata` on it removes an upstream's
/// `x-inference-body` otherwise (when it writes the response headers), so an upstream cannot make
/// a client believe its body was ignored.
#[test]
fn upstream_cannot_forge_x_inference_body() {
    let h = Harness::demo(&json!({ "models": deterministic_models() }));
    h.upstreams.set_behaviour(
        "llm-small",
        Behaviour::default().with_header("x-inference-body", "invalid"),
    );
    let r = h.send(&Request::post("/v1/chat/completions").json(&chat_body("chat")));
    assert_upstream(&r, "llm-small");
    assert_eq!(
        r.header_all("x-inference-body"),
        Vec::<&str>::new(),
        "{:?}",
        r.headers
    );
}

/// Writing the response metadata touches the router's headers only: every other header of the
/// upstream's comes through as it was sent (repeated ones in their order, values beyond ASCII
/// byte for byte), and an upstream's optional router headers go.
#[test]
fn the_upstreams_other_response_headers_come_through_the_metadata_unchanged() {
    let h = Harness::demo(&json!({ "models": deterministic_models() }));
    h.upstreams.set_behaviour(
        "llm-small",
        Behaviour::default()
            .with_header("set-cookie", "a=1")
            .with_header("x-trace", "café ☕ 1")
            .with_header("x-inference-detector", "forged")
            .with_header("set-cookie", "b=2")
            .with_header("x-inference-body", "forged")
            .with_header("cache-control", "no-store"),
    );
    let r = h.send(&Request::post("/v1/chat/completions").json(&chat_body("chat")));
    assert_upstream(&r, "llm-small");
    for (name, want) in [
        ("set-cookie", vec!["a=1", "b=2"]),
        ("x-trace", vec!["café ☕ 1"]),
        ("cache-control", vec!["no-store"]),
        ("x-upstream-cluster", vec!["llm-small"]),
        ("x-inference-model", vec!["chat"]),
        ("x-inference-detector", vec![]),
        ("x-inference-body", vec![]),
    ] {
        assert_eq!(r.header_all(name), want, "{name}: {:?}", r.headers);
    }
    assert_eq!(
        r.header_all("x-inference-decision").len(),
        1,
        "{:?}",
        r.headers
    );
}

/// docs/configuration.md says a client's `route_header` / `target_header` values are "removed
/// before anything else". They are replaced when the filter routes, and removed before the
/// filter sends a local reply, so the access log of envoy/demo.yaml
/// (`cluster=%UPSTREAM_CLUSTER% target=%REQ(X-INFERENCE-TARGET)%`) shows `cluster=- target=-`
/// for such answers, not the client's values.
#[test]
fn client_route_headers_are_removed_even_when_the_filter_answers_itself() {
    let h = Harness::demo(&json!({ "models": deterministic_models() }));
    let r = h.send(&forged(Request::get("/v2/models/nosuch/ready")));
    assert_error_reply(&r, 404, "unknown_model");
    let line = common::learning::wait_for(Duration::from_secs(5), "the access log line", || {
        h.envoy
            .stdout_log()
            .lines()
            .find(|l| l.contains("/v2/models/nosuch/ready"))
            .map(str::to_string)
    });
    assert!(
        line.contains("cluster=- target=- "),
        "the access log reports the client's route headers: {line}"
    );
}

#[test]
fn state_is_closed_unless_enabled_and_then_only_with_the_token() {
    let learning = |state: Option<Value>| {
        let mut cfg = json!({
            "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }),
                                     Some(json!({ "status": true }))) ],
            "feedback": feedback_section(3600),
        });
        if let Some(s) = state {
            cfg["state_endpoint"] = s;
        }
        cfg
    };
    let leaks = |r: &Response| {
        let t = r.text();
        t.contains("observations") || t.contains("alpha")
    };

    // Not enabled: the state path (and a guess at others) is an ordinary request with no model.
    let h = Harness::demo(&learning(None));
    let _ = decisions(&h.envoy, "sentiment", 8);
    for path in [
        STATE_PATH,
        "/inference-router/state?format=json",
        "/state",
        "/inference-router/v1/inference-router/state/sentiment",
    ] {
        for auth in [None, Some(format!("Bearer {STATE_TOKEN}"))] {
            let mut req = Request::get(path);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let r = h.send(&req);
            assert_error_reply(&r, 404, "unknown_model");
            assert!(!leaks(&r), "{path}: {}", r.text());
        }
    }

    // Enabled with a token: every spelling of the path that Envoy normalises to it needs the
    // token; spellings it does not normalise are not the endpoint at all.
    let h = Harness::demo(&learning(Some(state_section())));
    let _ = decisions(&h.envoy, "sentiment", 8);
    let bearer =
        |req: Request, token: &str| req.header("authorization", &format!("Bearer {token}"));
    let mut outcomes = Vec::new();
    for path in [
        STATE_PATH,
        "/inference-router//state",
        "//inference-router/state",
        "/inference-router/./state",
        "/x/../inference-router/state",
        "/inference-router/state?x=1",
        "/inference-router/state/",
        "/inference-router%2Fstate",
        "/Inference-Router/State",
    ] {
        let r = h.send(&Request::get(path));
        assert!(
            !leaks(&r),
            "{path} without a token: {} {}",
            r.status,
            r.text()
        );
        assert!(
            matches!(r.status, 401 | 404),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        outcomes.push(format!("{path} → {}", r.status));
    }
    for (what, req) in [
        (
            "wrong token",
            bearer(Request::get(STATE_PATH), "ops-secreT"),
        ),
        (
            "one character short",
            bearer(
                Request::get(STATE_PATH),
                &STATE_TOKEN[..STATE_TOKEN.len() - 1],
            ),
        ),
        (
            "no scheme",
            Request::get(STATE_PATH).header("authorization", STATE_TOKEN),
        ),
        (
            "token in the query",
            Request::get(&format!("{STATE_PATH}?token={STATE_TOKEN}")),
        ),
        (
            "token in another header",
            Request::get(STATE_PATH).header("x-api-key", STATE_TOKEN),
        ),
        (
            "wrong token first, right one second",
            bearer(bearer(Request::get(STATE_PATH), "wrong"), STATE_TOKEN),
        ),
    ] {
        let r = h.send(&req);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert!(!leaks(&r), "{what}: {}", r.text());
        outcomes.push(format!("{what} → {}", r.status));
    }
    // The scheme in any case, and extra spaces, are the same credential (RFC 9110).
    for auth in [
        format!("bearer {STATE_TOKEN}"),
        format!("BEARER  {STATE_TOKEN}"),
    ] {
        let r = h.send(&Request::get(STATE_PATH).header("authorization", &auth));
        assert_eq!(r.status, 200, "{auth}: {}", r.text());
    }
    // Another method with the right token: refused, nothing leaked.
    for method in ["POST", "PUT", "DELETE"] {
        let r = h.send(&bearer(Request::new(method, STATE_PATH), STATE_TOKEN));
        assert_eq!(r.status, 405, "{method}: {}", r.text());
        assert!(!leaks(&r), "{method}: {}", r.text());
    }
    // The right token, on normalised spellings too.
    for path in [
        STATE_PATH,
        "/inference-router//state",
        "/x/../inference-router/state",
    ] {
        let r = h.send(&bearer(Request::get(path), STATE_TOKEN));
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.json()["models"]["sentiment"]["observations"], 8);
    }
    eprintln!("state endpoint without a valid token: {outcomes:#?}");
}

/// A marker no log line could contain by chance.
fn marker() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("Zq7SECRET{}x{nanos}", std::process::id())
}

#[test]
fn no_request_data_reaches_the_envoy_log_at_info() {
    let secret = marker();
    let s = secret.as_str();
    let h = Harness::demo(&json!({
        "models": [
            bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }),
                         Some(json!({ "status": true, "header": "x-reward" }))),
            { "name": "chat",
              "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 } ] },
        ],
        "rules": [
            { "name": "tenant", "when": { "headers": { "x-tenant": { "exact": "acme" } },
                                         "body": { "/temperature": { "gt": 1.0 } } },
              "then": { "model": "chat" } }
        ],
        "feedback": feedback_section(3600),
        "state_endpoint": state_section(),
    }));
    let vm_before = vm_stats(&h.envoy);
    let (valid, _) = decision_of(&h.send(&Request::get("/v2/models/sentiment/ready")));
    let json_post = |path: &str, text: &str| Request::post(path).json_text(text);
    let mut requests: Vec<(&str, Request)> = vec![
        // Paths.
        (
            "model in a v2 path",
            Request::get(&format!("/v2/models/{s}/infer")),
        ),
        (
            "model in a TF-Serving path",
            Request::get(&format!("/v1/models/{s}:predict")),
        ),
        (
            "path, model in a header",
            Request::get(&format!("/{s}")).header("x-model", "chat"),
        ),
        (
            "query",
            Request::get(&format!("/v2/models/chat/ready?q={s}")),
        ),
        // Headers.
        ("x-model", Request::get("/anything").header("x-model", s)),
        (
            "headers a rule and stickiness could read",
            Request::get("/v2/models/chat/ready")
                .header("x-tenant", s)
                .header("x-user-id", s)
                .header("cookie", &format!("session={s}"))
                .header("authorization", &format!("Bearer {s}")),
        ),
        (
            "forged route headers on a local reply",
            Request::get("/v2/models/nosuch/ready")
                .header("x-inference-cluster", s)
                .header("x-inference-target", s),
        ),
        // Bodies.
        (
            "model in the body",
            json_post("/v1/chat/completions", &format!(r#"{{"model":"{s}"}}"#)),
        ),
        (
            "prompt",
            json_post(
                "/v1/chat/completions",
                &format!(r#"{{"model":"chat","messages":[{{"role":"user","content":"{s}"}}]}}"#),
            ),
        ),
        (
            "rule field of the wrong type",
            json_post(
                "/v1/chat/completions",
                &format!(r#"{{"model":"chat","temperature":"{s}"}}"#),
            )
            .header("x-tenant", "acme"),
        ),
        (
            "malformed JSON",
            json_post(
                "/v1/chat/completions",
                &format!(r#"{{"model":"chat","x":"{s}"#),
            ),
        ),
        (
            "duplicate model",
            json_post(
                "/v1/chat/completions",
                &format!(r#"{{"model":"{s}","model":"{s}"}}"#),
            ),
        ),
        (
            "invalid UTF-8",
            Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .body(
                    [
                        format!(r#"{{"model":"chat","x":"{s}"#).as_bytes(),
                        b"\xff\"}",
                    ]
                    .concat(),
                ),
        ),
        (
            "malformed MessagePack",
            Request::post("/v1/chat/completions")
                .header("content-type", "application/msgpack")
                .body({
                    let mut b = vec![0x82, 0xa5];
                    b.extend_from_slice(b"model");
                    b.push(0xd9);
                    b.push(s.len() as u8);
                    b.extend_from_slice(s.as_bytes());
                    b
                }),
        ),
        (
            "body over max_bytes",
            Request::post("/v1/chat/completions")
                .header("content-type", "application/json")
                .header("x-model", "chat")
                .body(format!(r#"{{"x":"{s}{}"}}"#, " ".repeat(1 << 20))),
        ),
        // Feedback, refused in every way, and accepted.
        ("feedback: unknown decision", feedback_body(s, json!(1.0))),
        (
            "feedback: reward not a number",
            feedback_body(&valid, json!(s)),
        ),
        (
            "feedback: malformed",
            json_post(
                FEEDBACK_PATH,
                &format!(r#"{{"decision":"{valid}","reward":1,"x":"{s}"#),
            ),
        ),
        (
            "feedback: headers only",
            Request::post(FEEDBACK_PATH)
                .header("x-inference-decision", s)
                .header("x-inference-reward", s),
        ),
        (
            "feedback: Seldon message",
            Request::post(FEEDBACK_PATH).json(&json!({
                "request": { "data": { "ndarray": [[s]] } },
                "response": { "meta": { "tags": { "x-inference-decision": s } } },
                "reward": 1 })),
        ),
        (
            "feedback: accepted, with an extra field",
            Request::post(FEEDBACK_PATH)
                .json(&json!({ "decision": valid, "reward": 0.5, "comment": s })),
        ),
        (
            "feedback: replayed",
            Request::post(FEEDBACK_PATH)
                .json(&json!({ "decision": valid, "reward": 0.5, "comment": s })),
        ),
        (
            "state endpoint: token",
            Request::get(STATE_PATH).header("authorization", &format!("Bearer {s}")),
        ),
        (
            "state endpoint: method",
            Request::new("PUT", STATE_PATH).body(s.as_bytes().to_vec()),
        ),
    ];
    let mut seen = Vec::new();
    for (what, req) in requests.drain(..) {
        let r = h.send(&req);
        seen.push(format!("{what}: {}", r.status));
    }
    // An upstream reward header with the marker: malformed, logged as such (response data).
    h.upstreams.set_behaviour(
        "sentiment-v1",
        Behaviour::default().with_header("x-reward", s),
    );
    h.upstreams.set_behaviour(
        "sentiment-v2",
        Behaviour::default().with_header("x-reward", s),
    );
    let r = h.send(&Request::get("/v2/models/sentiment/ready"));
    assert_eq!(r.status, 200);
    wait_counter_at_least(&h.envoy, "inference_router.rewards.failed", 1);
    eprintln!("requests carrying the marker: {seen:#?}");

    // The log file is flushed every 100 ms.
    std::thread::sleep(Duration::from_millis(500));
    let log = h.envoy.app_log();
    assert!(log.contains("inference-router"), "the filter logs at all");
    let leaked: Vec<&str> = log.lines().filter(|l| l.contains(s)).collect();
    assert!(
        leaked.is_empty(),
        "request data in Envoy's log at info level:\n{}",
        leaked.join("\n")
    );
    // The access log (stdout) prints the path by design: excluded, but nothing else on stdout
    // may carry the marker.
    let stdout = h.envoy.stdout_log();
    let access = stdout.lines().filter(|l| l.contains(s)).count();
    let other: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(s) && !l.starts_with("[access] "))
        .collect();
    assert!(
        other.is_empty(),
        "marker on stdout outside the access log: {other:#?}"
    );
    eprintln!("access log lines with the marker (by design): {access}");
    // Nor in a metric name.
    let names: Vec<String> = h
        .envoy
        .stats()
        .into_keys()
        .filter(|k| k.contains(s))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    assert_vm_never_crashed(&h.envoy, &vm_before);
}
