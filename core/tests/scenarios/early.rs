//! Early decisions: a JSON body is routed on the first chunks that hold every field routing
//! reads, and the rest streams; whatever needs the body itself waits for all of it.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";

/// A chat request with `model` first and a prompt of `n` bytes.
fn prompt(model: &str, n: usize) -> Vec<u8> {
    format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(n)
    )
    .into_bytes()
}

/// Sends `body` with its `content-length` in chunks of `chunk` bytes (the last with end of
/// stream); the action of each.
fn chunks(vm: &mut Vm, path: &str, body: &[u8], chunk: usize) -> (Sent, Vec<Action>) {
    let length = body.len().to_string();
    let mut headers = post_json(path);
    headers.push(("content-length", &length));
    send_chunks(vm, &headers, body, chunk)
}

fn send_chunks(
    vm: &mut Vm,
    headers: &[(&str, &str)],
    body: &[u8],
    chunk: usize,
) -> (Sent, Vec<Action>) {
    let mut sent = vm.start_request(headers, body);
    assert_eq!(sent.action, Action::Pause, "the headers wait for the body");
    let mut actions = Vec::new();
    let mut size = 0;
    while size < body.len() {
        size = (size + chunk).min(body.len());
        actions.push(
            sent.stream
                .on_request_body(&vm.host, size, size == body.len()),
        );
    }
    (sent, actions)
}

#[test]
fn a_model_first_body_is_routed_on_its_first_chunk_and_the_rest_streams() {
    let mut vm = Vm::start(&deterministic());
    let body = prompt("chat", 256 * 1024);
    let (mut sent, actions) = chunks(&mut vm, CHAT, &body, 16 * 1024);
    assert!(
        actions.iter().all(|a| *a == Action::Continue),
        "{actions:?}"
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
    assert_eq!(vm.counter("body.decided_early"), 1);
    assert_eq!(vm.counter("requests.chat.small"), 1);
    vm.respond(&mut sent, OK, b"{}");
    assert_eq!(
        vm.response_header("x-inference-model").as_deref(),
        Some("chat")
    );
    assert_eq!(vm.response_header("x-inference-body"), None);
    // Only the first chunk was read.
    let reads = vm.host.host_calls("buffer");
    assert!(reads <= 1, "{reads} body reads");
}

#[test]
fn a_model_after_the_prompt_is_routed_on_the_chunk_that_holds_it() {
    let mut vm = Vm::start(&deterministic());
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}],"model":"iris","tools":"{}"}}"#,
        "y".repeat(50_000),
        "z".repeat(30_000)
    );
    let (_, actions) = chunks(&mut vm, CHAT, body.as_bytes(), 16 * 1024);
    let held = [Action::Pause; 3];
    assert_eq!(actions, [&held[..], &[Action::Continue; 2]].concat());
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v1"));
    assert_eq!(vm.counter("body.decided_early"), 1);
}

#[test]
fn a_field_a_rule_reads_is_waited_for_and_absent_ones_wait_for_the_end() {
    let mut cfg = deterministic();
    cfg["rules"] = json!([{ "name": "hot", "when": { "body": { "/temperature": { "gt": 1.0 } } },
                            "then": { "model": "chat", "target": "large" } }]);
    let mut vm = Vm::start(&cfg);
    let body = format!(
        r#"{{"model":"chat","temperature":2,"pad":"{}"}}"#,
        "p".repeat(70_000)
    );
    let (_, actions) = chunks(&mut vm, CHAT, body.as_bytes(), 20);
    assert_eq!(
        actions.first(),
        Some(&Action::Pause),
        "`temperature` not in yet"
    );
    assert_eq!(actions.get(1), Some(&Action::Continue));
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-large"));

    // No `temperature` at all: only the end shows it is absent.
    let body = prompt("chat", 70_000);
    let (_, actions) = chunks(&mut vm, CHAT, &body, 30_000);
    let (last, held) = actions.split_last().unwrap();
    assert!(held.iter().all(|a| *a == Action::Pause), "{actions:?}");
    assert_eq!(*last, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
    assert_eq!(vm.counter("body.decided_early"), 1);
}

#[test]
fn a_refusal_waits_for_the_whole_body() {
    let mut vm = Vm::start(&deterministic());
    let body = prompt("no-such-model", 70_000);
    let (_, actions) = chunks(&mut vm, CHAT, &body, 10_000);
    assert!(actions.iter().all(|a| *a == Action::Pause), "{actions:?}");
    assert_eq!(vm.reply().status, 404);
    assert_eq!(vm.counter("body.decided_early"), 0);
}

#[test]
fn malformed_json_after_the_decision_is_not_seen_and_before_it_is_refused() {
    let mut vm = Vm::start(&deterministic());
    let mut body = br#"{"model":"chat","messages":[{"role":"user","content":"hi"}"#.to_vec();
    body.extend_from_slice(&[b'x'; 70_000]);
    body.extend_from_slice(b"}}}} not json");
    let (_, actions) = chunks(&mut vm, CHAT, &body, 40);
    assert!(
        actions.iter().all(|a| *a == Action::Continue),
        "{actions:?}"
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
    // Broken before `model` is complete: the walk gives up and the whole body is refused.
    let body = format!(
        r#"{{"messages": [}}, "model": "chat", "pad": "{}"}}"#,
        "x".repeat(70_000)
    );
    let (_, actions) = chunks(&mut vm, CHAT, body.as_bytes(), 20_000);
    assert!(actions.iter().all(|a| *a == Action::Pause), "{actions:?}");
    assert_eq!(vm.reply().status, 400);
    assert_eq!(vm.counter("body.parse_failures"), 1);
}

/// Configurations whose decision reads the body itself, resends it, or holds policy.
fn whole_body_configs() -> Vec<(&'static str, Value)> {
    let mut detectors = deterministic();
    detectors["detectors"] = json!([{ "name": "email", "builtin": "email" }]);
    detectors["rules"] = json!([{ "name": "no-email", "when": { "detected": "email" },
        "then": { "reject": { "status": 403, "message": "no e-mail" } } }]);
    let mut shadow = deterministic();
    shadow["shadows"] = json!([{ "model": "chat", "target": "large", "percent": 100 }]);
    let mut affinity = deterministic();
    affinity["models"][1]["affinity"] = json!({ "messages": 1 });
    affinity["models"][1]["targets"][0]["endpoints"] = json!(["127.0.0.1:9001"]);
    let mut capabilities = deterministic();
    capabilities["models"][1]["targets"][0]["capabilities"] = json!(["vision"]);
    let mut tenants = deterministic();
    tenants["tenants"] = json!({ "header": "x-tenant", "list": [ { "name": "acme" } ] });
    let mut refusal = deterministic();
    refusal["rules"] = json!([{ "name": "cold", "when": { "body": { "/temperature": { "lt": 0 } } },
        "then": { "reject": { "status": 400, "message": "temperature must not be negative" } } }]);
    vec![
        ("tenants", tenants),
        ("refusing rule", refusal),
        ("detectors", detectors),
        ("shadow", shadow),
        ("affinity", affinity),
        ("capabilities", capabilities),
    ]
}

#[test]
fn what_reads_or_resends_the_body_or_holds_policy_waits_for_all_of_it() {
    for (name, cfg) in whole_body_configs() {
        let Ok(mut vm) = Vm::try_start(&cfg) else {
            panic!("{name}: configuration refused");
        };
        let body = prompt("chat", 70_000);
        let (_, actions) = chunks(&mut vm, CHAT, &body, 20_000);
        let (last, held) = actions.split_last().unwrap();
        assert!(
            held.iter().all(|a| *a == Action::Pause),
            "{name}: {actions:?}"
        );
        assert_eq!(*last, Action::Continue, "{name}");
        assert_eq!(vm.counter("body.decided_early"), 0, "{name}");
    }
}

#[test]
fn bodies_of_64_kib_or_less_are_decided_whole_and_checked() {
    let mut vm = Vm::start(&deterministic());
    for bad in [
        &br#"{"model":"chat"} trailing"#[..],
        br#"{"model":"chat","model":"iris"}"#,
    ] {
        let (_, actions) = chunks(&mut vm, CHAT, bad, 16);
        assert!(actions.iter().all(|a| *a == Action::Pause), "{actions:?}");
        assert_eq!(vm.reply().status, 400);
    }
    let body = prompt("chat", 64 * 1024 - 60);
    assert!(body.len() <= 64 * 1024);
    let (_, actions) = chunks(&mut vm, CHAT, &body, 16 * 1024);
    let (last, held) = actions.split_last().unwrap();
    assert!(held.iter().all(|a| *a == Action::Pause), "{actions:?}");
    assert_eq!(*last, Action::Continue);
    assert_eq!(vm.counter("body.decided_early"), 0);
}

#[test]
fn a_body_without_a_length_is_read_whole_or_found_too_large() {
    let mut vm = Vm::start(&deterministic());
    let body = prompt("chat", 100_000);
    let (_, actions) = send_chunks(&mut vm, &post_json(CHAT), &body, 16 * 1024);
    let (last, held) = actions.split_last().unwrap();
    assert!(held.iter().all(|a| *a == Action::Pause), "{actions:?}");
    assert_eq!(*last, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
    assert_eq!(vm.counter("body.decided_early"), 0);
}

#[test]
fn message_pack_bodies_are_read_whole() {
    let mut vm = Vm::start(&deterministic());
    let body = [
        0x81, 0xa5, b'm', b'o', b'd', b'e', b'l', 0xa4, b'c', b'h', b'a', b't',
    ];
    let headers = [
        (":method", "POST"),
        (":path", CHAT),
        (":authority", "models"),
        ("content-type", "application/msgpack"),
    ];
    let mut sent = vm.start_request(&headers, &body);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, 6, false),
        Action::Pause
    );
    assert_eq!(
        sent.stream.on_request_body(&vm.host, body.len(), true),
        Action::Continue
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("llm-small"));
    assert_eq!(vm.counter("body.decided_early"), 0);
}
