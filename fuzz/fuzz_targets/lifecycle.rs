//! Whole requests through the core's real lifecycle (`Root`, `Stream`) against the in-memory
//! `TestHost`, for every fixture configuration, with VMs that live across inputs (shared data,
//! bandit state and health accumulate as in a long-running proxy): request headers, the body,
//! every callout the stream dispatched answered with fuzzed status and body, the upstream's
//! response (fuzzed status, reward and retry headers, body), the end of the stream, and a tick
//! of the root context with its callouts answered.
//!
//! Input: byte 0 picks the response status, byte 1 the callout status; the rest is a request
//! as the `decide` target reads it (header lines, a blank line, the body). The body doubles as
//! the response and callout body.
#![no_main]

use std::cell::RefCell;

use fuzz_support::{fixture_sources, parse_request};
use inference_router_core::host::Action;
use inference_router_core::plugin::VmState;
use inference_router_core::root::Root;
use inference_router_core::testing::TestHost;
use libfuzzer_sys::fuzz_target;

const STATUSES: [&str; 8] = ["200", "200", "429", "500", "503", "404", "504", "201"];

struct Vm {
    host: TestHost,
    root: Root,
}

thread_local! {
    static VMS: RefCell<Vec<Vm>> = RefCell::new(
        fixture_sources()
            .into_iter()
            .map(|(name, json)| {
                let host = TestHost::new();
                host.configure(json);
                let mut root = Root::new(VmState::new(1, 2));
                assert!(root.configure(&host), "fixture {name} refused: {:?}", host.critical_logs());
                Vm { host, root }
            })
            .collect(),
    );
}

fn pick(byte: Option<&u8>) -> &'static str {
    STATUSES[usize::from(byte.copied().unwrap_or(0)) % STATUSES.len()]
}

fuzz_target!(|data: &[u8]| {
    let response_status = pick(data.first());
    let callout_status = pick(data.get(1));
    let (req, body) = parse_request(data.get(2..).unwrap_or_default());
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let body = body.unwrap_or_default();
    VMS.with(|vms| {
        for (context, vm) in vms.borrow_mut().iter_mut().enumerate() {
            run(
                vm,
                context as u32 + 2,
                &headers,
                body,
                response_status,
                callout_status,
            );
        }
    });
});

fn run(
    vm: &mut Vm,
    context: u32,
    headers: &[(&str, &str)],
    body: &[u8],
    status: &str,
    callout: &str,
) {
    let host = &vm.host;
    let Some(mut stream) = vm.root.stream(context) else {
        panic!("a configured root gave no stream");
    };
    host.request(headers, body);
    let mut action = stream.on_request_headers(host, body.is_empty());
    if !body.is_empty() && host.reply().is_none() {
        action = stream.on_request_body(host, body.len(), true);
    }
    // Answer what the stream sent (router, fan-out); a router's answer may send more.
    let mut answered = 0;
    for _ in 0..3 {
        for token in new_calls(host, &mut answered) {
            host.callout_answer(
                &[(":status", callout), ("content-type", "application/json")],
                body,
            );
            stream.on_callout_answer(host, token, body.len());
        }
    }
    if action == Action::Continue || host.reply().is_none() {
        let response = [
            (":status", status),
            ("retry-after", "7"),
            ("x-reward", "0.5"),
            ("content-type", "application/json"),
        ];
        host.respond(&response, body);
        stream.on_response_headers(host, body.is_empty());
        stream.on_response_body(host, body.len());
        // A retry's answer.
        for token in new_calls(host, &mut answered) {
            host.callout_answer(&[(":status", callout)], body);
            stream.on_callout_answer(host, token, body.len());
        }
    }
    stream.on_done(host);
    host.advance_ms(250);
    vm.root.on_tick(host);
    for token in new_calls(host, &mut answered) {
        host.callout_answer(&[(":status", callout)], body);
        vm.root.on_callout_answer(host, token, body.len());
    }
}

/// The tokens of the callouts dispatched since the last call.
fn new_calls(host: &TestHost, answered: &mut usize) -> Vec<u32> {
    let calls = host.dispatched();
    let tokens = calls
        .get(*answered..)
        .unwrap_or_default()
        .iter()
        .map(|c| c.token)
        .collect();
    *answered = calls.len();
    tokens
}
