//! Traffic splitting: a 90/10 weighted split within statistical bounds (the counters agreeing
//! with where each request went), and sticky assignment by header or cookie that is a hash,
//! not state: the same on every VM, and reweighting moves only the users whose bucket changes
//! owner.

use std::collections::BTreeMap;

use crate::driver::*;
use inference_router_core::host::Action;
use serde_json::{json, Value};

/// Sends a request; the (cluster, reason) it got.
fn routed(vm: &mut Vm, headers: &[(&str, &str)]) -> (String, String) {
    let mut sent = vm.send(headers, b"");
    assert_eq!(sent.action, Action::Continue);
    let cluster = vm.routed_cluster().unwrap();
    let target = vm.host.request_header_value("x-inference-target").unwrap();
    assert!(
        cluster.ends_with(&target),
        "cluster {cluster} but target {target}"
    );
    vm.respond(&mut sent, OK, b"");
    (cluster, vm.response_header("x-inference-reason").unwrap())
}

#[test]
fn a_weighted_split_follows_the_weights() {
    let mut vm = Vm::start(&json!({
        "models": [
            { "name": "sentiment",
              "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 90 },
                           { "name": "v2", "cluster": "sentiment-v2", "weight": 10 } ] }
        ]
    }));
    const N: u64 = 2000;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..N {
        let (cluster, reason) = routed(&mut vm, &get("/v2/models/sentiment/ready"));
        assert_eq!(reason, "weighted");
        *counts.entry(cluster).or_default() += 1;
    }
    let v2 = counts.get("sentiment-v2").copied().unwrap_or(0);
    // Binomial(2000, 0.1): 200, sigma 13.4; ±6 sigma. A 50/50 split or an ignored weight fails.
    assert!((120..=280).contains(&v2), "{counts:?}");
    assert_eq!(vm.counter("requests.sentiment.v2"), v2);
    assert_eq!(vm.counter("requests.sentiment.v1"), N - v2);
    assert_eq!(vm.counter("decisions.weighted"), N);
}

fn sticky_config(w1: u32, w2: u32) -> Value {
    json!({
        "models": [
            { "name": "sentiment",
              "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": w1 },
                           { "name": "v2", "cluster": "sentiment-v2", "weight": w2 } ],
              "strategy": { "type": "weighted", "sticky": { "header": "x-user-id" } } },
            { "name": "chat",
              "targets": [ { "name": "small", "cluster": "llm-small", "weight": 50 },
                           { "name": "large", "cluster": "llm-large", "weight": 50 } ],
              "strategy": { "type": "weighted", "sticky": { "cookie": "session" } } }
        ]
    })
}

/// A VM with seeds other than `Vm::start`'s, as another worker or another Envoy has.
fn other_vm(config: &Value) -> Vm {
    let mut vm = Vm::start(config);
    assert!(vm.reload(config));
    vm
}

fn assignments(vm: &mut Vm, users: &[String]) -> Vec<String> {
    users
        .iter()
        .map(|u| {
            let (cluster, reason) = routed(
                vm,
                &with(get("/v2/models/sentiment/ready"), &[("x-user-id", u)]),
            );
            assert_eq!(reason, "sticky");
            cluster
        })
        .collect()
}

#[test]
fn sticky_users_stay_on_one_target_on_every_vm() {
    let cfg = sticky_config(50, 50);
    let (mut a, mut b) = (Vm::start(&cfg), other_vm(&cfg));
    // alice, 40 requests, alternating between two VMs with different random seeds.
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let vm = if i % 2 == 0 { &mut a } else { &mut b };
        seen.insert(routed(
            vm,
            &with(get("/v2/models/sentiment/ready"), &[("x-user-id", "alice")]),
        ));
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    // 400 users over 50/50: each assigned the same by both VMs, spread over both targets.
    let users: Vec<String> = (0..400)
        .map(|u| format!("customer-{u}@example.com"))
        .collect();
    let on_a = assignments(&mut a, &users);
    assert_eq!(assignments(&mut b, &users), on_a);
    let v2 = on_a.iter().filter(|c| *c == "sentiment-v2").count();
    assert!((140..=260).contains(&v2), "{v2} of 400 on v2");

    // The `session` cookie among others; a cookie whose name merely contains it is another one.
    let mut clusters = std::collections::BTreeSet::new();
    for i in 0..20 {
        let cookie = format!("theme=dark; session=s-12345; n={i}");
        let (cluster, reason) = routed(
            &mut a,
            &with(get("/v2/models/chat/ready"), &[("cookie", &cookie)]),
        );
        assert_eq!(reason, "sticky");
        clusters.insert(cluster);
    }
    assert_eq!(clusters.len(), 1, "{clusters:?}");
    let large = (0..200)
        .filter(|s| {
            let cookie = format!("session=sess-{s}");
            routed(
                &mut b,
                &with(get("/v2/models/chat/ready"), &[("cookie", &cookie)]),
            )
            .0 == "llm-large"
        })
        .count();
    assert!(
        (58..=142).contains(&large),
        "{large} of 200 sessions on large"
    );
    // Without the header or the cookie: a random draw.
    assert_eq!(
        routed(&mut a, &get("/v2/models/sentiment/ready")).1,
        "weighted"
    );
    assert_eq!(
        routed(
            &mut a,
            &with(
                get("/v2/models/chat/ready"),
                &[("cookie", "xsession=s-12345; session_old=s-1")]
            )
        )
        .1,
        "weighted"
    );
    assert_eq!(a.counter("decisions.sticky"), 20 + 400 + 20);
    assert_eq!(a.counter("decisions.weighted"), 2);
}

#[test]
fn reweighting_moves_only_the_users_whose_bucket_changes_owner() {
    let users: Vec<String> = (0..300).map(|u| format!("u{u}")).collect();
    let before = assignments(&mut Vm::start(&sticky_config(50, 50)), &users);
    let after = assignments(&mut other_vm(&sticky_config(60, 40)), &users);
    let moved = |from: &str, to: &str| {
        before
            .iter()
            .zip(&after)
            .filter(|(x, y)| *x == from && *y == to)
            .count()
    };
    assert_eq!(
        moved("sentiment-v1", "sentiment-v2"),
        0,
        "growing v1 moved users off it"
    );
    // About 10 % of all users go from v2 to v1: Binomial(300, 0.1), 30 ± 6 sigma.
    let v2_to_v1 = moved("sentiment-v2", "sentiment-v1");
    assert!((1..=61).contains(&v2_to_v1), "{v2_to_v1} of 300 moved");
    // And back: the same users return.
    let again = assignments(&mut Vm::start(&sticky_config(50, 50)), &users);
    assert_eq!(again, before);
}
