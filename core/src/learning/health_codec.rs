//! The shared-data bytes of a [`Health`], written and read by hand in the form rmp-serde gave
//! them (compact: structs as arrays, an absent `fleet` left out), reading what rmp-serde read
//! (see [`crate::msgpack::fields`]); bytes after the document are ignored, as they were.

use super::health::{FleetHealth, Health};
use crate::msgpack::fields::{f64_of, option_of, seq_of, struct_of, u64_of};
use crate::msgpack::read::{Error, Reader, Token};
use crate::msgpack::write;

pub fn write_health(h: &Health) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36 * h.cooling_until.len());
    write::array(&mut out, if h.fleet.is_some() { 5 } else { 4 });
    write::uints(&mut out, &h.cooling_until);
    write::floats(&mut out, &h.latency_ms);
    write::floats(&mut out, &h.samples);
    write::uints(&mut out, &h.sampled_ms);
    if let Some(f) = &h.fleet {
        write::array(&mut out, 3);
        write::uints(&mut out, &f.cooling_until);
        write::floats(&mut out, &f.latency_ms);
        write::floats(&mut out, &f.samples);
    }
    out
}

pub fn read_health(bytes: &[u8]) -> Result<Health, Error> {
    let names = [
        "cooling_until",
        "latency_ms",
        "samples",
        "sampled_ms",
        "fleet",
    ];
    let mut r = Reader::new(bytes, 1024);
    let t = r.token()?;
    let mut h = Health::default();
    struct_of(&mut r, t, &names, 2, |i, r, t| {
        match i {
            0 => h.cooling_until = uints(r, t)?,
            1 => h.latency_ms = floats(r, t)?,
            2 => h.samples = floats(r, t)?,
            3 => h.sampled_ms = uints(r, t)?,
            _ => h.fleet = option_of(r, t, fleet_health)?,
        }
        Ok(())
    })?;
    Ok(h)
}

/// A sequence of unsigned integers: one `seq_of` for every such field (a closure per field
/// would be a copy each).
fn uints<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<Vec<u64>, Error> {
    seq_of(r, t, |_, t| u64_of(t))
}

/// A sequence of numbers, as [`uints`].
fn floats<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<Vec<f64>, Error> {
    seq_of(r, t, |_, t| f64_of(t))
}

fn fleet_health<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<FleetHealth, Error> {
    let mut f = FleetHealth::default();
    struct_of(
        r,
        t,
        &["cooling_until", "latency_ms", "samples"],
        3,
        |i, r, t| {
            match i {
                0 => f.cooling_until = uints(r, t)?,
                1 => f.latency_ms = floats(r, t)?,
                _ => f.samples = floats(r, t)?,
            }
            Ok(())
        },
    )?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::testing::{any_f64, any_len, any_u64, near};
    use crate::rng::Rng;

    fn any_health(rng: &mut Rng) -> Health {
        let n = any_len(rng);
        let mut lens = [n; 7];
        if rng.below(4) == 0 {
            lens = [(); 7].map(|()| any_len(rng));
        }
        let uints = |rng: &mut Rng, n| (0..n).map(|_| any_u64(rng)).collect();
        let floats = |rng: &mut Rng, n| (0..n).map(|_| any_f64(rng)).collect();
        let [a, b, c, d, e, f, g] = lens;
        let fleet = (rng.below(2) == 0).then(|| FleetHealth {
            cooling_until: uints(rng, e),
            latency_ms: floats(rng, f),
            samples: floats(rng, g),
        });
        Health {
            cooling_until: uints(rng, a),
            latency_ms: floats(rng, b),
            samples: floats(rng, c),
            sampled_ms: uints(rng, d),
            fleet,
        }
    }

    /// What a read gives, comparable with NaN in it.
    fn outcome<E>(r: Result<Health, E>) -> Option<String> {
        r.ok().map(|h| format!("{h:?}"))
    }

    #[test]
    fn encoding_is_rmp_serde_byte_for_byte() {
        let mut rng = Rng::seed_from_u64(11);
        for _ in 0..3000 {
            let h = any_health(&mut rng);
            assert_eq!(write_health(&h), rmp_serde::to_vec(&h).unwrap(), "{h:?}");
        }
    }

    #[test]
    fn reading_agrees_with_rmp_serde() {
        let mut rng = Rng::seed_from_u64(12);
        for _ in 0..300 {
            let h = any_health(&mut rng);
            let compact = write_health(&h);
            assert_eq!(
                outcome(read_health(&compact)),
                outcome(Ok::<_, ()>(h.clone()))
            );
            let named = rmp_serde::to_vec_named(&h).unwrap();
            // Health written before samples were counted: two fields.
            let old = rmp_serde::to_vec(&(&h.cooling_until, &h.latency_ms)).unwrap();
            for doc in [&compact, &named, &old] {
                for bytes in near(doc, &mut rng) {
                    let want = rmp_serde::from_slice::<Health>(&bytes);
                    assert_eq!(outcome(read_health(&bytes)), outcome(want), "{bytes:02x?}");
                }
            }
        }
    }

    #[test]
    fn trailing_bytes_are_ignored_as_before() {
        let h = Health::new(2);
        let mut bytes = write_health(&h);
        bytes.extend_from_slice(&[0xc1, 0xff]);
        assert_eq!(read_health(&bytes), Ok(h));
        // A bin is a sequence of small integers to rmp-serde: [[7, 0], [30, 1]].
        let bin = [0x92, 0xc4, 0x02, 0x07, 0x00, 0x92, 0x1e, 0x01];
        let h = read_health(&bin).unwrap();
        assert_eq!(
            (h.cooling_until, h.latency_ms),
            (vec![7, 0], vec![30.0, 1.0])
        );
        assert!(rmp_serde::from_slice::<Health>(&bin).is_ok());
    }
}
