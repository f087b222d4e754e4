//! Typed reading straight from the text, accepting exactly what serde_json handed a derived
//! `Deserialize` (the documents were read that way before): a struct from an object (unknown
//! fields skipped as `IgnoredAny`, a repeated field an error) or from an array of its fields in
//! order; integers in range of their type, floats from any number, `null` for an absent option.
//! Errors keep serde_json's words; where serde_json placed an error by its own approximation
//! the column may differ by a little (these errors are logged, never matched).

use crate::vecmap::{VecMap, VecSet};
use std::borrow::Cow;

use crate::json::Value;

use super::{Error, Num, Parser, EOF_VALUE};
use crate::json::write;

/// A value read from JSON text.
pub trait FromText: Sized {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error>;

    /// Reads the value into `slot` as `Some` (a list is filled where it lies, not moved there).
    fn read_some(slot: &mut Option<Self>, p: &mut Parser<'_>) -> Result<(), Error> {
        *slot = Some(Self::read(p)?);
        Ok(())
    }
}

/// A struct field's place while [`text_struct!`] reads the struct: `None` until read.
pub trait TextSlot {
    fn read(&mut self, p: &mut Parser<'_>) -> Result<(), Error>;
}

impl<T: FromText> TextSlot for Option<T> {
    fn read(&mut self, p: &mut Parser<'_>) -> Result<(), Error> {
        T::read_some(self, p)
    }
}

/// `field` as a [`TextSlot`] (its type is inferred from the struct built after).
pub fn slot<T: FromText>(field: &mut Option<T>) -> &mut dyn TextSlot {
    field
}

/// One whole document as `T`: the value and nothing after it but whitespace.
pub fn from_text<T: FromText>(bytes: &[u8]) -> Result<T, Error> {
    let mut p = Parser::new(bytes);
    let v = T::read(&mut p)?;
    p.end()?;
    Ok(v)
}

/// How a field is filled when a document leaves it out.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// An error.
    Refused,
    /// Its default (`#[serde(default)]`).
    Default,
    /// `None` when the struct is an object; an error when it is an array (an `Option` without
    /// `#[serde(default)]`).
    NoneByName,
}

/// What serde_json said of a value of the wrong kind (`string "a"`, `integer `5``).
fn unexpected(n: Num) -> String {
    match n {
        Num::U64(u) => format!("integer `{u}`"),
        Num::I64(i) => format!("integer `{i}`"),
        Num::F64(f) => {
            let text = String::from_utf8(write::to_vec(&f)).unwrap_or_default();
            format!("floating point `{text}`")
        }
    }
}

/// The callbacks of the walks below, behind `dyn`: traits of their own rather than `dyn FnMut`,
/// whose vtables hold a `call_once` shim per closure that nothing calls.
pub(crate) trait Body<'a> {
    fn run(&mut self, p: &mut Parser<'a>) -> Result<(), Error>;
}

impl<'a, F: FnMut(&mut Parser<'a>) -> Result<(), Error>> Body<'a> for F {
    fn run(&mut self, p: &mut Parser<'a>) -> Result<(), Error> {
        self(p)
    }
}

/// See [`Body`]: an entry of an object, given its key.
trait Entry<'a> {
    fn entry(&mut self, p: &mut Parser<'a>, key: String) -> Result<(), Error>;
}

impl<'a, F: FnMut(&mut Parser<'a>, String) -> Result<(), Error>> Entry<'a> for F {
    fn entry(&mut self, p: &mut Parser<'a>, key: String) -> Result<(), Error> {
        self(p, key)
    }
}

/// See [`Body`]: the `i`th item of a sequence.
trait Nth<'a> {
    fn nth(&mut self, p: &mut Parser<'a>, i: usize) -> Result<(), Error>;
}

impl<'a, F: FnMut(&mut Parser<'a>, usize) -> Result<(), Error>> Nth<'a> for F {
    fn nth(&mut self, p: &mut Parser<'a>, i: usize) -> Result<(), Error> {
        self(p, i)
    }
}

impl<'a> Parser<'a> {
    /// The value here is not what `expected` names: read past it and say what it is.
    fn invalid_type(&mut self, expected: &str) -> Error {
        let found: Cow<'static, str> = match self.peek() {
            Some(b'n') => match self.ident(b"null") {
                Ok(()) => "null".into(),
                Err(e) => return e,
            },
            Some(b @ (b't' | b'f')) => {
                let word: &[u8] = if b == b't' { b"true" } else { b"false" };
                match self.ident(word) {
                    Ok(()) => format!("boolean `{}`", b == b't').into(),
                    Err(e) => return e,
                }
            }
            Some(b'-' | b'0'..=b'9') => match self.number() {
                Ok(n) => unexpected(n).into(),
                Err(e) => return e,
            },
            Some(b'"') => {
                self.eat();
                match self.string() {
                    Ok(s) => format!("string {}", crate::quote::quoted(&s)).into(),
                    Err(e) => return e,
                }
            }
            Some(b'[') => "sequence".into(),
            Some(b'{') => "map".into(),
            _ => return self.peek_error(super::EXPECTED_VALUE),
        };
        self.error(format!("invalid type: {found}, expected {expected}"))
    }

    /// A number, or the error for what is there instead.
    fn num(&mut self, expected: &str) -> Result<Num, Error> {
        match self.whitespace() {
            None => Err(self.peek_error(EOF_VALUE)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.invalid_type(expected)),
        }
    }

    /// At `[` or `{` (`open`): its nesting counted, or the error for what is there instead.
    fn open(&mut self, open: u8, expected: &str) -> Result<(), Error> {
        match self.whitespace() {
            None => Err(self.peek_error(EOF_VALUE)),
            Some(b) if b == open => self.enter(),
            Some(_) => Err(self.invalid_type(expected)),
        }
    }

    /// An array, each item read by `item`.
    // One copy for every item type: the generic part is `item` alone.
    #[inline(never)]
    fn items_by(&mut self, item: &mut dyn Body<'a>) -> Result<(), Error> {
        self.open(b'[', "a sequence")?;
        self.closed(false, &mut |p: &mut Parser<'a>| {
            let mut first = true;
            while p.next_item(first)? {
                first = false;
                item.run(p)?;
            }
            Ok(())
        })
    }

    /// An object keyed by strings, each entry read by `entry` (given its key).
    // One copy for every value type: the generic part is `entry` alone.
    #[inline(never)]
    fn entries_by(&mut self, entry: &mut dyn Entry<'a>) -> Result<(), Error> {
        self.open(b'{', "a map")?;
        self.closed(true, &mut |p: &mut Parser<'a>| {
            let mut first = true;
            while let Some(key) = p.next_key(first)? {
                first = false;
                p.colon()?;
                entry.entry(p, key.into_owned())?;
            }
            Ok(())
        })
    }

    /// Runs `body` (after an opening `[` or `{`, counted), then the closing (`end_seq` or
    /// `end_map`) whatever came of it, as serde_json does: an error `body` left unplaced is
    /// placed where the closing left the reader.
    // One copy for every caller (`dyn` bodies throughout): less code in the module.
    #[inline(never)]
    pub(crate) fn closed(&mut self, by_name: bool, body: &mut dyn Body<'a>) -> Result<(), Error> {
        let ret = body.run(self);
        self.leave();
        let end = if by_name {
            self.end_map()
        } else {
            self.end_seq()
        };
        match (ret, end) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), _) | (_, Err(e)) => Err(self.place(e)),
        }
    }

    /// `e`, placed here if it has no place yet.
    pub(crate) fn place(&self, e: Error) -> Error {
        if e.line == 0 {
            self.error(e.what)
        } else {
            e
        }
    }

    /// The fields of a struct serde calls `what`, by name from an object or in order from an
    /// array; the one named `names[i]` is read into `slots[i]`. Checks that every field left
    /// out may be.
    #[inline(never)]
    pub fn structure(
        &mut self,
        what: &'static str,
        names: &[&'static str],
        absent: &[Absent],
        slots: &mut [&mut dyn TextSlot],
    ) -> Result<(), Error> {
        let by_name = match self.whitespace() {
            None => return Err(self.peek_error(EOF_VALUE)),
            Some(b'{') => true,
            Some(b'[') => false,
            Some(_) => return Err(self.invalid_type(what)),
        };
        self.enter()?;
        self.closed(by_name, &mut |p: &mut Parser<'a>| {
            p.fields(by_name, what, names, absent, slots)
        })
    }

    fn fields(
        &mut self,
        by_name: bool,
        what: &'static str,
        names: &[&'static str],
        absent: &[Absent],
        slots: &mut [&mut dyn TextSlot],
    ) -> Result<(), Error> {
        let mut seen = vec![false; names.len()];
        if by_name {
            let mut first = true;
            while let Some(key) = self.next_key(first)? {
                first = false;
                match names.iter().position(|n| *n == key) {
                    Some(i) if seen.get(i) == Some(&true) => {
                        return Err(Error::custom(format!("duplicate field `{key}`")));
                    }
                    Some(i) => {
                        self.colon()?;
                        if let Some(slot) = slots.get_mut(i) {
                            slot.read(self)?;
                        }
                        if let Some(s) = seen.get_mut(i) {
                            *s = true;
                        }
                    }
                    None => {
                        self.colon()?;
                        self.ignore_value()?;
                    }
                }
            }
        } else {
            for ((i, s), slot) in seen.iter_mut().enumerate().zip(slots.iter_mut()) {
                if !self.next_item(i == 0)? {
                    break;
                }
                slot.read(self)?;
                *s = true;
            }
        }
        let missing = seen.iter().zip(absent).position(|(seen, absent)| {
            !seen && (*absent == Absent::Refused || (*absent == Absent::NoneByName && !by_name))
        });
        match missing {
            None => Ok(()),
            Some(i) => {
                let name = names.get(i).copied().unwrap_or_default();
                Err(Error::custom(if by_name {
                    format!("missing field `{name}`")
                } else {
                    let n = names.len();
                    let s = if n == 1 { "" } else { "s" };
                    format!("invalid length {i}, expected {what} with {n} element{s}")
                }))
            }
        }
    }

    /// A sequence of exactly `n` items (a tuple or an array), `expected` naming it.
    #[inline(never)]
    fn exactly(&mut self, n: usize, expected: &str, item: &mut dyn Nth<'a>) -> Result<(), Error> {
        self.open(b'[', expected)?;
        self.closed(false, &mut |p: &mut Parser<'a>| {
            for i in 0..n {
                if !p.next_item(i == 0)? {
                    return Err(Error::custom(format!(
                        "invalid length {i}, expected {expected}"
                    )));
                }
                item.nth(p, i)?;
            }
            Ok(())
        })
    }

    pub fn read<T: FromText>(&mut self) -> Result<T, Error> {
        T::read(self)
    }
}

/// An integer of the type serde calls `kind`, in `min..=max`: serde's messages for a float
/// (`invalid type`) and for an integer out of range (`invalid value`).
#[inline(never)]
fn integer(p: &mut Parser<'_>, kind: &'static str, min: i128, max: i128) -> Result<i128, Error> {
    let n = p.num(kind)?;
    let v = match n {
        Num::U64(u) => i128::from(u),
        Num::I64(i) => i128::from(i),
        Num::F64(_) => {
            return Err(p.error(format!("invalid type: {}, expected {kind}", unexpected(n))));
        }
    };
    if v < min || v > max {
        return Err(p.error(format!("invalid value: {}, expected {kind}", unexpected(n))));
    }
    Ok(v)
}

impl FromText for u64 {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        integer(p, "u64", 0, i128::from(u64::MAX)).map(|v| v as u64)
    }
}

impl FromText for u32 {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        integer(p, "u32", 0, i128::from(u32::MAX)).map(|v| v as u32)
    }
}

impl FromText for i64 {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        integer(p, "i64", i128::from(i64::MIN), i128::from(i64::MAX)).map(|v| v as i64)
    }
}

impl FromText for f64 {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        Ok(match p.num("f64")? {
            Num::U64(u) => u as f64,
            Num::I64(i) => i as f64,
            Num::F64(f) => f,
        })
    }
}

impl FromText for bool {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        match p.whitespace() {
            None => Err(p.peek_error(EOF_VALUE)),
            Some(b't') => p.ident(b"true").map(|()| true),
            Some(b'f') => p.ident(b"false").map(|()| false),
            Some(_) => Err(p.invalid_type("a boolean")),
        }
    }
}

impl FromText for String {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        match p.whitespace() {
            None => Err(p.peek_error(EOF_VALUE)),
            Some(b'"') => {
                p.eat();
                p.string()
            }
            Some(_) => Err(p.invalid_type("a string")),
        }
    }
}

impl FromText for Value {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        p.value()
    }
}

/// A value skipped, as serde's `IgnoredAny` skipped it.
/// A value read and dropped (serde's `IgnoredAny`): still checked, never built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgnoredAny;

/// Through serde's `IgnoredAny`, for the derives kept as test references.
#[cfg(any(test, feature = "testing"))]
impl<'de> serde::Deserialize<'de> for IgnoredAny {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IgnoredAny, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| IgnoredAny)
    }
}

impl FromText for IgnoredAny {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        p.ignore_value().map(|()| IgnoredAny)
    }
}

impl<T: FromText> FromText for Option<T> {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        match p.whitespace() {
            Some(b'n') => p.ident(b"null").map(|()| None),
            _ => T::read(p).map(Some),
        }
    }

    fn read_some(slot: &mut Option<Self>, p: &mut Parser<'_>) -> Result<(), Error> {
        let inner = slot.insert(None);
        match p.whitespace() {
            Some(b'n') => p.ident(b"null"),
            _ => T::read_some(inner, p),
        }
    }
}

impl<T: FromText> FromText for Vec<T> {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        let mut items = Vec::new();
        p.items_by(&mut |p: &mut Parser<'_>| T::read(p).map(|v| items.push(v)))?;
        Ok(items)
    }

    fn read_some(slot: &mut Option<Self>, p: &mut Parser<'_>) -> Result<(), Error> {
        let items = slot.insert(Vec::new());
        p.items_by(&mut |p: &mut Parser<'_>| T::read(p).map(|v| items.push(v)))
    }
}

impl<T: FromText + Ord> FromText for VecSet<T> {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        Vec::<T>::read(p).map(|items| items.into_iter().collect())
    }
}

impl<T: FromText + Default + Copy, const N: usize> FromText for [T; N] {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        let mut out = [T::default(); N];
        let expected = format!("an array of length {N}");
        p.exactly(N, &expected, &mut |p: &mut Parser<'_>, i| {
            let v = T::read(p)?;
            if let Some(slot) = out.get_mut(i) {
                *slot = v;
            }
            Ok(())
        })?;
        Ok(out)
    }
}

impl<A: FromText + Default, B: FromText + Default> FromText for (A, B) {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        let (mut a, mut b) = (A::default(), B::default());
        p.exactly(2, "a tuple of size 2", &mut |p: &mut Parser<'_>, i| {
            if i == 0 {
                a = A::read(p)?;
            } else {
                b = B::read(p)?;
            }
            Ok(())
        })?;
        Ok((a, b))
    }
}

/// A map keyed by strings; a key given twice keeps its last value.
impl<T: FromText> FromText for VecMap<String, T> {
    fn read(p: &mut Parser<'_>) -> Result<Self, Error> {
        let mut map = VecMap::new();
        p.entries_by(&mut |p: &mut Parser<'_>, key| T::read(p).map(|v| drop(map.insert(key, v))))?;
        Ok(map)
    }

    fn read_some(slot: &mut Option<Self>, p: &mut Parser<'_>) -> Result<(), Error> {
        let map = slot.insert(VecMap::new());
        p.entries_by(&mut |p: &mut Parser<'_>, key| T::read(p).map(|v| drop(map.insert(key, v))))
    }
}

/// `FromText` for a struct as serde's derive read it: its fields in declaration order, each
/// `default` (`#[serde(default)]`), `option` (an `Option` without it) or required. Each field is
/// read into a [`TextSlot`] (`None` until read): the reading is one function for every struct,
/// one per field type, rather than one per struct.
macro_rules! text_struct {
    ($name:ident { $($field:ident $($absent:ident)?),* $(,)? }) => {
        impl $crate::json::read::FromText for $name {
            fn read(
                p: &mut $crate::json::read::Parser<'_>,
            ) -> Result<Self, $crate::json::read::Error> {
                use $crate::json::read::typed::{slot, Absent};
                $(let mut $field = None;)*
                p.structure(
                    concat!("struct ", stringify!($name)),
                    &[$(stringify!($field)),*],
                    &[$($crate::json::read::text_struct!(@absent $($absent)?)),*],
                    &mut [$(slot(&mut $field)),*],
                )?;
                Ok($name { $($field: $crate::json::read::text_struct!(@take $field $($absent)?)),* })
            }
        }
    };
    (@absent default) => { Absent::Default };
    (@absent option) => { Absent::NoneByName };
    (@absent) => { Absent::Refused };
    (@take $f:ident default) => { $f.unwrap_or_default() };
    (@take $f:ident option) => { $f.unwrap_or_default() };
    (@take $f:ident) => { $f.ok_or_else($crate::json::read::typed::checked)? };
}
pub(crate) use text_struct;

/// serde_json's words for a `Value` of the wrong kind (`invalid type: integer `5`, expected a
/// string`), as its `from_value` said them.
pub fn invalid_type(v: &Value, expected: &str) -> String {
    let found: Cow<'_, str> = match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean `{b}`").into(),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => unexpected(Num::U64(u)).into(),
            (None, Some(i), _) => unexpected(Num::I64(i)).into(),
            (None, None, f) => unexpected(Num::F64(f.unwrap_or(f64::NAN))).into(),
        },
        Value::String(s) => format!("string {}", crate::quote::quoted(s)).into(),
        Value::Array(_) => "sequence".into(),
        Value::Object(_) => "map".into(),
    };
    format!("invalid type: {found}, expected {expected}")
}

/// A field `structure` found missing has already been refused: never seen.
pub(crate) fn checked() -> Error {
    Error::custom("missing field")
}

impl Error {
    /// An error not yet placed (serde's custom errors): the reader places it.
    pub(crate) fn custom(what: impl Into<Cow<'static, str>>) -> Error {
        Error {
            what: what.into(),
            line: 0,
            column: 0,
        }
    }
}
