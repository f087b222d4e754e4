//! `Value` against serde_json's: for generated documents and changes of them, the same value
//! read, the same text (`Display`, `to_string`) and `Debug`, the same answers from every
//! accessor and pointer, the same equalities, and `json!` building what serde_json's built.

use super::read::from_slice;
use super::read::tests::mutated;
use super::value::{json, Value};
use crate::msgpack::testing::{any_doc, any_f64, any_u64};
use crate::rng::Rng;

/// Every accessor of `ours` answers as serde_json's on `theirs`, all the way down.
fn same_answers(ours: &Value, theirs: &serde_json::Value) {
    assert_eq!(ours.to_string(), theirs.to_string());
    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
    assert_eq!(ours.as_str(), theirs.as_str());
    assert_eq!(ours.as_bool(), theirs.as_bool());
    assert_eq!(ours.as_u64(), theirs.as_u64());
    assert_eq!(ours.as_i64(), theirs.as_i64());
    assert_eq!(
        ours.as_f64().map(f64::to_bits),
        theirs.as_f64().map(f64::to_bits)
    );
    assert_eq!(
        (
            ours.is_null(),
            ours.is_boolean(),
            ours.is_number(),
            ours.is_string()
        ),
        (
            theirs.is_null(),
            theirs.is_boolean(),
            theirs.is_number(),
            theirs.is_string()
        )
    );
    assert_eq!(
        (
            ours.is_array(),
            ours.is_object(),
            ours.is_u64(),
            ours.is_i64(),
            ours.is_f64()
        ),
        (
            theirs.is_array(),
            theirs.is_object(),
            theirs.is_u64(),
            theirs.is_i64(),
            theirs.is_f64()
        )
    );
    assert_eq!(*ours, Value::from(theirs));
    for i in 0..3usize {
        assert_eq!(ours.get(i).is_some(), theirs.get(i).is_some());
        assert_eq!(ours[i].to_string(), theirs[i].to_string());
    }
    for key in ["model", "a", "", "0", "k"] {
        assert_eq!(ours.get(key).is_some(), theirs.get(key).is_some());
        assert_eq!(ours[key].to_string(), theirs[key].to_string());
    }
    for p in [
        "",
        "/",
        "/0",
        "/model",
        "/a/0",
        "/0/1",
        "/00",
        "/+1",
        "x",
        "/messages/0/role",
    ] {
        assert_eq!(
            ours.pointer(p).map(Value::to_string),
            theirs.pointer(p).map(serde_json::Value::to_string),
            "{p}"
        );
    }
    for n in [0i64, 1, -1, 5] {
        assert_eq!(*ours == n, *theirs == n);
        assert_eq!(*ours == n as f64, *theirs == n as f64);
    }
    assert_eq!(*ours == 5u64, *theirs == 5u64);
    assert_eq!(*ours == "m", *theirs == "m");
    assert_eq!(*ours == true, *theirs == true);
    match (ours, theirs) {
        (Value::Array(a), serde_json::Value::Array(b)) => {
            assert_eq!(a.len(), b.len());
            a.iter().zip(b).for_each(|(x, y)| same_answers(x, y));
        }
        (Value::Object(a), serde_json::Value::Object(b)) => {
            assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
            a.values()
                .zip(b.values())
                .for_each(|(x, y)| same_answers(x, y));
        }
        _ => {}
    }
}

fn documents(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut docs = Vec::new();
    for _ in 0..400 {
        let mp = any_doc(rng);
        if let Ok(v) = rmp_serde::from_slice::<serde_json::Value>(&mp) {
            let doc = serde_json::to_vec(&v).unwrap();
            for _ in 0..3 {
                docs.push(mutated(&doc, rng));
            }
            docs.push(doc);
        }
    }
    for _ in 0..300 {
        docs.push(format!("[{}, {}, -{}]", any_f64(rng), any_u64(rng), any_u64(rng)).into_bytes());
    }
    docs
}

#[test]
fn values_read_answer_as_serde_json_values_do() {
    let mut rng = Rng::seed_from_u64(71);
    let mut read = 0;
    for doc in documents(&mut rng) {
        let theirs = serde_json::from_slice::<serde_json::Value>(&doc);
        let ours = from_slice(&doc);
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "{}",
            String::from_utf8_lossy(&doc)
        );
        if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
            same_answers(&ours, &theirs);
            read += 1;
        }
    }
    assert!(read > 600, "{read}");
}

#[test]
fn equality_is_serde_json_equality() {
    let texts = [
        "1",
        "1.0",
        "-1",
        "-1.0",
        "0",
        "-0",
        "0.0",
        "-0.0",
        "18446744073709551615",
        "1e3",
        "1000",
        "\"1\"",
        "null",
        "true",
        "[]",
        "{}",
        "[1]",
        "[1.0]",
        "{\"a\":1}",
        "{\"a\":1.0}",
        "{\"a\":1,\"b\":2}",
        "{\"b\":2,\"a\":1}",
        "9223372036854775807",
        "-9223372036854775808",
    ];
    for a in texts {
        for b in texts {
            let (oa, ob) = (
                from_slice(a.as_bytes()).unwrap(),
                from_slice(b.as_bytes()).unwrap(),
            );
            let ta: serde_json::Value = serde_json::from_str(a).unwrap();
            let tb: serde_json::Value = serde_json::from_str(b).unwrap();
            assert_eq!(oa == ob, ta == tb, "{a} {b}");
        }
    }
}

#[test]
fn json_builds_what_serde_json_built() {
    let mut rng = Rng::seed_from_u64(72);
    for _ in 0..500 {
        let (f, u, i) = (
            any_f64(&mut rng),
            any_u64(&mut rng),
            -(any_u64(&mut rng) as i64),
        );
        let name = format!("n{}", rng.below(10));
        let words = vec!["a".to_string(), name.clone()];
        let maybe: Option<f64> = (rng.below(2) == 0).then_some(f);
        let map: std::collections::BTreeMap<String, f64> = [(name.clone(), f)].into();
        let small = rng.below(1000) as u32;
        let ours = json!({
            "f": f, "u": u, "i": i, "name": name, "ref": &name, "str": name.as_str(),
            "words": words, "maybe": maybe, "map": map, "small": small, "nan": f64::NAN,
            "inf": f64::INFINITY, "nested": [1, -2, 3.5, null, true, false, {"k": [f, u]}],
            "empty": {}, "none": [], "neg": -0.0, "bool": u % 2 == 0,
        });
        let theirs = serde_json::json!({
            "f": f, "u": u, "i": i, "name": name, "ref": &name, "str": name.as_str(),
            "words": words, "maybe": maybe, "map": map, "small": small, "nan": f64::NAN,
            "inf": f64::INFINITY, "nested": [1, -2, 3.5, null, true, false, {"k": [f, u]}],
            "empty": {}, "none": [], "neg": -0.0, "bool": u % 2 == 0,
        });
        same_answers(&ours, &theirs);
        assert_eq!(json!(f), serde_json::json!(f));
        assert_eq!(json!(name), serde_json::json!(name));
        assert_eq!(json!(null), serde_json::json!(null));
    }
}
