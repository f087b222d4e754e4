//! The writer against serde_json itself: the same bytes for every float, string and value.

use crate::json::Value;

use super::*;
use crate::msgpack::testing::{any_f64, any_name};
use crate::rng::Rng;

fn ours<T: ToJson + ?Sized>(v: &T) -> String {
    String::from_utf8(to_vec(v)).unwrap()
}

fn float_agrees(v: f64) {
    assert_eq!(
        ours(&v),
        serde_json::to_string(&v).unwrap(),
        "{v:e} ({:#x})",
        v.to_bits()
    );
}

#[test]
fn floats_are_spelled_as_serde_json_spells_them() {
    for v in [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        1.5,
        1e15,
        1e16,
        1e17,
        1e20,
        1e21,
        1e-5,
        1e-6,
        1e-7,
        0.0001,
        0.00001234,
        123456789012345680.0,
        1234567890123456.7,
        5e-324,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        9007199254740993.0,
        2.5e-8,
        1.7976931348623157e308,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        float_agrees(v);
    }
    // Every power of ten and its neighbours: the layout changes at 1e16 and 1e-5.
    for e in -325..=309 {
        let v: f64 = format!("1e{e}").parse().unwrap();
        for x in [
            v,
            f64::from_bits(v.to_bits() + 1),
            f64::from_bits(v.to_bits().max(1) - 1),
        ] {
            float_agrees(x);
            float_agrees(-x);
        }
    }
    let mut rng = Rng::seed_from_u64(7);
    for _ in 0..1_000_000 {
        float_agrees(f64::from_bits(rng.next_u64()));
    }
    for _ in 0..200_000 {
        float_agrees(any_f64(&mut rng));
        float_agrees(rng.below(1 << 20) as f64 / 1024.0);
    }
}

#[test]
fn integers_are_decimal() {
    let mut rng = Rng::seed_from_u64(8);
    for _ in 0..10_000 {
        let u = rng.next_u64() >> rng.below(64);
        assert_eq!(ours(&u), serde_json::to_string(&u).unwrap());
        let i = u as i64;
        assert_eq!(ours(&i), serde_json::to_string(&i).unwrap());
        assert_eq!(
            ours(&(u as u32)),
            serde_json::to_string(&(u as u32)).unwrap()
        );
    }
    for i in [0, 1, -1, i64::MIN, i64::MAX] {
        assert_eq!(ours(&i), serde_json::to_string(&i).unwrap());
    }
}

fn any_string(rng: &mut Rng) -> String {
    (0..rng.below(12))
        .map(|_| match rng.below(5) {
            0 => char::from(rng.below(0x80) as u8),
            1 => char::from(rng.below(0x20) as u8),
            2 => ['"', '\\', '/', '\u{7f}', '\u{2028}', 'é'][rng.below(6) as usize],
            3 => char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('\u{fffd}'),
            _ => 'a',
        })
        .collect()
}

#[test]
fn strings_are_escaped_as_serde_json_escapes_them() {
    let mut rng = Rng::seed_from_u64(9);
    for _ in 0..50_000 {
        let s = any_string(&mut rng);
        assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
    }
    let all: String = (0u8..0x80).map(char::from).collect();
    assert_eq!(ours(&all), serde_json::to_string(&all).unwrap());
}

fn any_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => Value::from(rng.next_u64() >> rng.below(64)),
        3 => Value::from(-((rng.next_u64() >> (1 + rng.below(63))) as i64)),
        4 => Value::from(any_f64(rng)),
        5 => Value::String(any_string(rng)),
        6 => Value::Array(
            (0..rng.below(5))
                .map(|_| any_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.below(5))
                .map(|_| (any_name(rng), any_value(rng, depth + 1)))
                .collect(),
        ),
    }
}

#[test]
fn values_are_written_as_serde_json_writes_them() {
    let mut rng = Rng::seed_from_u64(10);
    for _ in 0..20_000 {
        let v = any_value(&mut rng, 0);
        assert_eq!(ours(&v), serde_json::to_string(&v).unwrap());
    }
}

#[test]
fn halfway_values_take_the_even_digit_as_serde_json_does() {
    let mut rng = Rng::seed_from_u64(11);
    for _ in 0..50_000 {
        // Integers with a quarter or a half, where the exact value needs one digit more than
        // a double keeps: two shortest candidates equally near.
        let k = (rng.next_u64() >> (10 + rng.below(4))) as f64;
        let f = [0.25, 0.5, 0.75][rng.below(3) as usize];
        float_agrees(k + f);
        float_agrees(-(k + f) / 1024.0);
        // Few significant bits over a power of two: 0.082401275634765625 lies halfway
        // between 0.08240127563476562 and …563.
        float_agrees((rng.below(1 << 20) | 1) as f64 / f64::from(1u32 << rng.below(24)));
    }
}
