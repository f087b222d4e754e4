//! A model registry as the live source of targets (`registry`, docs/registry.md), against the
//! real Envoy (`--concurrency 2`, envoy/registry.yaml): a JSON document served over HTTP, and a
//! real MLflow Model Registry (`mlflow server`, SQLite). Traffic follows the registry within a
//! poll period, without a listener or VM reload; a registry that is down or answers something
//! invalid leaves routing as it was, counted in `inference_router.registry.*`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::learning::wait_for;
use integration::mlflow::MlflowServer;
use integration::{closed_port, Envoy, EnvoyConfig, FileServer, Request, Upstreams};
use serde_json::{json, Value};

const DOC: &str = "/registry.json";
const CLUSTERS: [&str; 3] = ["fraud-v1", "fraud-v2", "fraud-v3"];
/// Long enough for several poll periods (500 ms) and the ticks that apply them, on a busy machine.
const MOVE_TIMEOUT: Duration = Duration::from_secs(15);
/// Requests that must all land on one cluster for traffic to count as moved (each on a new
/// connection, so both workers serve some).
const STREAK: usize = 12;

fn plugin_config(registry: Value) -> Value {
    json!({
        "models": [ { "name": "fraud",
                      "targets": [ { "name": "static", "cluster": "fraud-v3", "weight": 1 } ] } ],
        "registry": registry,
    })
}

fn start_envoy(config: &Value, upstreams: &Upstreams, registry: u16, mlflow: u16) -> Envoy {
    let mut ports: BTreeMap<String, u16> = upstreams.ports();
    ports.insert("model-registry".into(), registry);
    ports.insert("mlflow".into(), mlflow);
    Envoy::start_with_ports(
        &EnvoyConfig::new("registry.yaml", config.to_string()),
        &ports,
    )
}

/// The cluster that served one request for `path` (the fake upstream's echo).
fn served(envoy: &Envoy, path: &str) -> String {
    let r = envoy.send(&Request::get(path));
    assert_eq!(r.status, 200, "{:?} {}", r.headers, r.text());
    r.echo().cluster
}

fn fraud(envoy: &Envoy) -> String {
    served(envoy, "/v2/models/fraud/ready")
}

/// Waits until `STREAK` requests in a row are served by `cluster`.
#[track_caller]
fn wait_until_all_go_to(envoy: &Envoy, cluster: &str) {
    wait_for(MOVE_TIMEOUT, &format!("all traffic on {cluster}"), || {
        (0..STREAK).all(|_| fraud(envoy) == cluster).then_some(())
    });
}

#[track_caller]
fn assert_all_go_to(envoy: &Envoy, upstreams: &Upstreams, cluster: &str) {
    let before = upstreams.hits(cluster);
    for _ in 0..STREAK {
        assert_eq!(fraud(envoy), cluster);
    }
    assert_eq!(upstreams.hits(cluster) - before, STREAK as u64);
}

fn registry(envoy: &Envoy, name: &str) -> u64 {
    envoy.wasm_counter(&format!("inference_router.registry.{name}"))
}

/// Waits until a registry counter grew by at least `by` from `from`.
#[track_caller]
fn wait_registry(envoy: &Envoy, name: &str, from: u64, by: u64) -> u64 {
    wait_for(
        MOVE_TIMEOUT,
        &format!("registry.{name} ≥ {from} + {by}"),
        || {
            let v = registry(envoy, name);
            (v >= from + by).then_some(v)
        },
    )
}

/// Stats that change when Envoy reloads a listener or creates Wasm VMs.
fn reload_stats(envoy: &Envoy) -> BTreeMap<String, u64> {
    let keep = |k: &str| {
        k.starts_with("listener_manager.listener_")
            || k == "listener_manager.total_listeners_active"
            || k.starts_with("wasm.envoy.wasm.runtime.v8.")
            || (k.starts_with("wasm.") && k.contains("vm_reload"))
            || k == "server.wasm.created"
    };
    envoy.stats().into_iter().filter(|(k, _)| keep(k)).collect()
}

fn document(versions: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "models": [ { "name": "fraud", "versions": versions } ] })).unwrap()
}

#[test]
fn a_json_registry_moves_traffic_without_a_reload_and_keeps_the_last_good_answer() {
    let upstreams = Upstreams::start(&CLUSTERS);
    let server = FileServer::start(BTreeMap::from([(
        DOC.to_string(),
        document(
            json!([ { "name": "v1", "cluster": "fraud-v1", "weight": 1 },
                         { "name": "v2", "cluster": "fraud-v2", "weight": 1, "health": "down" } ]),
        ),
    )]));
    let config = plugin_config(json!({ "source": "json", "cluster": "model-registry",
                                       "authority": "registry.local", "path": DOC, "poll_ms": 500 }));
    let envoy = start_envoy(&config, &upstreams, server.port(), closed_port());

    // The document's one healthy version serves, not the configured target.
    wait_until_all_go_to(&envoy, "fraud-v1");
    assert_all_go_to(&envoy, &upstreams, "fraud-v1");
    assert_eq!(upstreams.hits("fraud-v2"), 0, "a down version took traffic");
    assert!(registry(&envoy, "updates") >= 1);
    assert_eq!(registry(&envoy, "generation"), 1);
    assert_eq!(registry(&envoy, "refused"), 0);
    let reloads = reload_stats(&envoy);
    assert!(
        reloads
            .keys()
            .any(|k| k.starts_with("listener_manager.listener_")),
        "no listener stats to compare: {reloads:?}"
    );

    // The document changes: traffic moves, without any reload.
    let polls = registry(&envoy, "polls");
    server.set(
        DOC,
        document(json!([ { "name": "v2", "cluster": "fraud-v2", "weight": 1 } ])),
    );
    wait_until_all_go_to(&envoy, "fraud-v2");
    assert_all_go_to(&envoy, &upstreams, "fraud-v2");
    assert_eq!(registry(&envoy, "generation"), 2);
    assert!(registry(&envoy, "polls") > polls);
    assert_eq!(reload_stats(&envoy), reloads, "Envoy reloaded something");
    // One poll per period for the whole Envoy, not one per worker: the file server saw no
    // more requests than polls were counted.
    assert!(server.hits(DOC) <= registry(&envoy, "polls") + 1);

    // An invalid document is refused: counted, routing unchanged.
    let refused = registry(&envoy, "refused");
    server.set(
        DOC,
        document(json!([ { "name": "v3", "cluster": "fraud-v3", "weight": "heavy" } ])),
    );
    wait_registry(&envoy, "refused", refused, 2);
    assert_all_go_to(&envoy, &upstreams, "fraud-v2");
    assert_eq!(registry(&envoy, "generation"), 2);

    // The registry goes away: failures are counted, routing stays on the last good answer.
    let failures = registry(&envoy, "failures");
    // (The configured target served only before the registry's first answer.)
    let configured = upstreams.hits("fraud-v3");
    drop(server);
    wait_registry(&envoy, "failures", failures, 3);
    assert_all_go_to(&envoy, &upstreams, "fraud-v2");
    assert_eq!(
        upstreams.hits("fraud-v3"),
        configured,
        "the configured target took traffic"
    );
    assert_eq!(registry(&envoy, "generation"), 2);
    assert_eq!(reload_stats(&envoy), reloads, "Envoy reloaded something");
}

#[test]
fn mlflow_aliases_move_traffic_without_a_reload_and_a_stopped_server_changes_nothing() {
    let upstreams = Upstreams::start(&CLUSTERS);
    let mlflow = MlflowServer::start();
    let name = "fraud-detector";
    mlflow.create_model(name);
    let v1 = mlflow.create_version(name, "s3://models/fraud/1");
    let v2 = mlflow.create_version(name, "s3://models/fraud/2");
    assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));
    mlflow.set_alias(name, "champion", &v1);
    let config = plugin_config(json!({
        "source": "mlflow", "cluster": "mlflow", "authority": "127.0.0.1", "poll_ms": 500,
        "mlflow": { "models": [ { "model": "fraud", "registered_model": name,
            "cluster": "fraud-v{version}",
            "aliases": [ { "alias": "champion", "weight": 100 },
                         { "alias": "challenger", "weight": 0 } ] } ] }
    }));
    let envoy = start_envoy(&config, &upstreams, closed_port(), mlflow.port());

    // The champion (version 1) takes the traffic; the challenger alias does not exist yet, so
    // the model's only target is the champion.
    wait_until_all_go_to(&envoy, "fraud-v1");
    let r = envoy.send(&Request::get("/v2/models/fraud/versions/challenger/ready"));
    assert_eq!(r.status, 404, "{}", r.text());
    // The challenger appears (version 2): pinned requests reach it, weighted traffic does not.
    mlflow.set_alias(name, "challenger", &v2);
    // Every worker's VM applies the new generation on its own tick: wait until a streak of
    // requests (over both workers) finds the challenger.
    wait_for(
        MOVE_TIMEOUT,
        "the challenger target on every worker",
        || {
            (0..STREAK)
                .all(|_| {
                    let r = envoy.send(&Request::get("/v2/models/fraud/versions/challenger/ready"));
                    r.status == 200
                })
                .then_some(())
        },
    );
    assert_eq!(
        served(&envoy, "/v2/models/fraud/versions/challenger/ready"),
        "fraud-v2"
    );
    assert_all_go_to(&envoy, &upstreams, "fraud-v1");
    let reloads = reload_stats(&envoy);

    // The champion alias moves to version 2: traffic follows, without a reload.
    mlflow.set_alias(name, "champion", &v2);
    wait_until_all_go_to(&envoy, "fraud-v2");
    assert_all_go_to(&envoy, &upstreams, "fraud-v2");
    // A version tag overrides the cluster template.
    mlflow.set_version_tag(name, &v2, "cluster", "fraud-v3");
    wait_until_all_go_to(&envoy, "fraud-v3");
    assert_eq!(reload_stats(&envoy), reloads, "Envoy reloaded something");
    assert_eq!(registry(&envoy, "failures"), 0);

    // MLflow goes down: failures are counted, routing does not change.
    let failures = registry(&envoy, "failures");
    let generation = registry(&envoy, "generation");
    mlflow.stop();
    wait_registry(&envoy, "failures", failures, 3);
    assert_all_go_to(&envoy, &upstreams, "fraud-v3");
    assert_eq!(registry(&envoy, "generation"), generation);
    assert_eq!(reload_stats(&envoy), reloads, "Envoy reloaded something");
}
