//! [`Obj`]: the fields of one struct, by name (`{"name": "a"}`) or, as serde's derived structs
//! also took them, by position (`["a"]`, in the order the fields are declared).

use std::cell::Cell;

use crate::json::{Map, Value};

use super::{invalid_type, missing_field, At, FromJson};
use crate::config::ConfigError;

pub(crate) struct Obj<'a> {
    fields: Fields<'a>,
    /// The first error of a field. Fields are read on past it, each into a stand-in, and
    /// [`Obj::finish`] reports it: a struct built at once, and dropped whole if refused, is
    /// much less code than an early return after each field dropping the fields before it.
    error: Cell<Option<ConfigError>>,
    /// Every field the struct has, in declaration order.
    names: &'static [&'static str],
    /// serde's name for the struct (`struct TargetDto`).
    what: &'a str,
    at: &'a At<'a>,
}

enum Fields<'a> {
    Named(&'a Map<String, Value>),
    /// The values after the first `skip` (an internally tagged enum's tag).
    Positional {
        values: &'a [Value],
        skip: usize,
    },
}

impl<'a> Obj<'a> {
    /// `v` as the struct serde calls `what`, whose fields are `names`.
    pub(crate) fn new(
        v: &'a Value,
        at: &'a At<'a>,
        what: &'a str,
        names: &'static [&'static str],
    ) -> Result<Self, ConfigError> {
        Self::with_tag(v, at, what, names, None)
    }

    /// A struct variant of an internally tagged enum: `v` holds its `tag` as well, as a key
    /// or as the first value.
    pub(crate) fn with_tag(
        v: &'a Value,
        at: &'a At<'a>,
        what: &'a str,
        names: &'static [&'static str],
        tag: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let fields = match v {
            Value::Object(map) => Fields::Named(map),
            Value::Array(values) => Fields::Positional {
                values,
                skip: usize::from(tag.is_some()),
            },
            other => return Err(invalid_type(other, at, what)),
        };
        let obj = Obj {
            fields,
            error: Cell::new(None),
            names,
            what,
            at,
        };
        obj.check(tag)?;
        Ok(obj)
    }

    /// Refuses unknown and repeated fields before any is read, so a typo is named rather than
    /// the field it makes look missing; and values beyond the last field.
    fn check(&self, tag: Option<&str>) -> Result<(), ConfigError> {
        match self.fields {
            Fields::Named(map) => {
                let known =
                    |k: &&String| Some(k.as_str()) == tag || self.names.contains(&k.as_str());
                if let Some(k) = map.keys().find(|k| !known(k)) {
                    let e = super::unknown("field", k, self.names);
                    return Err(self.at.key(k).error(e));
                }
                match self.at.duplicates().first() {
                    Some(d) => Err(self.at.error(format_args!("duplicate field `{}`", d.key))),
                    None => Ok(()),
                }
            }
            Fields::Positional { values, skip } if values.len() > skip + self.names.len() => {
                Err(self.at.error("trailing characters"))
            }
            Fields::Positional { .. } => Ok(()),
        }
    }

    /// The field's value, if given, and where it is.
    fn get<'s>(&'s self, name: &'s str) -> Option<(&'a Value, At<'s>)> {
        match self.fields {
            Fields::Named(map) => map.get(name).map(|v| (v, self.at.key(name))),
            Fields::Positional { values, skip } => {
                let i = self.names.iter().position(|n| *n == name)? + skip;
                values.get(i).map(|v| (v, self.at.index(i)))
            }
        }
    }

    /// A field that must be present. Not inlined (nor `or`): one copy per field type rather
    /// than one per field of every struct.
    #[inline(never)]
    pub(crate) fn req<T: FromJson + Default>(&self, name: &'static str) -> T {
        match self.get(name) {
            Some((v, at)) => self.keep(T::from_json(v, &at), T::default),
            None => self.keep(Err(self.missing(name)), T::default),
        }
    }

    /// A field that takes `default()` when absent (present, it must be valid, even `null`).
    #[inline(never)]
    pub(crate) fn or<T: FromJson>(&self, name: &str, default: fn() -> T) -> T {
        match self.get(name) {
            Some((v, at)) => self.keep(T::from_json(v, &at), default),
            None => default(),
        }
    }

    pub(crate) fn or_default<T: FromJson + Default>(&self, name: &str) -> T {
        self.or(name, T::default)
    }

    /// Any JSON value, `null` included: `Some(Value::Null)` is `"exact": null`, `None` absent.
    pub(crate) fn present(&self, name: &str) -> Option<Value> {
        self.get(name).map(|(v, _)| v.clone())
    }

    /// `value` (the struct read), or the first error of its fields.
    pub(crate) fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        match self.error.into_inner() {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }

    /// The value read, or `stand_in()` with the error kept for [`Obj::finish`].
    fn keep<T>(&self, read: Result<T, ConfigError>, stand_in: fn() -> T) -> T {
        read.unwrap_or_else(|e| {
            self.record(e);
            stand_in()
        })
    }

    /// Keeps `e` unless an earlier field failed (not generic: one copy for every field type).
    #[inline(never)]
    fn record(&self, e: ConfigError) {
        let first = self.error.take().unwrap_or(e);
        self.error.set(Some(first));
    }

    fn missing(&self, name: &'static str) -> ConfigError {
        match self.fields {
            Fields::Named(_) => missing_field(self.at, name),
            Fields::Positional { .. } => {
                let index = self.names.iter().position(|n| *n == name).unwrap_or(0);
                let n = self.names.len();
                let plural = if n == 1 { "" } else { "s" };
                let expected = format!("{} with {n} element{plural}", self.what);
                self.at
                    .error(format_args!("invalid length {index}, expected {expected}"))
            }
        }
    }
}
