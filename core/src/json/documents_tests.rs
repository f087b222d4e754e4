//! The documents written by hand against serde's derive (kept for tests only): the same bytes
//! for generated values of every field.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use super::write::{to_vec, ToJson};
use crate::feedback::DecisionToken;
use crate::fleet::doc::{Contribution, Folded, Learned, Retired};
use crate::fleet::local::{InDoubt, Published, Snapshot, SyncRecord};
use crate::msgpack::testing::{any_f64, any_name, any_u64};
use crate::registry::{PollRecord, Snapshot as RegistrySnapshot};
use crate::rng::Rng;

fn agrees<T: ToJson + Serialize + std::fmt::Debug>(v: &T) {
    assert_eq!(
        String::from_utf8(to_vec(v)).unwrap(),
        serde_json::to_string(v).unwrap(),
        "{v:?}"
    );
}

fn list<T>(rng: &mut Rng, mut item: impl FnMut(&mut Rng) -> T) -> Vec<T> {
    (0..rng.below(4)).map(|_| item(rng)).collect()
}

fn map<T>(rng: &mut Rng, item: impl FnMut(&mut Rng) -> T) -> BTreeMap<String, T> {
    let values = list(rng, item);
    values.into_iter().map(|v| (any_name(rng), v)).collect()
}

fn four(rng: &mut Rng) -> [f64; 4] {
    [any_f64(rng), any_f64(rng), any_f64(rng), any_f64(rng)]
}

fn learned(rng: &mut Rng) -> Learned {
    Learned {
        id: any_name(rng),
        half_life_ms: any_f64(rng),
        as_of_ms: any_u64(rng),
        updates: any_u64(rng),
        targets: map(rng, four),
    }
}

fn token(rng: &mut Rng) -> DecisionToken {
    DecisionToken {
        model: any_name(rng),
        target: "t\"\\\n\u{1}é".into(),
        expires: any_u64(rng),
        nonce: any_u64(rng),
        bound: (rng.below(2) == 0).then(|| any_u64(rng)),
        key: any_name(rng),
    }
}

#[test]
fn fleet_documents_are_written_as_serde_wrote_them() {
    let mut rng = Rng::seed_from_u64(21);
    for _ in 0..2_000 {
        let r = &mut rng;
        agrees(&Contribution {
            v: any_u64(r) as u32,
            replica: any_name(r),
            incarnation: any_name(r),
            seq: any_u64(r),
            written_ms: any_u64(r),
            models: map(r, |r| list(r, learned)),
            health: map(r, |r| map(r, four)),
        });
        agrees(&Retired {
            v: any_u64(r) as u32,
            models: map(r, |r| list(r, learned)),
            folded: list(r, |r| Folded {
                replica: any_name(r),
                incarnation: any_name(r),
                seq: any_u64(r),
                at_ms: any_u64(r),
            }),
        });
        let snapshot = |r: &mut Rng| Snapshot {
            seq: any_u64(r),
            models: map(r, learned),
        };
        agrees(&Published {
            attempted: (r.below(2) == 0).then(|| snapshot(r)),
            confirmed: (r.below(2) == 0).then(|| snapshot(r)),
        });
        agrees(&SyncRecord {
            next_due_ms: any_u64(r),
            seq: any_u64(r),
            last_ok_ms: any_u64(r),
            warm_done: r.below(2) == 0,
            replicas: any_u64(r) as u32,
            created: r.below(2) == 0,
            published_ms: any_u64(r),
            published_digest: any_u64(r),
            failures: any_u64(r) as u32,
            conflict: r.below(2) == 0,
            login_after_ms: any_u64(r),
        });
        agrees(&list(r, |r| InDoubt {
            token: token(r),
            reward: any_f64(r),
            recorded_ms: any_u64(r),
            applied: r.below(2) == 0,
        }));
        agrees(&list(r, |r| (any_u64(r), any_u64(r) as i64)));
        agrees(&any_name(r));
    }
}

#[test]
fn registry_records_are_written_as_serde_wrote_them() {
    let mut rng = Rng::seed_from_u64(22);
    for _ in 0..2_000 {
        let r = &mut rng;
        agrees(&PollRecord {
            next_due_ms: any_u64(r),
            seq: any_u64(r),
            failures: any_u64(r) as u32,
            last_ok_ms: any_u64(r),
            last_error: any_name(r),
            unresolved: list(r, any_name).into_iter().collect::<BTreeSet<_>>(),
        });
        agrees(&RegistrySnapshot {
            generation: any_u64(r),
            models: map(r, |r| {
                list(
                    r,
                    |r| serde_json::json!({ "name": any_name(r), "weight": any_f64(r) }),
                )
            }),
            published_ms: any_u64(r),
        });
        agrees(&Value::Null);
    }
}
