//! [`FromJson`] for the values fields hold, and the variants of externally tagged enums, each
//! refused in the words serde used (`invalid value: integer `-1`, expected u32`).

use crate::json::Value;

use super::{invalid_type, invalid_value, unknown_variant, At, FromJson};
use crate::config::ConfigError;
use crate::vecmap::VecMap;

impl FromJson for String {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid_type(v, at, "a string"))
    }
}

impl FromJson for bool {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        v.as_bool().ok_or_else(|| invalid_type(v, at, "a boolean"))
    }
}

impl FromJson for f64 {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        v.as_f64().ok_or_else(|| invalid_type(v, at, "f64"))
    }
}

impl FromJson for i64 {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        match (v.as_i64(), v.as_u64()) {
            (Some(n), _) => Ok(n),
            (None, Some(n)) => Err(invalid_value(format_args!("integer `{n}`"), at, "i64")),
            (None, None) => Err(invalid_type(v, at, "i64")),
        }
    }
}

/// A whole number of the type serde calls `name`, at most `max`: out of range is an error,
/// never a wrap. Not generic: one copy for every unsigned type.
#[inline(never)]
fn unsigned(v: &Value, at: &At<'_>, name: &str, max: u64) -> Result<u64, ConfigError> {
    if let Some(n) = v.as_u64() {
        if n > max {
            return Err(invalid_value(format_args!("integer `{n}`"), at, name));
        }
        return Ok(n);
    }
    match v.as_i64() {
        Some(n) => Err(invalid_value(format_args!("integer `{n}`"), at, name)),
        None => Err(invalid_type(v, at, name)),
    }
}

impl FromJson for u16 {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        unsigned(v, at, "u16", u64::from(u16::MAX)).map(|n| u16::try_from(n).unwrap_or(u16::MAX))
    }
}

impl FromJson for u32 {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        unsigned(v, at, "u32", u64::from(u32::MAX)).map(|n| u32::try_from(n).unwrap_or(u32::MAX))
    }
}

impl FromJson for u64 {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        unsigned(v, at, "u64", u64::MAX)
    }
}

/// Any JSON value, as written.
impl FromJson for Value {
    fn from_json(v: &Value, _: &At<'_>) -> Result<Self, ConfigError> {
        Ok(v.clone())
    }
}

/// `null` is `None`.
impl<T: FromJson> FromJson for Option<T> {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        match v {
            Value::Null => Ok(None),
            v => T::from_json(v, at).map(Some),
        }
    }

    fn read_in(&mut self, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        match v {
            Value::Null => {
                *self = None;
                Ok(())
            }
            v => T::read_some(self, v, at),
        }
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        let mut out = Vec::new();
        out.read_in(v, at)?;
        Ok(out)
    }

    fn read_in(&mut self, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        items(v, at, &mut |x, at| T::read_push(self, x, at))
    }

    fn read_some(slot: &mut Option<Self>, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        slot.insert(Vec::new()).read_in(v, at)
    }
}

/// A list's items, each given to `item` with where it is. Not generic: one copy for every
/// item type.
#[inline(never)]
fn items(
    v: &Value,
    at: &At<'_>,
    item: &mut dyn FnMut(&Value, &At<'_>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let Value::Array(items) = v else {
        return Err(invalid_type(v, at, "a sequence"));
    };
    for (i, x) in items.iter().enumerate() {
        item(x, &at.index(i))?;
    }
    Ok(())
}

/// A key written twice keeps its last value, but every value must be valid, as before.
impl<T: FromJson> FromJson for VecMap<String, T> {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError> {
        let mut out = VecMap::new();
        out.read_in(v, at)?;
        Ok(out)
    }

    fn read_in(&mut self, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        // In order: collecting would sort them again, in code for every `T`. A value a key
        // written twice lost is read into a map of its own (checked, then dropped).
        entries(v, at, &mut |key, x, at| match key {
            Some(key) => T::read_entry(self, key, x, at),
            None => T::read_entry(&mut VecMap::new(), "", x, at),
        })
    }

    fn read_some(slot: &mut Option<Self>, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        slot.insert(VecMap::new()).read_in(v, at)
    }
}

/// Reads one entry of a map: its key (`None`: a value a key written twice lost), value and place.
type Entry<'e> = dyn FnMut(Option<&String>, &Value, &At<'_>) -> Result<(), ConfigError> + 'e;

/// A map's entries, each given to `entry` with its key and where it is; first the values
/// that keys written twice lost, without a key (checked, then dropped). Not generic: one copy
/// for every value type.
#[inline(never)]
fn entries(v: &Value, at: &At<'_>, entry: &mut Entry<'_>) -> Result<(), ConfigError> {
    let Value::Object(map) = v else {
        return Err(invalid_type(v, at, "a map"));
    };
    for d in at.duplicates() {
        entry(None, &d.earlier, &at.key(&d.key))?;
    }
    for (k, x) in map {
        entry(Some(k), x, &at.key(k))?;
    }
    Ok(())
}

/// A variant without data, `"name"` (or `{"name": null}`, which serde_json took too): its
/// name, one of `variants`.
pub(crate) fn unit_variant(
    v: &Value,
    at: &At<'_>,
    variants: &'static [&'static str],
) -> Result<&'static str, ConfigError> {
    match variant(v, at, variants)? {
        (name, Some(x)) if !x.is_null() => Err(invalid_type(x, &at.key(name), "unit")),
        (name, _) => Ok(name),
    }
}

/// A variant holding one value, `{"name": value}`: its name, one of `variants`, and the value.
pub(crate) fn newtype_variant<T: FromJson>(
    v: &Value,
    at: &At<'_>,
    variants: &'static [&'static str],
) -> Result<(&'static str, T), ConfigError> {
    match variant(v, at, variants)? {
        (name, Some(x)) => Ok((name, T::from_json(x, &at.key(name))?)),
        (_, None) => Err(at.error("invalid type: unit variant, expected newtype variant")),
    }
}

/// `"name"` or `{"name": value}` (one key, written once), `name` one of `variants`.
fn variant<'v>(
    v: &'v Value,
    at: &At<'_>,
    variants: &'static [&'static str],
) -> Result<(&'static str, Option<&'v Value>), ConfigError> {
    let (key, value) = match v {
        Value::String(s) => (s.as_str(), None),
        Value::Object(map) => match map.iter().next() {
            Some((k, x)) if map.len() == 1 && at.duplicates().is_empty() => (k.as_str(), Some(x)),
            _ => return Err(invalid_value("map", at, "map with a single key")),
        },
        other => return Err(invalid_type(other, at, "string or map")),
    };
    match variants.iter().find(|n| **n == key) {
        Some(name) => Ok((name, value)),
        None => Err(unknown_variant(at, key, variants)),
    }
}
