//! `plain` and `fixed` against std's own `{}` and `{:.N}`: the same text for specials, every
//! power of ten and its neighbours, the ties, and a million random values.

use super::*;
use crate::rng::Rng;

fn plain_agrees(v: f64) {
    assert_eq!(
        plain(v).to_string(),
        format!("{v}"),
        "{v:e} ({:#x})",
        v.to_bits()
    );
}

fn fixed_agrees(v: f64) {
    let (ours, std) = (fixed::<3>(v).to_string(), format!("{v:.3}"));
    assert_eq!(ours, std, "{v:e} ({:#x})", v.to_bits());
}

/// 3 places and others: ties at 0 (`0.5`, `1.5`), 1 and 6.
fn fixed_agrees_at_any(v: f64) {
    fixed_agrees(v);
    let bits = v.to_bits();
    let ours = [
        fixed::<0>(v).to_string(),
        fixed::<1>(v).to_string(),
        fixed::<6>(v).to_string(),
    ];
    let std = [format!("{v:.0}"), format!("{v:.1}"), format!("{v:.6}")];
    assert_eq!(ours, std, "{v:e} ({bits:#x})");
}

const SPECIALS: [f64; 27] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.1,
    0.5,
    1.5,
    2.5,
    0.0625,
    0.0005,
    0.0015,
    1.0005,
    1e15,
    1e16,
    1e17,
    1e21,
    1e-7,
    5e-324,
    f64::MIN_POSITIVE,
    f64::MAX,
    f64::MIN,
    f64::EPSILON,
    9007199254740992.0,
    9007199254740994.0,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
];

/// Every power of ten and its neighbours (where layouts change), with either sign.
fn powers_of_ten() -> impl Iterator<Item = f64> {
    (-325..=309).flat_map(|e| {
        let v: f64 = format!("1e{e}").parse().unwrap();
        [
            v,
            f64::from_bits(v.to_bits() + 1),
            f64::from_bits(v.to_bits().max(1) - 1),
        ]
        .into_iter()
        .flat_map(|x| [x, -x])
    })
}

/// Values halfway between two shortest candidates (where std and ryu round differently) or two
/// fixed ones: the 17-digit `x.25` and `x.75` of `[2^50, 2^51)`, and odd numbers of up to 20 bits
/// over powers of two (`0.0625`, `0.5`; `0.082401275634765625` between `…562` and `…563`).
fn ties(rng: &mut Rng) -> Vec<f64> {
    let mut out = Vec::new();
    for _ in 0..20_000 {
        let odd = (1u64 << 52) | rng.next_u64() & ((1 << 52) - 1) | 1;
        out.push(odd as f64 / 4.0);
        out.push(-(odd as f64) / 4.0);
        let small = rng.below(1 << 20) | 1;
        out.push(small as f64 / f64::from(1u32 << rng.below(24)));
    }
    out
}

/// A random value of random magnitude, from 1e-30 to 1e30.
fn any_magnitude(rng: &mut Rng) -> f64 {
    let v = rng.next_f64() * 10f64.powi(rng.below(61) as i32 - 30);
    if rng.below(2) == 0 {
        v
    } else {
        -v
    }
}

/// Checks the specials, the powers of ten and the ties; the generator, seeded with `seed`, for
/// the random values that follow.
fn check_fixed_cases(seed: u64, check: impl Fn(f64)) -> Rng {
    for v in SPECIALS.into_iter().chain(powers_of_ten()) {
        check(v);
    }
    let mut rng = Rng::seed_from_u64(seed);
    for v in ties(&mut rng) {
        check(v);
    }
    rng
}

#[test]
fn plain_is_std_display() {
    let mut rng = check_fixed_cases(11, plain_agrees);
    for _ in 0..500_000 {
        plain_agrees(f64::from_bits(rng.next_u64()));
        plain_agrees(any_magnitude(&mut rng));
        plain_agrees(rng.below(1 << 30) as f64 / 1024.0);
    }
}

#[test]
fn fixed_is_std_precision() {
    let mut rng = check_fixed_cases(13, fixed_agrees_at_any);
    for _ in 0..500_000 {
        fixed_agrees(any_magnitude(&mut rng));
        fixed_agrees(rng.below(1 << 30) as f64 / f64::from(1u32 << rng.below(24)));
    }
    // Integers of every size (the decimal doubling) and subnormals: fewer, they are slower.
    for _ in 0..5_000 {
        fixed_agrees_at_any(f64::from_bits(rng.next_u64()));
    }
    assert_eq!(fixed::<3>(0.0625).to_string(), "0.062");
    assert_eq!(fixed::<0>(0.5).to_string(), "0");
    assert_eq!(fixed::<0>(1.5).to_string(), "2");
}
