//! The parser against the serde-based one it replaced (kept here as the reference): the same
//! value, the same keys recorded as written twice, or the same error (field and reason), for
//! the documented examples, generated documents, and every cut and many changes of them.

use std::fmt;

use crate::json::{Map, Number, Value};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::super::{At, Step};
use super::Duplicate;
use crate::config::ConfigError;

/// Parses `bytes`: one JSON value, and nothing after it but whitespace (a document cut and
/// pasted twice must not start with half of itself).
pub(super) fn reference(bytes: &[u8]) -> Result<(Value, Vec<Duplicate>), ConfigError> {
    let mut track = Track::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let node = Node {
        at: At::root(&[]),
        track: &mut track,
    };
    match node.deserialize(&mut de).and_then(|v| de.end().map(|()| v)) {
        Ok(v) => Ok((v, track.duplicates)),
        Err(e) => Err(ConfigError {
            field: track.error_at.unwrap_or_default(),
            reason: e.to_string(),
        }),
    }
}

#[derive(Default)]
struct Track {
    /// Where the error arose: the innermost value it came out of.
    error_at: Option<String>,
    duplicates: Vec<Duplicate>,
}

impl Track {
    fn fail(&mut self, at: &At<'_>) {
        if self.error_at.is_none() {
            self.error_at = Some(at.to_string());
        }
    }
}

/// One value, at `at`.
struct Node<'a, 't> {
    at: At<'a>,
    track: &'t mut Track,
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        let Node { at, track } = self;
        let build = Build {
            at: &at,
            track: &mut *track,
        };
        d.deserialize_any(build).inspect_err(|_| track.fail(&at))
    }
}

struct Build<'a, 't> {
    at: &'a At<'a>,
    track: &'t mut Track,
}

impl<'de> Visitor<'de> for Build<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Node {
            at: self.at.index(out.len()),
            track: &mut *self.track,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        loop {
            let key = match map.next_key::<String>() {
                Ok(Some(key)) => key,
                Ok(None) => return Ok(Value::Object(out)),
                Err(e) => {
                    self.track.fail(&self.at.step(Step::Unreadable));
                    return Err(e);
                }
            };
            let value = map.next_value_seed(Node {
                at: self.at.key(&key),
                track: &mut *self.track,
            })?;
            if let Some(earlier) = out.insert(key.clone(), value) {
                self.track.duplicates.push(Duplicate {
                    object: self.at.steps(),
                    key,
                    earlier,
                });
            }
        }
    }
}

fn outcome(
    r: Result<(Value, Vec<Duplicate>), ConfigError>,
) -> Result<(String, Vec<String>), (String, String)> {
    r.map(|(v, d)| {
        let dups = d
            .iter()
            .map(|d| format!("{:?} {} {}", d.object, d.key, d.earlier))
            .collect();
        (v.to_string(), dups)
    })
    .map_err(|e| (e.field, e.reason))
}

fn agrees(doc: &[u8]) {
    assert_eq!(
        outcome(super::parse(doc)),
        outcome(reference(doc)),
        "{}",
        String::from_utf8_lossy(doc)
    );
}

#[test]
fn documents_parse_as_before() {
    use crate::json::read::tests::{mutated, spaced};
    use crate::rng::Rng;
    let docs = [
        r#"{"models":[{"name":"a","targets":[{"name":"x","cluster":"c","weight":1}]}]}"#,
        r#"{"models":[{"name":"a","name":"b","targets":[]}],"models":[]}"#,
        r#"{"a":{"b":[1,{"c":[true,null,"x\u00e9"],"c":2}]},"d":-0.5e-3}"#,
        r#"{ this is not json"#,
        r#"{"a":1}{"a":1}"#,
        r#"{"a" 1}"#,
        r#"{"a":[1,2,]}"#,
        r#"{"a":{"\ud800":1}}"#,
    ];
    let mut rng = Rng::seed_from_u64(51);
    for doc in docs {
        let d = doc.as_bytes();
        for cut in 0..d.len() {
            agrees(&d[..cut]);
        }
        for _ in 0..2_000 {
            let changed = mutated(&spaced(d, &mut rng), &mut rng);
            agrees(&changed);
            agrees(&mutated(&changed, &mut rng));
        }
    }
    for depth in [126, 127, 128, 129] {
        agrees(format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).as_bytes());
        agrees(format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)).as_bytes());
    }
}
