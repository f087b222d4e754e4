//! `parse_f64` against `str::parse::<f64>` itself: the same strings refused, the same bits read.

use super::*;
use crate::rng::Rng;

fn agrees(s: &str) {
    let ours = parse_f64(s).map(f64::to_bits);
    let std = s.parse::<f64>().ok().map(f64::to_bits);
    assert_eq!(ours, std, "{s:?}");
}

#[test]
fn edge_cases_read_as_std_reads_them() {
    let long_ones = "1".repeat(5000);
    let long_nines = format!("0.{}", "9".repeat(900));
    let long_zeros = format!("0.{}1e1000", "0".repeat(999));
    let many_zeros = format!("1{}e-3000", "0".repeat(3000));
    let cases = [
        "0", "-0", "+0", "0.0", "-0.0", "00000", "0e0", "-0e-5", "0e999999999",
        "0e-999999999", "-0e999999999999999999999", "1", "-1", "+1", "1.", "-1.", ".5",
        "-.5", "+.5", "5.e3", ".5e-3", "0.1", "0.2", "0.3", "0.85", "0.5", "1.5", "100",
        "12.345", "1e23", "1e22", "1e-22", "1e-23", "8.5e22", "123456789e-22",
        "9007199254740992", "9007199254740993", "9007199254740994", "9007199254740995",
        "9007199254740993.0000000000000000001", "9007199254740992.9999999999999999999",
        "18014398509481985", "18014398509481986", "0.30000000000000004",
        "2.2250738585072011e-308", "2.2250738585072012e-308", "2.2250738585072014e-308",
        "2.225073858507201136057409796709131975934819546351645648e-308",
        "2.2250738585072011360574097967091319759348195463516456480234261098e-308",
        "4.9406564584124654e-324", "4.9406564584124655e-324", "5e-324",
        "2.4703282292062327e-324", "2.4703282292062328e-324",
        "2.47032822920623272088e-324", "2.4703282292062327208828439643411068618252990130716238221279284125033775363510437593264991818081799618989828234772285886546332835517796989819938739800539093906315035659515570226392290858392449105184435931802849936536152500319370457678249219365623669863658480757001585769269903706311928279558551332927834338409351978015531246597263579574622766465272827220056374006485499977096599470454020828166226237857393450736339007967761930577506740176324673600968951340535537458516661134223766678604162159680461914467291840300530057530849048765391711386591646239524912623653881879636239373280423891018672348497668235089863388587925628302755995657524455507255189313690836254779186948667994968324049705821028513185451396213837722826145437693412532098591327667236328125e-324",
        "4.9e-324", "1e-324", "2e-324", "3e-324", "1e-400", "1.7976931348623157e308",
        "1.7976931348623158e308", "1.7976931348623159e308", "1.797693134862315807e308",
        "1.7976931348623158079e308", "1.797693134862315708145274237317043567981e308",
        "1.797693134862315708145274237317043567980e308", "1e308", "1e309", "-1e309",
        "1e999999999999999999", "-1e999999999999999999", "1e-999999999999999999",
        "00000000000000000000000000000000001.5", "0.00000000000000000000000000000000015e33",
        "123456789012345678901234567890", "1234567890123456789", "12345678901234567890",
        "18446744073709551615", "18446744073709551616", "7.3177701707893310e+15",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
        "1.00000000000000011102230246251565404236316680908203126",
        "1e65535", "1e65536", "1e65537", "1e-65536", "1e0000000000000000000000001",
        "inf", "-inf", "+inf", "INF", "Inf", "infinity", "-Infinity", "INFINITY", "nan", "NaN",
        "-nan", "+NAN", &long_ones, &long_nines, &long_zeros, &many_zeros,
    ];
    for s in cases {
        agrees(s);
    }
}

#[test]
fn refuses_what_std_refuses() {
    for s in [
        "",
        "+",
        "-",
        ".",
        "+.",
        "-.",
        "e",
        "e5",
        ".e5",
        "+e5",
        "1e",
        "1e+",
        "1e-",
        "1E",
        "1e+-5",
        "1e5.5",
        "1e5e5",
        "1..5",
        "1.5.",
        "..5",
        " 1",
        "1 ",
        "1_000",
        "0x10",
        "1f",
        "1.5f",
        "--1",
        "+-1",
        "-+1",
        "infinit",
        "infinityy",
        "in",
        "nana",
        "inf1",
        "- 1",
        "1,5",
        "١",
        "1e\u{0660}",
        "\u{0}",
        "1\u{0}",
        "0.5e",
        "NaN1",
        "+inf.0",
        "infe5",
    ] {
        agrees(s);
        assert_eq!(parse_f64(s), None, "{s:?}");
    }
}

/// Digits 1..40 long (or 700..900), a point anywhere or nowhere, an exponent over f64's range and
/// beyond, sometimes a sign on either.
fn random_decimal(rng: &mut Rng) -> String {
    let len = if rng.below(200) == 0 {
        700 + rng.below(201)
    } else {
        1 + rng.below(40)
    } as usize;
    let mut s = String::with_capacity(len + 12);
    match rng.below(8) {
        0 => s.push('-'),
        1 => s.push('+'),
        _ => {}
    }
    let zeros = if rng.below(4) == 0 {
        rng.below(len as u64 + 1) as usize
    } else {
        0
    };
    let point = match rng.below(3) {
        0 => None,
        _ => Some(rng.below(len as u64 + 1) as usize),
    };
    for i in 0..len {
        if point == Some(i) {
            s.push('.');
        }
        let digit = if i < zeros { 0 } else { rng.below(10) as u8 };
        s.push(char::from(b'0' + digit));
    }
    if point == Some(len) {
        s.push('.');
    }
    if rng.below(3) != 0 {
        s.push(if rng.below(2) == 0 { 'e' } else { 'E' });
        let e = match rng.below(20) {
            0 => rng.next_u64() % 1_000_000_000_000,
            1 => 60_000 + rng.below(10_000),
            _ => rng.below(400),
        };
        match rng.below(3) {
            0 => s.push('-'),
            1 => s.push('+'),
            _ => {}
        }
        s.push_str(&e.to_string());
    }
    s
}

/// A random bit pattern's shortest decimal (`Display` or `{:e}`), and the same with one digit
/// moved by one up or down. Every other pattern is between 2^-64 and 2^64, where most numbers
/// written by people are.
fn random_shortest(rng: &mut Rng) -> [String; 2] {
    let mut bits = rng.next_u64();
    if bits & 1 == 0 {
        let exponent = 1023 - 64 + rng.below(129);
        bits = (bits & !(0x7FF << 52)) | exponent << 52;
    }
    let v = f64::from_bits(bits);
    let s = if rng.below(2) == 0 {
        format!("{v}")
    } else {
        format!("{v:e}")
    };
    let mut bytes = s.clone().into_bytes();
    let digits: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i].is_ascii_digit() && !bytes[..i].contains(&b'e'))
        .collect();
    if !digits.is_empty() {
        let at = digits[rng.below(digits.len() as u64) as usize];
        bytes[at] = match bytes[at] {
            b'0' => b'1',
            b'9' => b'8',
            d if rng.below(2) == 0 => d + 1,
            d => d - 1,
        };
    }
    [s, String::from_utf8(bytes).unwrap()]
}

/// The exact decimal of the point halfway between a random non-negative f64 and the next one up
/// (which std rounds to even), then the same with up to 900 zeros appended, and a unit in the last
/// of those places above and below it: past the 800 digits kept, only the sign of the rest counts.
fn random_halfway(rng: &mut Rng) -> [String; 4] {
    let bits = rng.below(0x7FF0_0000_0000_0000);
    let (exp, frac) = ((bits >> 52) as i64, bits & ((1 << 52) - 1));
    // The value is m × 2^e; halfway to the next is (2m + 1) × 2^(e - 1), as digits × 10^-scale
    // (÷ 2 is × 5 and one more place after the point).
    let (m, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | 1 << 52, exp - 1075)
    };
    let mut digits = little_endian_digits(2 * m + 1);
    let (base, mut left) = if e > 0 { (2u64, e - 1) } else { (5, 1 - e) };
    let scale = if base == 5 { left } else { 0 };
    while left > 0 {
        // Up to 13 factors at a time: 5^13 < 2^32.
        let n = left.min(13);
        left -= n;
        let factor = base.pow(n as u32);
        let mut carry = 0u64;
        for d in digits.iter_mut() {
            let v = u64::from(*d) * factor + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        digits.extend(little_endian_digits(carry));
    }
    let zeros = rng.below(900) as usize + 1;
    let mut padded = vec![0u8; zeros];
    padded.extend(&digits);
    let (mut above, mut below) = (padded.clone(), padded.clone());
    // The lowest digit is 0: + 1 does not carry, - 1 borrows up to the first non-zero digit.
    above[0] = 1;
    for d in below.iter_mut() {
        if *d == 0 {
            *d = 9;
        } else {
            *d -= 1;
            break;
        }
    }
    let padded_scale = scale + zeros as i64;
    [
        text(&digits, scale),
        text(&padded, padded_scale),
        text(&above, padded_scale),
        text(&below, padded_scale),
    ]
}

/// Little-endian decimal digits × 10^-scale, as text.
fn text(digits: &[u8], scale: i64) -> String {
    let mut s: String = digits.iter().rev().map(|&d| char::from(b'0' + d)).collect();
    s.push_str(&format!("e-{scale}"));
    s
}

fn little_endian_digits(mut n: u64) -> Vec<u8> {
    let mut digits = Vec::new();
    while n > 0 {
        digits.push((n % 10) as u8);
        n /= 10;
    }
    digits
}

// A million strings in all, in two tests that run side by side.

#[test]
fn half_a_million_random_decimals_and_halfway_points_read_as_std_reads_them() {
    let mut rng = Rng::seed_from_u64(0x5EED_F10A7);
    for i in 0..500_000 {
        agrees(&random_decimal(&mut rng));
        if i % 1000 == 0 {
            for s in random_halfway(&mut rng) {
                agrees(&s);
            }
        }
    }
}

#[test]
fn half_a_million_shortest_decimals_and_their_neighbours_read_as_std_reads_them() {
    let mut rng = Rng::seed_from_u64(0x5EED_5407);
    for _ in 0..250_000 {
        for s in random_shortest(&mut rng) {
            agrees(&s);
        }
    }
}
