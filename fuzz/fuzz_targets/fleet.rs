//! What a fleet reads from etcd, which other replicas wrote: the gateway's answers
//! (`fleet::etcd::parse_*`), the contribution and retired documents (`fleet::doc`), and whole
//! sync rounds of a long-lived VM (`configs/fleet.json`) whose etcd answers carry the input —
//! as the answer body itself, or as a replica's or the retired document's value inside a valid
//! range answer — followed by a routed request, a feedback spent through etcd with the input
//! as its answer, and the state endpoint, which must answer 200 with finite numbers.
//!
//! Input: byte 0 picks how the rest is used and the answers' status.
#![no_main]

use std::cell::RefCell;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use inference_router_core::fleet::doc::{Contribution, Retired};
use inference_router_core::fleet::etcd;
use inference_router_core::host::{Action, Host};
use inference_router_core::plugin::VmState;
use inference_router_core::root::Root;
use inference_router_core::testing::TestHost;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = include_str!("../configs/fleet.json");
const STATUSES: [&str; 5] = ["200", "200", "503", "401", "504"];

struct Vm {
    host: TestHost,
    root: Root,
    next_context: u32,
}

thread_local! {
    static VM: RefCell<Vm> = RefCell::new({
        let host = TestHost::new();
        host.configure(CONFIG);
        let mut root = Root::new(VmState::new(3, 4));
        assert!(root.configure(&host), "fleet fixture refused: {:?}", host.critical_logs());
        Vm { host, root, next_context: 2 }
    });
}

/// A range answer holding `value` under a replica's key (`retired`: the retired document's).
fn range_with(value: &[u8], retired: bool) -> Vec<u8> {
    let key = if retired {
        "/fz/v1/inference-router/learned/retired"
    } else {
        "/fz/v1/inference-router/learned/replicas/other~00"
    };
    serde_json::to_vec(&serde_json::json!({
        "header": { "revision": "9" },
        "kvs": [ { "key": STANDARD.encode(key), "value": STANDARD.encode(value),
                   "create_revision": "2", "mod_revision": "5", "version": "3" } ],
        "count": "1"
    }))
    .unwrap_or_default()
}

fn parsers(data: &[u8]) {
    let _ = etcd::parse_range(data);
    let _ = etcd::parse_txn(data);
    let _ = etcd::parse_lease(data);
    let _ = etcd::parse_token(data);
    let _ = etcd::parse_created(data);
    let _ = etcd::parse_put(data);
    if let Ok(c) = Contribution::decode(data) {
        assert_eq!(
            Contribution::decode(&c.encode()).ok(),
            Some(c),
            "contribution round trip"
        );
    }
    if let Ok(r) = Retired::decode(data) {
        assert_eq!(
            Retired::decode(&r.encode()).ok(),
            Some(r),
            "retired round trip"
        );
    }
}

fn check_numbers(v: &serde_json::Value) {
    match v {
        serde_json::Value::Number(n) => assert!(n.as_f64().is_some_and(f64::is_finite), "{v}"),
        serde_json::Value::Array(a) => a.iter().for_each(check_numbers),
        serde_json::Value::Object(o) => o.values().for_each(check_numbers),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mode = data.first().copied().unwrap_or(0);
    let rest = data.get(1..).unwrap_or_default();
    parsers(rest);
    let status = STATUSES[usize::from(mode >> 2) % STATUSES.len()];
    let body = match mode % 4 {
        0 => rest.to_vec(),
        1 => range_with(rest, false),
        2 => range_with(rest, true),
        _ => rest.to_vec(),
    };
    VM.with(|vm| run(&mut vm.borrow_mut(), status, &body));
});

fn run(vm: &mut Vm, status: &str, body: &[u8]) {
    let host = &vm.host;
    host.advance_ms(1500);
    vm.root.on_tick(host);
    for call in host.take_dispatched() {
        host.callout_answer(
            &[(":status", status), ("content-type", "application/json")],
            body,
        );
        vm.root.on_callout_answer(host, call.token, body.len());
    }
    // A routed request and its response.
    vm.next_context += 1;
    let mut stream = vm.root.stream(vm.next_context).expect("configured");
    host.request(
        &[(":method", "GET"), (":path", "/v2/models/chat/ready")],
        b"",
    );
    let mut action = stream.on_request_headers(host, true);
    for call in host.take_dispatched() {
        // A first request that waits for the fleet's view.
        host.callout_answer(&[(":status", status)], body);
        stream.on_callout_answer(host, call.token, body.len());
        action = Action::Continue;
    }
    if action == Action::Continue && host.reply().is_none() {
        host.respond(&[(":status", "200")], b"");
        stream.on_response_headers(host, true);
    }
    stream.on_done(host);
    // A feedback spent through etcd, answered with the input.
    let token = fuzz_support::signed_token(
        "inference-router",
        "chat",
        "large",
        host.now_secs() + 300,
        u64::from(vm.next_context),
    );
    vm.next_context += 1;
    let mut stream = vm.root.stream(vm.next_context).expect("configured");
    let feedback = serde_json::to_vec(&serde_json::json!({ "decision": token, "reward": 0.5 }))
        .unwrap_or_default();
    host.request(
        &[
            (":method", "POST"),
            (":path", "/feedback"),
            ("content-type", "application/json"),
        ],
        &feedback,
    );
    stream.on_request_headers(host, false);
    stream.on_request_body(host, feedback.len(), true);
    for _ in 0..4 {
        let calls = host.take_dispatched();
        if calls.is_empty() {
            break;
        }
        for call in calls {
            host.callout_answer(&[(":status", status)], body);
            stream.on_callout_answer(host, call.token, body.len());
        }
    }
    stream.on_done(host);
    // The state endpoint reads everything merged: 200, finite numbers.
    vm.next_context += 1;
    let mut stream = vm.root.stream(vm.next_context).expect("configured");
    host.request(&[(":method", "GET"), (":path", "/state")], b"");
    stream.on_request_headers(host, true);
    let reply = host.reply().expect("the state endpoint answers");
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    check_numbers(&reply.json().into());
}
