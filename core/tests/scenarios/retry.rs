//! Retry on a fallback target (`retry` with `fallback`): a 5xx / 429 (or Envoy's own 503) from
//! the chosen target is held back — response headers and body paused — while the same request
//! goes to the first other fallback target by callout; the client sees only the retry's answer,
//! with `x-inference-attempts: <failed>,<retry>`. A retry that fails shows its failure; one that
//! gets no answer at all lets the original failure through. Streamed requests are not retried.

use crate::driver::*;
use inference_router_core::host::{Action, Stream as Half};
use serde_json::{json, Value};

fn retry_config() -> Value {
    json!({
        "models": [
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 0 } ],
              "fallback": ["v2"], "retry": true, "cooldown_seconds": 0 }
        ]
    })
}

fn infer(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "inputs": [ { "name": "x", "shape": [1, 4], "datatype": "FP32", "data": [i as f64, 1.5, 2.5, 3.5] } ]
    }))
    .unwrap()
}

fn infer_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        (":method", "POST"),
        (":path", "/v2/models/iris/infer"),
        (":authority", "models"),
        ("content-type", "application/json"),
        ("authorization", "Bearer user-token"),
        // The trace context goes with the retry, so it shows in the client's trace.
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("x-request-id", "6f1c9a3e-req"),
        ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
        ("content-length", "70"),
        ("x-client-note", "not resent"),
    ]
}

/// Sends, gets `failure` from iris-v1: the response is held and the retry dispatched.
fn failed(
    vm: &mut Vm,
    headers: &[(&str, &str)],
    body: &[u8],
    failure: &[(&str, &str)],
    failure_body: &[u8],
) -> (Sent, u32) {
    let mut sent = vm.send(headers, body);
    assert_eq!(sent.action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert_eq!(
        vm.response_headers(&mut sent, failure, failure_body),
        Action::Pause
    );
    let call = vm.one_dispatched();
    assert_eq!(call.cluster, "iris-v2");
    // The headers that matter upstream, not content-length.
    let mut want = headers.to_vec();
    want.retain(|(n, _)| {
        [
            ":method",
            ":path",
            ":authority",
            "content-type",
            "accept",
            "authorization",
            "traceparent",
            "x-request-id",
            "x-b3-traceid",
        ]
        .contains(n)
    });
    let got: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(call.body, body);
    assert_eq!(call.timeout_ms, 15_000);
    if !failure_body.is_empty() {
        assert_eq!(
            vm.response_body(&mut sent, failure_body.len()),
            Action::Pause,
            "the failed body is held back"
        );
    }
    (sent, call.token)
}

#[test]
fn a_failed_answer_is_replaced_by_the_fallback_targets() {
    let mut vm = Vm::start(&retry_config());
    for (i, failure) in ["503", "500", "429"].iter().enumerate() {
        let body = infer(i);
        let (mut sent, token) = failed(
            &mut vm,
            &infer_headers(),
            &body,
            &status(failure),
            br#"{"error":"injected failure"}"#,
        );
        vm.answer(&mut sent, token, &status("200"), br#"{"outputs":[1]}"#);
        let r = vm.reply();
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, br#"{"outputs":[1]}"#.as_slice())
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-inference-attempts"), Some("v1,v2"));
        assert_eq!(r.header("x-inference-model"), Some("iris"));
        assert_eq!(r.header("x-inference-target"), Some("v2"));
        assert_eq!(r.header("x-inference-reason"), Some("fallback"));
        assert!(r.header("x-inference-decision").is_some());
        vm.done(&mut sent);
    }
    // A request without a body is retried as well.
    let (mut sent, token) = failed(
        &mut vm,
        &get("/v2/models/iris/ready"),
        b"",
        &status("503"),
        b"",
    );
    vm.answer(&mut sent, token, &[(":status", "200")], b"");
    assert_eq!(vm.reply().header("x-inference-attempts"), Some("v1,v2"));
    assert_eq!(vm.counter("retry.attempts"), 4);
    assert_eq!(vm.counter("retry.recovered"), 4);
    assert_eq!(vm.counter("retry.failed"), 0);
    assert_eq!(vm.counter("decisions.fallback"), 4);
    assert_eq!(
        (
            vm.counter("requests.iris.v1"),
            vm.counter("requests.iris.v2")
        ),
        (4, 4)
    );
    // cooldown_seconds 0: the primary is chosen again every time.
    assert_eq!(vm.counter("decisions.weighted"), 4);
}

#[test]
fn answers_that_are_not_failures_and_streamed_requests_pass_untouched() {
    let mut vm = Vm::start(&retry_config());
    // A 404 is an answer; an upstream cannot claim attempts the filter did not make.
    let mut sent = vm.send(&infer_headers(), &infer(1));
    let action = vm.response_headers(
        &mut sent,
        &[(":status", "404"), ("x-inference-attempts", "forged")],
        b"{}",
    );
    assert_eq!(action, Action::Continue);
    assert_eq!(vm.response_body(&mut sent, 2), Action::Continue);
    vm.done(&mut sent);
    assert!(vm.dispatched().is_empty());
    assert_eq!(vm.response_header("x-inference-attempts"), None);
    assert_eq!(
        vm.response_header("x-inference-target").as_deref(),
        Some("v1")
    );
    // Streamed: its answer cannot be collected into one reply.
    let mut sent = vm.send(
        &post_json("/v2/models/iris/infer"),
        br#"{"stream":true,"inputs":[]}"#,
    );
    assert_eq!(
        vm.respond(&mut sent, &status("503"), b"{}"),
        Action::Continue
    );
    assert!(vm.dispatched().is_empty());
    assert!(vm.host.reply().is_none());
    assert_eq!(vm.counter("retry.attempts"), 0);
}

#[test]
fn a_failing_retry_shows_its_failure_and_an_unreachable_one_passes_the_original() {
    let mut vm = Vm::start(&retry_config());
    let (mut sent, token) = failed(
        &mut vm,
        &infer_headers(),
        &infer(2),
        &status("503"),
        br#"{"cluster":"iris-v1"}"#,
    );
    vm.answer(
        &mut sent,
        token,
        &status("500"),
        br#"{"cluster":"iris-v2"}"#,
    );
    let r = vm.reply();
    assert_eq!(
        (r.status, serde_json::Value::from(r.json())),
        (500, json!({"cluster": "iris-v2"}))
    );
    assert_eq!(r.header("x-inference-target"), Some("v2"));
    assert_eq!(r.header("x-inference-reason"), Some("fallback"));
    assert_eq!(r.header("x-inference-attempts"), Some("v1,v2"));
    assert_eq!(
        (vm.counter("retry.failed"), vm.counter("retry.recovered")),
        (1, 0)
    );

    // No answer at all (unreachable, timed out, reset): the held failure is let through.
    let noes: [Reply; 3] = [
        (&[(":status", "503")], b"upstream connect error or disconnect/reset before headers. reset reason: connection failure"),
        (&[(":status", "504")], b"upstream request timeout"),
        (&[], b""),
    ];
    for (i, (headers, body)) in noes.iter().enumerate() {
        let (mut sent, token) = failed(
            &mut vm,
            &infer_headers(),
            &infer(3),
            &status("503"),
            br#"{"cluster":"iris-v1"}"#,
        );
        vm.answer(&mut sent, token, headers, body);
        assert!(vm.host.reply().is_none());
        assert_eq!(vm.host.resumed(), [Half::Response]);
        assert_eq!(vm.response_header(":status").as_deref(), Some("503"));
        assert_eq!(
            vm.response_header("x-inference-attempts").as_deref(),
            Some("v1,v2")
        );
        assert_eq!(
            vm.response_header("x-inference-target").as_deref(),
            Some("v1")
        );
        assert_eq!(
            vm.response_header("x-inference-reason").as_deref(),
            Some("weighted")
        );
        vm.done(&mut sent);
        assert_eq!(vm.counter("retry.failed"), 2 + i as u64);
    }

    // The retry cannot even start: the failure passes at once.
    vm.host.fail("dispatch", 1);
    let mut sent = vm.send(&infer_headers(), &infer(4));
    assert_eq!(
        vm.response_headers(&mut sent, &status("503"), b"{}"),
        Action::Continue
    );
    assert_eq!(vm.response_body(&mut sent, 2), Action::Continue);
    assert_eq!(vm.counter("retry.failed"), 5);
    assert_eq!(vm.counter("retry.attempts"), 4);
}

#[test]
fn health_records_the_original_failure() {
    let mut cfg = retry_config();
    cfg["models"][0]["cooldown_seconds"] = json!(30);
    let mut vm = Vm::start(&cfg);
    let (mut sent, token) = failed(&mut vm, &infer_headers(), &infer(5), &status("503"), b"{}");
    vm.answer(&mut sent, token, &status("200"), b"{}");
    assert_eq!(vm.reply().status, 200);
    vm.done(&mut sent);
    // The client saw a success, but v1 failed: it cools down, v2 serves meanwhile.
    let mut sent = vm.send(&infer_headers(), &infer(6));
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v2"));
    vm.respond(&mut sent, OK, b"{}");
    assert_eq!(
        vm.response_header("x-inference-reason").as_deref(),
        Some("fallback")
    );
    vm.host.advance_secs(30);
    vm.send(&infer_headers(), &infer(7));
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
}

/// The filter's own statement of the attempts it made must not be forgeable on a retry model
/// for the requests it does not retry either (streamed, or with a body over `max_bytes`).
#[test]
fn an_upstream_cannot_claim_attempts_on_requests_that_are_not_retried() {
    let mut cfg = retry_config();
    cfg["body"] = json!({ "max_bytes": 64 });
    let mut vm = Vm::start(&cfg);
    let big = format!(r#"{{"inputs":[],"pad":"{}"}}"#, "x".repeat(100));
    let len = big.len().to_string();
    let too_large = with(
        post_json("/v2/models/iris/infer"),
        &[("content-length", &len)],
    );
    for (headers, body) in [
        (
            post_json("/v2/models/iris/infer"),
            br#"{"stream":true,"inputs":[]}"#.to_vec(),
        ),
        (too_large, big.into_bytes()),
    ] {
        let mut sent = vm.send(&headers, &body);
        vm.respond(
            &mut sent,
            &[(":status", "200"), ("x-inference-attempts", "forged")],
            b"{}",
        );
        assert_eq!(
            vm.response_header("x-inference-target").as_deref(),
            Some("v1")
        );
        assert_eq!(vm.response_header("x-inference-attempts"), None);
    }
}
