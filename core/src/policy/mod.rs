//! The decision: which model and target serve a request, or which local reply answers it.
//!
//! `decide` is pure: it reads the request through [`RequestView`], the body through [`Body`],
//! shared state (bandits, cooldowns, latency estimates) through [`Shared`], and draws from the
//! caller's RNG. When it cannot decide without the body it says so ([`Outcome::NeedBody`]);
//! the stream waits for the body and calls it again.
//!
//! One request, in order: tenant → rules (first match: pin, reply, reject or restrict) → model
//! (header, path, body, tenant default, default) → tenant allow-list → KServe input spec →
//! candidate targets (tenant, restriction, residency, capabilities) → choice (pinned, budget,
//! or the model's strategy among candidates) → cooldown fallback.

mod context;
mod path;
mod select;
mod sticky;

use crate::json::Value;

pub use path::{model_from_path, PathModel};
pub use select::{Candidates, Exclusion};
pub use sticky::{bucket, cookie_value, sticky_hash};

use crate::bandit::ModelState;
use crate::config::{
    Action, BodyTest, Condition, Config, HeaderTest, Model, ReplyBody, TargetPin, Unscanned,
    ValueSource,
};
use crate::inspect::openai::{summarize, ChatSummary};
use crate::inspect::scan::NotScanned;
use crate::payload::grpc::Routing;
use crate::payload::{Fields, Format};
use crate::quote::quoted;
use crate::rng::Rng;

/// Request headers as the core sees them. Names are lowercase; pseudo-headers (`:path`,
/// `:method`) are included. `property` reads proxy properties (dynamic metadata).
pub trait RequestView {
    fn header(&self, name: &str) -> Option<String>;

    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }
}

/// A header of the request, or a claim of a token Envoy's `jwt_authn` verified.
pub fn read_value<R: RequestView + ?Sized>(req: &R, source: &ValueSource) -> Option<String> {
    match source {
        ValueSource::Header(h) => req.header(h),
        ValueSource::Jwt {
            namespace,
            payload_key,
            claim,
        } => jwt_claim(req, namespace, payload_key, claim),
    }
}

/// A claim of a verified JWT payload as text. Envoy hands a string claim over as its bytes and a
/// number as an 8-byte little-endian double.
pub fn jwt_claim<R: RequestView + ?Sized>(
    req: &R,
    namespace: &str,
    payload_key: &str,
    claim: &str,
) -> Option<String> {
    let bytes = req.property(&["metadata", "filter_metadata", namespace, payload_key, claim])?;
    match std::str::from_utf8(&bytes) {
        Ok(text) if !text.contains('\0') => Some(text.to_string()),
        _ => <[u8; 8]>::try_from(bytes.as_slice())
            .ok()
            .map(|b| crate::quote::text(&crate::format_float::plain(f64::from_le_bytes(b)))),
    }
}

/// Shared state as the host has it: bandit state (`None`: unavailable, the model's
/// `default_target` serves), until when a target cools down (Unix seconds, 0 = not cooling), and
/// a target's latency estimate.
pub trait Shared {
    fn bandit_state(&mut self, model: usize) -> Option<&ModelState>;

    fn cooling_until(&mut self, _model: usize, _target: usize) -> u64 {
        0
    }

    fn latency_ms(&mut self, _model: usize, _target: usize) -> Option<f64> {
        None
    }

    /// Whether a target of a load-tracking model can take one more request (`crate::load`).
    fn has_room(&mut self, _model: usize, _target: usize) -> bool {
        true
    }

    /// A target's live load signals, for `least_loaded`.
    fn signals(&mut self, _model: usize, _target: usize) -> Option<crate::load::Signals> {
        None
    }
}

/// For configurations and tests without shared state.
pub struct NoShared;

impl Shared for NoShared {
    fn bandit_state(&mut self, _model: usize) -> Option<&ModelState> {
        None
    }
}

/// What the core knows about the body.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// The request has a body that can still be read.
    Pending,
    /// The fields routing reads (from metadata: the raw body is not available).
    Fields(&'a Fields),
    /// The fields routing reads, all found in the first part of a body still arriving: enough
    /// to route, while anything that reads the body itself (detectors, summaries, input specs,
    /// echo, resends) still needs the whole of it.
    Early(&'a Fields),
    /// The body as read, and the fields extracted from it.
    Full {
        fields: &'a Fields,
        raw: &'a [u8],
        format: Format,
    },
    /// No body.
    Absent,
    /// A body that was not read, and why (type, size, compression, or invalid with
    /// `on_invalid: default`): absent to every condition but a detector's, which cannot tell.
    Unread(NotScanned),
    /// A gRPC request: the routing fields of its first message (`payload::grpc`), the body
    /// fields rules may test (`/model_name`, `/model_version`), and the body bytes read (all of
    /// them when `whole`, so detectors can scan them).
    Grpc {
        routing: &'a Routing,
        fields: &'a Fields,
        raw: &'a [u8],
        whole: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rule(usize),
    PathVersion,
    Sticky,
    Weighted,
    LeastLoaded,
    Bandit,
    Budget,
    Escalated,
    Fallback,
    Router,
    FanOut,
    Default,
}

impl Reason {
    /// The reasons that do not name a rule, in metric order.
    pub const FIXED: [Reason; 11] = [
        Reason::Weighted,
        Reason::LeastLoaded,
        Reason::Sticky,
        Reason::PathVersion,
        Reason::Bandit,
        Reason::Budget,
        Reason::Escalated,
        Reason::Fallback,
        Reason::Router,
        Reason::FanOut,
        Reason::Default,
    ];

    /// Index into `Reason::FIXED`, or `None` for a rule.
    pub fn fixed_index(self) -> Option<usize> {
        Reason::FIXED.iter().position(|r| *r == self)
    }

    pub fn metric_segment(self) -> &'static str {
        match self {
            Reason::Weighted => "weighted",
            Reason::LeastLoaded => "least_loaded",
            Reason::Sticky => "sticky",
            Reason::PathVersion => "path_version",
            Reason::Bandit => "bandit",
            Reason::Budget => "budget",
            Reason::Escalated => "escalated",
            Reason::Fallback => "fallback",
            Reason::Router => "router",
            Reason::FanOut => "fan_out",
            Reason::Default => "default",
            Reason::Rule(_) => "rule",
        }
    }

    /// The `x-inference-reason` value.
    pub fn header_value(self, cfg: &Config) -> String {
        self.header_text(cfg).into_owned()
    }

    /// [`header_value`](Self::header_value), borrowed when it is a fixed word (every reason
    /// but a rule's): no allocation per routed request.
    pub fn header_text(self, cfg: &Config) -> std::borrow::Cow<'static, str> {
        match self {
            Reason::Rule(i) => format!(
                "rule:{}",
                cfg.rules
                    .get(i)
                    .map(|r| r.name.as_str())
                    .unwrap_or_default()
            )
            .into(),
            Reason::PathVersion => "path-version".into(),
            Reason::LeastLoaded => "least-loaded".into(),
            Reason::FanOut => "fan-out".into(),
            other => other.metric_segment().into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub model: usize,
    pub target: usize,
    pub reason: Reason,
    /// The detector whose firing decided (through a rule), for `x-inference-detector`.
    pub detector: Option<usize>,
    /// A detector could not scan the payload and `scan.unscanned: bypass` let it through.
    pub bypassed: Option<NotScanned>,
    /// The request's features, when a contextual strategy (`linucb`) chose the target: the
    /// reward for this decision updates the regression at this point.
    pub context: Option<crate::bandit::Context>,
}

impl Route {
    pub fn new(model: usize, target: usize, reason: Reason) -> Route {
        Route {
            model,
            target,
            reason,
            detector: None,
            bypassed: None,
            context: None,
        }
    }
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
    pub detector: Option<usize>,
    /// A detector could not scan the payload: refused (`scan.unscanned: refuse`), or let
    /// through to this reply (`bypass`).
    pub unscanned: Option<NotScanned>,
    /// `Retry-After` seconds (every candidate at capacity).
    pub retry_after: Option<u32>,
}

impl Reply {
    /// A JSON error reply: `{"error": code, "detail": detail}`.
    pub fn error(status: u16, code: &str, detail: &str, model: Option<usize>) -> Reply {
        Reply::error_with(
            status,
            text_object(&[("error", code), ("detail", detail)]),
            model,
        )
    }

    /// [`error`](Self::error) with a formatted detail: the formatting, and dropping the text
    /// after, in one place rather than at every refusal that names something.
    fn error_fmt(
        status: u16,
        code: &str,
        detail: std::fmt::Arguments<'_>,
        model: Option<usize>,
    ) -> Reply {
        Reply::error(status, code, &std::fmt::format(detail), model)
    }

    fn error_with(status: u16, body: Value, model: Option<usize>) -> Reply {
        Reply {
            status,
            kind: ReplyKind::Error,
            content: ReplyContent::Json(crate::json::write::to_vec(&body)),
            model,
            rule: None,
            detector: None,
            unscanned: None,
            retry_after: None,
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

/// Yes / no / cannot tell without the body / cannot tell: the body could not be scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    Yes,
    No,
    NeedBody,
    Unscanned(NotScanned),
}

/// The model a request names, before it is looked up.
enum Requested {
    Named {
        name: String,
        version: Option<String>,
    },
    /// Named inside a gRPC message: the model server looks that name up, so an unknown one is
    /// refused rather than sent to the default model (whose server could only say NOT_FOUND).
    NamedInMessage {
        name: String,
        version: Option<String>,
    },
    Unnamed,
}

/// A rule's restriction of the candidate targets.
struct Restriction<'c> {
    rule: usize,
    region: Option<&'c str>,
    tags: &'c [String],
}

/// A decision step's result; `Err` is the decision already made (a reply, or "the body is
/// needed first"), which ends the decision there.
type Step<T> = Result<T, Outcome>;

/// What the rules left to the later steps.
#[derive(Default)]
struct Matched<'c> {
    /// The model the request names, if a pin without a model had to read it.
    requested: Option<Requested>,
    /// (model, target, reason) of a matching pin.
    pinned: Option<(usize, Option<usize>, Reason)>,
    restriction: Option<Restriction<'c>>,
}

/// The target a pin with a model names: `Some(None)` for the model alone, `None` when the
/// pin does not apply (a named target the model does not have).
/// A JSON object of text fields, keys sorted as `json!` has them: one loop for every error body
/// rather than a map built inline at each site.
fn text_object(fields: &[(&str, &str)]) -> Value {
    let mut map = crate::json::value::Map::new();
    for (key, value) in fields {
        map.insert((*key).to_string(), Value::String((*value).to_string()));
    }
    Value::Object(map)
}

fn pin_target(cfg: &Config, model: usize, target: &TargetPin) -> Option<Option<usize>> {
    let model = cfg.models.get(model)?;
    match target {
        TargetPin::Index(ti) => Some(Some(*ti)),
        TargetPin::Named(name) => model.target_by_name(name).map(Some),
        TargetPin::None => Some(None),
    }
}

pub(crate) struct Decider<'a, R: RequestView> {
    pub(crate) cfg: &'a Config,
    pub(crate) req: &'a R,
    pub(crate) body: Body<'a>,
    pub(crate) now_unix_secs: u64,
    pub(crate) shared: &'a mut dyn Shared,
    path: Option<Option<String>>,
    tenant: Option<Option<(String, Option<usize>)>>,
    summary: Option<Option<ChatSummary>>,
    /// Every text of the payload, once scanned (`inspect::scan`).
    scanned: Option<Result<String, NotScanned>>,
    /// By detector index: fired on this request's payload, once computed.
    detected: Vec<Option<bool>>,
    fired: Option<usize>,
    /// The payload could not be scanned and `scan.unscanned: bypass` let the rule go on.
    bypassed: Option<NotScanned>,
    /// The request's features, once a contextual strategy needed them (`context`).
    context: Option<crate::bandit::Context>,
}

impl<'a, R: RequestView> Decider<'a, R> {
    fn new(
        cfg: &'a Config,
        req: &'a R,
        body: Body<'a>,
        now_unix_secs: u64,
        shared: &'a mut dyn Shared,
    ) -> Self {
        Decider {
            cfg,
            req,
            body,
            now_unix_secs,
            shared,
            path: None,
            tenant: None,
            summary: None,
            scanned: None,
            detected: vec![None; cfg.detectors.len()],
            fired: None,
            bypassed: None,
            context: None,
        }
    }

    fn path(&mut self) -> Option<&str> {
        if self.path.is_none() {
            self.path = Some(self.req.header(":path"));
        }
        self.path.as_ref().and_then(|p| p.as_deref())
    }

    /// The tenant's name as sent, and its index if it is configured.
    fn tenant(&mut self) -> Option<(&str, Option<usize>)> {
        if self.tenant.is_none() {
            let resolved = self.cfg.tenants.as_ref().and_then(|t| {
                let name = read_value(self.req, &t.source).filter(|n| !n.is_empty())?;
                let index = t.by_name(&name);
                Some((name, index))
            });
            self.tenant = Some(resolved);
        }
        self.tenant
            .as_ref()
            .and_then(|t| t.as_ref())
            .map(|(n, i)| (n.as_str(), *i))
    }

    fn tenant_index(&mut self) -> Option<usize> {
        self.tenant().and_then(|(_, i)| i)
    }

    /// The OpenAI-style summary of the body: `Err(())` while the body is pending.
    pub(crate) fn summary(&mut self) -> Result<Option<&ChatSummary>, ()> {
        if self.summary.is_none() {
            let s = match self.body {
                Body::Pending | Body::Early(_) => return Err(()),
                Body::Full { raw, format, .. } => summarize(format, raw),
                Body::Fields(_) | Body::Absent | Body::Unread(_) | Body::Grpc { .. } => None,
            };
            self.summary = Some(s);
        }
        Ok(self.summary.as_ref().and_then(|s| s.as_ref()))
    }

    /// Every text of the payload (`Err(None)` while the body is pending, `Err(Some(why))` when
    /// it cannot be scanned completely). No body: no text.
    fn scanned(&mut self) -> Result<&str, Option<NotScanned>> {
        if self.scanned.is_none() {
            let limit = self.cfg.scan.max_bytes;
            self.scanned = Some(match self.body {
                Body::Pending | Body::Early(_) => return Err(None),
                Body::Full { raw, format, .. } => crate::inspect::scan::scan(format, raw, limit),
                Body::Grpc {
                    raw, whole: true, ..
                } => crate::inspect::scan::scan_grpc(raw, limit),
                Body::Grpc { whole: false, .. } => Err(NotScanned::Streamed),
                Body::Unread(why) => Err(why),
                Body::Fields(_) | Body::Absent => Ok(String::new()),
            });
        }
        match &self.scanned {
            Some(Ok(text)) => Ok(text.as_str()),
            Some(Err(why)) => Err(Some(*why)),
            None => Err(None),
        }
    }

    fn detector_fired(&mut self, index: usize) -> Truth {
        if let Some(Some(done)) = self.detected.get(index) {
            return if *done { Truth::Yes } else { Truth::No };
        }
        let cfg = self.cfg;
        let fired = match self.scanned() {
            Err(None) => return Truth::NeedBody,
            Err(Some(why)) => {
                if cfg.scan.unscanned == Unscanned::Refuse {
                    return Truth::Unscanned(why);
                }
                // A bypass: as if nothing fired, and counted.
                self.bypassed = Some(why);
                false
            }
            Ok(text) => cfg
                .detectors
                .get(index)
                .is_some_and(|d| d.detector.fires(text)),
        };
        if let Some(slot) = self.detected.get_mut(index) {
            *slot = Some(fired);
        }
        if fired {
            Truth::Yes
        } else {
            Truth::No
        }
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
            Condition::Tenant(names) => {
                let name = self.tenant().map(|(n, _)| n);
                yes(name.is_some_and(|n| names.iter().any(|x| x == n)))
            }
            Condition::Tier(tiers) => {
                let cfg = self.cfg;
                let tier = self
                    .tenant_index()
                    .and_then(|i| cfg.tenants.as_ref()?.list.get(i)?.tier.as_ref());
                yes(tier.is_some_and(|t| tiers.contains(t)))
            }
            Condition::Detected(indices) => {
                for &i in indices {
                    match self.detector_fired(i) {
                        Truth::Yes => {
                            self.fired = Some(i);
                            return Truth::Yes;
                        }
                        other @ (Truth::NeedBody | Truth::Unscanned(_)) => return other,
                        Truth::No => {}
                    }
                }
                Truth::No
            }
            Condition::Body { pointer, test } => match self.body {
                Body::Pending => Truth::NeedBody,
                Body::Absent | Body::Unread(_) => yes(body_test(test, None)),
                Body::Fields(fields)
                | Body::Early(fields)
                | Body::Full { fields, .. }
                | Body::Grpc { fields, .. } => yes(body_test(test, fields.get(*pointer))),
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
            Body::Absent | Body::Unread(_) => Ok(Requested::Unnamed),
            Body::Grpc { routing, .. } => Ok(match &routing.name {
                Some(name) => Requested::NamedInMessage {
                    name: name.clone(),
                    version: routing.version.clone(),
                },
                None => Requested::Unnamed,
            }),
            Body::Fields(fields) | Body::Early(fields) | Body::Full { fields, .. } => {
                match fields.get(0) {
                    None | Some(Value::Null) => Ok(Requested::Unnamed),
                    Some(Value::String(s)) if !s.is_empty() => Ok(Requested::Named {
                        name: s.clone(),
                        version: None,
                    }),
                    Some(_) => Err(Outcome::Reply(Reply::invalid_body(
                        "the body field /model must be a non-empty string",
                    ))),
                }
            }
        }
    }

    fn with_detector(&self, mut outcome: Outcome) -> Outcome {
        match &mut outcome {
            Outcome::Route(r) => {
                r.detector = self.fired;
                r.bypassed = self.bypassed;
            }
            Outcome::Reply(r) => {
                r.detector = self.fired;
                r.unscanned = r.unscanned.or(self.bypassed);
            }
            Outcome::NeedBody => {}
        }
        outcome
    }

    fn decide(&mut self, rng: &mut Rng) -> Outcome {
        let outcome = self.decide_inner(rng);
        self.with_detector(outcome)
    }

    fn decide_inner(&mut self, rng: &mut Rng) -> Outcome {
        match self.route(rng) {
            Ok(route) => Outcome::Route(route),
            Err(decided) => decided,
        }
    }

    /// The decision's steps, in order. Each `Err` ends the decision: a reply, or the body
    /// is needed first.
    fn route(&mut self, rng: &mut Rng) -> Step<Route> {
        self.check_tenant_required()?;
        let matched = self.apply_rules()?;
        let (mi, pinned_target, hint) = self.pick_model(matched.pinned, matched.requested)?;
        let restriction = matched.restriction;
        let hint = hint.or(restriction.as_ref().map(|r| Reason::Rule(r.rule)));
        let Some(model) = self.cfg.models.get(mi) else {
            return Err(Outcome::Reply(Reply::error(
                500,
                "internal",
                "model index",
                None,
            )));
        };
        self.hold_body_for_resends(mi, model)?;
        self.check_tenant_allows(mi, model)?;
        self.check_input_spec(mi, model)?;
        let candidates = self.candidates(mi, restriction.as_ref())?;
        self.check_candidates(mi, pinned_target, &candidates)?;
        let (target, reason) = self.choose(mi, pinned_target, hint, &candidates, rng)?;
        let (target, reason) = self.avoid_cooling(mi, target, reason, &candidates);
        let mut route = Route::new(mi, target, reason);
        // Set when the strategy chose: whichever target serves, its reward is for this context.
        route.context = self.context;
        Ok(route)
    }

    /// Tenant step: with `tenants.required`, a request must name a configured tenant.
    fn check_tenant_required(&mut self) -> Step<()> {
        let required = self.cfg.tenants.as_ref().is_some_and(|t| t.required);
        if required && self.tenant_index().is_none() {
            return Err(Outcome::Reply(Reply::error(
                403,
                "forbidden",
                "the request names no known tenant",
                None,
            )));
        }
        Ok(())
    }

    /// Rules step: the first rule that matches replies, rejects, pins or restricts.
    fn apply_rules(&mut self) -> Step<Matched<'a>> {
        let cfg = self.cfg;
        let mut matched = Matched::default();
        for (ri, rule) in cfg.rules.iter().enumerate() {
            match self.rule_matches(&rule.when) {
                Truth::No => continue,
                Truth::NeedBody => return Err(Outcome::NeedBody),
                Truth::Unscanned(why) => return Err(self.not_scanned(ri, why)),
                Truth::Yes => {}
            }
            match &rule.then {
                Action::Reply { status, body } => return Err(self.rule_reply(ri, *status, body)),
                Action::Reject { status, message } => {
                    return Err(self.rule_reject(ri, &rule.name, *status, message))
                }
                Action::Restrict { region, tags } => {
                    matched.restriction = Some(Restriction {
                        rule: ri,
                        region: region.as_deref(),
                        tags,
                    });
                    break;
                }
                Action::Pin {
                    model: Some(mi),
                    target,
                } => {
                    if let Some(target) = pin_target(cfg, *mi, target) {
                        matched.pinned = Some((*mi, target, Reason::Rule(ri)));
                        break;
                    }
                }
                Action::Pin {
                    model: None,
                    target,
                } => {
                    if let Some((mi, ti)) = self.pin_requested(target, &mut matched.requested)? {
                        matched.pinned = Some((mi, Some(ti), Reason::Rule(ri)));
                        break;
                    }
                }
            }
        }
        Ok(matched)
    }

    fn rule_reply(&self, rule: usize, status: u16, body: &ReplyBody) -> Outcome {
        let (kind, content) = match body {
            ReplyBody::Echo => {
                if matches!(self.body, Body::Pending | Body::Early(_)) {
                    return Outcome::NeedBody;
                }
                (ReplyKind::Echo, ReplyContent::Echo)
            }
            ReplyBody::Json(bytes) => (ReplyKind::Reply, ReplyContent::Json(bytes.clone())),
            ReplyBody::Empty => (ReplyKind::Reply, ReplyContent::Empty),
        };
        Outcome::Reply(Reply {
            status,
            kind,
            content,
            model: None,
            rule: Some(rule),
            detector: None,
            unscanned: None,
            retry_after: None,
        })
    }

    /// A rule's rejection, naming the rule and the detector that fired, if one did.
    fn rule_reject(&self, rule: usize, name: &str, status: u16, message: &str) -> Outcome {
        let detector = self.fired.and_then(|d| self.cfg.detectors.get(d));
        let fields = [
            ("error", "rejected"),
            ("detail", message),
            ("rule", name),
            ("detector", detector.map_or("", |d| d.name.as_str())),
        ];
        // The detector only when one fired.
        let shown = if detector.is_some() { 4 } else { 3 };
        let body = text_object(fields.get(..shown).unwrap_or_default());
        Outcome::Reply(Reply {
            status,
            kind: ReplyKind::Reject,
            content: ReplyContent::Json(crate::json::write::to_vec(&body)),
            model: None,
            rule: Some(rule),
            detector: None,
            unscanned: None,
            retry_after: None,
        })
    }

    /// A rule with `when.detected` met a payload the detectors could not read completely.
    fn not_scanned(&self, rule: usize, why: NotScanned) -> Outcome {
        let name = self.cfg.rules.get(rule).map_or("", |r| r.name.as_str());
        let body = text_object(&[
            ("error", "not_scanned"),
            ("detail", why.describe()),
            ("reason", why.as_str()),
            ("rule", name),
        ]);
        let mut reply = Reply::error_with(why.status(), body, None);
        reply.rule = Some(rule);
        reply.unscanned = Some(why);
        Outcome::Reply(reply)
    }

    /// A pin without a model applies to the model the request names (read once, kept in
    /// `requested` for the model step): `None` when that model has no such target.
    fn pin_requested(
        &mut self,
        target: &TargetPin,
        requested: &mut Option<Requested>,
    ) -> Step<Option<(usize, usize)>> {
        if requested.is_none() {
            *requested = Some(self.requested()?);
        }
        let Some(Requested::Named { name, .. } | Requested::NamedInMessage { name, .. }) =
            requested
        else {
            return Ok(None);
        };
        let cfg = self.cfg;
        let Some(mi) = cfg.model_by_name(name) else {
            return Ok(None);
        };
        let Some(model) = cfg.models.get(mi) else {
            return Ok(None);
        };
        let ti = match target {
            TargetPin::Named(t) => model.target_by_name(t),
            TargetPin::Index(ti) => Some(*ti),
            TargetPin::None => None,
        };
        Ok(ti.map(|ti| (mi, ti)))
    }

    /// Model step: the model (and a target pinned by a rule, the path, or the default route).
    fn pick_model(
        &mut self,
        pinned: Option<(usize, Option<usize>, Reason)>,
        requested: Option<Requested>,
    ) -> Step<(usize, Option<usize>, Option<Reason>)> {
        if let Some((m, t, r)) = pinned {
            return Ok((m, t, Some(r)));
        }
        let requested = match requested {
            Some(r) => r,
            None => self.requested()?,
        };
        self.resolve_model(requested)
    }

    /// Routers, fan-outs, retries and shadows send the request again by callout: hold its body.
    fn hold_body_for_resends(&self, mi: usize, model: &Model) -> Step<()> {
        let resends = model.router.is_some()
            || model.fan_out.is_some()
            || model.retry
            || self.cfg.shadows.iter().any(|s| s.model == mi);
        if resends && matches!(self.body, Body::Pending | Body::Early(_)) {
            return Err(Outcome::NeedBody);
        }
        Ok(())
    }

    /// Tenant allow-list step: the tenant may use the model.
    fn check_tenant_allows(&mut self, mi: usize, model: &Model) -> Step<()> {
        let Some(ti) = self.tenant_index() else {
            return Ok(());
        };
        let allowed = (self.cfg.tenants.as_ref())
            .and_then(|t| t.list.get(ti))
            .is_none_or(|t| t.model_allowed(mi));
        if allowed {
            return Ok(());
        }
        // Quoted in place: the tenant's name is only read until the message is written.
        let name = self.tenant().map_or("", |(n, _)| n);
        Err(Outcome::Reply(Reply::error_fmt(
            403,
            "forbidden",
            format_args!(
                "tenant {} may not use model {}",
                quoted(name),
                quoted(&model.name)
            ),
            Some(mi),
        )))
    }

    /// KServe input spec step: a v2 inference request must match the model's declared inputs.
    fn check_input_spec(&mut self, mi: usize, model: &Model) -> Step<()> {
        let Some(spec) = &model.input_spec else {
            return Ok(());
        };
        if !self.is_kserve_infer() {
            return Ok(());
        }
        match self.body {
            Body::Pending | Body::Early(_) => Err(Outcome::NeedBody),
            Body::Full {
                raw,
                format: Format::Json,
                ..
            } => match crate::inspect::kserve::validate(spec, raw) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let body = text_object(&[
                        ("error", "invalid_input"),
                        ("detail", &e.detail),
                        ("input", &e.input),
                    ]);
                    Err(Outcome::Reply(Reply::error_with(400, body, Some(mi))))
                }
            },
            _ => Err(Outcome::Reply(Reply::error(
                400,
                "invalid_input",
                "this model's inputs are checked: send a JSON KServe v2 inference request",
                Some(mi),
            ))),
        }
    }

    /// Candidates step: a pinned target must be a candidate, and some target must be.
    fn check_candidates(
        &mut self,
        mi: usize,
        pinned_target: Option<usize>,
        candidates: &Candidates,
    ) -> Step<()> {
        if let Some(why) = pinned_target.and_then(|t| candidates.exclusion(t)) {
            return Err(Outcome::Reply(self.excluded_reply(mi, why)));
        }
        if candidates.is_empty() {
            let why = candidates.main_exclusion();
            return Err(Outcome::Reply(self.excluded_reply(mi, why)));
        }
        Ok(())
    }

    /// Choice step: the pinned target, else the budget's pick, else the model's strategy.
    fn choose(
        &mut self,
        mi: usize,
        pinned_target: Option<usize>,
        hint: Option<Reason>,
        candidates: &Candidates,
        rng: &mut Rng,
    ) -> Step<(usize, Reason)> {
        if let Some(t) = pinned_target {
            return Ok((t, hint.unwrap_or(Reason::Default)));
        }
        if let Some(pick) = self.budget_pick(mi, candidates)? {
            return Ok(pick);
        }
        self.context = self.request_context(mi)?;
        let (t, r) = self.strategy_pick(mi, candidates, rng);
        Ok((t, hint.unwrap_or(r)))
    }

    /// A named or unnamed request → (model, pinned target, reason hint).
    fn resolve_model(
        &mut self,
        requested: Requested,
    ) -> Result<(usize, Option<usize>, Option<Reason>), Outcome> {
        let cfg = self.cfg;
        let (name, version, in_message) = match requested {
            Requested::Named { name, version } => (name, version, false),
            Requested::NamedInMessage { name, version } => (name, version, true),
            Requested::Unnamed => return self.resolve_unnamed(),
        };
        let Some((mi, model)) = cfg
            .model_by_name(&name)
            .and_then(|mi| cfg.models.get(mi).map(|m| (mi, m)))
        else {
            return match cfg
                .default_model
                .filter(|_| !in_message)
                .and_then(|mi| cfg.models.get(mi).map(|m| (mi, m)))
            {
                Some((mi, model)) => Ok((mi, Some(model.default_target), Some(Reason::Default))),
                None => Err(Outcome::Reply(Reply::error_fmt(
                    404,
                    "unknown_model",
                    format_args!("no model named {} is configured", quoted(&name)),
                    None,
                ))),
            };
        };
        match version {
            None => Ok((mi, None, None)),
            Some(v) => match model.target_by_name(&v) {
                Some(ti) => Ok((mi, Some(ti), Some(Reason::PathVersion))),
                None => Err(Outcome::Reply(Reply::error_fmt(
                    404,
                    "unknown_version",
                    format_args!("model {} has no version {}", quoted(&name), quoted(&v)),
                    Some(mi),
                ))),
            },
        }
    }

    /// A request that names no model: the tenant's default model, else `default_model`.
    fn resolve_unnamed(&mut self) -> Result<(usize, Option<usize>, Option<Reason>), Outcome> {
        let cfg = self.cfg;
        let tenant_default = self
            .tenant_index()
            .and_then(|ti| cfg.tenants.as_ref()?.list.get(ti)?.default_model);
        match tenant_default.or(cfg.default_model) {
            Some(mi) => Ok((mi, None, None)),
            None => Err(Outcome::Reply(Reply::error_fmt(
                404,
                "unknown_model",
                format_args!(
                    "the request names no model: send the {} header, use a /v2/models/{{name}}/ or /v1/models/{{name}} path, or a JSON body with \"model\"",
                    quoted(&cfg.model_header)
                ),
                None,
            ))),
        }
    }

    fn is_kserve_infer(&mut self) -> bool {
        let post = self.req.header(":method").as_deref() == Some("POST");
        post && self
            .path()
            .map(|p| p.split('?').next().unwrap_or_default())
            .is_some_and(|p| p.starts_with("/v2/models/") && p.ends_with("/infer"))
    }

    fn excluded_reply(&mut self, mi: usize, why: Exclusion) -> Reply {
        let cfg = self.cfg;
        let model = cfg
            .models
            .get(mi)
            .map(|m| m.name.as_str())
            .unwrap_or_default();
        let model = quoted(model);
        let reply = |status, code, detail| Reply::error_fmt(status, code, detail, Some(mi));
        let mut reply = match why {
            Exclusion::Tenant => {
                let t = quoted(self.tenant().map_or("", |(n, _)| n));
                reply(403, "forbidden", format_args!("tenant {t} may not use this target of model {model}"))
            }
            Exclusion::Restricted => reply(403, "forbidden", format_args!("no target of model {model} satisfies the matching rule's restriction")),
            Exclusion::Region(region) => reply(403, "forbidden", format_args!("no target of model {model} keeps data in region {}", quoted(&region))),
            Exclusion::Capability(c) => reply(422, "capability_unavailable", format_args!("no target of model {model} offers {c}")),
            Exclusion::Context(needed) => reply(
                422,
                "capability_unavailable",
                format_args!("no target of model {model} has a context of {needed} tokens (estimated prompt + max_tokens)"),
            ),
            Exclusion::Full => reply(503, "over_capacity", format_args!("every target of model {model} that may serve this request is at capacity")),
        };
        reply.rule = None;
        if reply.status == 503 {
            reply.retry_after = Some(cfg.load.retry_after_seconds);
        }
        reply
    }
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

/// Decides a request. `now_unix_secs` feeds `time_utc` conditions and cooldowns.
pub fn decide<R: RequestView>(
    cfg: &Config,
    req: &R,
    body: Body<'_>,
    now_unix_secs: u64,
    rng: &mut Rng,
    shared: &mut dyn Shared,
) -> Outcome {
    Decider::new(cfg, req, body, now_unix_secs, shared).decide(rng)
}

/// Whether shadow `index` applies to a request routed to `model`: its conditions hold and the
/// percentage draw falls in. A shadow never needs more of the body than the decision read.
pub fn shadow_applies<R: RequestView>(
    cfg: &Config,
    index: usize,
    model: usize,
    req: &R,
    body: Body<'_>,
    now_unix_secs: u64,
    rng: &mut Rng,
) -> bool {
    let Some(shadow) = cfg.shadows.get(index) else {
        return false;
    };
    if shadow.model != model {
        return false;
    }
    let mut shared = NoShared;
    let mut d = Decider::new(cfg, req, body, now_unix_secs, &mut shared);
    d.rule_matches(&shadow.when) == Truth::Yes && rng.next_f64() * 100.0 < shadow.percent
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
        // `format!("{:016x}{:08x}")` without the formatting machinery (one id per request).
        let mut id = String::with_capacity(24);
        crate::hex::push_u64(&mut id, self.prefix, 16);
        crate::hex::push_u64(&mut id, self.counter, 8);
        id
    }
}
