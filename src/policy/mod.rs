//! The decision: which model and target serve a request, or which local reply answers it.
//!
//! `decide` is pure: it reads the request through [`RequestView`], the body through [`Body`],
//! and draws from the caller's RNG. When it cannot decide without the body it says so
//! ([`Outcome::NeedBody`]); the host buffers the body and calls it again.

mod path;
mod sticky;

use serde_json::Value;

pub use path::{model_from_path, PathModel};
pub use sticky::{bucket, cookie_value, sticky_hash};

use crate::bandit::ModelState;
use crate::config::{
    Action, BodyTest, Condition, Config, HeaderTest, Model, ReplyBody, StickyKey, Strategy,
    TargetPin,
};
use crate::payload::Fields;
use crate::rng::Rng;

/// Request headers as the core sees them. Names are lowercase; pseudo-headers (`:path`,
/// `:method`) are included.
pub trait RequestView {
    fn header(&self, name: &str) -> Option<String>;
}

/// The learned state of bandit models, as the host has it cached. `None`: not available (the
/// host could not read or decode it); the model's `default_target` serves the request then.
pub trait BanditStates {
    fn state(&mut self, model: usize) -> Option<&ModelState>;
}

/// For configurations and tests without bandit models.
pub struct NoBandits;

impl BanditStates for NoBandits {
    fn state(&mut self, _model: usize) -> Option<&ModelState> {
        None
    }
}

/// What the core knows about the body.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// The request has a body that can still be read.
    Pending,
    /// The fields routing reads, extracted from the body (or from metadata).
    Fields(&'a Fields),
    /// No body, or one that is not inspected (type, size, or invalid with `on_invalid: default`).
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rule(usize),
    PathVersion,
    Sticky,
    Weighted,
    Bandit,
    Default,
}

impl Reason {
    /// The reasons that do not name a rule, in metric order.
    pub const FIXED: [Reason; 5] = [
        Reason::Weighted,
        Reason::Sticky,
        Reason::PathVersion,
        Reason::Bandit,
        Reason::Default,
    ];

    /// Index into `Reason::FIXED`, or `None` for a rule.
    pub fn fixed_index(self) -> Option<usize> {
        Reason::FIXED.iter().position(|r| *r == self)
    }

    pub fn metric_segment(self) -> &'static str {
        match self {
            Reason::Weighted => "weighted",
            Reason::Sticky => "sticky",
            Reason::PathVersion => "path_version",
            Reason::Bandit => "bandit",
            Reason::Default => "default",
            Reason::Rule(_) => "rule",
        }
    }

    /// The `x-inference-reason` value.
    pub fn header_value(self, cfg: &Config) -> String {
        match self {
            Reason::Rule(i) => format!(
                "rule:{}",
                cfg.rules
                    .get(i)
                    .map(|r| r.name.as_str())
                    .unwrap_or_default()
            ),
            Reason::PathVersion => "path-version".into(),
            Reason::Sticky => "sticky".into(),
            Reason::Weighted => "weighted".into(),
            Reason::Bandit => "bandit".into(),
            Reason::Default => "default".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub model: usize,
    pub target: usize,
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Echo,
    Reply,
    Reject,
    Error,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 4] = [
        ReplyKind::Echo,
        ReplyKind::Reply,
        ReplyKind::Reject,
        ReplyKind::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::Echo => "echo",
            ReplyKind::Reply => "reply",
            ReplyKind::Reject => "reject",
            ReplyKind::Error => "error",
        }
    }

    pub fn index(self) -> usize {
        ReplyKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyContent {
    /// The request body itself, with its content type.
    Echo,
    Json(Vec<u8>),
    Empty,
}

/// A reply the filter sends itself instead of routing upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub kind: ReplyKind,
    pub content: ReplyContent,
    pub model: Option<usize>,
    /// The rule that produced it; `None` for the filter's own errors.
    pub rule: Option<usize>,
}

impl Reply {
    /// A JSON error reply: `{"error": code, "detail": detail}`.
    pub fn error(status: u16, code: &str, detail: &str, model: Option<usize>) -> Reply {
        let body = serde_json::json!({ "error": code, "detail": detail });
        Reply {
            status,
            kind: ReplyKind::Error,
            content: ReplyContent::Json(serde_json::to_vec(&body).unwrap_or_default()),
            model,
            rule: None,
        }
    }

    /// The 400 for a body that could not be parsed.
    pub fn invalid_body(detail: &str) -> Reply {
        Reply::error(400, "invalid_body", detail, None)
    }

    /// The `x-inference-reason` value.
    pub fn reason_header(&self, cfg: &Config) -> String {
        match self.rule {
            Some(i) => Reason::Rule(i).header_value(cfg),
            None => "error".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NeedBody,
    Route(Route),
    Reply(Reply),
}

/// Yes / no / cannot tell without the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Yes,
    No,
    NeedBody,
}

/// The model a request names, before it is looked up.
enum Requested {
    Named {
        name: String,
        version: Option<String>,
    },
    Unnamed,
}

struct Decider<'a, R: RequestView> {
    cfg: &'a Config,
    req: &'a R,
    body: Body<'a>,
    now_unix_secs: u64,
    path: Option<Option<String>>,
    bandits: &'a mut dyn BanditStates,
}

impl<R: RequestView> Decider<'_, R> {
    fn path(&mut self) -> Option<&str> {
        if self.path.is_none() {
            self.path = Some(self.req.header(":path"));
        }
        self.path.as_ref().and_then(|p| p.as_deref())
    }

    fn condition(&mut self, cond: &Condition) -> Truth {
        let yes = |b: bool| if b { Truth::Yes } else { Truth::No };
        match cond {
            Condition::Method(methods) => {
                let m = self.req.header(":method").unwrap_or_default();
                yes(methods.contains(&m))
            }
            Condition::PathPrefix(prefix) => {
                let path = self.path().unwrap_or_default();
                let path = path.split('?').next().unwrap_or_default();
                yes(path.starts_with(prefix.as_str()))
            }
            Condition::Header { name, test } => {
                let value = self.req.header(name);
                yes(match (test, value) {
                    (HeaderTest::Present(want), v) => v.is_some() == *want,
                    (HeaderTest::Exact(want), Some(v)) => v == *want,
                    (HeaderTest::Prefix(want), Some(v)) => v.starts_with(want.as_str()),
                    (_, None) => false,
                })
            }
            Condition::TimeUtc {
                from_minute,
                to_minute,
            } => {
                let minute = ((self.now_unix_secs / 60) % 1440) as u32;
                yes(if from_minute < to_minute {
                    (*from_minute..*to_minute).contains(&minute)
                } else {
                    minute >= *from_minute || minute < *to_minute
                })
            }
            Condition::Body { pointer, test } => match self.body {
                Body::Pending => Truth::NeedBody,
                Body::Absent => yes(body_test(test, None)),
                Body::Fields(fields) => yes(body_test(test, fields.get(*pointer))),
            },
        }
    }

    fn rule_matches(&mut self, conds: &[Condition]) -> Truth {
        for c in conds {
            match self.condition(c) {
                Truth::Yes => {}
                other => return other,
            }
        }
        Truth::Yes
    }

    /// The model the request names: header, then path, then body `/model`.
    fn requested(&mut self) -> Result<Requested, Outcome> {
        if let Some(name) = self.req.header(&self.cfg.model_header) {
            if !name.is_empty() {
                return Ok(Requested::Named {
                    name,
                    version: None,
                });
            }
        }
        if let Some(pm) = self.path().and_then(model_from_path) {
            return Ok(Requested::Named {
                name: pm.name.to_string(),
                version: pm.version.map(str::to_string),
            });
        }
        match self.body {
            Body::Pending => Err(Outcome::NeedBody),
            Body::Absent => Ok(Requested::Unnamed),
            Body::Fields(fields) => match fields.get(0) {
                None | Some(Value::Null) => Ok(Requested::Unnamed),
                Some(Value::String(s)) if !s.is_empty() => Ok(Requested::Named {
                    name: s.clone(),
                    version: None,
                }),
                Some(_) => Err(Outcome::Reply(Reply::invalid_body(
                    "the body field /model must be a non-empty string",
                ))),
            },
        }
    }

    fn decide(&mut self, rng: &mut Rng) -> Outcome {
        let cfg = self.cfg;
        let mut requested: Option<Requested> = None;
        for (ri, rule) in cfg.rules.iter().enumerate() {
            match self.rule_matches(&rule.when) {
                Truth::No => continue,
                Truth::NeedBody => return Outcome::NeedBody,
                Truth::Yes => {}
            }
            match &rule.then {
                Action::Reply { status, body } => {
                    let (kind, content) = match body {
                        ReplyBody::Echo => {
                            if matches!(self.body, Body::Pending) {
                                return Outcome::NeedBody;
                            }
                            (ReplyKind::Echo, ReplyContent::Echo)
                        }
                        ReplyBody::Json(bytes) => {
                            (ReplyKind::Reply, ReplyContent::Json(bytes.clone()))
                        }
                        ReplyBody::Empty => (ReplyKind::Reply, ReplyContent::Empty),
                    };
                    return Outcome::Reply(Reply {
                        status: *status,
                        kind,
                        content,
                        model: None,
                        rule: Some(ri),
                    });
                }
                Action::Reject { status, message } => {
                    let body = serde_json::json!({ "error": "rejected", "detail": message, "rule": rule.name });
                    return Outcome::Reply(Reply {
                        status: *status,
                        kind: ReplyKind::Reject,
                        content: ReplyContent::Json(serde_json::to_vec(&body).unwrap_or_default()),
                        model: None,
                        rule: Some(ri),
                    });
                }
                Action::Pin {
                    model: Some(mi),
                    target,
                } => {
                    let Some(model) = cfg.models.get(*mi) else {
                        continue;
                    };
                    let target = match target {
                        TargetPin::Index(ti) => *ti,
                        TargetPin::Named(name) => match model.target_by_name(name) {
                            Some(ti) => ti,
                            None => continue,
                        },
                        TargetPin::None => self.strategy_pick(*mi, model, rng).0,
                    };
                    return Outcome::Route(Route {
                        model: *mi,
                        target,
                        reason: Reason::Rule(ri),
                    });
                }
                Action::Pin {
                    model: None,
                    target,
                } => {
                    if requested.is_none() {
                        requested = Some(match self.requested() {
                            Ok(r) => r,
                            Err(outcome) => return outcome,
                        });
                    }
                    let Some(Requested::Named { name, .. }) = &requested else {
                        continue;
                    };
                    let Some(mi) = cfg.model_by_name(name) else {
                        continue;
                    };
                    let Some(model) = cfg.models.get(mi) else {
                        continue;
                    };
                    let ti = match target {
                        TargetPin::Named(t) => model.target_by_name(t),
                        TargetPin::Index(ti) => Some(*ti),
                        TargetPin::None => None,
                    };
                    if let Some(target) = ti {
                        return Outcome::Route(Route {
                            model: mi,
                            target,
                            reason: Reason::Rule(ri),
                        });
                    }
                }
            }
        }

        let requested = match requested {
            Some(r) => r,
            None => match self.requested() {
                Ok(r) => r,
                Err(outcome) => return outcome,
            },
        };
        match requested {
            Requested::Named { name, version } => match cfg.model_by_name(&name) {
                Some(mi) => {
                    let Some(model) = cfg.models.get(mi) else {
                        return Outcome::Reply(Reply::error(500, "internal", "model index", None));
                    };
                    if let Some(v) = version {
                        return match model.target_by_name(&v) {
                            Some(ti) => Outcome::Route(Route {
                                model: mi,
                                target: ti,
                                reason: Reason::PathVersion,
                            }),
                            None => Outcome::Reply(Reply::error(
                                404,
                                "unknown_version",
                                &format!("model {name:?} has no version {v:?}"),
                                Some(mi),
                            )),
                        };
                    }
                    let (target, reason) = self.strategy_pick(mi, model, rng);
                    Outcome::Route(Route {
                        model: mi,
                        target,
                        reason,
                    })
                }
                None => match cfg.default_model.and_then(|mi| cfg.models.get(mi).map(|m| (mi, m))) {
                    Some((mi, model)) => Outcome::Route(Route {
                        model: mi,
                        target: model.default_target,
                        reason: Reason::Default,
                    }),
                    None => Outcome::Reply(Reply::error(
                        404,
                        "unknown_model",
                        &format!("no model named {name:?} is configured"),
                        None,
                    )),
                },
            },
            Requested::Unnamed => match cfg.default_model.and_then(|mi| cfg.models.get(mi).map(|m| (mi, m))) {
                Some((mi, model)) => {
                    let (target, reason) = self.strategy_pick(mi, model, rng);
                    Outcome::Route(Route {
                        model: mi,
                        target,
                        reason,
                    })
                }
                None => Outcome::Reply(Reply::error(
                    404,
                    "unknown_model",
                    &format!(
                        "the request names no model: send the {:?} header, use a /v2/models/{{name}}/ or /v1/models/{{name}} path, or a JSON body with \"model\"",
                        cfg.model_header
                    ),
                    None,
                )),
            },
        }
    }

    /// The model's strategy: a bandit's choice from its learned state; for weighted models a
    /// sticky bucket when the key is present, else a random draw.
    fn strategy_pick(
        &mut self,
        model_index: usize,
        model: &Model,
        rng: &mut Rng,
    ) -> (usize, Reason) {
        match &model.strategy {
            Strategy::Bandit(bandit) => {
                match self.bandits.state(model_index) {
                    Some(state) => {
                        // The state's arms follow the configured targets (the host reconciles
                        // them); look the chosen arm up by name to be safe.
                        let arm = bandit.select(state, rng);
                        match state
                            .arms
                            .get(arm)
                            .and_then(|a| model.target_by_name(&a.name))
                        {
                            Some(t) => (t, Reason::Bandit),
                            None => (model.default_target, Reason::Default),
                        }
                    }
                    None => (model.default_target, Reason::Default),
                }
            }
            Strategy::Weighted { sticky } => {
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
                            bucket(sticky_hash(&model.name, &key), model.total_weight),
                        ),
                        Reason::Sticky,
                    ),
                    None => (
                        weighted_index(model, rng.below(model.total_weight)),
                        Reason::Weighted,
                    ),
                }
            }
        }
    }
}

/// The target whose weight range holds `point` (in `[0, total_weight)`).
fn weighted_index(model: &Model, point: u64) -> usize {
    let i = model.cumulative_weights.partition_point(|&c| c <= point);
    i.min(model.targets.len().saturating_sub(1))
}

fn numbers_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(p), Some(q), _, _) => p == q,
                (_, _, Some(p), Some(q)) => p == q,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        _ => a == b,
    }
}

fn body_test(test: &BodyTest, value: Option<&Value>) -> bool {
    match (test, value) {
        (BodyTest::Present(want), v) => v.is_some() == *want,
        (_, None) => false,
        (BodyTest::Exact(want), Some(v)) => numbers_equal(want, v),
        (BodyTest::OneOf(options), Some(v)) => options.iter().any(|o| numbers_equal(o, v)),
        (BodyTest::Range { gt, lt }, Some(v)) => match v.as_f64() {
            Some(x) => gt.is_none_or(|g| x > g) && lt.is_none_or(|l| x < l),
            None => false,
        },
    }
}

/// Decides a request. `now_unix_secs` feeds `time_utc` conditions.
pub fn decide<R: RequestView>(
    cfg: &Config,
    req: &R,
    body: Body<'_>,
    now_unix_secs: u64,
    rng: &mut Rng,
    bandits: &mut dyn BanditStates,
) -> Outcome {
    Decider {
        cfg,
        req,
        body,
        now_unix_secs,
        path: None,
        bandits,
    }
    .decide(rng)
}

/// Unique decision ids: a random per-VM prefix and a counter.
#[derive(Debug, Clone)]
pub struct DecisionIds {
    prefix: u64,
    counter: u64,
}

impl DecisionIds {
    pub fn new(prefix: u64) -> Self {
        DecisionIds { prefix, counter: 0 }
    }

    pub fn next_id(&mut self) -> String {
        self.counter = self.counter.wrapping_add(1);
        format!("{:016x}{:08x}", self.prefix, self.counter)
    }
}
