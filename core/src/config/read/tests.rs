#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::vecmap::VecMap;

use crate::json::{json, Value};

use super::{document, newtype_variant, unit_variant, At, FromJson};
use crate::config::ConfigError;

#[derive(Debug, PartialEq)]
struct Inner {
    n: u32,
    label: Option<String>,
}

read_struct!(Inner {
    n: req,
    label: or_default,
});

#[derive(Debug, PartialEq)]
struct Outer {
    list: Vec<Inner>,
    by_name: VecMap<String, Inner>,
    flag: bool,
    raw: Option<Value>,
}

read_struct!(Outer {
    list: or_default,
    by_name: or_default,
    flag: or(yes),
    raw: present,
});

fn yes() -> bool {
    true
}

fn read<T: FromJson>(text: &str) -> Result<T, (String, String)> {
    document(text.as_bytes()).map_err(|e: ConfigError| (e.field, e.reason))
}

fn refused<T: FromJson + std::fmt::Debug>(text: &str) -> (String, String) {
    read::<T>(text).expect_err(text)
}

fn pair(field: &str, reason: &str) -> (String, String) {
    (field.to_string(), reason.to_string())
}

#[test]
fn absent_fields_take_their_defaults_and_explicit_null_is_kept_apart() {
    let o: Outer = read(r#"{}"#).unwrap();
    assert_eq!(o.list, []);
    assert!(o.by_name.is_empty() && o.flag && o.raw.is_none());
    let o: Outer =
        read(r#"{"flag": false, "raw": null, "list": [{"n": 1, "label": null}]}"#).unwrap();
    assert!(!o.flag);
    assert_eq!(o.raw, Some(Value::Null));
    assert_eq!(o.list, [Inner { n: 1, label: None }]);
    // A default applies to an absent field only: `null` is not a bool.
    assert_eq!(
        refused::<Outer>(r#"{"flag": null}"#),
        pair("flag", "invalid type: null, expected a boolean")
    );
}

#[test]
fn errors_name_the_field_by_its_path() {
    assert_eq!(
        refused::<Outer>(r#"{"list": [{"n": 1}, {"n": "2"}]}"#),
        pair("list[1].n", r#"invalid type: string "2", expected u32"#)
    );
    assert_eq!(
        refused::<Outer>(r#"{"by_name": {"a.b": {"n": 1.5}}}"#),
        pair(
            "by_name.a.b.n",
            "invalid type: floating point `1.5`, expected u32"
        )
    );
    // A missing field is named itself, not its struct.
    assert_eq!(
        refused::<Outer>(r#"{"list": [{"label": "x"}]}"#),
        pair("list[0].n", "missing field `n`")
    );
    // The document itself is the empty path.
    assert_eq!(
        refused::<Outer>(r#""text""#),
        pair("", r#"invalid type: string "text", expected struct Outer"#)
    );
}

#[test]
fn unknown_fields_are_refused_with_the_fields_there_are() {
    assert_eq!(
        refused::<Inner>(r#"{"n": 1, "lable": "x"}"#),
        pair("lable", "unknown field `lable`, expected `n` or `label`")
    );
    assert_eq!(
        refused::<Outer>(r#"{"list": [{"m": 1}]}"#),
        pair("list[0].m", "unknown field `m`, expected `n` or `label`")
    );
    // Named before the field the typo makes look missing.
    let (field, reason) = refused::<Outer>(r#"{"flg": true}"#);
    assert_eq!(field, "flg");
    assert_eq!(
        reason,
        "unknown field `flg`, expected one of `list`, `by_name`, `flag`, `raw`"
    );
}

#[test]
fn numbers_out_of_range_are_errors_not_wraps() {
    let n = |v: Value| u32::from_json(&v, &At::root(&[])).map_err(|e| e.reason);
    assert_eq!(n(json!(4_294_967_295_u64)), Ok(u32::MAX));
    assert_eq!(
        n(json!(4_294_967_296_u64)),
        Err("invalid value: integer `4294967296`, expected u32".into())
    );
    assert_eq!(
        n(json!(-1)),
        Err("invalid value: integer `-1`, expected u32".into())
    );
    assert_eq!(
        u16::from_json(&json!(65_536), &At::root(&[]))
            .unwrap_err()
            .reason,
        "invalid value: integer `65536`, expected u16"
    );
    assert_eq!(
        i64::from_json(&json!(u64::MAX), &At::root(&[]))
            .unwrap_err()
            .reason,
        "invalid value: integer `18446744073709551615`, expected i64"
    );
    assert_eq!(f64::from_json(&json!(3), &At::root(&[])).unwrap(), 3.0);
    // Out of f64's range is the JSON's error, located.
    assert_eq!(
        refused::<Outer>(r#"{"list": [{"n": 1e400}]}"#),
        pair("list[0].n", "number out of range at line 1 column 21")
    );
}

#[test]
fn syntax_errors_name_where_they_are() {
    assert_eq!(
        refused::<Outer>(r#"{"list": [{"n": 1,]}"#),
        pair("list[0].?", "key must be a string at line 1 column 19")
    );
    assert_eq!(
        refused::<Outer>(r#"{"list": [{"n": tru}]}"#),
        pair("list[0].n", "expected ident at line 1 column 20")
    );
    assert_eq!(
        refused::<Outer>("{ this is not json"),
        pair("", "key must be a string at line 1 column 3")
    );
    // One document and nothing after it but whitespace.
    assert!(read::<Outer>("{} \n\t").is_ok());
    assert_eq!(
        refused::<Outer>(r#"{"flag": true} {"flag": false}"#),
        pair("", "trailing characters at line 1 column 16")
    );
}

#[test]
fn a_field_written_twice_is_refused_a_map_key_keeps_its_last_value() {
    assert_eq!(
        refused::<Outer>(r#"{"list": [{"n": 1, "n": 2}]}"#),
        pair("list[0]", "duplicate field `n`")
    );
    let o: Outer = read(r#"{"by_name": {"a": {"n": 1}, "a": {"n": 2}}}"#).unwrap();
    assert_eq!(o.by_name["a"].n, 2);
    // Every value of a map must be valid, the replaced one too.
    assert_eq!(
        refused::<Outer>(r#"{"by_name": {"a": {"n": -1}, "a": {"n": 2}}}"#),
        pair("by_name.a.n", "invalid value: integer `-1`, expected u32")
    );
    // Values as written keep serde_json's last-one-wins.
    let o: Outer = read(r#"{"raw": {"k": 1, "k": 2}}"#).unwrap();
    assert_eq!(o.raw, Some(json!({"k": 2})));
}

#[test]
fn a_struct_may_be_written_positionally_as_serde_allowed() {
    let o: Outer = read(r#"{"list": [[7, "x"], [8]]}"#).unwrap();
    assert_eq!(
        o.list,
        [
            Inner {
                n: 7,
                label: Some("x".into())
            },
            Inner { n: 8, label: None }
        ]
    );
    assert_eq!(
        refused::<Outer>(r#"{"list": [[]]}"#),
        pair(
            "list[0]",
            "invalid length 0, expected struct Inner with 2 elements"
        )
    );
    assert_eq!(
        refused::<Outer>(r#"{"list": [[1, "x", 3]]}"#),
        pair("list[0]", "trailing characters")
    );
    assert_eq!(
        refused::<Outer>(r#"{"list": [["1"]]}"#),
        pair("list[0][0]", r#"invalid type: string "1", expected u32"#)
    );
}

#[test]
fn enum_variants_by_name() {
    const UNITS: &[&str] = &["on", "off"];
    let unit = |v: Value| unit_variant(&v, &At::root(&[]), UNITS).map_err(|e| (e.field, e.reason));
    assert_eq!(unit(json!("off")), Ok("off"));
    assert_eq!(unit(json!({"on": null})), Ok("on"));
    assert_eq!(
        unit(json!("dim")),
        Err(pair("", "unknown variant `dim`, expected `on` or `off`"))
    );
    assert_eq!(
        unit(json!({"on": 1})),
        Err(pair("on", "invalid type: integer `1`, expected unit"))
    );
    assert_eq!(
        unit(json!(1)),
        Err(pair(
            "",
            "invalid type: integer `1`, expected string or map"
        ))
    );
    const NEWTYPES: &[&str] = &["gamma", "half_life"];
    let newtype = |v: Value| {
        newtype_variant::<f64>(&v, &At::root(&[]), NEWTYPES).map_err(|e| (e.field, e.reason))
    };
    assert_eq!(newtype(json!({"half_life": 2})), Ok(("half_life", 2.0)));
    assert_eq!(
        newtype(json!({"gamma": "x"})),
        Err(pair("gamma", r#"invalid type: string "x", expected f64"#))
    );
    assert_eq!(
        newtype(json!({"gamma": 1, "half_life": 2})),
        Err(pair(
            "",
            "invalid value: map, expected map with a single key"
        ))
    );
    assert_eq!(
        newtype(json!("gamma")),
        Err(pair(
            "",
            "invalid type: unit variant, expected newtype variant"
        ))
    );
}

/// The words written by hand are serde's own.
#[test]
fn error_words_are_serde_s() {
    use serde::de::{Error as _, Unexpected};
    const NAMES: [&str; 4] = ["a", "b", "c", "d"];
    for n in 0..=NAMES.len() {
        let names: &'static [&'static str] = &NAMES[..n];
        assert_eq!(
            super::unknown("field", "x", names),
            serde_json::Error::unknown_field("x", names).to_string()
        );
        assert_eq!(
            super::unknown("variant", "x", names),
            serde_json::Error::unknown_variant("x", names).to_string()
        );
    }
    let at_root = super::At::root(&[]);
    for v in [
        json!(null),
        json!(true),
        json!(5),
        json!(-5),
        json!(1.5),
        json!(1e300),
        json!("a\"é\n"),
        json!([1]),
        json!({"a": 1}),
    ] {
        let unexpected = match &v {
            Value::Null => Unexpected::Unit,
            Value::Bool(b) => Unexpected::Bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Unexpected::Unsigned(u),
                (None, Some(i)) => Unexpected::Signed(i),
                (None, None) => Unexpected::Float(n.as_f64().unwrap()),
            },
            Value::String(s) => Unexpected::Str(s),
            Value::Array(_) => Unexpected::Seq,
            Value::Object(_) => Unexpected::Map,
        };
        assert_eq!(
            super::invalid_type(&v, &at_root, "u32").reason,
            serde_json::Error::invalid_type(unexpected, &"u32").to_string()
        );
    }
    assert_eq!(
        super::invalid_value("integer `-1`", &at_root, "u32").reason,
        serde_json::Error::invalid_value(Unexpected::Signed(-1), &"u32").to_string()
    );
    assert_eq!(
        super::missing_field(&at_root, "name").reason,
        serde_json::Error::missing_field("name").to_string()
    );
}
