//! An external router (`models[].router`, Seldon's contract): the stream pauses and POSTs the
//! client's body to the router; child N routes there (reason `router`), −1 fans out to every
//! target, −2 answers with the request body. A router that is down, slow, out of range or
//! malformed leaves the strategy's choice (counted in `router.failures`). Rewards for its
//! decisions are forwarded to its `feedback_path` from the root context.

use crate::driver::*;
use inference_router_core::host::{Action, Stream as Half};
use serde_json::{json, Value};

fn router_config() -> Value {
    json!({
        "models": [
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 0 },
                           { "name": "v3", "cluster": "sentiment-v2", "weight": 0 } ],
              "router": { "cluster": "router", "path": "/route", "timeout_ms": 1500,
                          "feedback_path": "/send-feedback" } }
        ],
        "feedback": { "path": "/feedback", "signing_key": "router-tests-signing-key-0123456789" }
    })
}

/// A Seldon prediction for iris whose first feature names the child.
fn predict(first: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"data": {"names": ["a", "b"], "ndarray": [[first, 4.5]]}})).unwrap()
}

fn predict_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        (":method", "POST"),
        (":path", "/api/v1.0/predictions"),
        (":authority", "models"),
        ("x-model", "iris"),
        ("content-type", "application/json"),
    ]
}

fn child(n: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"data": {"names": ["t:0"], "ndarray": [[n]]}, "meta": {}})).unwrap()
}

/// Sends a prediction; asserts the stream paused on the router callout and returns it.
fn ask(vm: &mut Vm, first: i64) -> (Sent, u32) {
    let body = predict(first);
    let sent = vm.send(&predict_headers(), &body);
    assert_eq!(sent.action, Action::Pause);
    assert_eq!(
        vm.routed_cluster(),
        None,
        "routed before the router answered"
    );
    let call = vm.one_dispatched();
    assert_eq!(call.cluster, "router");
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            (":method", "POST"),
            (":path", "/route"),
            (":authority", "router"),
            ("content-type", "application/json")
        ]
    );
    assert_eq!(call.body, body, "the router gets the client's body");
    assert_eq!(call.timeout_ms, 1500);
    (sent, call.token)
}

#[test]
fn the_routers_child_picks_the_target_and_its_reward_is_forwarded() {
    let mut vm = Vm::start(&router_config());
    for (n, cluster, target) in [
        (1, "iris-v2", "v2"),
        (0, "iris-v1", "v1"),
        (2, "sentiment-v2", "v3"),
    ] {
        let (mut sent, token) = ask(&mut vm, n);
        vm.answer(&mut sent, token, &status("200"), &child(n));
        assert_eq!(vm.routed_cluster().as_deref(), Some(cluster));
        assert_eq!(
            vm.host
                .request_header_value("x-inference-target")
                .as_deref(),
            Some(target)
        );
        assert_eq!(vm.host.resumed(), [Half::Request]);
        assert!(vm.host.reply().is_none());
        vm.respond(&mut sent, OK, b"{}");
        assert_eq!(
            vm.response_header("x-inference-reason").as_deref(),
            Some("router")
        );
        assert_eq!(
            vm.response_header("x-inference-target").as_deref(),
            Some(target)
        );
    }
    assert_eq!(vm.counter("decisions.router"), 3);
    assert_eq!(vm.counter("decisions.weighted"), 0);
    assert_eq!(vm.counter("router.failures"), 0);
    assert_eq!(
        [
            vm.counter("requests.iris.v1"),
            vm.counter("requests.iris.v2"),
            vm.counter("requests.iris.v3")
        ],
        [1, 1, 1]
    );

    // A reward for the router's last decision (v3 = child 2): forwarded, not learned here.
    let decision = vm.response_header("x-inference-decision").unwrap();
    assert!(decision.starts_with("iris~v3~"), "{decision}");
    let r = vm.feedback(&json!({"decision": decision, "reward": 0.75}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"forwarded": {"model": "iris", "target": "v3", "reward": 0.75}})
    );
    assert!(vm.dispatched().is_empty(), "forwarded from the stream");
    vm.tick(1);
    let call = vm.one_dispatched();
    assert_eq!(call.cluster, "router");
    assert_eq!(call.header(":path"), Some("/send-feedback"));
    assert_eq!(call.header(":method"), Some("POST"));
    // Feedback is not on a request's path: at least a second.
    assert_eq!(call.timeout_ms, 1500);
    assert_eq!(
        serde_json::from_slice::<Value>(&call.body).unwrap(),
        json!({"request": {"data": {"ndarray": []}}, "response": {"meta": {"routing": {"iris": 2}}}, "reward": 0.75})
    );
    vm.answer_root(call.token, &status("200"), b"{}");
    assert_eq!(vm.counter("router.feedback_forwarded"), 1);
    // Each decision's reward is forwarded once.
    let again = vm.feedback(&json!({"decision": decision, "reward": 0.75}));
    assert_refused(&again, 409, "replayed");
    vm.tick(1);
    assert!(vm.dispatched().is_empty());

    // Seldon's Feedback message, with the request it was about: forwarded with it; the router
    // answers an error, counted.
    let (mut sent, token) = ask(&mut vm, 0);
    vm.answer(&mut sent, token, &status("200"), &child(0));
    vm.respond(&mut sent, OK, b"{}");
    let decision = vm.response_header("x-inference-decision").unwrap();
    let r = vm.feedback(&json!({
        "request": {"data": {"ndarray": [[0, 8.5]]}},
        "response": {"meta": {"routing": {"iris": 0}, "tags": {"x-inference-decision": decision}}},
        "reward": 1
    }));
    assert_eq!(r.status, 200, "{}", r.text());
    vm.tick(1);
    let call = vm.one_dispatched();
    assert_eq!(
        serde_json::from_slice::<Value>(&call.body).unwrap(),
        json!({"request": {"data": {"ndarray": [[0, 8.5]]}}, "response": {"meta": {"routing": {"iris": 0}}}, "reward": 1.0})
    );
    vm.answer_root(call.token, &status("500"), b"");
    assert_eq!(vm.counter("router.feedback_forwarded"), 1);
    assert_eq!(vm.counter("router.feedback_failures"), 1);
}

#[test]
fn all_children_fan_out_and_no_child_answers_with_the_request_body() {
    let mut vm = Vm::start(&router_config());
    // −1: every target, by callout from the stream, one reply.
    let (mut sent, token) = ask(&mut vm, -1);
    vm.answer(&mut sent, token, &status("200"), &child(-1));
    let calls = vm.dispatched();
    assert_eq!(
        calls.len(),
        4,
        "the router call and one per target: {calls:?}"
    );
    let fan: Vec<&str> = calls[1..].iter().map(|c| c.cluster.as_str()).collect();
    assert_eq!(fan, ["iris-v1", "iris-v2", "sentiment-v2"]);
    for c in &calls[1..] {
        assert_eq!(c.body, predict(-1));
        assert_eq!(c.header(":path"), Some("/api/v1.0/predictions"));
        assert_eq!(c.header(":authority"), Some("models"));
        assert_eq!(c.timeout_ms, 5000, "the default fan-out timeout");
    }
    for (i, c) in calls[1..].iter().enumerate() {
        vm.answer(
            &mut sent,
            c.token,
            &status("200"),
            format!(r#"{{"child":{i}}}"#).as_bytes(),
        );
    }
    let reply = vm.reply();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-inference-reason"), Some("fan-out"));
    assert_eq!(reply.header("x-inference-model"), Some("iris"));
    assert_eq!(reply.header("x-inference-target"), None);
    let decision = reply.header("x-inference-decision").unwrap().to_string();
    assert!(decision.starts_with("iris~-1~"), "{decision}");
    assert_eq!(
        reply.json(),
        json!({"model": "iris", "partial": false, "responses": [
            {"target": "v1", "status": 200, "body": {"child": 0}},
            {"target": "v2", "status": 200, "body": {"child": 1}},
            {"target": "v3", "status": 200, "body": {"child": 2}}]})
    );
    assert!(
        vm.host.resumed().is_empty(),
        "a local reply, not a resumed request"
    );
    assert_eq!(vm.counter("decisions.fan_out"), 1);
    // The fan-out the router chose is child −1 for its reward (header-only feedback).
    let r = vm.feedback_headers(&decision, "0.25");
    assert_eq!(
        r.json(),
        json!({"forwarded": {"model": "iris", "target": "-1", "reward": 0.25}})
    );
    vm.tick(1);
    let fwd: Value = serde_json::from_slice(&vm.one_dispatched().body).unwrap();
    assert_eq!(fwd["response"]["meta"]["routing"]["iris"], -1);

    // −2: the request body is the answer; no model server is asked.
    let (mut sent, token) = ask(&mut vm, -2);
    vm.answer(&mut sent, token, &status("200"), &child(-2));
    let reply = vm.reply();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, predict(-2));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-inference-model"), Some("iris"));
    assert_eq!(reply.header("x-inference-reason"), Some("router"));
    assert!(reply
        .header("x-inference-decision")
        .unwrap()
        .starts_with("iris~-2~"));
    assert_eq!(vm.dispatched().len(), 1, "only the router was called");
    assert_eq!(vm.routed_cluster(), None);
    assert_eq!(vm.counter("local_replies.echo"), 1);
    assert_eq!(vm.counter("decisions.router"), 1);
}

#[test]
fn an_unusable_router_leaves_the_strategys_choice_and_pinned_or_get_requests_skip_it() {
    let mut vm = Vm::start(&router_config());
    let answers: [Reply; 6] = [
        // Out of range.
        (&[(":status", "200")], br#"{"data":{"ndarray":[[7]]}}"#),
        // More than one value.
        (&[(":status", "200")], br#"{"data":{"ndarray":[[1, 2]]}}"#),
        (&[(":status", "200")], b"not json"),
        (&[(":status", "500")], br#"{"status":{"code":500}}"#),
        // Slower than timeout_ms: Envoy's own 504.
        (&[(":status", "504")], b"upstream request timeout"),
        // Down.
        (&[(":status", "503")], b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
    ];
    for (i, (headers, body)) in answers.iter().enumerate() {
        let (mut sent, token) = ask(&mut vm, 1);
        vm.answer(&mut sent, token, headers, body);
        assert_eq!(
            vm.routed_cluster().as_deref(),
            Some("iris-v1"),
            "answer {i}"
        );
        assert_eq!(vm.host.resumed(), [Half::Request], "answer {i}");
        vm.respond(&mut sent, OK, b"{}");
        assert_eq!(
            vm.response_header("x-inference-reason").as_deref(),
            Some("weighted")
        );
        assert_eq!(vm.counter("router.failures"), i as u64 + 1);
    }
    // The router callout cannot even start: routed at once.
    vm.host.fail("dispatch", 1);
    let sent = vm.send(&predict_headers(), &predict(1));
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert_eq!(vm.counter("router.failures"), 7);
    vm.host.heal("dispatch");

    // A version in the path pins the target; a GET is not an inference call: the router is
    // not asked.
    let body = predict(1);
    let sent = vm.send(&post_json("/v2/models/iris/versions/v2/infer"), &body);
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v2"));
    assert!(vm.dispatched().is_empty());
    let sent = vm.send(&get("/v2/models/iris/ready"), b"");
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert!(vm.dispatched().is_empty());
    assert_eq!(vm.counter("router.failures"), 7);
    assert_eq!(vm.counter("decisions.router"), 0);
}

#[test]
fn a_router_with_residency_is_refused_at_start() {
    let mut cfg = router_config();
    cfg["residency"] = json!({"header": "x-data-region"});
    let critical = Vm::try_start(&cfg).err().expect("refused");
    assert_eq!(critical.len(), 1, "{critical:?}");
    assert!(
        critical[0].starts_with("inference-router: invalid configuration: models[0].router: cannot be combined with residency"),
        "{critical:?}"
    );
}

#[test]
fn a_body_the_filter_does_not_hold_is_not_sent_to_the_router() {
    let mut cfg = router_config();
    cfg["body"] = json!({ "max_bytes": 16 });
    let mut vm = Vm::start(&cfg);
    let body = predict(1);
    let len = body.len().to_string();
    let mut sent = vm.send(&with(predict_headers(), &[("content-length", &len)]), &body);
    assert_eq!(sent.action, Action::Continue);
    assert!(vm.dispatched().is_empty());
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert_eq!(vm.counter("router.failures"), 1);
    vm.respond(&mut sent, OK, b"{}");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("weighted")
    );
    assert_eq!(
        vm.response_header("x-inference-body").as_deref(),
        Some("too-large")
    );
}
