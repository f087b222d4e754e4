//! The documents written by hand against serde's derive (kept for tests only): the same bytes
//! for generated values of every field.

use crate::json::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::read::tests::{mutated, spaced};
use super::read::{from_text, FromText};
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

/// A `BTreeMap` or a `VecMap`, whichever the document holds.
fn map<T, M: FromIterator<(String, T)>>(rng: &mut Rng, item: impl FnMut(&mut Rng) -> T) -> M {
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
        context: (rng.below(2) == 0).then(|| {
            let values: Vec<f64> = (0..rng.below(4)).map(|_| rng.next_f64()).collect();
            crate::bandit::Context::from_values(&values)
        }),
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
            unresolved: list(r, any_name).into_iter().collect(),
        });
        agrees(&RegistrySnapshot {
            generation: any_u64(r),
            models: map(r, |r| {
                list(
                    r,
                    |r| crate::json::json!({ "name": any_name(r), "weight": any_f64(r) }),
                )
            }),
            published_ms: any_u64(r),
        });
        agrees(&Value::Null);
    }
}

/// `doc` read by hand and by serde's derive: the same value (the same Debug form, which tells
/// `-0.0` from `0.0`) or both refused with the same error text.
pub(crate) fn reads_alike<T: FromText + DeserializeOwned + PartialEq + std::fmt::Debug>(
    doc: &[u8],
) -> bool {
    let ours = from_text::<T>(doc);
    let theirs = serde_json::from_slice::<T>(doc);
    let text = String::from_utf8_lossy(doc);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "{text}");
            // Debug tells `-0.0` from `0.0`.
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}");
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
        _ => panic!("{text}: by hand {ours:?}, by serde {theirs:?}"),
    }
    ours.is_ok()
}

/// Changes a struct's text as a writer other than this filter might: fields unknown to it
/// (holding what only a skipped value may hold), a field twice, `null`s, another spelling of a
/// number, or bytes changed.
pub(crate) fn respelled(doc: &[u8], rng: &mut Rng) -> Vec<u8> {
    const UNKNOWN: [&str; 8] = [
        "\"zz\":1e400,",
        "\"zz\":\"\\ud800\",",
        "\"zz\":\"\u{fffd}\",",
        "\"zz\":[[[[[[[[[[{}]]]]]]]]]],",
        "\"zz\":-0,",
        "\"zz\":01,",
        "\"seq\":1,",
        "\"v\":1,",
    ];
    let text = String::from_utf8_lossy(doc).into_owned();
    let mut out = match rng.below(6) {
        0 => text.replacen('{', &format!("{{{}", UNKNOWN[rng.below(8) as usize]), 1),
        1 => text.replacen(":0", ":0.0", 1).replacen(":1,", ":-1,", 1),
        2 => text
            .replacen(":null", ":[]", 1)
            .replacen("\"bound\":", "\"bound\":null,\"b\":", 1),
        3 => text
            .replacen(":true", ":1", 1)
            .replacen(":4294967295", ":4294967296", 1),
        4 => text.replace("\"a\"", "\"\\u0061\""),
        _ => String::from_utf8_lossy(&mutated(doc, rng)).into_owned(),
    }
    .into_bytes();
    if rng.below(3) == 0 {
        out = spaced(&out, rng);
    }
    if text.contains('\u{fffd}') || rng.below(8) == 0 {
        out.extend_from_slice(b" ");
    }
    // A raw byte that is not UTF-8 inside a skipped string.
    let raw = out
        .windows(3)
        .position(|w| w == "\u{fffd}".as_bytes())
        .filter(|_| rng.below(2) == 0);
    if let Some(at) = raw {
        out.splice(at..at + 3, [0xff]);
    }
    out
}

fn compare<T: FromText + DeserializeOwned + ToJson + Serialize + PartialEq + std::fmt::Debug>(
    doc: &T,
    rng: &mut Rng,
) {
    let bytes = to_vec(doc);
    reads_alike::<T>(&bytes);
    for _ in 0..6 {
        reads_alike::<T>(&respelled(&bytes, rng));
    }
}

#[test]
fn documents_are_read_as_serde_read_them() {
    let mut rng = Rng::seed_from_u64(23);
    for _ in 0..3_000 {
        let r = &mut rng;
        let contribution = Contribution {
            v: any_u64(r) as u32,
            replica: any_name(r).chars().take(5).collect(),
            incarnation: "a".into(),
            seq: any_u64(r),
            written_ms: any_u64(r),
            models: map(r, |r| list(r, learned)),
            health: map(r, |r| map(r, four)),
        };
        compare(&contribution, r);
        let retired = Retired {
            v: 1,
            models: map(r, |r| list(r, learned)),
            folded: list(r, |r| Folded {
                replica: "a".into(),
                incarnation: any_name(r),
                seq: any_u64(r),
                at_ms: any_u64(r),
            }),
        };
        compare(&retired, r);
        let published = Published {
            attempted: (r.below(2) == 0).then(|| Snapshot {
                seq: any_u64(r),
                models: map(r, learned),
            }),
            confirmed: None,
        };
        compare(&published, r);
        let sync = SyncRecord {
            next_due_ms: any_u64(r),
            seq: any_u64(r),
            last_ok_ms: 0,
            warm_done: r.below(2) == 0,
            replicas: any_u64(r) as u32,
            created: true,
            published_ms: 1,
            published_digest: any_u64(r),
            failures: 0,
            conflict: false,
            login_after_ms: any_u64(r),
        };
        compare(&sync, r);
        let doubts = list(r, |r| InDoubt {
            token: token(r),
            reward: any_f64(r),
            recorded_ms: any_u64(r),
            applied: r.below(2) == 0,
        });
        compare(&doubts, r);
        compare(&list(r, |r| (any_u64(r), any_u64(r) as i64)), r);
        compare(&any_name(r), r);
        compare(
            &PollRecord {
                next_due_ms: any_u64(r),
                seq: 1,
                failures: any_u64(r) as u32,
                last_ok_ms: 0,
                last_error: "a".into(),
                unresolved: list(r, any_name).into_iter().collect(),
            },
            r,
        );
        compare(
            &RegistrySnapshot {
                generation: any_u64(r),
                models: map(r, |r| {
                    list(
                        r,
                        |r| crate::json::json!({ "a": any_f64(r), "v": [1, null] }),
                    )
                }),
                published_ms: any_u64(r),
            },
            r,
        );
    }
}

#[test]
fn structs_are_read_from_arrays_as_serde_read_them() {
    for doc in [
        r#"["r","i",1,2]"#,
        r#"["r","i",1]"#,
        r#"["r","i",1,2,3]"#,
        "[]",
        "[null]",
        "[null,null]",
        "[null,null,null]",
        r#"[1,[1,{}]]"#,
        r#"[1,{"a":[0,1]}]"#,
        r#"{"attempted":null}"#,
        "{}",
        r#"{"confirmed":{"seq":1,"models":{}},"confirmed":null}"#,
        r#"{"seq":1,"models":{},"seq":2}"#,
        r#"[5,{},[["a","b",1,2]]]"#,
        r#"[5]"#,
        r#"[5,null]"#,
        r#"{"v":1,"folded":[],"x":{"y":[1e999]}}"#,
        r#""str""#,
        "7",
        "null",
        "true",
        "[1,2",
        r#"{"v":1"#,
        r#"{"v":-1}"#,
        r#"{"v":1.0}"#,
        r#"{"v":4294967296}"#,
        r#"{"v":1,"models":{"m":[{"id":"x","as_of_ms":1,"updates":2,"targets":{"a":[1,2,3]}}]}}"#,
    ] {
        let d = doc.as_bytes();
        reads_alike::<Folded>(d);
        reads_alike::<Published>(d);
        reads_alike::<Snapshot>(d);
        reads_alike::<Retired>(d);
        reads_alike::<Vec<(u64, i64)>>(d);
        reads_alike::<String>(d);
        reads_alike::<DecisionToken>(d);
    }
}
