//! The configuration's JSON read by hand into its DTOs (`config::dto`), every error naming the
//! exact field (`models[0].targets[1].weight`) in serde's words. Hand-written: replacing serde's
//! derived visitors and `serde_path_to_error` took ~180 KB off the 1.42 MB wasm module.
//!
//! - [`text`]: bytes → `crate::json::Value`, a syntax error located, keys written twice recorded;
//! - [`scalars`]: numbers, strings, lists, maps and enum variants;
//! - [`object`]: a struct's fields ([`read_fields`]);
//! - here: [`At`] (where a value is), serde's error wording and [`read_struct!`].

mod object;
mod scalars;
mod text;

use std::fmt;

use crate::json::Value;
use crate::vecmap::VecMap;

use super::ConfigError;
pub(crate) use object::{read as read_fields, Present, Shape, Slot};
pub(crate) use scalars::{newtype_variant, unit_variant};
use text::Duplicate;

/// A value that can be read from JSON; the error names `at` (or a field under it).
pub(crate) trait FromJson: Sized {
    fn from_json(v: &Value, at: &At<'_>) -> Result<Self, ConfigError>;

    /// Reads `v` into `self`, which holds its default (a field not read yet): a struct field
    /// by field, in place (`read_struct!`), a list's items appended; any other value replaced.
    fn read_in(&mut self, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        *self = Self::from_json(v, at)?;
        Ok(())
    }

    /// Reads `v` into `slot` as `Some`: a struct built in place, not moved there.
    fn read_some(slot: &mut Option<Self>, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        *slot = Some(Self::from_json(v, at)?);
        Ok(())
    }

    /// Reads `v` as the value of `key`, new in `map`: a struct built in place there.
    fn read_entry(
        map: &mut VecMap<String, Self>,
        key: &str,
        v: &Value,
        at: &At<'_>,
    ) -> Result<(), ConfigError> {
        map.insert(key.to_owned(), Self::from_json(v, at)?);
        Ok(())
    }

    /// Reads `v` as a new last item of `list`: a struct built in place there.
    fn read_push(list: &mut Vec<Self>, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        list.push(Self::from_json(v, at)?);
        Ok(())
    }
}

/// Reads a whole document into `T`.
pub(crate) fn document<T: FromJson>(bytes: &[u8]) -> Result<T, ConfigError> {
    let (value, duplicates) = text::parse(bytes)?;
    T::from_json(&value, &At::root(&duplicates))
}

/// Where a value is in the document: a chain of steps up to the root, kept on the stack and
/// written out (`models[0].name`) only for an error.
#[derive(Clone, Copy)]
pub(crate) struct At<'a> {
    up: Option<(&'a At<'a>, Step<'a>)>,
    duplicates: &'a [Duplicate],
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
    /// A key that could not be read (a syntax error in it).
    Unreadable,
}

impl<'a> At<'a> {
    fn root(duplicates: &'a [Duplicate]) -> Self {
        At {
            up: None,
            duplicates,
        }
    }

    pub(crate) fn key<'b>(&'b self, key: &'b str) -> At<'b> {
        self.step(Step::Key(key))
    }

    pub(crate) fn index(&self, i: usize) -> At<'_> {
        self.step(Step::Index(i))
    }

    fn step<'b>(&'b self, step: Step<'b>) -> At<'b> {
        At {
            up: Some((self, step)),
            duplicates: self.duplicates,
        }
    }

    pub(crate) fn error(&self, reason: impl fmt::Display) -> ConfigError {
        ConfigError {
            field: crate::quote::text(self),
            reason: crate::quote::text(&reason),
        }
    }

    /// The keys the object here was written with more than once, each with a value it lost.
    fn duplicates(&self) -> Vec<&'a Duplicate> {
        if self.duplicates.is_empty() {
            return Vec::new(); // the common case: no path is built
        }
        let here = self.steps();
        let here_too = |d: &&Duplicate| d.object == here;
        self.duplicates.iter().filter(here_too).collect()
    }

    /// One string per step (`.key`, `[0]`): unlike the text form, unambiguous when a key
    /// holds `.` or `[`.
    fn steps(&self) -> Vec<String> {
        let Some((parent, step)) = self.up else {
            return Vec::new();
        };
        let mut steps = parent.steps();
        steps.push(match step {
            Step::Key(k) => format!(".{k}"),
            Step::Index(i) => format!("[{i}]"),
            Step::Unreadable => "?".into(),
        });
        steps
    }
}

/// `models[0].targets`, `fleet.etcd`; the document itself is ``.
impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((parent, step)) = self.up else {
            return Ok(());
        };
        parent.fmt(f)?;
        let first = parent.up.is_none();
        match step {
            Step::Index(i) => write!(f, "[{i}]"),
            Step::Key(k) if first => f.write_str(k),
            Step::Key(k) => write!(f, ".{k}"),
            // A top-level key that cannot be read: the document is at fault.
            Step::Unreadable if first => Ok(()),
            Step::Unreadable => f.write_str(".?"),
        }
    }
}

/// serde_json's wording for a value of the wrong type (`invalid type: string "a", expected u32`).
pub(crate) fn invalid_type(v: &Value, at: &At<'_>, expected: &str) -> ConfigError {
    at.error(crate::json::read::invalid_type(v, expected))
}

/// serde's wording for a value out of range, `found` as serde says it (`integer `-1``).
pub(crate) fn invalid_value(found: impl fmt::Display, at: &At<'_>, expected: &str) -> ConfigError {
    at.error(format_args!("invalid value: {found}, expected {expected}"))
}

/// serde's missing-field error, naming the field itself rather than its struct (`models[0].name`).
pub(crate) fn missing_field(at: &At<'_>, name: &'static str) -> ConfigError {
    at.key(name).error(format_args!("missing field `{name}`"))
}

pub(crate) fn unknown_variant(
    at: &At<'_>,
    name: &str,
    variants: &'static [&'static str],
) -> ConfigError {
    at.error(unknown("variant", name, variants))
}

/// serde's words for a name not among `names` (`unknown field `x`, expected `a` or `b``).
pub(crate) fn unknown(what: &str, name: &str, names: &[&str]) -> String {
    let quoted = |n: &&str| format!("`{n}`");
    let one_of = match names {
        [] => return format!("unknown {what} `{name}`, there are no {what}s"),
        [a] => quoted(a),
        [a, b] => format!("{} or {}", quoted(a), quoted(b)),
        all => format!(
            "one of {}",
            crate::quote::join(&all.iter().map(quoted).collect::<Vec<_>>(), ", ")
        ),
    };
    format!("unknown {what} `{name}`, expected {one_of}")
}

/// `FromJson` for a struct, each field `req` (required), `or_default`, `or(default_fn)` or
/// `present` (any value, `null` too); the fields listed are all the struct accepts, in the order
/// serde's messages list them. The struct is built with every field's default, then
/// [`read_fields`] reads the fields given into it, in place (also where it is a field, or in
/// an `Option`, of another struct).
macro_rules! read_struct {
    ($name:ident { $($field:ident: $how:ident $(($default:expr))?),* $(,)? }) => {
        impl $name {
            /// Every field's default: the struct before its fields are read.
            fn json_defaults() -> Self {
                $name {
                    $($field: $crate::config::read::read_struct!(@init $how $($default)?)),*
                }
            }

            // One copy per struct, however many places read it (`when` of rules and shadows).
            #[inline(never)]
            fn read_fields_in(
                &mut self,
                v: &crate::json::Value,
                at: &$crate::config::read::At<'_>,
            ) -> Result<(), $crate::config::ConfigError> {
                use $crate::config::read::Slot;
                const SHAPE: $crate::config::read::Shape = $crate::config::read::Shape {
                    what: concat!("struct ", stringify!($name)),
                    names: &[$(stringify!($field)),*],
                    required: &[$($crate::config::read::read_struct!(@required $how)),*],
                    tag: None,
                };
                $crate::config::read::read_fields(
                    v,
                    at,
                    &SHAPE,
                    &mut [$($crate::config::read::read_struct!(@slot $how self.$field)),*],
                )
            }
        }

        impl $crate::config::read::FromJson for $name {
            fn from_json(
                v: &crate::json::Value,
                at: &$crate::config::read::At<'_>,
            ) -> Result<Self, $crate::config::ConfigError> {
                let mut value = Self::json_defaults();
                value.read_fields_in(v, at)?;
                Ok(value)
            }

            fn read_in(
                &mut self,
                v: &crate::json::Value,
                at: &$crate::config::read::At<'_>,
            ) -> Result<(), $crate::config::ConfigError> {
                self.read_fields_in(v, at)
            }

            fn read_some(
                slot: &mut Option<Self>,
                v: &crate::json::Value,
                at: &$crate::config::read::At<'_>,
            ) -> Result<(), $crate::config::ConfigError> {
                slot.insert(Self::json_defaults()).read_fields_in(v, at)
            }

            fn read_entry(
                map: &mut $crate::vecmap::VecMap<String, Self>,
                key: &str,
                v: &crate::json::Value,
                at: &$crate::config::read::At<'_>,
            ) -> Result<(), $crate::config::ConfigError> {
                map.entry(key.to_owned())
                    .or_insert_with(Self::json_defaults)
                    .read_fields_in(v, at)
            }

            fn read_push(
                list: &mut Vec<Self>,
                v: &crate::json::Value,
                at: &$crate::config::read::At<'_>,
            ) -> Result<(), $crate::config::ConfigError> {
                list.push(Self::json_defaults());
                match list.last_mut() {
                    Some(value) => value.read_fields_in(v, at),
                    None => Ok(()),
                }
            }
        }
    };
    (@init or $default:expr) => { $default() };
    (@init present) => { None };
    (@init $how:ident) => { Default::default() };
    (@slot present $place:expr) => {
        &mut $crate::config::read::Present(&mut $place) as &mut dyn Slot
    };
    (@slot $how:ident $place:expr) => { &mut $place as &mut dyn Slot };
    (@required req) => { true };
    (@required $how:ident) => { false };
}
pub(crate) use read_struct;

#[cfg(test)]
mod tests;
