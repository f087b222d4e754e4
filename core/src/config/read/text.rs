//! The document's text into a `crate::json::Value` (by `json::read`'s parser), with two things
//! serde_json's own `Value` reader does not do: a syntax error names the field it is in (as `serde_path_to_error` did),
//! and a key written twice is recorded. serde_json keeps the last value silently; a struct field
//! given twice is refused ([`super::read_fields`]), a map keeps the last as it always did.

use crate::json::{Map, Value};

use super::{At, Step};
use crate::config::ConfigError;
use crate::json::read::{Error, Parser};

/// A key written twice in one object.
pub(super) struct Duplicate {
    /// The object's path, as [`At::steps`] gives it.
    pub(super) object: Vec<String>,
    pub(super) key: String,
    /// The value written first, which the later one replaced.
    pub(super) earlier: Value,
}

/// Parses `bytes`: one JSON value, and nothing after it but whitespace (a document cut and
/// pasted twice must not start with half of itself).
pub(super) fn parse(bytes: &[u8]) -> Result<(Value, Vec<Duplicate>), ConfigError> {
    let mut track = Track::default();
    let mut p = Parser::new(bytes);
    match node(&mut p, &At::root(&[]), &mut track).and_then(|v| p.end().map(|()| v)) {
        Ok(v) => Ok((v, track.duplicates)),
        Err(e) => Err(ConfigError {
            field: track.error_at.unwrap_or_default(),
            reason: crate::quote::text(&e),
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
            self.error_at = Some(crate::quote::text(at));
        }
    }
}

/// One value, at `at`; an error in it (not in the `,` or `:` around it) is placed there.
fn node(p: &mut Parser<'_>, at: &At<'_>, track: &mut Track) -> Result<Value, Error> {
    build(p, at, track).inspect_err(|_| track.fail(at))
}

fn build(p: &mut Parser<'_>, at: &At<'_>, track: &mut Track) -> Result<Value, Error> {
    match p.whitespace() {
        Some(b'[') => {
            p.enter()?;
            let items = items(p, at, track);
            p.leave();
            let items = items?;
            p.end_seq().map(|()| Value::Array(items))
        }
        Some(b'{') => {
            p.enter()?;
            let entries = entries(p, at, track);
            p.leave();
            let entries = entries?;
            p.end_map().map(|()| Value::Object(entries))
        }
        _ => p.value(),
    }
}

fn items(p: &mut Parser<'_>, at: &At<'_>, track: &mut Track) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    while p.next_item(out.is_empty())? {
        out.push(node(p, &at.index(out.len()), track)?);
    }
    Ok(out)
}

/// An object's entries; a key written twice is recorded with the value it lost.
fn entries(
    p: &mut Parser<'_>,
    at: &At<'_>,
    track: &mut Track,
) -> Result<Map<String, Value>, Error> {
    let mut out = Map::new();
    loop {
        let key = match p.next_key(out.is_empty()) {
            Ok(Some(key)) => key.into_owned(),
            Ok(None) => return Ok(out),
            Err(e) => {
                track.fail(&at.step(Step::Unreadable));
                return Err(e);
            }
        };
        p.colon()?;
        let value = node(p, &at.key(&key), track)?;
        if let Some(earlier) = out.insert(key.clone(), value) {
            track.duplicates.push(Duplicate {
                object: at.steps(),
                key,
                earlier,
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
#[path = "text_tests.rs"]
mod tests;
