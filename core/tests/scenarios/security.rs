//! What a hostile client or upstream cannot do: pick its own cluster or subset with the router's
//! headers (any case, repeated), forge the router's response metadata, read the learned state
//! unless the state endpoint is enabled (then only with its token), or get request data into
//! the filter's log lines (captured here at every level, debug included).

use std::cell::RefCell;

use crate::driver::*;
use inference_router_core::host::Action;
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

fn forged<'a>(headers: Vec<(&'a str, &'a str)>) -> Vec<(&'a str, &'a str)> {
    with(headers, &FORGED)
}

/// Every spelling of a header, as the upstream would see it: the host's lookup ignores case
/// and finds the first, and setting a header replaces every spelling, so the value seen under
/// each spelling is the router's only if no forged one is left.
#[track_caller]
fn upstream_sees_only_the_router(vm: &Vm, cluster: &str, target: &str) {
    for (name, _) in FORGED {
        let want = if name.to_ascii_lowercase().ends_with("cluster") {
            cluster
        } else {
            target
        };
        assert_eq!(
            vm.host.request_header_value(name).as_deref(),
            Some(want),
            "{name}"
        );
    }
}

#[test]
fn forged_route_headers_are_replaced_or_removed_and_upstream_metadata_is_the_routers() {
    let mut vm = Vm::start(&json!({
        "models": deterministic_models(),
        "body": { "max_bytes": 1024 },
        "feedback": feedback_section(3600),
    }));
    vm.send(&forged(get("/v2/models/iris/ready")), b"");
    upstream_sees_only_the_router(&vm, "iris-v1", "v1");
    vm.send(&forged(with(get("/anything"), &[("x-model", "chat")])), b"");
    upstream_sees_only_the_router(&vm, "llm-small", "small");
    vm.send(
        &forged(post_json("/v1/chat/completions")),
        &chat_body("chat"),
    );
    upstream_sees_only_the_router(&vm, "llm-small", "small");
    let mut big = br#"{"model":"chat","pad":""#.to_vec();
    big.resize(4096, b' ');
    big.extend_from_slice(b"\"}");
    let len = big.len().to_string();
    let mut sent = vm.send(
        &forged(with(
            post_json("/v2/models/sentiment/infer"),
            &[("content-length", &len)],
        )),
        &big,
    );
    upstream_sees_only_the_router(&vm, "sentiment-v1", "v1");
    vm.respond(&mut sent, OK, b"");
    assert_eq!(
        vm.response_header("x-inference-body").as_deref(),
        Some("too-large")
    );

    // Answered by the filter itself: the client's values are dropped, not passed on.
    for (headers, body, status, code) in [
        (
            forged(get("/v2/models/nosuch/ready")),
            &b""[..],
            404,
            "unknown_model",
        ),
        (
            forged(post_json("/v1/chat/completions")),
            br#"{"model": "chat""#,
            400,
            "invalid_body",
        ),
        (
            forged(get("/v2/models/iris/versions/v9/ready")),
            b"",
            404,
            "unknown_version",
        ),
    ] {
        let sent = vm.send(&headers, body);
        assert_eq!(sent.action, Action::Pause);
        assert_error(&vm.reply(), status, code);
        for (name, _) in FORGED {
            assert_eq!(
                vm.host.request_header_value(name),
                None,
                "{name} left on a local reply"
            );
        }
    }
    assert_eq!(
        vm.counter("requests.chat.large")
            + vm.counter("requests.iris.v2")
            + vm.counter("requests.sentiment.v2"),
        0
    );

    // An upstream that sends the router's response headers, in several spellings.
    let mut sent = vm.send(&get("/v2/models/iris/ready"), b"");
    vm.respond(
        &mut sent,
        &[
            (":status", "200"),
            ("x-inference-model", "forged"),
            ("X-Inference-Model", "forged-again"),
            ("x-inference-target", "forged"),
            ("X-INFERENCE-REASON", "forged"),
            ("x-inference-decision", "forged~decision"),
            ("X-Inference-Body", "invalid"),
            ("x-inference-detector", "email"),
        ],
        b"",
    );
    for (name, want) in [
        ("x-inference-model", Some("iris")),
        ("X-Inference-Model", Some("iris")),
        ("x-inference-target", Some("v1")),
        ("x-inference-reason", Some("weighted")),
        ("x-inference-body", None),
        ("x-inference-detector", None),
    ] {
        assert_eq!(vm.response_header(name).as_deref(), want, "{name}");
    }
    let decision = vm.response_header("X-INFERENCE-DECISION").unwrap();
    assert!(decision.starts_with("iris~v1~"), "{decision}");
    // It is the router's signed id (refused only because iris does not learn); the forged one
    // is not.
    assert_refused(
        &vm.feedback(&json!({ "decision": decision, "reward": 1 })),
        422,
        "not_learning",
    );
    assert_refused(
        &vm.feedback(&json!({ "decision": "forged~decision", "reward": 1 })),
        403,
        "forged",
    );
}

fn learning(state: Option<Value>) -> Value {
    let mut cfg = json!({
        "models": [ bandit_model("sentiment", sentiment_targets(), json!({ "type": "thompson" }), Some(json!({ "status": true }))) ],
        "feedback": feedback_section(3600),
    });
    if let Some(s) = state {
        cfg["state_endpoint"] = s;
    }
    cfg
}

fn leaks(r: &LocalReply) -> bool {
    let t = r.text();
    t.contains("observations") || t.contains("alpha")
}

#[test]
fn the_state_is_closed_unless_enabled_and_then_only_with_the_token() {
    let bearer = format!("Bearer {STATE_TOKEN}");
    // Not enabled: the state path is an ordinary request naming no model.
    let mut vm = Vm::start(&learning(None));
    for _ in 0..8 {
        vm.decision("sentiment");
    }
    for path in [
        STATE_PATH,
        "/inference-router/state?format=json",
        "/state",
        "/inference-router/v1/inference-router/state/sentiment",
    ] {
        for auth in [None, Some(bearer.as_str())] {
            let mut headers = get(path);
            if let Some(a) = auth {
                headers.push(("authorization", a));
            }
            vm.send(&headers, b"");
            let r = vm.reply();
            assert_error(&r, 404, "unknown_model");
            assert!(!leaks(&r), "{path}: {}", r.text());
        }
    }

    // Enabled with a token. Spellings Envoy does not normalise to the path are not the
    // endpoint at all; the path itself needs the exact bearer token.
    let mut vm = Vm::start(&learning(Some(state_section())));
    for _ in 0..8 {
        vm.decision("sentiment");
    }
    for path in [
        "/inference-router/state/",
        "/Inference-Router/State",
        "/inference-router%2Fstate",
    ] {
        vm.send(&with(get(path), &[("authorization", &bearer)]), b"");
        let r = vm.reply();
        assert_error(&r, 404, "unknown_model");
        assert!(!leaks(&r), "{path}");
    }
    let token_in_query = format!("{STATE_PATH}?token={STATE_TOKEN}");
    for headers in [
        with(get(STATE_PATH), &[("authorization", "Bearer ops-secreT")]),
        with(get(STATE_PATH), &[("x-api-key", STATE_TOKEN)]),
        get(&token_in_query),
    ] {
        vm.send(&headers, b"");
        let r = vm.reply();
        assert_refused(&r, 401, "unauthorized");
        assert!(
            !leaks(&r) && !r.text().contains(STATE_TOKEN),
            "{}",
            r.text()
        );
    }
    for method in ["POST", "PUT", "DELETE"] {
        vm.send(
            &[
                (":method", method),
                (":path", STATE_PATH),
                ("authorization", &bearer),
            ],
            b"{}",
        );
        let r = vm.reply();
        assert_refused(&r, 405, "method_not_allowed");
        assert!(!leaks(&r));
    }
    assert_eq!(vm.model_state("sentiment")["observations"], 8);
}

// --- Log capture: the filter's `log` lines, per test thread. ---------------------------------

thread_local! {
    static CAPTURED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        CAPTURED.with(|c| c.borrow().is_some())
    }

    fn log(&self, record: &log::Record<'_>) {
        CAPTURED.with(|c| {
            if let Some(lines) = c.borrow_mut().as_mut() {
                lines.push(format!("{} {}", record.level(), record.args()));
            }
        });
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Runs `f` with every log line of this thread captured; returns them.
fn capture_logs(f: impl FnOnce()) -> Vec<String> {
    // Another test may have installed it already: the same logger either way.
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Trace);
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    f();
    CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default()
}

#[test]
fn no_request_data_reaches_a_log_line() {
    let s = "Zq7SECRETmarker42";
    let mut cfg = learning(Some(state_section()));
    cfg["models"][0]["reward"] = json!({ "status": true, "header": "x-reward" });
    cfg["models"].as_array_mut().unwrap().push(json!({ "name": "chat", "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 } ] }));
    cfg["rules"] = json!([{ "name": "tenant", "when": { "headers": { "x-tenant": { "exact": "acme" } },
                                                         "body": { "/temperature": { "gt": 1.0 } } },
                            "then": { "model": "chat" } }]);
    cfg["body"] = json!({ "max_bytes": 4096 });
    let mut vm = Vm::start(&cfg);
    let valid = vm.decision("sentiment").0;
    let lines = capture_logs(|| {
        let paths = [
            format!("/v2/models/{s}/infer"),
            format!("/v1/models/{s}:predict"),
            format!("/{s}"),
            format!("/v2/models/chat/ready?q={s}"),
        ];
        for p in &paths {
            vm.send(&with(get(p), &[("x-model", "chat")]), b"");
            vm.send(&get(p), b"");
        }
        vm.send(&with(get("/anything"), &[("x-model", s)]), b"");
        let bearer = format!("Bearer {s}");
        let cookie = format!("session={s}");
        vm.send(
            &with(
                get("/v2/models/chat/ready"),
                &[
                    ("x-tenant", s),
                    ("x-user-id", s),
                    ("cookie", &cookie),
                    ("authorization", &bearer),
                ],
            ),
            b"",
        );
        vm.send(
            &with(
                get("/v2/models/nosuch/ready"),
                &[("x-inference-cluster", s), ("x-inference-target", s)],
            ),
            b"",
        );
        let chat = post_json("/v1/chat/completions");
        for body in [
            format!(r#"{{"model":"{s}"}}"#),
            format!(r#"{{"model":"chat","messages":[{{"role":"user","content":"{s}"}}]}}"#),
            format!(r#"{{"model":"chat","x":"{s}"#),
            format!(r#"{{"model":"{s}","model":"{s}"}}"#),
            format!(r#"{{"x":"{s}{}"}}"#, " ".repeat(5000)),
        ] {
            vm.send(&chat, body.as_bytes());
        }
        vm.send(
            &with(chat.clone(), &[("x-tenant", "acme")]),
            format!(r#"{{"model":"chat","temperature":"{s}"}}"#).as_bytes(),
        );
        vm.send(
            &chat,
            &[
                format!(r#"{{"model":"chat","x":"{s}"#).as_bytes(),
                b"\xff\"}",
            ]
            .concat(),
        );
        let mut mp = vec![0x82, 0xa5];
        mp.extend_from_slice(b"model");
        mp.push(0xd9);
        mp.push(s.len() as u8);
        mp.extend_from_slice(s.as_bytes());
        vm.send(
            &[
                (":method", "POST"),
                (":path", "/v1/chat/completions"),
                ("content-type", "application/msgpack"),
            ],
            &mp,
        );
        // Feedback refused in every way, and accepted.
        vm.feedback(&json!({ "decision": s, "reward": 1.0 }));
        vm.feedback(&json!({ "decision": valid, "reward": s }));
        vm.send(
            &post_json(FEEDBACK_PATH),
            format!(r#"{{"decision":"{valid}","reward":1,"x":"{s}"#).as_bytes(),
        );
        vm.feedback_headers(s, s);
        vm.feedback(&json!({ "request": { "data": { "ndarray": [[s]] } },
                             "response": { "meta": { "tags": { "x-inference-decision": s } } }, "reward": 1 }));
        assert_eq!(
            vm.feedback(&json!({ "decision": valid, "reward": 0.5, "comment": s }))
                .status,
            200
        );
        assert_eq!(
            vm.feedback(&json!({ "decision": valid, "reward": 0.5, "comment": s }))
                .status,
            409
        );
        vm.send(
            &[
                (":method", "GET"),
                (":path", STATE_PATH),
                ("authorization", &bearer),
            ],
            b"",
        );
        vm.send(&[(":method", "PUT"), (":path", STATE_PATH)], s.as_bytes());
        // An upstream's reward header carrying the marker: malformed, logged as such.
        let mut sent = vm.send(&get("/v2/models/sentiment/ready"), b"");
        vm.respond(&mut sent, &[(":status", "200"), ("x-reward", s)], b"");
    });
    assert_eq!(vm.counter("rewards.failed"), 1);
    assert!(
        lines.iter().any(|l| l.contains("inference-router")),
        "nothing captured: {lines:?}"
    );
    let leaked: Vec<&String> = lines.iter().filter(|l| l.contains(s)).collect();
    assert!(leaked.is_empty(), "request data in log lines:\n{leaked:#?}");
    assert!(vm.host.critical_logs().iter().all(|l| !l.contains(s)));
}
