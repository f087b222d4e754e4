//! The module fetched by Envoy over HTTP (`vm_config.code.remote`: `http_uri` + `sha256` +
//! `retry_policy`; envoy/remote-fetch.yaml and envoy/lds/remote-fetch.yaml) from a real HTTP
//! server the harness runs on loopback: the right checksum loads and routes, a wrong one is
//! refused, an unreachable server at start leaves a listener that fails closed, and an update
//! to another build goes through Envoy's code cache. Real Envoy, `--concurrency 2`.
//!
//! What the listener template's comments promise is what these tests assert: responses,
//! upstream and file-server hit counts, and Envoy's `wasm.remote_load_*` and LDS counters.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::learning::wait_for;
use integration::oci::sha256_hex;
use integration::{
    switch_listener, upgrade_build_commit, upgrade_wasm_path, wasm_path, Envoy, EnvoyConfig,
    FileServer, RefusedPort, Request, Response, Upstreams,
};
use serde_json::{json, Value};

const WASM_FILE: &str = "/inference_router.wasm";
const STATE_TOKEN: &str = "state-token-0123456789";
/// `retry_policy.num_retries` in envoy/lds/remote-fetch.yaml: 1 + 3 attempts per fetch.
const ATTEMPTS: u64 = 4;

fn plugin_config() -> Value {
    json!({
        "models": [{ "name": "sentiment",
                     "targets": [{ "name": "v1", "cluster": "sentiment-v1", "weight": 1 }] }],
        "state_endpoint": { "path": "/state", "token": STATE_TOKEN },
    })
}

/// envoy/remote-fetch.yaml with its LDS listener fetching a module of this sha256.
fn remote(sha256: &str, nack_on_code_cache_miss: bool) -> EnvoyConfig {
    let mut c = EnvoyConfig::new("remote-fetch.yaml", plugin_config().to_string());
    c.listener_template = Some("lds/remote-fetch.yaml".into());
    c.extra_args = vec!["--drain-time-s".into(), "1".into()];
    c.extra_vars
        .insert("WASM_SHA256".into(), sha256.to_string());
    c.extra_vars.insert(
        "NACK_ON_CODE_CACHE_MISS".into(),
        nack_on_code_cache_miss.to_string(),
    );
    c
}

fn sha_of(path: &std::path::Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

fn module_files(path: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    BTreeMap::from([(WASM_FILE.to_string(), std::fs::read(path).unwrap())])
}

/// The model servers' ports and the wasm server's.
fn ports(upstreams: &Upstreams, wasm_server: u16) -> BTreeMap<String, u16> {
    let mut p = upstreams.ports();
    p.insert("wasm-server".into(), wasm_server);
    p
}

fn remote_stat(envoy: &Envoy, name: &str) -> u64 {
    envoy.counter(&format!("wasm.remote_load_{name}"))
}

fn ready(envoy: &Envoy) -> Response {
    envoy.send(&Request::get("/v2/models/sentiment/ready"))
}

/// The build the serving module reports.
fn commit(envoy: &Envoy) -> String {
    let r = envoy
        .send(&Request::get("/state").header("authorization", &format!("Bearer {STATE_TOKEN}")));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["build"]["commit"].as_str().unwrap().to_string()
}

#[track_caller]
fn assert_routed(envoy: &Envoy) {
    let r = ready(envoy);
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    assert_eq!(r.echo().cluster, "sentiment-v1");
    assert_eq!(r.header("x-inference-target"), Some("v1"));
}

/// The plugin has no VM: Envoy fails closed with an empty 503, the filter never ran (no
/// `x-inference-*` header) and no model server was contacted.
#[track_caller]
fn assert_fails_closed(envoy: &Envoy, upstreams: &Upstreams) {
    let before = upstreams.total_hits();
    for _ in 0..4 {
        let r = ready(envoy);
        assert_eq!(r.status, 503, "{:?} {}", r.headers, r.text());
        assert!(r.body.is_empty(), "{}", r.text());
        assert!(r.inference_headers().is_empty(), "{:?}", r.headers);
    }
    assert_eq!(upstreams.total_hits(), before, "an upstream was contacted");
}

#[test]
fn the_right_checksum_loads_once_and_an_update_to_another_build_goes_through_the_code_cache() {
    let upstreams = Upstreams::start_default();
    let server = FileServer::start(module_files(&wasm_path()));
    let ports = ports(&upstreams, server.port());
    let envoy = Envoy::start_with_ports(&remote(&sha_of(&wasm_path()), false), &ports);
    assert_routed(&envoy);
    // One download for the whole process: every worker's VM comes from it.
    assert_eq!(server.hits(WASM_FILE), 1);
    assert_eq!(remote_stat(&envoy, "fetch_successes"), 1);
    assert_eq!(remote_stat(&envoy, "fetch_failures"), 0);
    assert_eq!(envoy.counter("cluster.wasm-server.upstream_rq_200"), 1);
    let old_commit = commit(&envoy);

    // The next build, published under the same URL, pinned by its own checksum. With
    // nack_on_code_cache_miss it is refused while Envoy does not have it yet (the old listener
    // serves on), fetched in the background, and accepted when the update is pushed again.
    let upgrade = upgrade_wasm_path();
    server.set(WASM_FILE, std::fs::read(&upgrade).unwrap());
    let update = remote(&sha_of(&upgrade), true);
    let first = switch_listener(&envoy, &update, &ports);
    assert!(
        first.is_err(),
        "a module not yet fetched was accepted: {first:?}"
    );
    assert_routed(&envoy);
    assert_eq!(commit(&envoy), old_commit);
    wait_for(Duration::from_secs(10), "the background fetch", || {
        (remote_stat(&envoy, "fetch_successes") == 2).then_some(())
    });
    let second = switch_listener(&envoy, &update, &ports);
    assert!(second.is_ok(), "the fetched module was refused: {second:?}");
    let new_commit = upgrade_build_commit();
    wait_for(Duration::from_secs(10), "the upgrade build answers", || {
        (commit(&envoy) == new_commit).then_some(())
    });
    assert_routed(&envoy);
    // The accepted push took the module from the cache: one download per build.
    assert_eq!(server.hits(WASM_FILE), 2);
}

#[test]
fn a_wrong_checksum_at_start_is_refused_and_the_listener_fails_closed() {
    let upstreams = Upstreams::start_default();
    // The server holds the release build; the listener pins the upgrade build's checksum.
    let server = FileServer::start(module_files(&wasm_path()));
    let ports = ports(&upstreams, server.port());
    let envoy = Envoy::start_with_ports(&remote(&sha_of(&upgrade_wasm_path()), false), &ports);
    // Every download was refused for its checksum and retried; then the listener started
    // without its module.
    assert_eq!(server.hits(WASM_FILE), ATTEMPTS);
    assert_eq!(
        envoy.counter("cluster.wasm-server.upstream_rq_200"),
        ATTEMPTS
    );
    assert_eq!(remote_stat(&envoy, "fetch_failures"), 1);
    assert_eq!(remote_stat(&envoy, "fetch_successes"), 0);
    assert_eq!(envoy.counter("listener_manager.total_listeners_active"), 1);
    assert_fails_closed(&envoy, &upstreams);
}

#[test]
fn a_wrong_checksum_in_an_update_is_rejected_with_nack_on_code_cache_miss_and_kills_the_listener_without(
) {
    let upstreams = Upstreams::start_default();
    let server = FileServer::start(module_files(&wasm_path()));
    let ports = ports(&upstreams, server.port());
    let envoy = Envoy::start_with_ports(&remote(&sha_of(&wasm_path()), false), &ports);
    assert_routed(&envoy);
    let wrong = sha_of(&upgrade_wasm_path());

    // Refused every time it is pushed; the running listener and its module serve on.
    for push in 1..=2 {
        let refused = switch_listener(&envoy, &remote(&wrong, true), &ports);
        let counters = refused.expect_err("a module failing its checksum was accepted");
        assert_eq!(counters.update_rejected, push);
        assert_routed(&envoy);
    }
    wait_for(Duration::from_secs(10), "the background fetches", || {
        (remote_stat(&envoy, "fetch_failures") == 2).then_some(())
    });
    assert_eq!(
        server.hits(WASM_FILE),
        3,
        "the start, then one attempt per push"
    );

    // The same update without nack_on_code_cache_miss is accepted: after the retries the new
    // listener replaces the working one, without a module.
    let accepted = switch_listener(&envoy, &remote(&wrong, false), &ports);
    assert!(accepted.is_ok(), "{accepted:?}");
    assert_fails_closed(&envoy, &upstreams);
}

#[test]
fn an_unreachable_server_at_start_leaves_a_failing_listener_until_it_is_pushed_again() {
    let upstreams = Upstreams::start_default();
    let refused = RefusedPort::new();
    let port = refused.port();
    let ports = ports(&upstreams, port);
    let sha = sha_of(&wasm_path());
    let envoy = Envoy::start_with_ports(&remote(&sha, false), &ports);
    // 1 + num_retries connection attempts, then the listener starts without its module.
    assert_eq!(
        envoy.counter("cluster.wasm-server.upstream_cx_connect_fail"),
        ATTEMPTS
    );
    assert_eq!(remote_stat(&envoy, "fetch_failures"), 1);
    assert_fails_closed(&envoy, &upstreams);

    // The server comes up: Envoy does not try again on its own.
    drop(refused);
    let server = FileServer::start_on(port, module_files(&wasm_path()));
    std::thread::sleep(Duration::from_secs(1));
    assert_fails_closed(&envoy, &upstreams);
    assert_eq!(server.hits(WASM_FILE), 0);

    // Pushing the listener again (as an update: nack_on_code_cache_miss) heals it in two
    // pushes: refused while the module is fetched, accepted once it is in the cache.
    let update = remote(&sha, true);
    assert!(switch_listener(&envoy, &update, &ports).is_err());
    wait_for(Duration::from_secs(10), "the background fetch", || {
        (remote_stat(&envoy, "fetch_successes") == 1).then_some(())
    });
    let healed = switch_listener(&envoy, &update, &ports);
    assert!(healed.is_ok(), "{healed:?}");
    wait_for(Duration::from_secs(10), "the listener routes", || {
        (ready(&envoy).status == 200).then_some(())
    });
    assert_routed(&envoy);
    assert_eq!(server.hits(WASM_FILE), 1);
}
