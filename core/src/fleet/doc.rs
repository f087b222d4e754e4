//! What a replica publishes (its contribution) and what retired replicas leave behind, as JSON
//! values in etcd, readable with `etcdctl get`. Sizes: about 120 bytes, plus about 100 per model
//! and 30 to 90 per target, plus 60 per target whose health is tracked (docs/fleet.md).
//!
//! Every number a replica publishes adds up across replicas: per target, observations,
//! reward sum and the posterior increments (alpha and beta above the prior), all decayed to
//! `as_of_ms` when the model decays by time. A model's entries are tagged with the identity of
//! the configuration that gives them their meaning (`fleet::identity`); replicas only add
//! entries of the same identity.
//!
//! Decoding is strict: a value with a number that is negative, not finite, or inconsistent
//! (reward sum above observations) is refused whole, so one bad writer cannot poison the view.

use crate::vecmap::VecMap;

use crate::bandit::ArmSums;
use crate::json::read::{from_text, text_struct};
use crate::json::{ObjectWriter, ToJson};
use crate::quote::quoted;

/// Format version of both documents.
pub const DOC_VERSION: u32 = 1;
/// How many folds the retired document remembers (so a replica that comes back can tell
/// which of its contributions was folded).
pub const FOLD_LOG: usize = 64;

/// One replica's contribution.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct Contribution {
    pub v: u32,
    pub replica: String,
    /// Random per Envoy start: tells two lives of one replica id apart.
    pub incarnation: String,
    /// The sync round that wrote it.
    pub seq: u64,
    /// The writer's clock when it wrote (retirement is judged by it).
    pub written_ms: u64,
    #[cfg_attr(test, serde(default))]
    pub models: VecMap<String, Vec<Learned>>,
    /// Model → target → health.
    #[cfg_attr(test, serde(default))]
    pub health: VecMap<String, VecMap<String, TargetHealth>>,
}

/// What one model learned under one configuration identity.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct Learned {
    pub id: String,
    /// Time half-life of the decay these sums follow (0: none).
    #[cfg_attr(test, serde(default))]
    pub half_life_ms: f64,
    pub as_of_ms: u64,
    pub updates: u64,
    /// Target → `[observations, reward sum, alpha gain, beta gain]`.
    pub targets: VecMap<String, [f64; 4]>,
}

/// One target's health: `[cooling until (Unix s), latency estimate (ms, -1: none), samples
/// behind the estimate, when the last sample was taken (Unix ms)]`.
pub type TargetHealth = [f64; 4];

/// What retired replicas learned, folded together, and the last folds.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct Retired {
    pub v: u32,
    #[cfg_attr(test, serde(default))]
    pub models: VecMap<String, Vec<Learned>>,
    #[cfg_attr(test, serde(default))]
    pub folded: Vec<Folded>,
}

/// One contribution folded into the retired document.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(test, derive(serde::Serialize, serde::Deserialize))]
pub struct Folded {
    pub replica: String,
    pub incarnation: String,
    pub seq: u64,
    pub at_ms: u64,
}

// Written by hand, fields in declaration order as serde's derive wrote them.
impl ToJson for Contribution {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("v", &self.v)
            .field("replica", &self.replica)
            .field("incarnation", &self.incarnation)
            .field("seq", &self.seq)
            .field("written_ms", &self.written_ms)
            .field("models", &self.models)
            .field("health", &self.health)
            .end();
    }
}

impl ToJson for Learned {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("id", &self.id)
            .field("half_life_ms", &self.half_life_ms)
            .field("as_of_ms", &self.as_of_ms)
            .field("updates", &self.updates)
            .field("targets", &self.targets)
            .end();
    }
}

impl ToJson for Retired {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("v", &self.v)
            .field("models", &self.models)
            .field("folded", &self.folded)
            .end();
    }
}

impl ToJson for Folded {
    fn write_json(&self, out: &mut Vec<u8>) {
        ObjectWriter::new(out)
            .field("replica", &self.replica)
            .field("incarnation", &self.incarnation)
            .field("seq", &self.seq)
            .field("at_ms", &self.at_ms)
            .end();
    }
}

// Read by hand, accepting what serde's derive did.
text_struct!(Contribution { v, replica, incarnation, seq, written_ms, models default, health default });
text_struct!(Learned { id, half_life_ms default, as_of_ms, updates, targets });
text_struct!(Retired { v, models default, folded default });
text_struct!(Folded {
    replica,
    incarnation,
    seq,
    at_ms
});

fn finite_non_negative(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

impl Learned {
    /// The weight left on these sums at `at_ms` (1 without time decay, or before `as_of_ms`).
    pub fn factor_to(&self, at_ms: u64) -> f64 {
        if self.half_life_ms > 0.0 && at_ms > self.as_of_ms {
            0.5_f64.powf((at_ms - self.as_of_ms) as f64 / self.half_life_ms)
        } else {
            1.0
        }
    }

    /// One target's sums (zero when absent), decayed to `at_ms`.
    pub fn sums(&self, target: &str, at_ms: u64) -> ArmSums {
        let mut s = ArmSums::zero(target);
        if let Some(v) = self.targets.get(target) {
            let [pulls, reward_sum, alpha_gain, beta_gain] = *v;
            s = ArmSums {
                name: target.to_owned(),
                pulls,
                reward_sum,
                alpha_gain,
                beta_gain,
            };
            s.scale(self.factor_to(at_ms));
        }
        s
    }

    /// Adds `other` (same identity): both decayed to the later of their times.
    pub fn add(&mut self, other: &Learned) {
        let at = self.as_of_ms.max(other.as_of_ms);
        let (mine, theirs) = (self.factor_to(at), other.factor_to(at));
        for v in self.targets.values_mut() {
            v.iter_mut().for_each(|x| *x *= mine);
        }
        for (name, v) in &other.targets {
            let slot = self.targets.entry(name.clone()).or_insert([0.0; 4]);
            for (x, y) in slot.iter_mut().zip(v) {
                *x += y * theirs;
            }
        }
        self.as_of_ms = at;
        self.updates = self.updates.saturating_add(other.updates);
    }

    fn check(&self) -> Result<(), String> {
        if self.id.is_empty() || !finite_non_negative(self.half_life_ms) {
            return Err("an entry without identity or with a bad half-life".into());
        }
        for (name, v) in &self.targets {
            let [pulls, reward_sum, ..] = *v;
            if !v.iter().all(|x| finite_non_negative(*x))
                || reward_sum > pulls * (1.0 + 1e-9) + 1e-9
            {
                return Err(format!("target {} has unusable numbers", quoted(name)));
            }
        }
        Ok(())
    }
}

fn check_models(models: &VecMap<String, Vec<Learned>>) -> Result<(), String> {
    for (model, entries) in models {
        for e in entries {
            e.check()
                .map_err(|why| format!("model {}: {why}", quoted(model)))?;
        }
    }
    Ok(())
}

impl Contribution {
    /// Parses and checks a replica's value; the error says why it is ignored.
    pub fn decode(bytes: &[u8]) -> Result<Contribution, String> {
        let c: Contribution = from_text(bytes).map_err(|e| format!("not a contribution: {e}"))?;
        if c.v != DOC_VERSION {
            return Err(format!("format version {} is not {DOC_VERSION}", c.v));
        }
        check_models(&c.models)?;
        for (model, targets) in &c.health {
            for (target, h) in targets {
                let [cooling, latency, weight, sampled] = *h;
                let ok = [cooling, weight, sampled]
                    .iter()
                    .all(|x| finite_non_negative(*x))
                    && latency.is_finite();
                if !ok {
                    return Err(format!(
                        "health of {}/{} has unusable numbers",
                        quoted(model),
                        quoted(target)
                    ));
                }
            }
        }
        Ok(c)
    }

    pub fn encode(&self) -> Vec<u8> {
        crate::json::write::to_vec(self)
    }

    /// The entry of `model` under `id`, if any.
    pub fn learned(&self, model: &str, id: &str) -> Option<&Learned> {
        self.models.get(model)?.iter().find(|l| l.id == id)
    }
}

impl Retired {
    pub fn decode(bytes: &[u8]) -> Result<Retired, String> {
        let r: Retired = from_text(bytes).map_err(|e| format!("not a retired document: {e}"))?;
        if r.v != DOC_VERSION {
            return Err(format!("format version {} is not {DOC_VERSION}", r.v));
        }
        check_models(&r.models)?;
        Ok(r)
    }

    pub fn encode(&self) -> Vec<u8> {
        crate::json::write::to_vec(self)
    }

    pub fn learned(&self, model: &str, id: &str) -> Option<&Learned> {
        self.models.get(model)?.iter().find(|l| l.id == id)
    }

    /// Adds a departed replica's contribution, and remembers the fold.
    pub fn fold(&mut self, c: &Contribution, at_ms: u64) {
        self.v = DOC_VERSION;
        for (model, entries) in &c.models {
            let mine = self.models.entry(model.clone()).or_default();
            for e in entries {
                match mine.iter_mut().find(|m| m.id == e.id) {
                    Some(m) => m.add(e),
                    None => mine.push(e.clone()),
                }
            }
        }
        self.folded.push(Folded {
            replica: c.replica.clone(),
            incarnation: c.incarnation.clone(),
            seq: c.seq,
            at_ms,
        });
        let excess = self.folded.len().saturating_sub(FOLD_LOG);
        self.folded.drain(..excess);
    }

    /// The seq of the contribution of `incarnation` that was folded, if remembered.
    pub fn folded_seq(&self, incarnation: &str) -> Option<u64> {
        self.folded
            .iter()
            .rev()
            .find(|f| f.incarnation == incarnation)
            .map(|f| f.seq)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn learned(as_of_ms: u64, half_life_ms: f64, pulls: f64) -> Learned {
        Learned {
            id: "id".into(),
            half_life_ms,
            as_of_ms,
            updates: pulls as u64,
            targets: VecMap::from([("a".into(), [pulls, pulls / 2.0, pulls / 2.0, pulls / 2.0])]),
        }
    }

    #[test]
    fn time_decayed_sums_add_at_one_instant() {
        // A: 8 observations as of t=0; B: 4 as of t=1 h; half-life 1 h.
        let mut a = learned(0, 3_600_000.0, 8.0);
        a.add(&learned(3_600_000, 3_600_000.0, 4.0));
        assert_eq!(a.as_of_ms, 3_600_000);
        assert!((a.targets["a"][0] - 8.0).abs() < 1e-9, "{a:?}"); // 8 · ½ + 4
        assert_eq!(a.updates, 12);
        assert!((a.sums("a", 7_200_000).pulls - 4.0).abs() < 1e-9);
        // Without decay, plain sums.
        let mut b = learned(5, 0.0, 1.0);
        b.add(&learned(9, 0.0, 2.0));
        assert_eq!(b.targets["a"][0], 3.0);
    }

    #[test]
    fn bad_numbers_refuse_the_whole_value() {
        let good = Contribution {
            v: 1,
            replica: "r".into(),
            incarnation: "i".into(),
            seq: 1,
            written_ms: 1,
            models: VecMap::from([("m".into(), vec![learned(0, 0.0, 2.0)])]),
            health: VecMap::new(),
        };
        assert_eq!(Contribution::decode(&good.encode()).unwrap(), good);
        let text = String::from_utf8(good.encode()).unwrap();
        for bad in [
            text.replace("[2.0,1.0,1.0,1.0]", "[2.0,3.0,1.0,1.0]"),
            text.replace("[2.0,1.0,1.0,1.0]", "[-2.0,1.0,1.0,1.0]"),
            text.replace("\"v\":1", "\"v\":2"),
            "{}".to_string(),
            "null".to_string(),
        ] {
            assert!(Contribution::decode(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn folds_add_and_are_remembered() {
        let c = |seq, inc: &str| Contribution {
            v: 1,
            replica: "r".into(),
            incarnation: inc.into(),
            seq,
            written_ms: 1,
            models: VecMap::from([("m".into(), vec![learned(0, 0.0, 2.0)])]),
            health: VecMap::new(),
        };
        let mut r = Retired::default();
        r.fold(&c(3, "x"), 10);
        r.fold(&c(7, "y"), 11);
        assert_eq!(r.learned("m", "id").unwrap().targets["a"][0], 4.0);
        assert_eq!(r.folded_seq("x"), Some(3));
        assert_eq!(r.folded_seq("z"), None);
        for i in 0..100 {
            r.fold(&c(i, "z"), 12);
        }
        assert_eq!(r.folded.len(), FOLD_LOG);
        assert_eq!(Retired::decode(&r.encode()).unwrap(), r);
    }
}
