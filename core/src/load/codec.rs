//! The shared-data bytes of a [`Load`], written and read by hand in the form rmp-serde gave
//! them (compact: structs as arrays), reading what rmp-serde read (see
//! [`crate::msgpack::fields`]); bytes after the document are ignored, as they were.

use super::state::{EndpointLoad, Load, TargetLoad};
use crate::msgpack::fields::{f64_of, seq_of, string_of, struct_of, u32_of, u64_of};
use crate::msgpack::read::{Error, Reader, Token};
use crate::msgpack::write;

pub fn write_load(l: &Load) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 64 * l.endpoints.len());
    write::array(&mut out, 3);
    write::array(&mut out, l.names.len());
    l.names.iter().for_each(|n| write::str(&mut out, n));
    write::array(&mut out, l.targets.len());
    for t in &l.targets {
        write::array(&mut out, 3);
        write::uint(&mut out, u64::from(t.in_flight));
        write::float(&mut out, t.latency_ms);
        write::float(&mut out, t.ttfb_ms);
    }
    write::array(&mut out, l.endpoints.len());
    l.endpoints.iter().for_each(|e| write_endpoint(&mut out, e));
    out
}

fn write_endpoint(out: &mut Vec<u8>, e: &EndpointLoad) {
    write::array(out, 8);
    write::str(out, &e.address);
    write::uint(out, u64::from(e.target));
    write::uint(out, u64::from(e.in_flight));
    for v in [e.latency_ms, e.waiting, e.kv_cache] {
        write::float(out, v);
    }
    write::uint(out, e.reported_ms);
    write::uint(out, e.seen_ms);
}

pub fn read_load(bytes: &[u8]) -> Result<Load, Error> {
    let mut r = Reader::new(bytes, 1024);
    let t = r.token()?;
    let mut l = Load::default();
    struct_of(
        &mut r,
        t,
        &["names", "targets", "endpoints"],
        3,
        |i, r, t| {
            match i {
                0 => l.names = seq_of(r, t, |_, t| string_of(t))?,
                1 => l.targets = seq_of(r, t, target_load)?,
                _ => l.endpoints = seq_of(r, t, endpoint_load)?,
            }
            Ok(())
        },
    )?;
    Ok(l)
}

fn target_load<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<TargetLoad, Error> {
    let mut l = TargetLoad::default();
    struct_of(
        r,
        t,
        &["in_flight", "latency_ms", "ttfb_ms"],
        3,
        |i, _, t| {
            match i {
                0 => l.in_flight = u32_of(t)?,
                1 => l.latency_ms = f64_of(t)?,
                _ => l.ttfb_ms = f64_of(t)?,
            }
            Ok(())
        },
    )?;
    Ok(l)
}

fn endpoint_load<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<EndpointLoad, Error> {
    let names = [
        "address",
        "target",
        "in_flight",
        "latency_ms",
        "waiting",
        "kv_cache",
        "reported_ms",
        "seen_ms",
    ];
    let mut e = EndpointLoad::new("", 0);
    struct_of(r, t, &names, 8, |i, _, t| {
        // One read per kind of field, then the slot it fills.
        match i {
            0 => e.address = string_of(t)?,
            1 | 2 => {
                let n = u32_of(t)?;
                *if i == 1 {
                    &mut e.target
                } else {
                    &mut e.in_flight
                } = n;
            }
            3..=5 => {
                let x = f64_of(t)?;
                *match i {
                    3 => &mut e.latency_ms,
                    4 => &mut e.waiting,
                    _ => &mut e.kv_cache,
                } = x;
            }
            _ => {
                let n = u64_of(t)?;
                *if i == 6 {
                    &mut e.reported_ms
                } else {
                    &mut e.seen_ms
                } = n;
            }
        }
        Ok(())
    })?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::testing::{any_f64, any_len, any_name, any_u64, near};
    use crate::rng::Rng;

    fn any_load(rng: &mut Rng) -> Load {
        let names = (0..any_len(rng)).map(|_| any_name(rng)).collect();
        let targets = (0..any_len(rng))
            .map(|_| TargetLoad {
                in_flight: any_u64(rng) as u32,
                latency_ms: any_f64(rng),
                ttfb_ms: any_f64(rng),
            })
            .collect();
        let endpoints = (0..any_len(rng))
            .map(|_| EndpointLoad {
                address: any_name(rng),
                target: any_u64(rng) as u32,
                in_flight: any_u64(rng) as u32,
                latency_ms: any_f64(rng),
                waiting: any_f64(rng),
                kv_cache: any_f64(rng),
                reported_ms: any_u64(rng),
                seen_ms: any_u64(rng),
            })
            .collect();
        Load {
            names,
            targets,
            endpoints,
        }
    }

    /// What a read gives, comparable with NaN in it.
    fn outcome<E>(r: Result<Load, E>) -> Option<String> {
        r.ok().map(|l| format!("{l:?}"))
    }

    #[test]
    fn encoding_is_rmp_serde_byte_for_byte() {
        let mut rng = Rng::seed_from_u64(21);
        for _ in 0..2000 {
            let l = any_load(&mut rng);
            assert_eq!(write_load(&l), rmp_serde::to_vec(&l).unwrap(), "{l:?}");
        }
    }

    #[test]
    fn reading_agrees_with_rmp_serde() {
        let mut rng = Rng::seed_from_u64(22);
        for _ in 0..200 {
            let l = any_load(&mut rng);
            let compact = write_load(&l);
            assert_eq!(
                outcome(read_load(&compact)),
                outcome(Ok::<_, ()>(l.clone()))
            );
            let named = rmp_serde::to_vec_named(&l).unwrap();
            for doc in [&compact, &named] {
                for bytes in near(doc, &mut rng) {
                    let want = rmp_serde::from_slice::<Load>(&bytes);
                    assert_eq!(outcome(read_load(&bytes)), outcome(want), "{bytes:02x?}");
                }
            }
        }
    }

    #[test]
    fn a_target_may_be_a_bin_as_before() {
        // [["a"], [bin [2, 5, 7, 9]], []]: the bytes are the fields, the last one ignored.
        let bytes = [0x93, 0x91, 0xa1, b'a', 0x91, 0xc4, 4, 2, 5, 7, 9, 0x90];
        let l = read_load(&bytes).unwrap();
        assert_eq!(
            l.targets,
            [TargetLoad {
                in_flight: 2,
                latency_ms: 5.0,
                ttfb_ms: 7.0
            }]
        );
        assert_eq!(rmp_serde::from_slice::<Load>(&bytes).unwrap(), l);
    }
}
