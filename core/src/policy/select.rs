//! Choosing among a model's targets: which targets may serve this request (candidates), then
//! a budget choice, the model's strategy restricted to the candidates, and the fallback order
//! when the choice is cooling down.

use super::{
    cookie_value, sticky_hash, Body, Decider, Outcome, Reason, Reply, RequestView, Restriction,
};
use crate::config::{Model, StickyKey, Strategy};
use crate::format_float::plain;
use crate::rng::Rng;

/// Why a target cannot serve a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    Tenant,
    Restricted,
    Region(String),
    Capability(&'static str),
    Context(u64),
    /// At capacity (`capacity`, `endpoint_capacity`).
    Full,
}

/// Per target: `None` if it may serve the request, else the first reason it may not.
#[derive(Debug, Clone)]
pub struct Candidates {
    excluded: Vec<Option<(u8, Exclusion)>>,
}

impl Candidates {
    fn all(n: usize) -> Self {
        Candidates {
            excluded: vec![None; n],
        }
    }

    fn exclude(&mut self, target: usize, stage: u8, why: Exclusion) {
        if let Some(slot @ None) = self.excluded.get_mut(target) {
            *slot = Some((stage, why));
        }
    }

    pub fn allowed(&self, target: usize) -> bool {
        matches!(self.excluded.get(target), Some(None))
    }

    pub fn is_empty(&self) -> bool {
        self.excluded.iter().all(Option::is_some)
    }

    pub fn is_all(&self) -> bool {
        self.excluded.iter().all(Option::is_none)
    }

    pub fn exclusion(&self, target: usize) -> Option<Exclusion> {
        self.excluded
            .get(target)
            .and_then(|e| e.as_ref())
            .map(|(_, w)| w.clone())
    }

    /// The reason of the last filter that removed targets: the one that left none.
    pub fn main_exclusion(&self) -> Exclusion {
        self.excluded
            .iter()
            .flatten()
            .max_by_key(|(stage, _)| *stage)
            .map(|(_, w)| w.clone())
            .unwrap_or(Exclusion::Restricted)
    }

    fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.excluded
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_none())
            .map(|(i, _)| i)
    }
}

fn weighted_index(model: &Model, cands: &Candidates, point: u64) -> usize {
    if cands.is_all() {
        let i = model.cumulative_weights.partition_point(|&c| c <= point);
        return i.min(model.targets.len().saturating_sub(1));
    }
    let mut acc = 0u64;
    for i in cands.indices() {
        acc += model.targets.get(i).map_or(0, |t| u64::from(t.weight));
        if point < acc {
            return i;
        }
    }
    cands.indices().next().unwrap_or(model.default_target)
}

fn restricted_total(model: &Model, cands: &Candidates) -> u64 {
    if cands.is_all() {
        return model.total_weight;
    }
    cands
        .indices()
        .map(|i| model.targets.get(i).map_or(0, |t| u64::from(t.weight)))
        .sum()
}

impl<R: RequestView> Decider<'_, R> {
    pub(super) fn candidates(
        &mut self,
        mi: usize,
        restriction: Option<&Restriction<'_>>,
    ) -> Result<Candidates, Outcome> {
        let cfg = self.cfg;
        let Some(model) = cfg.models.get(mi) else {
            return Ok(Candidates::all(0));
        };
        let mut c = Candidates::all(model.targets.len());
        if let Some(tenant) = self
            .tenant_index()
            .and_then(|ti| cfg.tenants.as_ref()?.list.get(ti))
        {
            for t in 0..model.targets.len() {
                if !tenant.target_allowed(mi, t) {
                    c.exclude(t, 0, Exclusion::Tenant);
                }
            }
        }
        if let Some(r) = restriction {
            for (t, target) in model.targets.iter().enumerate() {
                let region_ok = r
                    .region
                    .is_none_or(|reg| target.region.as_deref() == Some(reg));
                let tags_ok = r.tags.iter().all(|tag| target.tags.contains(tag));
                if !(region_ok && tags_ok) {
                    c.exclude(t, 1, Exclusion::Restricted);
                }
            }
        }
        let required_region = cfg
            .residency_header
            .as_ref()
            .and_then(|h| self.req.header(h))
            .filter(|r| !r.is_empty())
            .or_else(|| {
                self.tenant_index()
                    .and_then(|ti| cfg.tenants.as_ref()?.list.get(ti)?.region.clone())
            });
        if let Some(region) = required_region {
            for (t, target) in model.targets.iter().enumerate() {
                if target.region.as_deref() != Some(region.as_str()) {
                    c.exclude(t, 2, Exclusion::Region(region.clone()));
                }
            }
        }
        if model.capability_routing {
            // What the request needs, read from the summary in place (its text can be large).
            let wanted = match self.summary() {
                Err(()) => return Err(Outcome::NeedBody),
                Ok(s) => s.map(|s| {
                    let caps = [
                        (s.has_image, "vision"),
                        (s.has_tools, "tools"),
                        (s.json_mode, "json_mode"),
                        (s.stream, "streaming"),
                    ];
                    (caps, s.needed_context())
                }),
            };
            if let Some((caps, needed)) = wanted {
                for (t, target) in model.targets.iter().enumerate() {
                    let missing = caps
                        .iter()
                        .find(|(on, cap)| *on && !target.has_capability(cap));
                    if let Some((_, cap)) = missing {
                        c.exclude(t, 3, Exclusion::Capability(cap));
                    } else if target.max_context_tokens.is_some_and(|m| needed > m) {
                        c.exclude(t, 4, Exclusion::Context(needed));
                    }
                }
            }
        }
        if model.tracks_load {
            for t in 0..model.targets.len() {
                if c.allowed(t) && !self.shared.has_room(mi, t) {
                    c.exclude(t, 5, Exclusion::Full);
                }
            }
        }
        Ok(c)
    }

    /// A budget or escalation choice, when the request asks for one.
    pub(super) fn budget_pick(
        &mut self,
        mi: usize,
        cands: &Candidates,
    ) -> Result<Option<(usize, Reason)>, Outcome> {
        let cfg = self.cfg;
        let (Some(budget), Some(model)) = (&cfg.budget, cfg.models.get(mi)) else {
            return Ok(None);
        };
        // Client headers, or claims of a verified token when `budget.jwt` says so.
        let value = |name: &str| match &budget.jwt {
            Some(j) => super::jwt_claim(self.req, &j.namespace, &j.payload_key, name),
            None => self.req.header(name),
        };
        let escalate = value(&budget.escalate_header)
            .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        let parse_header = |name: &str, value: Option<String>| -> Result<Option<f64>, Outcome> {
            match value {
                None => Ok(None),
                Some(v) => match crate::parse_float::parse_f64(v.trim()) {
                    Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
                    _ => Err(Outcome::Reply(Reply::error_fmt(
                        400,
                        "invalid_budget",
                        format_args!("{name} must be a number of at least 0"),
                        Some(mi),
                    ))),
                },
            }
        };
        let max_cost = parse_header(&budget.cost_header, value(&budget.cost_header))?;
        let max_latency = parse_header(&budget.latency_header, value(&budget.latency_header))?;
        if escalate {
            let best = cands.indices().max_by(|&a, &b| {
                let (ta, tb) = (model.targets.get(a), model.targets.get(b));
                let key = |t: Option<&crate::config::Target>| {
                    t.map_or((0, 0.0), |t| (t.rank, t.price.output_per_1k))
                };
                let (ka, kb) = (key(ta), key(tb));
                ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1)).then(b.cmp(&a))
            });
            return Ok(best.map(|t| (t, Reason::Escalated)));
        }
        if max_cost.is_none() && max_latency.is_none() {
            return Ok(None);
        }
        // An early body would decide on no prompt where the whole one has a prompt.
        let early = matches!(self.body, Body::Early(_));
        let (prompt_tokens, output_tokens) = match self.summary() {
            Err(()) if max_cost.is_some() || early => return Err(Outcome::NeedBody),
            Err(()) | Ok(None) => (0, budget.default_output_tokens),
            Ok(Some(s)) => (
                s.estimated_prompt_tokens(),
                s.max_tokens.unwrap_or(budget.default_output_tokens),
            ),
        };
        let mut best: Option<(usize, f64, u32)> = None;
        for t in cands.indices() {
            let Some(target) = model.targets.get(t) else {
                continue;
            };
            let cost = target.price.cost(prompt_tokens, output_tokens);
            if max_cost.is_some_and(|m| cost > m) {
                continue;
            }
            if let Some(limit) = max_latency {
                if self.shared.latency_ms(mi, t).is_some_and(|l| l > limit) {
                    continue;
                }
            }
            let better = match best {
                None => true,
                Some((_, c, r)) => cost < c || (cost == c && target.rank < r),
            };
            if better {
                best = Some((t, cost, target.rank));
            }
        }
        match best {
            Some((t, _, _)) => Ok(Some((t, Reason::Budget))),
            None => {
                let mut limits = Vec::new();
                if let Some(c) = max_cost {
                    limits.push(format!("cost at most {} (estimated {prompt_tokens} prompt + {output_tokens} output tokens)", plain(c)));
                }
                if let Some(l) = max_latency {
                    limits.push(format!("latency at most {} ms", plain(l)));
                }
                Err(Outcome::Reply(Reply::error_fmt(
                    422,
                    "budget_unmet",
                    format_args!(
                        "no target of model {} fits {}",
                        crate::quote::quoted(&model.name),
                        crate::quote::join(&limits, " and ")
                    ),
                    Some(mi),
                )))
            }
        }
    }

    /// The model's strategy among the candidates: a bandit's choice from its learned state; for
    /// weighted models a sticky bucket when the key is present, else a random draw.
    pub(super) fn strategy_pick(
        &mut self,
        mi: usize,
        cands: &Candidates,
        rng: &mut Rng,
    ) -> (usize, Reason) {
        let Some(model) = self.cfg.models.get(mi) else {
            return (0, Reason::Default);
        };
        let first = cands.indices().next().unwrap_or(model.default_target);
        match &model.strategy {
            Strategy::Bandit(bandit) => {
                let all = cands.is_all();
                let Some(state) = self.shared.bandit_state(mi) else {
                    let t = if cands.allowed(model.default_target) {
                        model.default_target
                    } else {
                        first
                    };
                    return (t, Reason::Default);
                };
                // The state's arms follow the configured targets (the host reconciles them);
                // arms are matched by name. Restricted: choose among the allowed arms only.
                let context = self.context;
                let chosen = if all {
                    state
                        .arms
                        .get(bandit.select_in(state, context.as_ref(), rng))
                        .map(|a| a.name.clone())
                } else {
                    let mut subset = state.clone();
                    subset.arms.retain(|a| {
                        model
                            .target_by_name(&a.name)
                            .is_some_and(|t| cands.allowed(t))
                    });
                    if subset.arms.is_empty() {
                        None
                    } else {
                        subset
                            .arms
                            .get(bandit.select_in(&subset, context.as_ref(), rng))
                            .map(|a| a.name.clone())
                    }
                };
                match chosen.and_then(|n| model.target_by_name(&n)) {
                    Some(t) => (t, Reason::Bandit),
                    None => (first, Reason::Default),
                }
            }
            Strategy::LeastLoaded => (
                self.least_loaded(mi, model, cands, rng),
                Reason::LeastLoaded,
            ),
            Strategy::Weighted { sticky } => {
                let total = restricted_total(model, cands);
                if total == 0 {
                    return (first, Reason::Weighted);
                }
                let key = sticky.as_ref().and_then(|k| match k {
                    StickyKey::Header(h) => self.req.header(h).filter(|v| !v.is_empty()),
                    StickyKey::Cookie(c) => self.req.header("cookie").and_then(|h| {
                        cookie_value(&h, c)
                            .filter(|v| !v.is_empty())
                            .map(str::to_string)
                    }),
                });
                match key {
                    Some(key) => (
                        weighted_index(
                            model,
                            cands,
                            super::bucket(sticky_hash(&model.name, &key), total),
                        ),
                        Reason::Sticky,
                    ),
                    None => (
                        weighted_index(model, cands, rng.below(total)),
                        Reason::Weighted,
                    ),
                }
            }
        }
    }

    /// Two candidates drawn by weight; the lower load score (`load::score`) serves.
    fn least_loaded(
        &mut self,
        mi: usize,
        model: &Model,
        cands: &Candidates,
        rng: &mut Rng,
    ) -> usize {
        let first = cands.indices().next().unwrap_or(model.default_target);
        let total = restricted_total(model, cands);
        if total == 0 {
            return first;
        }
        let a = weighted_index(model, cands, rng.below(total));
        let mut rest = cands.clone();
        rest.exclude(a, u8::MAX, Exclusion::Full);
        let rest_total = restricted_total(model, &rest);
        if rest_total == 0 {
            return a;
        }
        let b = weighted_index(model, &rest, rng.below(rest_total));
        let (sa, sb) = (self.shared.signals(mi, a), self.shared.signals(mi, b));
        let unknown =
            crate::load::unknown_latency([sa, sb].iter().map(|s| s.and_then(|s| s.latency_ms)));
        let score = |t: usize, s: Option<crate::load::Signals>| {
            let slots = model.targets.get(t).and_then(|x| x.capacity).unwrap_or(1);
            crate::load::score(&s.unwrap_or_default(), slots, unknown)
        };
        if score(b, sb) < score(a, sa) {
            b
        } else {
            a
        }
    }

    /// A target cooling down after failures gives way to the first fallback target that is a
    /// candidate and not cooling. If none is, the choice stands.
    pub(super) fn avoid_cooling(
        &mut self,
        mi: usize,
        target: usize,
        reason: Reason,
        cands: &Candidates,
    ) -> (usize, Reason) {
        let Some(model) = self.cfg.models.get(mi) else {
            return (target, reason);
        };
        if model.fallback.is_empty() {
            return (target, reason);
        }
        let now = self.now_unix_secs;
        if self.shared.cooling_until(mi, target) <= now {
            return (target, reason);
        }
        for &f in &model.fallback {
            if f != target && cands.allowed(f) && self.shared.cooling_until(mi, f) <= now {
                return (f, Reason::Fallback);
            }
        }
        (target, reason)
    }
}
