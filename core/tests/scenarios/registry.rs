//! The model registry as a live source of targets (`registry`): the root context polls it on
//! its tick, one VM per period; a good answer is published in shared data as a numbered
//! snapshot that every VM applies by rebuilding its plugin; a failed or refused poll changes
//! nothing. Two root contexts on one `TestHost` stand for two Envoy workers.

use crate::driver::*;
use inference_router_core::host::Action;
use inference_router_core::plugin::VmState;
use inference_router_core::root::Root;
use serde_json::{json, Value};

const REGISTRY: &str = "model-registry";

fn config(registry: Value) -> Value {
    json!({
        "models": [
            { "name": "fraud", "targets": [ { "name": "v1", "cluster": "fraud-v1", "weight": 1 } ] },
            { "name": "iris", "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 } ] }
        ],
        "registry": registry
    })
}

fn json_config() -> Value {
    config(
        json!({ "source": "json", "cluster": REGISTRY, "path": "/registry.json", "poll_ms": 500 }),
    )
}

fn doc(versions: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "models": [ { "name": "fraud", "versions": versions } ] })).unwrap()
}

/// The cluster a request for `model` is routed to by `root`.
fn routed(vm: &mut Vm, root: Option<&Root>, model: &str) -> String {
    let path = format!("/v2/models/{model}/ready");
    let headers = get(&path);
    let mut stream = match root {
        Some(r) => r.stream(900).expect("configured"),
        None => vm.root.stream(900).expect("configured"),
    };
    vm.host.request(&headers, b"");
    let action = stream.on_request_headers(&vm.host, true);
    assert_eq!(action, Action::Continue, "{model} was not routed");
    vm.routed_cluster().expect("a route header")
}

fn registry_counter(vm: &Vm, name: &str) -> u64 {
    vm.counter(&format!("registry.{name}"))
}

/// One tick of the first root; the registry callouts it started.
fn tick_polls(vm: &mut Vm) -> Vec<Dispatched> {
    vm.host.take_dispatched();
    vm.tick(1);
    // Nothing else in these configurations sends from the root context.
    vm.host.take_dispatched()
}

#[test]
fn a_json_registry_moves_traffic_keeps_the_last_good_answer_and_a_second_vm_follows_without_polling(
) {
    let mut vm = Vm::start(&json_config());
    assert_eq!(
        vm.host.tick_period_ms(),
        Some(200),
        "a registry turns the tick on"
    );
    // A second worker, configured before the registry ever answered.
    let mut second = Root::new(VmState::new(OTHER_VM_SEEDS.0, OTHER_VM_SEEDS.1));
    assert!(second.configure(&vm.host));
    // Until the registry answered once, the configured targets serve.
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v1");

    let polls = tick_polls(&mut vm);
    assert_eq!(polls.len(), 1, "one poll");
    let p = &polls[0];
    assert_eq!(p.header(":path"), Some("/registry.json"));
    assert_eq!(p.header(":method"), Some("GET"));
    assert_eq!(p.header(":authority"), Some(REGISTRY));
    assert_eq!(
        p.timeout_ms, 500,
        "timeout_ms defaults to min(2000, poll_ms)"
    );
    // Not due again within the period: the next ticks (of either VM) start nothing.
    vm.host.take_dispatched();
    second.on_tick(&vm.host);
    assert!(
        vm.host.take_dispatched().is_empty(),
        "the second VM polled too"
    );

    vm.answer_root(
        p.token,
        OK,
        &doc(
            json!([ { "name": "v3", "cluster": "fraud-v3", "weight": 1 },
                     { "name": "v4", "cluster": "fraud-v4", "weight": 0, "health": "down" } ]),
        ),
    );
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v3");
    assert_eq!(
        routed(&mut vm, None, "iris"),
        "iris-v1",
        "a model not listed keeps its targets"
    );
    assert_eq!(registry_counter(&vm, "polls"), 1);
    assert_eq!(registry_counter(&vm, "updates"), 1);
    assert_eq!(registry_counter(&vm, "applied"), 1);
    assert_eq!(registry_counter(&vm, "generation"), 1);
    // The new target has its request counter.
    assert_eq!(vm.counter("requests.fraud.v3"), 1);

    // The second VM applies the published snapshot on its tick, without a callout of its own.
    assert_eq!(routed(&mut vm, Some(&second), "fraud"), "fraud-v1");
    vm.host.take_dispatched();
    second.on_tick(&vm.host);
    assert!(vm.host.take_dispatched().is_empty(), "the second VM polled");
    assert_eq!(routed(&mut vm, Some(&second), "fraud"), "fraud-v3");
    assert_eq!(registry_counter(&vm, "applied"), 2);
    assert_eq!(registry_counter(&vm, "polls"), 1);
    // A VM that starts later begins with the snapshot.
    let mut third = Root::new(VmState::new(5, 6));
    assert!(third.configure(&vm.host));
    assert_eq!(routed(&mut vm, Some(&third), "fraud"), "fraud-v3");

    // The registry is down: routing stays, the failure is counted.
    vm.host.advance_ms(500);
    let polls = tick_polls(&mut vm);
    assert_eq!(polls.len(), 1);
    vm.answer_root(
        polls[0].token,
        &[(":status", "503")],
        b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure",
    );
    assert_eq!(registry_counter(&vm, "failures"), 1);
    assert_eq!(registry_counter(&vm, "refused"), 0);
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v3");

    // An invalid document is refused: counted, routing unchanged.
    vm.host.advance_ms(500);
    let polls = tick_polls(&mut vm);
    vm.answer_root(
        polls[0].token,
        OK,
        &doc(json!([ { "name": "v5", "cluster": "fraud-v5", "weight": -3 } ])),
    );
    assert_eq!(registry_counter(&vm, "refused"), 1);
    assert_eq!(registry_counter(&vm, "failures"), 2);
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v3");
    // So is a document whose merged configuration does not compile (a weighted model's target
    // without a weight).
    vm.host.advance_ms(500);
    let polls = tick_polls(&mut vm);
    vm.answer_root(
        polls[0].token,
        OK,
        &doc(json!([ { "name": "v5", "cluster": "fraud-v5" } ])),
    );
    assert_eq!(registry_counter(&vm, "refused"), 2);
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v3");
    assert_eq!(registry_counter(&vm, "generation"), 1);

    // The same answer again publishes nothing; a changed one is generation 2.
    vm.host.advance_ms(500);
    let polls = tick_polls(&mut vm);
    vm.answer_root(
        polls[0].token,
        OK,
        &doc(json!([ { "name": "v3", "cluster": "fraud-v3", "weight": 1 } ])),
    );
    assert_eq!(registry_counter(&vm, "updates"), 1);
    vm.host.advance_ms(500);
    let polls = tick_polls(&mut vm);
    vm.answer_root(
        polls[0].token,
        OK,
        &doc(json!([ { "name": "v4", "cluster": "fraud-v4", "weight": 1 } ])),
    );
    assert_eq!(registry_counter(&vm, "updates"), 2);
    assert_eq!(registry_counter(&vm, "generation"), 2);
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v4");
    second.on_tick(&vm.host);
    assert_eq!(routed(&mut vm, Some(&second), "fraud"), "fraud-v4");
    assert_eq!(registry_counter(&vm, "polls"), 6);
}

#[test]
fn a_stream_that_started_before_an_update_keeps_its_plugin() {
    let mut vm = Vm::start(&json_config());
    let mut old = vm.root.stream(500).expect("configured");
    let polls = tick_polls(&mut vm);
    vm.answer_root(
        polls[0].token,
        OK,
        &doc(json!([ { "name": "v3", "cluster": "fraud-v3", "weight": 1 } ])),
    );
    let path = "/v2/models/fraud/ready";
    vm.host.request(&get(path), b"");
    assert_eq!(old.on_request_headers(&vm.host, true), Action::Continue);
    assert_eq!(vm.routed_cluster().as_deref(), Some("fraud-v1"));
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v3");
}

fn mlflow_config() -> Value {
    config(json!({
        "source": "mlflow", "cluster": "mlflow", "authority": "127.0.0.1", "path": "/mlflow",
        "poll_ms": 1000, "timeout_ms": 300,
        "mlflow": { "models": [ { "model": "fraud", "registered_model": "fraud-detector",
            "cluster": "fraud-v{version}",
            "aliases": [ { "alias": "champion", "weight": 100 },
                         { "alias": "challenger", "weight": 0 } ] } ] }
    }))
}

fn version(v: &str, tags: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({ "model_version": {
        "name": "fraud-detector", "version": v, "creation_timestamp": 1, "last_updated_timestamp": 1,
        "current_stage": "None", "description": "", "source": "s", "run_id": "", "status": "READY",
        "tags": tags, "aliases": [] } }))
    .unwrap()
}

/// What MLflow 3 answers (400) for an alias that does not exist.
const NO_ALIAS: &[u8] = br#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "Registered model alias challenger not found.", "sqlstate": "KAM00", "error_class": "INVALID_PARAMETER_VALUE"}"#;

#[test]
fn mlflow_aliases_are_collected_before_deciding() {
    let mut vm = Vm::start(&mlflow_config());
    let polls = tick_polls(&mut vm);
    let paths: Vec<&str> = polls.iter().map(|d| d.header(":path").unwrap()).collect();
    assert_eq!(
        paths,
        [
            "/mlflow/api/2.0/mlflow/registered-models/alias?name=fraud-detector&alias=champion",
            "/mlflow/api/2.0/mlflow/registered-models/alias?name=fraud-detector&alias=challenger"
        ]
    );
    assert_eq!(polls[0].header(":authority"), Some("127.0.0.1"));
    assert_eq!(polls[0].timeout_ms, 300);
    // The challenger alias does not exist yet; nothing is decided before both answered.
    vm.answer_root(polls[1].token, &status("400"), NO_ALIAS);
    assert_eq!(registry_counter(&vm, "polls"), 0);
    vm.answer_root(polls[0].token, OK, &version("1", json!([])));
    assert_eq!(registry_counter(&vm, "polls"), 1);
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v1");
    assert_eq!(
        vm.host
            .request_header_value("x-inference-target")
            .as_deref(),
        Some("champion")
    );
    assert_eq!(registry_counter(&vm, "generation"), 1);

    // The champion moves to version 2, whose tag names its cluster; the challenger exists.
    vm.host.advance_ms(1000);
    let polls = tick_polls(&mut vm);
    vm.answer_root(
        polls[0].token,
        OK,
        &version(
            "2",
            json!([ { "key": "cluster", "value": "fraud-canary" } ]),
        ),
    );
    vm.answer_root(polls[1].token, OK, &version("1", json!([])));
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-canary");
    assert_eq!(registry_counter(&vm, "generation"), 2);

    // One alias failing fails the whole poll: nothing changes.
    vm.host.advance_ms(1000);
    let polls = tick_polls(&mut vm);
    vm.answer_root(
        polls[0].token,
        &status("500"),
        br#"{"error_code": "INTERNAL_ERROR", "message": "x"}"#,
    );
    vm.answer_root(polls[1].token, OK, &version("9", json!([])));
    assert_eq!(registry_counter(&vm, "failures"), 1);
    assert_eq!(registry_counter(&vm, "generation"), 2);
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-canary");

    // No alias resolves: the model goes back to its configured targets.
    vm.host.advance_ms(1000);
    let polls = tick_polls(&mut vm);
    vm.answer_root(polls[0].token, &status("400"), NO_ALIAS);
    vm.answer_root(polls[1].token, &status("400"), NO_ALIAS);
    assert_eq!(registry_counter(&vm, "generation"), 3);
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v1");
}

#[test]
fn a_registry_cluster_envoy_does_not_know_fails_the_poll() {
    let mut vm = Vm::start(&json_config());
    vm.host.fail("dispatch", 2);
    vm.tick(1);
    vm.host.heal("dispatch");
    assert_eq!(registry_counter(&vm, "failures"), 1);
    assert_eq!(registry_counter(&vm, "polls"), 1);
    assert_eq!(routed(&mut vm, None, "fraud"), "fraud-v1");
}
