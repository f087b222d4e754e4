//! Hostile requests, against the real Envoy at `--concurrency 2` (envoy/demo.yaml: default
//! `body.max_bytes` of 1 MiB under the listener's 4 MiB buffer limit): each gets a clear
//! answer — the exact status, and for the filter's own replies its JSON `error` code — and the
//! next request, on a fresh connection, is routed normally. At the end the Wasm VMs are the
//! ones Envoy started (`wasm.*` stats: nothing created, reloaded or failed) and Envoy's log has
//! no panic, critical or Wasm runtime error line. Run with `--nocapture` to see what a user gets
//! for each input.

mod common;

use std::io::Write;
use std::thread;
use std::time::Duration;

use common::vm::*;
use common::*;
use integration::{Harness, Request, Response};
use serde_json::{json, Value};

/// No model in the path: the body names it, so the filter must read the body.
const CHAT: &str = "/v1/chat/completions";
const MIB: usize = 1 << 20;
/// Envoy's default `max_request_headers_kb` is 60: a 64 KiB header never reaches the filter.
const HEADER_64K: usize = 64 * 1024;
/// Just under Envoy's header limit (with the other headers): reaches the filter.
const HEADER_56K: usize = 56 * 1024;

/// The deterministic models, a default model (so a body the filter cannot use still routes)
/// and a rule that reads a request header.
fn config() -> Value {
    json!({
        "default_model": "iris",
        "models": deterministic_models(),
        "rules": [
            { "name": "acme", "when": { "headers": { "x-tenant": { "prefix": "acme" } } },
              "then": { "model": "sentiment", "target": "v2" } }
        ]
    })
}

/// What users see, one row per hostile input; printed at the end of a test.
#[derive(Default)]
struct Table(Vec<(String, String)>);

impl Table {
    fn row(&mut self, input: &str, seen: impl Into<String>) {
        self.0.push((input.to_string(), seen.into()));
    }

    fn print(&self) {
        eprintln!("| hostile input | what the user sees |\n|---|---|");
        for (i, s) in &self.0 {
            eprintln!("| {i} | {s} |");
        }
    }
}

/// A one-line summary of a response: status, the filter's error code or the serving cluster,
/// and `x-inference-body`.
fn seen(r: &Response) -> String {
    let mut s = r.status.to_string();
    if let Some(cluster) = r.upstream_cluster() {
        s.push_str(&format!(" from {cluster}"));
    } else if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
        s.push_str(&format!(" {v}"));
    } else {
        s.push_str(&format!(" {:?}", r.text()));
    }
    if let Some(reason) = r.header("x-inference-reason") {
        s.push_str(&format!(", reason {reason}"));
    }
    if let Some(note) = r.header("x-inference-body") {
        s.push_str(&format!(", x-inference-body: {note}"));
    }
    if r.header("connection") == Some("close") {
        s.push_str(", connection closed");
    }
    s
}

/// The request after each hostile one: a fresh connection, routed normally.
#[track_caller]
fn next_request_is_served(h: &Harness) {
    let r = h.send(&Request::get("/v2/models/iris/ready"));
    assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "weighted");
}

fn post_json(body: impl Into<Vec<u8>>) -> Request {
    Request::post(CHAT)
        .header("content-type", "application/json")
        .body(body)
}

fn post_msgpack(body: Vec<u8>) -> Request {
    Request::post(CHAT)
        .header("content-type", "application/msgpack")
        .body(body)
}

/// `{"model": …}` as MessagePack, the value's bytes given raw.
fn msgpack_model(value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x81, 0xa5];
    b.extend_from_slice(b"model");
    b.extend_from_slice(value);
    b
}

#[test]
fn hostile_bodies_get_a_clear_answer_and_the_vm_survives() {
    let h = Harness::demo(&config());
    let vm_before = vm_stats(&h.envoy);
    let mut table = Table::default();
    let mut invalid = 0u64;

    // Rejected by the filter: 400 `invalid_body`, no upstream contacted.
    let mut expect_invalid = |h: &Harness, table: &mut Table, input: &str, req: Request| {
        let before = h.upstreams.total_hits();
        let r = h.send(&req);
        assert_error_reply(&r, 400, "invalid_body");
        assert_no_upstream(h, before);
        table.row(input, seen(&r));
        invalid += 1;
        next_request_is_served(h);
    };
    // Routed with the body intact.
    let expect_routed = |h: &Harness,
                         table: &mut Table,
                         input: &str,
                         body: Vec<u8>,
                         cluster: &str,
                         note: Option<&str>| {
        let r = h.send(&post_json(body.clone()));
        let echo = assert_upstream(&r, cluster);
        assert_body_intact(&echo, &body);
        assert_meta(&r, "body", note);
        table.row(input, seen(&r));
        next_request_is_served(h);
    };

    // Nesting 100,000 deep. In a field routing skips: checked iteratively, well-formed, routed.
    let n = 100_000;
    let deep_arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
    expect_routed(
        &h,
        &mut table,
        "JSON nested 100,000 arrays deep in a skipped field",
        format!(r#"{{"model":"chat","x":{deep_arrays}}}"#).into_bytes(),
        "llm-small",
        None,
    );
    expect_routed(
        &h,
        &mut table,
        "JSON nested 100,000 objects deep in a skipped field",
        format!(r#"{{"model":"chat","x":{deep_objects}}}"#).into_bytes(),
        "llm-small",
        None,
    );
    // In the field routing reads: its value is built, so depth is limited (128).
    expect_invalid(
        &h,
        &mut table,
        "JSON nested 100,000 arrays deep in `model`",
        post_json(format!(r#"{{"model":{deep_arrays}}}"#)),
    );
    expect_invalid(
        &h,
        &mut table,
        "JSON nested 100,000 objects deep in `model`",
        post_json(format!(r#"{{"model":{deep_objects}}}"#)),
    );

    // 10 MiB naming a model, over body.max_bytes (1 MiB). With content-length: known too large
    // from the headers, never buffered, streamed upstream intact; routed by headers and path
    // (the default model).
    let mut big = br#"{"model":"chat","pad":""#.to_vec();
    big.resize(10 * MIB - 2, b'x');
    big.extend_from_slice(b"\"}");
    expect_routed(
        &h,
        &mut table,
        "10 MiB JSON body with content-length",
        big.clone(),
        "iris-v1",
        Some("too-large"),
    );
    // Chunked: only discovered while buffering. The filter lets go at the first chunk past
    // max_bytes; the shipped listener's buffer limit (4 MiB) leaves room for that chunk, so the
    // request is routed without its body being inspected and streams upstream whole.
    let (r, written) = send_chunked_paced(&h, &big);
    assert_eq!(r.status, 200, "{}", seen(&r));
    assert_meta(&r, "body", Some("too-large"));
    assert_meta(&r, "model", Some("iris"));
    assert_eq!(written, big.len());
    table.row(
        "10 MiB JSON body, chunked (sent in 64 KiB pieces)",
        format!(
            "{} (routed without inspection; {} of {} bytes sent)",
            seen(&r),
            written,
            big.len()
        ),
    );
    next_request_is_served(&h);

    // Invalid UTF-8 in a string routing skips.
    expect_invalid(
        &h,
        &mut table,
        "invalid UTF-8 in a JSON string",
        post_json(b"{\"model\":\"chat\",\"x\":\"caf\xe9 \xff\xfe\"}".to_vec()),
    );

    // 100,000 keys in one object (under 1 MiB): skipped one by one, routed.
    let mut many = String::from(r#"{"model":"chat""#);
    for i in 0..100_000u32 {
        many.push_str(&format!(r#","{i:x}":0"#));
    }
    many.push('}');
    assert!(many.len() < MIB, "{}", many.len());
    expect_routed(
        &h,
        &mut table,
        "JSON object with 100,000 keys",
        many.into_bytes(),
        "llm-small",
        None,
    );

    expect_invalid(
        &h,
        &mut table,
        "duplicate `model` keys",
        post_json(r#"{"model":"chat","model":"sentiment"}"#),
    );
    expect_invalid(
        &h,
        &mut table,
        "`{\"model\": 42}`",
        post_json(r#"{"model":42}"#),
    );

    // An empty body with a JSON content type: nothing to read, routed by headers and path.
    for (input, req) in [
        (
            "empty body, JSON content type, content-length 0",
            post_json(""),
        ),
        (
            "empty body, JSON content type, chunked",
            post_json("").chunked(),
        ),
    ] {
        let r = h.send(&req);
        assert_upstream(&r, "iris-v1");
        assert_decision(&r, "iris", "v1", "weighted");
        assert_meta(&r, "body", None);
        table.row(input, seen(&r));
        next_request_is_served(&h);
    }

    // MessagePack bombs: headers claiming 4 billion entries / 4 GiB with nothing behind them,
    // at the top and as the value routing reads, and nesting 100,000 deep.
    let claims: [(&str, [u8; 5]); 5] = [
        ("array32", [0xdd, 0xff, 0xff, 0xff, 0xff]),
        ("map32", [0xdf, 0xff, 0xff, 0xff, 0xff]),
        ("str32", [0xdb, 0xff, 0xff, 0xff, 0xff]),
        ("bin32", [0xc6, 0xff, 0xff, 0xff, 0xff]),
        ("ext32", [0xc9, 0xff, 0xff, 0xff, 0xff]),
    ];
    for (kind, header) in claims {
        expect_invalid(
            &h,
            &mut table,
            &format!("MessagePack {kind} claiming 2^32−1 entries/bytes, top level"),
            post_msgpack(header.to_vec()),
        );
        expect_invalid(
            &h,
            &mut table,
            &format!("MessagePack {kind} claiming 2^32−1 entries/bytes as `model`"),
            post_msgpack(msgpack_model(&header)),
        );
    }
    let mut deep = vec![0x91u8; n];
    deep.push(0xc0);
    expect_invalid(
        &h,
        &mut table,
        "MessagePack nested 100,000 arrays deep",
        post_msgpack(deep.clone()),
    );
    expect_invalid(
        &h,
        &mut table,
        "MessagePack nested 100,000 arrays deep in `model`",
        post_msgpack(msgpack_model(&deep)),
    );

    table.print();
    // Every 400 is a local error reply; all but `{"model": 42}` (well-formed, but not a model
    // name) are parse failures.
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.local_replies.error", invalid),
        invalid
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.body.parse_failures"),
        invalid - 1
    );
    assert_eq!(
        h.envoy.wasm_counter("inference_router.body.too_large"),
        2,
        "the 10 MiB bodies"
    );
    assert_vm_never_crashed(&h.envoy, &vm_before);
}

/// Sends `body` chunked, in 64 KiB pieces a few milliseconds apart (so Envoy reads them one by
/// one, as from a client that streams), from another thread while this one reads the answer.
/// Returns the answer and how many body bytes were written before the server stopped reading.
fn send_chunked_paced(h: &Harness, body: &[u8]) -> (Response, usize) {
    let mut conn = h.envoy.connect();
    let mut w = conn.writer().expect("clone the connection");
    let head = format!(
        "POST {CHAT} HTTP/1.1\r\nhost: inference.local\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n"
    );
    let (resp, written) = thread::scope(|s| {
        let writer = s.spawn(move || {
            let mut written = 0;
            if w.write_all(head.as_bytes()).is_err() {
                return written;
            }
            for piece in body.chunks(64 * 1024) {
                let mut b = format!("{:x}\r\n", piece.len()).into_bytes();
                b.extend_from_slice(piece);
                b.extend_from_slice(b"\r\n");
                if w.write_all(&b).is_err() {
                    return written;
                }
                written += piece.len();
                thread::sleep(Duration::from_millis(2));
            }
            let _ = w.write_all(b"0\r\n\r\n");
            written
        });
        let resp = conn.read_response();
        if resp.is_err() {
            conn.writer()
                .map(|s| s.shutdown(std::net::Shutdown::Both))
                .ok();
        }
        (resp, writer.join().expect("writer thread"))
    });
    let resp = resp.unwrap_or_else(|e| panic!("no answer to a chunked body: {e}"));
    (resp, written)
}

#[test]
fn hostile_framing_and_headers_get_a_clear_answer_and_the_vm_survives() {
    let h = Harness::demo(&config());
    let vm_before = vm_stats(&h.envoy);
    let mut table = Table::default();
    let body = br#"{"model":"chat","messages":[]}"#;
    let raw = |path: &str, content_length: usize| {
        let mut b = format!(
            "POST {path} HTTP/1.1\r\nhost: inference.local\r\ncontent-type: application/json\r\n\
             content-length: {content_length}\r\n\r\n"
        )
        .into_bytes();
        b.extend_from_slice(body);
        b
    };

    // content-length shorter than the body, on a request whose body the filter reads: the body
    // is the first 5 bytes, malformed: 400, and Envoy closes the connection (the rest is never
    // taken as a request).
    let before = h.upstreams.total_hits();
    let mut conn = h.envoy.connect();
    conn.send_raw(&raw(CHAT, 5)).expect("send");
    let r = conn.read_response().expect("an answer");
    assert_error_reply(&r, 400, "invalid_body");
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    conn.set_read_timeout(Duration::from_secs(5)).unwrap();
    let rest = conn.read_response();
    assert!(
        rest.is_err(),
        "the bytes after content-length were answered as a request: {rest:?}"
    );
    assert_no_upstream(&h, before);
    table.row(
        "content-length (5) shorter than the JSON body",
        format!(
            "{}; the remaining bytes are discarded with the connection",
            seen(&r)
        ),
    );
    next_request_is_served(&h);

    // The same where the path names the model (body not read): the upstream gets exactly
    // content-length bytes.
    let mut conn = h.envoy.connect();
    conn.send_raw(&raw("/v2/models/iris/infer", 5))
        .expect("send");
    let r = conn.read_response().expect("an answer");
    let echo = assert_upstream(&r, "iris-v1");
    assert_body_intact(&echo, &body[..5]);
    conn.close();
    table.row(
        "content-length (5) shorter than the body, model in the path",
        format!("{}; the upstream got the first 5 bytes", seen(&r)),
    );
    next_request_is_served(&h);

    // content-length longer than the body, then the client closes its sending half: the body
    // can never complete; Envoy closes the connection without an answer (access log: status 0,
    // flag DC), and no model server gets a complete request.
    for (input, path) in [
        (
            "content-length (1000) longer than the body, client closes (body read by the filter)",
            CHAT,
        ),
        (
            "content-length (1000) longer than the body, client closes (model in the path)",
            "/v2/models/iris/infer",
        ),
    ] {
        let before = h.upstreams.total_hits();
        let mut conn = h.envoy.connect();
        conn.send_raw(&raw(path, 1000)).expect("send");
        conn.shutdown_write().expect("shutdown");
        conn.set_read_timeout(Duration::from_secs(10)).unwrap();
        let r = conn.read_response();
        let e = r.expect_err("an answer to a request whose body never completed");
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof,
            "Envoy should close the connection (not leave it hanging): {e}"
        );
        assert_no_upstream(&h, before);
        table.row(
            input,
            "no answer: Envoy closes the connection; no model server gets a complete request",
        );
        next_request_is_served(&h);
    }

    // Header values of 64 KiB: over Envoy's header limit, answered by Envoy's codec with 431
    // before any filter runs (so without the filter's headers).
    for name in ["x-model", "x-tenant"] {
        let before = h.upstreams.total_hits();
        let r = h.send(&Request::get("/anything").header(name, &"m".repeat(HEADER_64K)));
        assert_eq!(r.status, 431, "{}", seen(&r));
        assert!(r.inference_headers().is_empty(), "{:?}", r.headers);
        assert_no_upstream(&h, before);
        table.row(&format!("`{name}` of 64 KiB"), seen(&r));
        next_request_is_served(&h);
    }
    // 56 KiB: reaches the filter. An unknown model of that name goes to the default model; a
    // rule's prefix still matches.
    let r = h.send(&Request::get("/anything").header("x-model", &"m".repeat(HEADER_56K)));
    assert_upstream(&r, "iris-v1");
    assert_decision(&r, "iris", "v1", "default");
    table.row("`x-model` of 56 KiB (unknown model)", seen(&r));
    next_request_is_served(&h);
    let tenant = format!("acme{}", "t".repeat(HEADER_56K));
    let r = h.send(&Request::get("/v2/models/iris/ready").header("x-tenant", &tenant));
    let echo = assert_upstream(&r, "sentiment-v2");
    assert_decision(&r, "sentiment", "v2", "rule:acme");
    assert_eq!(echo.headers.get("x-tenant"), Some(&tenant));
    table.row("`x-tenant` of 56 KiB read by a rule", seen(&r));
    next_request_is_served(&h);

    table.print();
    assert_eq!(
        h.envoy
            .wasm_counter_eventually("inference_router.body.parse_failures", 1),
        1
    );
    assert_vm_never_crashed(&h.envoy, &vm_before);
}

/// docs/configuration.md (`body`): "A body larger than max_bytes (by content-length, or while it
/// streams) is not inspected: the request is routed by headers and path alone and the response
/// carries x-inference-body: too-large". A chunked body over the default `max_bytes` (1 MiB)
/// is only found to be too large while it is buffered: the filter lets go at the first chunk
/// past `max_bytes`, and that chunk still counts against Envoy's buffer limit. With Envoy's
/// default limit (also 1 MiB) Envoy answered 413 every time; the shipped listener's 4 MiB limit
/// leaves room for that chunk, so the request is routed without inspection with its body intact.
#[test]
fn chunked_body_over_default_max_bytes_is_routed_without_it() {
    let h = Harness::demo(&config());
    let mut body = br#"{"model":"chat","pad":""#.to_vec();
    body.resize(2 * MIB - 2, b'x');
    body.extend_from_slice(b"\"}");
    let (r, _) = send_chunked_paced(&h, &body);
    let echo = assert_upstream(&r, "iris-v1");
    assert_body_intact(&echo, &body);
    assert_meta(&r, "body", Some("too-large"));
}
