//! The harness itself, proven against a plain Envoy (envoy/demo.yaml minus the Wasm filter, so
//! it runs without the filter built): start, readiness, real ports, request/response bytes,
//! stats, Prometheus, stop, and the expected-failure helper.

use std::path::PathBuf;

use integration::{fnv64_hex, Envoy, EnvoyConfig, Request, Upstreams};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// envoy/demo.yaml without its Wasm filter (derived, so it cannot drift from the template): the
/// client names the cluster itself with `x-inference-cluster`.
fn plain_template() -> PathBuf {
    let demo = std::fs::read_to_string(integration::envoy_dir().join("demo.yaml"))
        .expect("read envoy/demo.yaml");
    let start = demo
        .find("          - name: envoy.filters.http.wasm")
        .expect("demo.yaml has the wasm filter");
    let end = demo
        .find("          - name: envoy.filters.http.router")
        .expect("demo.yaml has the router");
    assert!(start < end);
    let plain = format!("{}{}", &demo[..start], &demo[end..]);
    assert!(!plain
        .lines()
        .any(|l| !l.trim_start().starts_with('#') && l.contains("WASM_PATH")));
    let path = std::env::temp_dir().join(format!(
        "inference-router-plain-{}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, plain).expect("write plain template");
    path
}

#[test]
fn plain_envoy_start_route_stats_stop() {
    let upstreams = Upstreams::start_default();
    let template = plain_template();
    let mut envoy = Envoy::start(&EnvoyConfig::new(&template, ""), &upstreams);
    let _ = std::fs::remove_file(&template);
    assert_ne!(envoy.port(), 0);
    assert_ne!(envoy.admin_port(), envoy.port());

    // content-length body, new connection.
    let body = br#"{"inputs":[1,2,3]}"#.to_vec();
    let r = envoy.send(
        &Request::post("/v2/models/iris/infer?x=1")
            .header("x-inference-cluster", "iris-v2")
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let echo = r.echo();
    assert_eq!(echo.cluster, "iris-v2");
    assert_eq!(echo.method, "POST");
    assert_eq!(echo.path, "/v2/models/iris/infer?x=1");
    assert_eq!(echo.body_len, body.len() as u64);
    assert_eq!(echo.body_fnv64, fnv64_hex(&body));
    assert_eq!(
        echo.headers.get("x-inference-cluster").map(String::as_str),
        Some("iris-v2")
    );

    // chunked body over a keep-alive connection, several requests.
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut conn = envoy.connect();
    for _ in 0..3 {
        let r = conn
            .send(
                &Request::post("/x")
                    .header("x-inference-cluster", "llm-large")
                    .body(big.clone())
                    .chunked(),
            )
            .expect("keep-alive request");
        let echo = r.echo();
        assert_eq!(echo.cluster, "llm-large");
        assert_eq!(echo.body_len, big.len() as u64);
        assert_eq!(echo.body_fnv64, fnv64_hex(&big));
        assert_eq!(
            echo.headers.get("transfer-encoding").map(String::as_str),
            Some("chunked")
        );
    }
    conn.close();
    assert_eq!(upstreams.hits("iris-v2"), 1);
    assert_eq!(upstreams.hits("llm-large"), 3);
    assert_eq!(upstreams.total_hits(), 4);

    // No cluster header: the fallback route's JSON 503, no upstream contacted.
    let r = envoy.send(&Request::get("/nothing"));
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "no_route");
    assert_eq!(upstreams.total_hits(), 4);

    // Stats, per worker connection counts, Prometheus.
    assert_eq!(
        envoy.counter_eventually("cluster.llm-large.upstream_rq_200", 3),
        3
    );
    assert_eq!(envoy.counter("cluster.iris-v2.upstream_rq_200"), 1);
    let workers = envoy.worker_connections();
    assert_eq!(workers.len(), 2, "two workers: {workers:?}");
    assert_eq!(workers.values().sum::<u64>(), 3);
    assert!(envoy
        .prometheus()
        .contains("envoy_cluster_upstream_rq_total"));

    let status = envoy.stop().expect("Envoy was running");
    assert!(
        status.success(),
        "Envoy exit status after /quitquitquit: {status}"
    );
}

#[test]
fn broken_bootstrap_is_reported_by_start_expect_failure() {
    let upstreams = Upstreams::start(&[]);
    let failure =
        Envoy::start_expect_failure(&EnvoyConfig::new(fixture("broken.yaml"), ""), &upstreams);
    assert!(!failure.status.success());
    assert!(
        failure.log.contains("no_such_field_in_listener"),
        "{}",
        failure.log
    );
}
