//! Live load (issue 12): capacity as a hard limit shared by every stream (503 with Retry-After
//! when no candidate has room), least_loaded by the load score, endpoint picking inside a target
//! (header for Envoy's override_host policy, endpoint capacity, prefix affinity), load reports
//! read from responses, and slots given back however a stream ends.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

const ENDPOINT: &str = "x-gateway-destination-endpoint";

fn chat(system: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": "chat",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]
    }))
    .unwrap()
}

fn held(vm: &mut Vm, body: &[u8]) -> (Sent, Option<String>, Option<String>) {
    let sent = vm.send(&post_json("/v1/chat/completions"), body);
    let target = vm.host.request_header_value("x-inference-target");
    let endpoint = vm.host.request_header_value(ENDPOINT);
    (sent, target, endpoint)
}

fn in_flight(vm: &mut Vm, target: &str) -> u64 {
    vm.tick(5);
    vm.host
        .metric(&format!("inference_router.load.in_flight.chat.{target}"))
        .unwrap_or(u64::MAX)
}

fn capacity_config() -> Value {
    json!({ "models": [{ "name": "chat",
        "targets": [ { "name": "a", "cluster": "llm-a", "weight": 1, "capacity": 1 },
                     { "name": "b", "cluster": "llm-b", "weight": 1, "capacity": 1 } ] }] })
}

#[test]
fn capacity_is_a_limit_and_slots_come_back() {
    let mut config = capacity_config();
    config["state_endpoint"] = state_section();
    let mut vm = Vm::start(&config);
    let (mut s1, t1, _) = held(&mut vm, &chat("x"));
    let (mut s2, t2, _) = held(&mut vm, &chat("x"));
    assert_eq!((s1.action, s2.action), (Action::Continue, Action::Continue));
    assert_ne!(t1, t2, "the second request goes to the target with room");
    let load = &vm.state()["load"]["chat"]["targets"];
    assert_eq!(
        (load[0]["in_flight"].as_u64(), load[1]["in_flight"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(load[0]["capacity"], 1);
    let (s3, _, _) = held(&mut vm, &chat("x"));
    assert_eq!(s3.action, Action::Pause);
    let reply = vm.reply();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(reply.json()["error"], "over_capacity");
    assert_eq!(vm.counter("load.over_capacity"), 1);
    // A client that gives up (no response) and an answered request both give their slot back.
    vm.done(&mut s1);
    vm.respond(&mut s2, OK, b"{}");
    assert_eq!((in_flight(&mut vm, "a"), in_flight(&mut vm, "b")), (0, 0));
    let (_, t4, _) = held(&mut vm, &chat("x"));
    assert!(t4.is_some());
}

#[test]
fn a_bandit_picks_among_targets_with_room() {
    let mut vm = Vm::start(&json!({ "models": [{ "name": "chat",
        "strategy": { "type": "thompson" },
        "targets": [ { "name": "a", "cluster": "llm-a", "capacity": 2 },
                     { "name": "b", "cluster": "llm-b", "capacity": 2 } ] }] }));
    let mut open = Vec::new();
    for _ in 0..4 {
        let (s, t, _) = held(&mut vm, &chat("x"));
        assert_eq!(s.action, Action::Continue);
        open.push((s, t.unwrap()));
    }
    let on_a = open.iter().filter(|(_, t)| t == "a").count();
    assert_eq!(on_a, 2, "two each: capacity binds the bandit");
    held(&mut vm, &chat("x"));
    assert_eq!(vm.reply().status, 503);
}

#[test]
fn least_loaded_spreads_and_avoids_a_reported_queue() {
    let mut vm = Vm::start(&json!({ "models": [{ "name": "chat",
        "strategy": { "type": "least_loaded" },
        "targets": [ { "name": "a", "cluster": "llm-a" }, { "name": "b", "cluster": "llm-b" } ] }] }));
    let mut open = Vec::new();
    for _ in 0..4 {
        let (s, t, _) = held(&mut vm, &chat("x"));
        open.push((s, t.unwrap()));
    }
    assert_eq!(open.iter().filter(|(_, t)| t == "a").count(), 2);
    // b reports a long queue; its requests end. Every new request now goes to a, even with
    // requests already in flight there.
    for (mut s, t) in open {
        let report: &[(&str, &str)] = if t == "b" {
            &[
                (":status", "200"),
                (
                    "endpoint-load-metrics",
                    "TEXT named_metrics.num_requests_waiting=20",
                ),
            ]
        } else {
            OK
        };
        vm.respond(&mut s, report, b"{}");
    }
    assert_eq!(vm.counter("load.reports"), 2);
    let mut keep = Vec::new();
    for _ in 0..6 {
        let (s, t, _) = held(&mut vm, &chat("x"));
        assert_eq!(t.as_deref(), Some("a"));
        keep.push(s);
    }
    assert_eq!(
        vm.host
            .request_header_value("endpoint-load-metrics-format")
            .as_deref(),
        Some("TEXT")
    );
}

fn pool_config(affinity: bool) -> Value {
    let mut model = json!({ "name": "chat",
        "targets": [ { "name": "pool", "cluster": "pool", "weight": 1, "endpoint_capacity": 1,
            "endpoints": ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"] } ] });
    if affinity {
        model["affinity"] = json!({ "messages": 1 });
    }
    json!({ "models": [model] })
}

#[test]
fn endpoints_are_picked_within_their_capacity() {
    let mut vm = Vm::start(&pool_config(false));
    let mut seen = Vec::new();
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut headers = post_json("/v1/chat/completions");
        headers.push((ENDPOINT, "10.0.0.66:80"));
        let sent = vm.send(&headers, &chat("x"));
        let e = vm.host.request_header_value(ENDPOINT).unwrap();
        assert_ne!(e, "10.0.0.66:80", "a client never picks the pod");
        seen.push(e);
        open.push(sent);
    }
    seen.sort();
    assert_eq!(seen, ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]);
    held(&mut vm, &chat("x"));
    assert_eq!(vm.reply().status, 503);
    for mut s in open {
        vm.done(&mut s);
    }
    assert_eq!(in_flight(&mut vm, "pool"), 0);
}

#[test]
fn affinity_keeps_a_conversation_on_its_endpoint_while_it_has_room() {
    let mut vm = Vm::start(&pool_config(true));
    let (mut first, _, home) = held(&mut vm, &chat("you are a pirate"));
    vm.respond(&mut first, OK, b"{}");
    for _ in 0..5 {
        let (mut s, _, e) = held(&mut vm, &chat("you are a pirate"));
        assert_eq!(e, home);
        vm.respond(&mut s, OK, b"{}");
    }
    // Home is busy (endpoint capacity 1): the next request of the conversation goes elsewhere.
    let (_busy, _, e1) = held(&mut vm, &chat("you are a pirate"));
    assert_eq!(e1, home);
    let (_, _, e2) = held(&mut vm, &chat("you are a pirate"));
    assert!(e2.is_some() && e2 != home);
}

#[test]
fn observed_endpoints_join_and_answer_reports() {
    let mut vm = Vm::start(&json!({ "models": [{ "name": "chat",
        "targets": [ { "name": "pool", "cluster": "pool", "weight": 1, "observe_endpoints": true } ] }] }));
    let (mut s, _, e) = held(&mut vm, &chat("x"));
    assert_eq!(e, None, "no endpoint known yet: Envoy's balancer chooses");
    vm.host
        .set_property(&["upstream", "address"], b"127.0.0.1:7001");
    vm.respond(&mut s, OK, b"{}");
    let (_, _, e) = held(&mut vm, &chat("x"));
    assert_eq!(e.as_deref(), Some("127.0.0.1:7001"));
}

#[test]
fn invalid_reports_are_counted_and_never_reach_the_client() {
    let mut vm = Vm::start(&capacity_config());
    let (mut s, _, _) = held(&mut vm, &chat("x"));
    vm.respond(
        &mut s,
        &[(":status", "200"), ("endpoint-load-metrics", "BIN AAAA")],
        b"{}",
    );
    assert_eq!(vm.counter("load.reports_invalid"), 1);
    assert_eq!(vm.response_header("endpoint-load-metrics"), None);
}

#[test]
fn load_configuration_is_checked() {
    let refused = |cfg: Value, field: &str| {
        let logs = Vm::try_start(&cfg).err().expect("refused");
        assert!(logs.iter().any(|l| l.contains(field)), "{field}: {logs:?}");
    };
    let target = |extra: Value| {
        let mut t = json!({ "name": "a", "cluster": "llm-a", "weight": 1 });
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        json!({ "models": [{ "name": "chat", "targets": [t] }] })
    };
    refused(
        target(json!({"capacity": 0})),
        "models[0].targets[0].capacity",
    );
    refused(
        target(json!({"endpoints": ["pod-1:80"]})),
        "models[0].targets[0].endpoints[0]",
    );
    refused(
        target(json!({"endpoints": ["127.0.0.1:1", "127.0.0.1:1"]})),
        "models[0].targets[0].endpoints[1]",
    );
    refused(
        target(json!({"endpoint_capacity": 2})),
        "models[0].targets[0].endpoint_capacity",
    );
    let mut c = target(json!({}));
    c["load"] = json!({});
    refused(c, "load");
    let mut c = target(json!({"capacity": 1}));
    c["load"] = json!({"orca_format": "bin"});
    refused(c, "load.orca_format");
    let mut c = target(json!({"capacity": 1}));
    c["models"][0]["affinity"] = json!({"messages": 1});
    refused(c, "models[0].affinity");
    let mut c = target(json!({"capacity": 1}));
    c["models"][0]["fallback"] = json!(["a"]);
    c["models"][0]["retry"] = json!(true);
    refused(c, "models[0].retry");
}
