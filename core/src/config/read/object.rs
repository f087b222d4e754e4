//! [`read`]: the fields of one struct, by name (`{"name": "a"}`) or, as serde's derived structs
//! also took them, by position (`["a"]`, in the order the fields are declared), each into a
//! [`Slot`].

use crate::json::{Map, Value};

use super::{invalid_type, missing_field, At, FromJson};
use crate::config::ConfigError;

/// A place a field's value is read into: any [`FromJson`] type, or [`Present`]; behind `dyn`
/// so that [`read`] is written once.
pub(crate) trait Slot {
    fn read(&mut self, v: &Value, at: &At<'_>) -> Result<(), ConfigError>;
}

impl<T: FromJson> Slot for T {
    fn read(&mut self, v: &Value, at: &At<'_>) -> Result<(), ConfigError> {
        self.read_in(v, at)
    }
}

/// A field holding any JSON value, `null` included: `Some(Value::Null)` is `"exact": null`,
/// `None` absent.
pub(crate) struct Present<'a>(pub(crate) &'a mut Option<Value>);

impl Slot for Present<'_> {
    fn read(&mut self, v: &Value, _: &At<'_>) -> Result<(), ConfigError> {
        *self.0 = Some(v.clone());
        Ok(())
    }
}

/// A struct as serde knew it: its name (`struct TargetDto`), its fields in declaration order,
/// which of them are required, and for a struct variant of an internally tagged enum the tag
/// `v` holds as well (as a key, or as the first value).
pub(crate) struct Shape {
    pub(crate) what: &'static str,
    pub(crate) names: &'static [&'static str],
    pub(crate) required: &'static [bool],
    pub(crate) tag: Option<&'static str>,
}

enum Fields<'a> {
    Named(&'a Map<String, Value>),
    /// The values after the first `skip` (an internally tagged enum's tag).
    Positional {
        values: &'a [Value],
        skip: usize,
    },
}

/// Reads the struct `shape` describes from `v`, each field given into its slot (`slots[i]` is
/// field `names[i]`'s; an absent field keeps what its slot holds unless it is required): the
/// first error, in field order, after unknown and repeated fields. The caller builds the struct
/// with its defaults first and drops it whole if refused. Not generic: the walk and the error
/// paths are written once for every struct and field type.
#[inline(never)]
pub(crate) fn read(
    v: &Value,
    at: &At<'_>,
    shape: &Shape,
    slots: &mut [&mut dyn Slot],
) -> Result<(), ConfigError> {
    let fields = match v {
        Value::Object(map) => Fields::Named(map),
        Value::Array(values) => Fields::Positional {
            values,
            skip: usize::from(shape.tag.is_some()),
        },
        other => return Err(invalid_type(other, at, shape.what)),
    };
    check(&fields, at, shape)?;
    for (i, slot) in slots.iter_mut().enumerate() {
        let name = shape.names.get(i).copied().unwrap_or_default();
        let given = match fields {
            Fields::Named(map) => map.get(name).map(|v| (v, at.key(name))),
            Fields::Positional { values, skip } => {
                let i = i + skip;
                values.get(i).map(|v| (v, at.index(i)))
            }
        };
        match given {
            Some((v, at)) => slot.read(v, &at)?,
            None if shape.required.get(i) == Some(&true) => {
                return Err(missing(&fields, at, shape, i, name))
            }
            None => {}
        }
    }
    Ok(())
}

/// Refuses unknown and repeated fields before any is read, so a typo is named rather than
/// the field it makes look missing; and values beyond the last field.
fn check(fields: &Fields<'_>, at: &At<'_>, shape: &Shape) -> Result<(), ConfigError> {
    match *fields {
        Fields::Named(map) => {
            let known =
                |k: &&String| Some(k.as_str()) == shape.tag || shape.names.contains(&k.as_str());
            if let Some(k) = map.keys().find(|k| !known(k)) {
                let e = super::unknown("field", k, shape.names);
                return Err(at.key(k).error(e));
            }
            match at.duplicates().first() {
                Some(d) => Err(at.error(format_args!("duplicate field `{}`", d.key))),
                None => Ok(()),
            }
        }
        Fields::Positional { values, skip } if values.len() > skip + shape.names.len() => {
            Err(at.error("trailing characters"))
        }
        Fields::Positional { .. } => Ok(()),
    }
}

/// Field `i` (`name`), required, is absent.
fn missing(
    fields: &Fields<'_>,
    at: &At<'_>,
    shape: &Shape,
    i: usize,
    name: &'static str,
) -> ConfigError {
    match fields {
        Fields::Named(_) => missing_field(at, name),
        Fields::Positional { .. } => {
            let n = shape.names.len();
            let plural = if n == 1 { "" } else { "s" };
            let expected = format!("{} with {n} element{plural}", shape.what);
            at.error(format_args!("invalid length {i}, expected {expected}"))
        }
    }
}
