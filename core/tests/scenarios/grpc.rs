//! gRPC calls: routed by the model and version inside the first protobuf message (KServe v2 /
//! Triton, TF-Serving), decided on the first chunk that holds them; refusals as gRPC statuses;
//! rewards from `grpc-status`.

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

fn config() -> Value {
    json!({
        "models": [
            { "name": "iris",
              "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                           { "name": "v2", "cluster": "iris-v2", "weight": 1 } ] },
            { "name": "wine",
              "targets": [ { "name": "w1", "cluster": "wine-w1" }, { "name": "w2", "cluster": "wine-w2" } ],
              "strategy": { "type": "thompson" }, "reward": { "status": true } },
            { "name": "half",
              "targets": [ { "name": "3", "cluster": "half-3", "weight": 1 },
                           { "name": "canary", "cluster": "half-canary", "weight": 0 } ] }
        ],
        "default_model": "iris",
        "state_endpoint": state_section()
    })
}

fn len_field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![number << 3 | 2];
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push(u8::try_from(len & 0x7f).unwrap() | 0x80);
        len >>= 7;
    }
    out.push(u8::try_from(len).unwrap());
    out.extend_from_slice(bytes);
    out
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// A `ModelInferRequest` (name, version, then an input tensor of `tensor` bytes).
fn infer(name: &str, version: &str, tensor: usize) -> Vec<u8> {
    let mut m = len_field(1, name.as_bytes());
    if !version.is_empty() {
        m.extend(len_field(2, version.as_bytes()));
    }
    m.extend(len_field(5, &vec![7; tensor]));
    frame(&m)
}

fn grpc_headers(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "models"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
}

/// Sends a gRPC call whose first `chunk` bytes of `body` arrive (the stream stays open): the
/// action of that body callback.
fn first_chunk(vm: &mut Vm, path: &str, body: &[u8], chunk: usize) -> (Sent, Action) {
    // The host holds the whole body; the callback says how much of it has arrived.
    let mut sent = vm.start_request(&grpc_headers(path), body);
    assert_eq!(
        sent.action,
        Action::Pause,
        "the headers wait for the message"
    );
    let action = sent.stream.on_request_body(&vm.host, chunk, false);
    (sent, action)
}

#[track_caller]
fn assert_grpc_refusal(reply: &LocalReply, grpc_status: u32, words: &str) {
    assert_eq!(reply.grpc_status, Some(grpc_status), "{}", reply.text());
    assert!(reply.text().contains(words), "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        None,
        "no JSON body for a gRPC client"
    );
}

#[test]
fn the_model_and_version_inside_the_first_message_route_the_call() {
    let mut vm = Vm::start(&config());
    // The call is decided once its first message is in, before the client ends its side.
    let body = infer("wine", "", 1024);
    let (mut sent, action) = first_chunk(&mut vm, INFER, &body, 20);
    assert_eq!(action, Action::Pause, "the first message is not whole yet");
    assert_eq!(
        sent.stream.on_request_body(&vm.host, body.len(), false),
        Action::Continue
    );
    assert!(vm.routed_cluster().unwrap().starts_with("wine-"));
    for _ in 0..10 {
        let body = infer("iris", "v2", 1024);
        let (_sent, action) = first_chunk(&mut vm, INFER, &body, body.len());
        assert_eq!(action, Action::Continue);
        assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v2"));
        assert_eq!(
            vm.host
                .request_header_value("x-inference-target")
                .as_deref(),
            Some("v2")
        );
    }
    // A field written twice reads as the model server reads it: the last value.
    let twice = frame(
        &[
            len_field(1, b"wine"),
            len_field(5, &[7; 64]),
            len_field(1, b"iris"),
        ]
        .concat(),
    );
    let (_sent, action) = first_chunk(&mut vm, INFER, &twice, twice.len());
    assert_eq!(action, Action::Continue);
    assert!(vm.routed_cluster().unwrap().starts_with("iris-"));
}

#[test]
fn a_first_message_over_max_bytes_is_routed_by_its_leading_fields() {
    let mut cfg = config();
    cfg["body"] = json!({ "max_bytes": 1024 });
    let mut vm = Vm::start(&cfg);
    // 20 bytes hold name and version; the 4 KiB tensor behind them is not waited for.
    let body = infer("iris", "v2", 4096);
    let (_sent, action) = first_chunk(&mut vm, INFER, &body, 20);
    assert_eq!(action, Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v2"));
    // Cut inside the name: the filter waits for more.
    let (mut sent, action) = first_chunk(&mut vm, INFER, &body, 8);
    assert_eq!(action, Action::Pause);
    assert_eq!(
        sent.stream.on_request_body(&vm.host, 64, false),
        Action::Continue
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("iris-v2"));
}

#[test]
fn other_model_rpcs() {
    let mut vm = Vm::start(&config());
    // ModelReady / ModelMetadata: name and version are fields 1 and 2 too.
    let ready = frame(&[len_field(1, b"half"), len_field(2, b"canary")].concat());
    vm.send(
        &grpc_headers("/inference.GRPCInferenceService/ModelReady"),
        &ready,
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("half-canary"));
}

#[test]
fn tf_serving_model_spec_and_server_rpcs() {
    let mut vm = Vm::start(&config());
    let spec = [len_field(1, b"half"), len_field(2, &[0x08, 0x03])].concat();
    let predict = frame(&[len_field(1, &spec), len_field(2, b"inputs")].concat());
    vm.send(
        &grpc_headers("/tensorflow.serving.PredictionService/Predict"),
        &predict,
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("half-3"));
    let spec = [len_field(1, b"half"), len_field(4, b"canary")].concat();
    vm.send(
        &grpc_headers("/tensorflow.serving.PredictionService/GetModelMetadata"),
        &frame(&len_field(1, &spec)),
    );
    assert_eq!(vm.routed_cluster().as_deref(), Some("half-canary"));
    // A server RPC names no model: the default model's, decided on the headers.
    let sent = vm.start_request(
        &grpc_headers("/inference.GRPCInferenceService/ServerReady"),
        &frame(&[]),
    );
    assert_eq!(sent.action, Action::Continue);
    assert!(vm.routed_cluster().unwrap().starts_with("iris-"));
    // The model header still wins.
    let mut h = grpc_headers(INFER);
    h.push(("x-model", "wine"));
    vm.send(&h, &infer("iris", "v1", 10));
    assert!(vm.routed_cluster().unwrap().starts_with("wine-"));
}

#[test]
fn refusals_are_grpc_statuses() {
    let mut vm = Vm::start(&config());
    for (body, status, words) in [
        (infer("nope", "", 4), 5, "no model named \"nope\""),
        (infer("iris", "v9", 4), 5, "no version \"v9\""),
        (
            vec![0xff, 0xff, 0xff],
            3,
            "not a length-prefixed gRPC message",
        ),
        (frame(&[0x08, 0x01]), 3, "not a string"),
    ] {
        vm.send(&grpc_headers(INFER), &body);
        assert_grpc_refusal(&vm.reply(), status, words);
        assert_eq!(vm.routed_cluster(), None);
    }
    // A rule's reject: PERMISSION_DENIED; a budget that nothing fits: RESOURCE_EXHAUSTED.
    let mut cfg = config();
    cfg["rules"] = json!([{ "name": "no-half", "when": { "body": { "/model_name": { "exact": "half" } } },
                             "then": { "reject": { "status": 403, "message": "half is retired" } } }]);
    let mut vm = Vm::start(&cfg);
    vm.send(&grpc_headers(INFER), &infer("half", "", 4));
    assert_grpc_refusal(&vm.reply(), 7, "half is retired");
    vm.send(&grpc_headers(INFER), &infer("iris", "", 4));
    assert!(vm.routed_cluster().is_some());
}

#[test]
fn a_compressed_message_is_routed_by_headers_and_says_so() {
    let mut vm = Vm::start(&config());
    let mut body = infer("wine", "", 4);
    body[0] = 1;
    let mut sent = vm.send(&grpc_headers(INFER), &body);
    assert_eq!(sent.action, Action::Continue);
    assert!(
        vm.routed_cluster().unwrap().starts_with("iris-"),
        "the default model"
    );
    vm.respond(
        &mut sent,
        &[(":status", "200"), ("content-type", "application/grpc")],
        b"",
    );
    assert_eq!(
        vm.response_header("x-inference-body").as_deref(),
        Some("compressed")
    );
}

#[test]
fn grpc_status_in_the_trailers_is_the_reward() {
    let mut vm = Vm::start(&config());
    let ok = [(":status", "200"), ("content-type", "application/grpc")];
    for (trailers, reward) in [("0", 1.0), ("14", 0.0), ("13", 0.0)] {
        let mut sent = vm.send(&grpc_headers(INFER), &infer("wine", "", 4));
        let target = vm.host.request_header_value("x-inference-target").unwrap();
        let before = vm.arm("wine", &target);
        vm.response_headers(&mut sent, &ok, b"\x00\x00\x00\x00\x00");
        vm.host.respond_trailers(&[("grpc-status", trailers)]);
        assert_eq!(sent.stream.on_response_trailers(&vm.host), Action::Continue);
        vm.done(&mut sent);
        // [alpha, beta, pulls]
        let after = vm.arm("wine", &target);
        assert_eq!(
            after[0] - before[0],
            reward,
            "alpha after grpc-status {trailers}"
        );
        assert_eq!(
            after[1] - before[1],
            1.0 - reward,
            "beta after grpc-status {trailers}"
        );
    }
    // Trailers-only (the status in the headers), and an answer that ends without a status.
    for (headers, reward) in [
        (
            vec![
                (":status", "200"),
                ("content-type", "application/grpc"),
                ("grpc-status", "8"),
            ],
            0.0,
        ),
        (ok.to_vec(), 0.0),
    ] {
        let mut sent = vm.send(&grpc_headers(INFER), &infer("wine", "", 4));
        let target = vm.host.request_header_value("x-inference-target").unwrap();
        let before = vm.arm("wine", &target);
        vm.response_headers(&mut sent, &headers, b"");
        vm.done(&mut sent);
        assert_eq!(
            vm.arm("wine", &target)[0] - before[0],
            reward,
            "{headers:?}"
        );
        assert_eq!(
            vm.arm("wine", &target)[1] - before[1],
            1.0 - reward,
            "{headers:?}"
        );
    }
}

#[test]
fn detectors_read_every_message_of_a_unary_call_and_refuse_a_stream() {
    let mut cfg = config();
    cfg["detectors"] = json!([{ "name": "email", "builtin": "email" }]);
    cfg["rules"] = json!([{ "name": "no-pii", "when": { "detected": "email" },
                             "then": { "reject": { "status": 403, "message": "no personal data" } } }]);
    let mut vm = Vm::start(&cfg);
    // The address inside a nested message of the tensor; the filter waits for the end.
    let tensor = len_field(1, b"jane.doe@example.com");
    let message = [len_field(1, b"iris"), len_field(5, &tensor)].concat();
    let body = frame(&message);
    let (mut sent, action) = first_chunk(&mut vm, INFER, &body, 10);
    assert_eq!(action, Action::Pause, "a detector reads the whole call");
    sent.stream.on_request_body(&vm.host, body.len(), true);
    assert_grpc_refusal(&vm.reply(), 7, "no personal data");
    let clean = infer("iris", "", 16);
    vm.send(&grpc_headers(INFER), &clean);
    assert!(vm.routed_cluster().is_some());
    // A streaming call cannot be read to its end: not scanned, refused.
    let stream = "/inference.GRPCInferenceService/ModelStreamInfer";
    let (_sent, _) = first_chunk(&mut vm, stream, &clean, clean.len());
    assert_grpc_refusal(&vm.reply(), 3, "not_scanned");
    assert_eq!(vm.counter("detectors.not_scanned.streamed"), 1);
}
