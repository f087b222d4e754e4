//! The shared-data bytes of a [`ModelState`], written and read by hand in the form rmp-serde
//! gave them (compact: every struct an array of its fields, an absent `ext` left out, `None`
//! as nil), and reading what rmp-serde read (see [`crate::msgpack::fields`]). The serde
//! derives on the types remain for tools and the tests that compare the two.
//!
//! # Change detectors: a map, for builds that do not know them
//! A state with change detectors ([`ModelState::change`]) is written as a map of its fields
//! by name (`version`, `config_id`, `updates`, `arms`, `ext` when present, `change`; the values
//! in the compact form), which rmp-serde reads too. A build without change detection, older
//! ones included, reads such a state and skips the `change` key, instead of refusing a sixth
//! array item and resetting what was learned; so a rolling upgrade, or a rollback, keeps the
//! statistics and only the detectors restart. The format version stays 1. States without
//! detectors are written exactly as before.

use super::change::{ChangeState, Watch};
use super::linear::{LinearArm, LinearPart};
use super::state::{ArmState, ArmSums, FleetPart, ModelState, StateExt};
use crate::msgpack::fields::{f64_of, option_of, seq_of, string_of, struct_of, u32_of, u64_of};
use crate::msgpack::read::{Error, Reader, Token};
use crate::msgpack::write;

/// rmp-serde's default nesting limit, which reading the state always had.
const MAX_DEPTH: usize = 1024;

pub fn write_state(s: &ModelState) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 48 * s.arms.len());
    let fields = if s.ext.is_some() { 5 } else { 4 };
    let named = s.change.is_some();
    // The key before each field when the state is a map, nothing otherwise.
    let key = |out: &mut Vec<u8>, name: &str| {
        if named {
            write::str(out, name);
        }
    };
    if named {
        write::map(&mut out, fields + 1);
    } else {
        write::array(&mut out, fields);
    }
    key(&mut out, "version");
    write::uint(&mut out, u64::from(s.version));
    key(&mut out, "config_id");
    write::uint(&mut out, s.config_id);
    key(&mut out, "updates");
    write::uint(&mut out, s.updates);
    key(&mut out, "arms");
    write::array(&mut out, s.arms.len());
    for a in &s.arms {
        write_arm(&mut out, &a.name, [a.pulls, a.reward_sum, a.alpha, a.beta]);
    }
    if let Some(ext) = &s.ext {
        key(&mut out, "ext");
        write::array(&mut out, if ext.linear.is_some() { 3 } else { 2 });
        write::uint(&mut out, ext.as_of_ms);
        match &ext.fleet {
            None => write::nil(&mut out),
            Some(f) => write_fleet(&mut out, f),
        }
        if let Some(linear) = &ext.linear {
            write_linear(&mut out, linear);
        }
    }
    if let Some(change) = &s.change {
        key(&mut out, "change");
        write_change(&mut out, change);
    }
    out
}

/// A [`LinearPart`]: `[[name, [a…], [b…]], …]` in a one-field array.
fn write_linear(out: &mut Vec<u8>, part: &LinearPart) {
    write::array(out, 1);
    write::array(out, part.arms.len());
    for arm in &part.arms {
        write::array(out, 3);
        write::str(out, &arm.name);
        write::floats(out, &arm.a);
        write::floats(out, &arm.b);
    }
}

/// `[[[n, sum, down, up], ...]]`: the struct, its one field, the detectors.
fn write_change(out: &mut Vec<u8>, c: &ChangeState) {
    write::array(out, 1);
    write::array(out, c.arms.len());
    for w in &c.arms {
        write::floats(out, &w.values());
    }
}

/// An [`ArmState`] or [`ArmSums`]: a name and four numbers.
fn write_arm(out: &mut Vec<u8>, name: &str, values: [f64; 4]) {
    write::array(out, 5);
    write::str(out, name);
    values.iter().for_each(|v| write::float(out, *v));
}

fn write_fleet(out: &mut Vec<u8>, f: &FleetPart) {
    write::array(out, 4);
    write::uint(out, f.as_of_ms);
    write::uint(out, f.updates);
    write::uint(out, u64::from(f.replicas));
    write::array(out, f.arms.len());
    for a in &f.arms {
        write_arm(out, &a.name, a.values());
    }
}

/// The leading `version` of an encoded state, whatever follows it (trailing bytes included):
/// the first item of an array, or the `version` entry of a map (the last one, if repeated).
pub fn read_version(bytes: &[u8]) -> Result<u32, Error> {
    let mut r = Reader::new(bytes, MAX_DEPTH);
    match r.token()? {
        Token::Array(0) => Err(Error::Syntax("empty array".into())),
        Token::Array(n) => r.nested(|r| {
            let version = u32_of(r.token()?)?;
            (1..n).try_for_each(|_| r.skip())?;
            Ok(version)
        }),
        Token::Map(n) => r.nested(|r| {
            let mut version = None;
            for _ in 0..n {
                let key = string_of(r.token()?)?;
                if key == "version" {
                    version = Some(u32_of(r.token()?)?);
                } else {
                    r.skip()?;
                }
            }
            version.ok_or_else(|| Error::Syntax("missing field `version`".into()))
        }),
        _ => Err(Error::Syntax(
            "expected a bandit state (array or map starting with a version)".into(),
        )),
    }
}

/// The whole state; bytes after it are an error.
pub fn read_state(bytes: &[u8]) -> Result<ModelState, Error> {
    let mut r = Reader::new(bytes, MAX_DEPTH);
    let first = r.token()?;
    let state = model_state(&mut r, first)?;
    match r.rest().len() {
        0 => Ok(state),
        n => Err(Error::Syntax(format!("{n} trailing bytes after the state"))),
    }
}

fn model_state<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<ModelState, Error> {
    let names = ["version", "config_id", "updates", "arms", "ext", "change"];
    let mut s = ModelState {
        version: 0,
        config_id: 0,
        updates: 0,
        arms: Vec::new(),
        ext: None,
        change: None,
    };
    struct_of(r, t, &names, 4, |i, r, t| {
        match i {
            0 => s.version = u32_of(t)?,
            1 => s.config_id = u64_of(t)?,
            2 => s.updates = u64_of(t)?,
            3 => s.arms = seq_of(r, t, arm_state)?,
            4 => s.ext = option_of(r, t, state_ext)?,
            _ => s.change = option_of(r, t, change_state)?,
        }
        Ok(())
    })?;
    Ok(s)
}

/// A name and four numbers, the fields of [`ArmState`] and [`ArmSums`].
fn arm<'a>(
    r: &mut Reader<'a>,
    t: Token<'a>,
    names: &[&str; 5],
) -> Result<(String, [f64; 4]), Error> {
    let mut name = String::new();
    let mut values = [0.0; 4];
    struct_of(r, t, names, 5, |i, _, t| {
        if i == 0 {
            name = string_of(t)?;
        } else if let Some(v) = values.get_mut(i - 1) {
            *v = f64_of(t)?;
        }
        Ok(())
    })?;
    Ok((name, values))
}

fn arm_state<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<ArmState, Error> {
    let names = ["name", "pulls", "reward_sum", "alpha", "beta"];
    let (name, [pulls, reward_sum, alpha, beta]) = arm(r, t, &names)?;
    Ok(ArmState {
        name,
        pulls,
        reward_sum,
        alpha,
        beta,
    })
}

fn arm_sums<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<ArmSums, Error> {
    let names = ["name", "pulls", "reward_sum", "alpha_gain", "beta_gain"];
    let (name, [pulls, reward_sum, alpha_gain, beta_gain]) = arm(r, t, &names)?;
    Ok(ArmSums {
        name,
        pulls,
        reward_sum,
        alpha_gain,
        beta_gain,
    })
}

fn state_ext<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<StateExt, Error> {
    let mut ext = StateExt {
        as_of_ms: 0,
        fleet: None,
        linear: None,
    };
    struct_of(r, t, &["as_of_ms", "fleet", "linear"], 1, |i, r, t| {
        match i {
            0 => ext.as_of_ms = u64_of(t)?,
            1 => ext.fleet = option_of(r, t, fleet_part)?,
            _ => ext.linear = option_of(r, t, linear_part)?,
        }
        Ok(())
    })?;
    Ok(ext)
}

fn linear_part<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<LinearPart, Error> {
    let mut part = LinearPart { arms: Vec::new() };
    struct_of(r, t, &["arms"], 1, |_, r, t| {
        part.arms = seq_of(r, t, linear_arm)?;
        Ok(())
    })?;
    Ok(part)
}

fn linear_arm<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<LinearArm, Error> {
    let mut arm = LinearArm {
        name: String::new(),
        a: Vec::new(),
        b: Vec::new(),
    };
    struct_of(r, t, &["name", "a", "b"], 3, |i, r, t| {
        match i {
            0 => arm.name = string_of(t)?,
            1 => arm.a = floats(r, t)?,
            _ => arm.b = floats(r, t)?,
        }
        Ok(())
    })?;
    Ok(arm)
}

/// A sequence of numbers: one `seq_of` for both of a linear arm's (a closure each would be a copy
/// each).
fn floats<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<Vec<f64>, Error> {
    seq_of(r, t, |_, t| f64_of(t))
}

fn change_state<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<ChangeState, Error> {
    let mut c = ChangeState::default();
    struct_of(r, t, &["arms"], 1, |_, r, t| {
        c.arms = seq_of(r, t, watch)?;
        Ok(())
    })?;
    Ok(c)
}

fn watch<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<Watch, Error> {
    let mut v = [0.0; 4];
    struct_of(r, t, &["n", "sum", "down", "up"], 4, |i, _, t| {
        if let Some(slot) = v.get_mut(i) {
            *slot = f64_of(t)?;
        }
        Ok(())
    })?;
    let [n, sum, down, up] = v;
    Ok(Watch { n, sum, down, up })
}

fn fleet_part<'a>(r: &mut Reader<'a>, t: Token<'a>) -> Result<FleetPart, Error> {
    let names = ["as_of_ms", "updates", "replicas", "arms"];
    let mut f = FleetPart {
        as_of_ms: 0,
        updates: 0,
        replicas: 0,
        arms: Vec::new(),
    };
    struct_of(r, t, &names, 4, |i, r, t| {
        match i {
            0 => f.as_of_ms = u64_of(t)?,
            1 => f.updates = u64_of(t)?,
            2 => f.replicas = u32_of(t)?,
            _ => f.arms = seq_of(r, t, arm_sums)?,
        }
        Ok(())
    })?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandit::{decode, encode, DecodeError, STATE_VERSION};
    use crate::msgpack::testing::{any_f64, any_len, any_name, any_u64, near};
    use crate::rng::Rng;

    /// The decoder this module replaced: rmp-serde and the serde derives.
    mod reference {
        use super::*;
        use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
        use serde::Deserialize;
        use std::fmt;

        struct VersionProbe(u32);

        impl<'de> Deserialize<'de> for VersionProbe {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(ProbeVisitor)
            }
        }

        struct ProbeVisitor;

        impl<'de> Visitor<'de> for ProbeVisitor {
            type Value = VersionProbe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a bandit state")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<VersionProbe, A::Error> {
                let version: u32 = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::custom("empty array"))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(VersionProbe(version))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VersionProbe, A::Error> {
                let mut version = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "version" {
                        version = Some(map.next_value::<u32>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                version
                    .map(VersionProbe)
                    .ok_or_else(|| de::Error::missing_field("version"))
            }
        }

        pub fn decode(bytes: &[u8]) -> Result<ModelState, DecodeError> {
            let malformed = |e: rmp_serde::decode::Error| DecodeError::Malformed(e.to_string());
            let probe: VersionProbe = rmp_serde::from_slice(bytes).map_err(malformed)?;
            if probe.0 != STATE_VERSION {
                return Err(DecodeError::Version {
                    found: probe.0,
                    expected: STATE_VERSION,
                });
            }
            let mut de = rmp_serde::Deserializer::new(bytes);
            let state = ModelState::deserialize(&mut de).map_err(malformed)?;
            if !de.into_inner().is_empty() {
                return Err(DecodeError::Malformed("trailing".into()));
            }
            state.check().map_err(DecodeError::Invalid)?;
            Ok(state)
        }
    }

    /// What a decode says, comparable: the state (NaN included), or the kind of error.
    fn outcome(r: Result<ModelState, DecodeError>) -> String {
        match r {
            Ok(s) => format!("{s:?}"),
            Err(DecodeError::Malformed(_)) => "malformed".into(),
            Err(e) => format!("{e:?}"),
        }
    }

    fn arms(rng: &mut Rng) -> Vec<(String, [f64; 4])> {
        (0..any_len(rng))
            .map(|_| (any_name(rng), [(); 4].map(|()| any_f64(rng))))
            .collect()
    }

    fn any_state(rng: &mut Rng) -> ModelState {
        let fleet = |rng: &mut Rng| FleetPart {
            as_of_ms: any_u64(rng),
            updates: any_u64(rng),
            replicas: any_u64(rng) as u32,
            arms: arms(rng)
                .into_iter()
                .map(
                    |(name, [pulls, reward_sum, alpha_gain, beta_gain])| ArmSums {
                        name,
                        pulls,
                        reward_sum,
                        alpha_gain,
                        beta_gain,
                    },
                )
                .collect(),
        };
        let linear = |rng: &mut Rng| LinearPart {
            arms: arms(rng)
                .into_iter()
                .map(|(name, [a0, a1, a2, b0])| LinearArm {
                    name,
                    a: vec![a0, a1, a2],
                    b: vec![b0, a1],
                })
                .collect(),
        };
        let ext = match rng.below(4) {
            0 => None,
            1 => Some(StateExt {
                as_of_ms: any_u64(rng),
                fleet: None,
                linear: None,
            }),
            2 => Some(StateExt {
                as_of_ms: any_u64(rng),
                fleet: Some(fleet(rng)),
                linear: None,
            }),
            _ => Some(StateExt {
                as_of_ms: any_u64(rng),
                fleet: None,
                linear: Some(linear(rng)),
            }),
        };
        ModelState {
            version: if rng.below(4) == 0 {
                any_u64(rng) as u32
            } else {
                STATE_VERSION
            },
            config_id: any_u64(rng),
            updates: any_u64(rng),
            arms: arms(rng)
                .into_iter()
                .map(|(name, [pulls, reward_sum, alpha, beta])| ArmState {
                    name,
                    pulls,
                    reward_sum,
                    alpha,
                    beta,
                })
                .collect(),
            ext,
            change: (rng.below(3) == 0).then(|| ChangeState {
                arms: (0..any_len(rng))
                    .map(|_| {
                        let [n, sum, down, up] = [(); 4].map(|()| any_f64(rng));
                        Watch { n, sum, down, up }
                    })
                    .collect(),
            }),
        }
    }

    /// A state that passes [`ModelState::check`], so decoding gets past the numbers.
    fn valid_state(rng: &mut Rng) -> ModelState {
        let mut s = any_state(rng);
        s.version = STATE_VERSION;
        for (i, a) in s.arms.iter_mut().enumerate() {
            a.name = format!("t{i}");
            a.pulls = rng.below(100) as f64;
            a.reward_sum = a.pulls * rng.next_f64();
            a.alpha = 1.0 + a.reward_sum;
            a.beta = 1.0 + a.pulls - a.reward_sum;
        }
        if s.arms.is_empty() {
            s.arms
                .push(ArmState::fresh("t", crate::bandit::Prior::default()));
        }
        if let Some(l) = s.ext.as_mut().and_then(|e| e.linear.as_mut()) {
            for (i, arm) in l.arms.iter_mut().enumerate() {
                *arm = LinearArm::fresh(&format!("l{i}"), 2, 1.0);
                arm.update(&[1.0, rng.next_f64()], rng.next_f64(), 1.0, 1.0);
            }
        }
        if let Some(c) = s.change.as_mut() {
            c.arms = (s.arms.iter())
                .map(|a| Watch {
                    n: a.pulls,
                    sum: a.reward_sum,
                    down: rng.next_f64() * 10.0,
                    up: rng.next_f64(),
                })
                .collect();
        }
        if let Some(f) = s.ext.as_mut().and_then(|e| e.fleet.as_mut()) {
            f.arms.iter_mut().for_each(ArmSums::clamp_non_negative);
            for a in &mut f.arms {
                a.name = format!("f{}", a.name.len());
                for v in [
                    &mut a.pulls,
                    &mut a.reward_sum,
                    &mut a.alpha_gain,
                    &mut a.beta_gain,
                ] {
                    *v = v.min(1e6);
                }
                a.reward_sum = a.reward_sum.min(a.pulls);
            }
        }
        s
    }

    #[test]
    fn encoding_is_rmp_serde_byte_for_byte() {
        let mut rng = Rng::seed_from_u64(1);
        for _ in 0..3000 {
            // With detectors the state is a map (see `named_when_it_has_detectors`).
            let s = ModelState {
                change: None,
                ..any_state(&mut rng)
            };
            assert_eq!(encode(&s), rmp_serde::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn decoding_agrees_with_rmp_serde() {
        let mut rng = Rng::seed_from_u64(2);
        for round in 0..300 {
            let s = if round % 2 == 0 {
                valid_state(&mut rng)
            } else {
                any_state(&mut rng)
            };
            let compact = encode(&s);
            let named = rmp_serde::to_vec_named(&s).unwrap();
            assert_eq!(
                outcome(decode(&compact)),
                outcome(reference::decode(&compact))
            );
            for doc in [&compact, &named] {
                for bytes in near(doc, &mut rng) {
                    let (got, want) = (decode(&bytes), reference::decode(&bytes));
                    assert_eq!(outcome(got), outcome(want), "{bytes:02x?}");
                }
            }
        }
    }

    #[test]
    fn decoding_rmp_serde_bytes_gives_the_state_back() {
        let mut rng = Rng::seed_from_u64(3);
        for _ in 0..500 {
            let s = valid_state(&mut rng);
            // rmp-serde's compact form cannot skip `ext` and keep `change` (it is positional).
            let compact = (s.change.is_none() || s.ext.is_some()).then(|| rmp_serde::to_vec(&s));
            for bytes in compact.into_iter().chain([rmp_serde::to_vec_named(&s)]) {
                assert_eq!(decode(&bytes.unwrap()), Ok(s.clone()));
            }
        }
    }

    /// The layout of a build without change detection, as rmp-serde read it.
    #[derive(Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    struct OldState {
        version: u32,
        config_id: u64,
        updates: u64,
        arms: Vec<ArmState>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ext: Option<StateExt>,
    }

    #[test]
    fn named_when_it_has_detectors_and_older_builds_read_it() {
        let mut rng = Rng::seed_from_u64(5);
        for _ in 0..300 {
            let mut s = valid_state(&mut rng);
            let watches = s.arms.iter().map(|_| Watch::default()).collect();
            s.change.get_or_insert(ChangeState { arms: watches });
            let bytes = encode(&s);
            // A map (fixmap of 5 or 6 fields), which this build and rmp-serde read back.
            let fields = if s.ext.is_some() { 6 } else { 5 };
            assert_eq!(bytes.first(), Some(&(0x80 | fields)));
            assert_eq!(decode(&bytes), Ok(s.clone()));
            assert_eq!(reference::decode(&bytes), Ok(s.clone()));
            // A build that does not know `change` skips it and keeps every statistic.
            let old: OldState = rmp_serde::from_slice(&bytes).unwrap();
            assert_eq!(
                (old.version, old.config_id, old.updates),
                (1, s.config_id, s.updates)
            );
            assert_eq!((old.arms, old.ext), (s.arms.clone(), s.ext.clone()));
            // Without detectors, the bytes are those a build without them writes.
            s.change = None;
            let old = OldState {
                version: s.version,
                config_id: s.config_id,
                updates: s.updates,
                arms: s.arms.clone(),
                ext: s.ext.clone(),
            };
            assert_eq!(encode(&s), rmp_serde::to_vec(&old).unwrap());
        }
    }

    #[test]
    fn a_state_written_before_change_detection_still_decodes() {
        // [1, 7, 3, [["a", 1.0, 1.0, 2.0, 1.0]]], as the previous build wrote it.
        let mut bytes = vec![0x94, 0x01, 0x07, 0x03, 0x91, 0x95, 0xa1, b'a'];
        for v in [1.0f64, 1.0, 2.0, 1.0] {
            bytes.push(0xcb);
            bytes.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        let s = decode(&bytes).unwrap();
        assert_eq!((s.version, s.config_id, s.updates), (1, 7, 3));
        assert_eq!(s.change, None);
        assert_eq!((s.arms[0].name.as_str(), s.arms[0].alpha), ("a", 2.0));
        assert_eq!(encode(&s), bytes, "and is written back the same");
    }

    #[test]
    fn unusable_detectors_are_refused() {
        let mut s = valid_state(&mut Rng::seed_from_u64(6));
        s.change = Some(ChangeState {
            arms: vec![Watch::default(); s.arms.len() + 1],
        });
        assert!(matches!(decode(&encode(&s)), Err(DecodeError::Invalid(_))));
        s.change = Some(ChangeState {
            arms: vec![
                Watch {
                    down: f64::NAN,
                    ..Watch::default()
                };
                s.arms.len()
            ],
        });
        assert!(matches!(decode(&encode(&s)), Err(DecodeError::Invalid(_))));
    }

    #[test]
    fn other_spellings_rmp_serde_reads_are_read() {
        // {"version": 1, "config_id": 7, "updates": 3, "arms": [{0: "a", "pulls": 1,
        // "reward_sum": 1, "alpha": 2.0, "beta": 1}], "x": [[]]}: a field by index, integers for
        // floats, an unknown key.
        let mut bytes = vec![0x85];
        let key = |b: &mut Vec<u8>, k: &str| {
            b.push(0xa0 | k.len() as u8);
            b.extend_from_slice(k.as_bytes());
        };
        for (k, v) in [("version", 1), ("config_id", 7), ("updates", 3)] {
            key(&mut bytes, k);
            bytes.push(v);
        }
        key(&mut bytes, "arms");
        bytes.extend_from_slice(&[0x91, 0x85, 0x00, 0xa1, b'a']);
        for (k, v) in [("pulls", 1), ("reward_sum", 1), ("alpha", 2), ("beta", 1)] {
            key(&mut bytes, k);
            bytes.push(v);
        }
        key(&mut bytes, "x");
        bytes.extend_from_slice(&[0x91, 0x90]);
        let s = decode(&bytes).unwrap();
        assert_eq!((s.config_id, s.updates, s.arms[0].alpha), (7, 3, 2.0));
        assert_eq!(outcome(reference::decode(&bytes)), outcome(Ok(s)));
        // The version is found by name only: an index key is refused at the top level.
        bytes.splice(1..9, [0x00]);
        assert!(matches!(decode(&bytes), Err(DecodeError::Malformed(_))));
        assert_eq!(outcome(decode(&bytes)), outcome(reference::decode(&bytes)));
        // A state of another version is reported as such, trailing bytes or not.
        let mut v2 = encode(&ModelState {
            version: 2,
            ..valid_state(&mut Rng::seed_from_u64(4))
        });
        v2.push(0xc1);
        assert!(matches!(
            decode(&v2),
            Err(DecodeError::Version { found: 2, .. })
        ));
    }

    #[test]
    fn nesting_is_limited_as_before() {
        // rmp-serde recurses: a debug build needs more than a test thread's stack.
        let big_stack = std::thread::Builder::new().stack_size(256 << 20);
        big_stack.spawn(nesting).unwrap().join().unwrap();
    }

    fn nesting() {
        // [1, [[[…]]]]: 1023 nested arrays fail, 1022 pass the version probe.
        for (depth, ok) in [(1022, true), (1023, false)] {
            let mut bytes = vec![0x92, 0x01];
            bytes.extend(std::iter::repeat_n(0x91, depth - 1));
            bytes.push(0x90);
            assert_eq!(read_version(&bytes).is_ok(), ok, "{depth}");
            assert_eq!(
                outcome(decode(&bytes)),
                outcome(reference::decode(&bytes)),
                "{depth}"
            );
        }
    }
}
