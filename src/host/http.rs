//! One HTTP stream: build the request view, let the core decide, apply the decision, tag the
//! response with what was decided, and turn what the response shows into a reward.

mod callouts;

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::metrics::Metrics;
use super::store::HostStore;
use super::{
    abi, now_secs, EvalJob, HostShared, MirrorJob, MirrorKind, Plugin, VmState,
    MAX_PENDING_EVALUATIONS,
};
use crate::callout::{forward_message, router_feedback, target_child};
use crate::config::{BodySource, Config, OnInvalid};
use crate::feedback::DecisionToken;
use crate::learning::{self, FeedbackInput};
use crate::payload::{
    decode_pairs, extract, fields_from_metadata, format_of_content_type, Fields, Format,
};
use crate::policy::{decide, Body, Outcome, Reason, Reply, ReplyContent, RequestView, Route};
use crate::reward::{implicit_reward, usage_from_json, Observation, SseUsageScanner};

/// Largest feedback body read.
const MAX_FEEDBACK_BYTES: usize = 64 * 1024;
/// Rewards forwarded to a router wait at least this long for its answer.
const FEEDBACK_FORWARD_MIN_TIMEOUT_MS: u32 = 1000;
/// Largest non-streamed response body copied to read token usage from.
const MAX_USAGE_BODY: usize = 1024 * 1024;

/// Request headers read through the host, one call per header asked for.
struct HostRequest;

impl RequestView for HostRequest {
    fn header(&self, name: &str) -> Option<String> {
        abi::get_header(abi::MAP_REQUEST_HEADERS, name)
            .ok()
            .flatten()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        abi::get_property(path).ok().flatten()
    }
}

/// What the response will say about the decision.
struct ResponseMeta {
    model: Option<String>,
    target: Option<String>,
    reason: String,
    decision: String,
    /// The detector whose firing decided (never what it matched).
    detector: Option<String>,
}

/// What this stream is, once its headers are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Route,
    /// A feedback request whose body is being read.
    Feedback,
}

/// The response, as far as a reward needs it.
#[derive(Default)]
struct Watch {
    status: u16,
    latency_ms: u64,
    header: Option<String>,
    first_byte_ms: Option<u64>,
    sse: Option<SseUsageScanner>,
    json: Option<Vec<u8>>,
    streaming: bool,
}

pub(crate) struct Http {
    context_id: u32,
    plugin: Rc<Plugin>,
    vm: VmState,
    role: Role,
    started_ns: u64,
    /// The headers phase paused for the body.
    awaiting_body: bool,
    format: Option<Format>,
    /// `x-inference-body`: why the body was not used, when it was not.
    body_note: Option<&'static str>,
    meta: Option<ResponseMeta>,
    /// The upstream route of a model that learns from responses.
    learning_route: Option<Route>,
    watch: Option<Watch>,
    /// The upstream route of a model whose target health is tracked, and what its response
    /// said (status, `Retry-After`, latency), applied when the stream ends.
    health_route: Option<Route>,
    health_sample: Option<(u16, Option<String>, u64)>,
    /// The request as the filter may resend it (router, fan-out, retry, shadows).
    held: Option<callouts::Held>,
    /// Shadows drawn for this request, copied once it goes upstream.
    shadows: Vec<usize>,
    /// Callouts this stream waits for.
    waiting: callouts::Waiting,
    /// The retry of a failed answer (models with `retry`).
    retry: Option<callouts::Retry>,
}

fn elapsed_ms(started_ns: u64) -> u64 {
    abi::now_nanos().map_or(0, |n| n.saturating_sub(started_ns) / 1_000_000)
}

fn request_path() -> String {
    let path = HostRequest.header(":path").unwrap_or_default();
    match path.split_once('?') {
        Some((p, _)) => p.to_string(),
        None => path,
    }
}

/// Applies a reward to shared state and counts it (or its failure).
pub(crate) fn record_reward(
    plugin: &Plugin,
    model: usize,
    target: &str,
    reward: f64,
    counter: u32,
) {
    match learning::apply_reward(&HostStore, &plugin.name, &plugin.cfg, model, target, reward) {
        Ok(applied) => {
            Metrics::bump(counter);
            Metrics::add(plugin.metrics.cas_retries, u64::from(applied.retries));
            if applied.reset {
                Metrics::bump(plugin.metrics.state_resets);
                log::warn!(
                    "inference-router: bandit state of {:?} was undecodable and was reset",
                    applied.model
                );
            }
            // Gauges are republished by the root context's timer: no per-reward host calls.
        }
        Err(e) => {
            Metrics::bump(plugin.metrics.rewards_failed);
            if matches!(e, learning::ApplyError::Contention { .. }) {
                Metrics::bump(plugin.metrics.cas_exhausted);
            }
            log::warn!(
                "inference-router: reward for {target:?} not applied: {}",
                e.describe()
            );
        }
    }
}

impl Http {
    pub fn new(context_id: u32, plugin: Rc<Plugin>, vm: VmState) -> Self {
        Http {
            context_id,
            plugin,
            vm,
            role: Role::Route,
            started_ns: 0,
            awaiting_body: false,
            format: None,
            body_note: None,
            meta: None,
            learning_route: None,
            watch: None,
            health_route: None,
            health_sample: None,
            held: None,
            shadows: Vec::new(),
            waiting: callouts::Waiting::Nothing,
            retry: None,
        }
    }

    fn cfg(&self) -> &Config {
        &self.plugin.cfg
    }

    fn run(&mut self, body: Body<'_>) -> Outcome {
        let plugin = Rc::clone(&self.plugin);
        let mut rng = self.vm.rng.borrow_mut();
        let mut shared = HostShared::new(&plugin);
        // One host call saved per request when nothing looks at the time.
        let now = if plugin.needs_clock { now_secs() } else { 0 };
        decide(&plugin.cfg, &HostRequest, body, now, &mut rng, &mut shared)
    }

    /// A signed token when feedback is on (it names model and target, and expires), else a
    /// unique id.
    fn decision_id(&self, model: &str, target: &str) -> String {
        match &self.cfg().feedback {
            Some(fb) => {
                let nonce = self.vm.rng.borrow_mut().next_u64();
                fb.signer.sign(&DecisionToken {
                    model: model.to_string(),
                    target: target.to_string(),
                    expires: now_secs().saturating_add(fb.ttl_seconds),
                    nonce,
                })
            }
            None => self.vm.ids.borrow_mut().next_id(),
        }
    }

    /// Applies a decision; returns the action for the current callback.
    fn apply(&mut self, outcome: Outcome, raw_body: Option<&[u8]>) -> Action {
        match outcome {
            Outcome::Route(route) => self.route_request(route, raw_body),
            Outcome::Reply(reply) => {
                self.reply(&reply, raw_body);
                Action::Pause
            }
            Outcome::NeedBody => {
                // Only reachable if the body was already final: the core asked for a body it has.
                log::error!(
                    "inference-router[{}]: decision still needs the body after reading it",
                    self.context_id
                );
                let reply = Reply::error(
                    500,
                    "internal",
                    "the routing decision could not be made",
                    None,
                );
                self.reply(&reply, None);
                Action::Pause
            }
        }
    }

    fn route(&mut self, route: Route) {
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        let Some(model) = cfg.models.get(route.model) else {
            return;
        };
        let Some(target) = model.targets.get(route.target) else {
            return;
        };
        // Setting replaces whatever the client sent: a client cannot pick its own cluster.
        let set = |name: &str, value: &str| abi::set_header(abi::MAP_REQUEST_HEADERS, name, value);
        if let Err(status) = set(&cfg.route_header, &target.cluster)
            .and_then(|()| set(&cfg.target_header, &target.name))
        {
            log::error!(
                "inference-router[{}]: cannot set routing headers: host status {status}",
                self.context_id
            );
        }
        // Envoy re-selects the route after a header change today, but upstream Envoy is
        // removing that implicit refresh: ask for it explicitly.
        let _ = abi::call_foreign_function("clear_route_cache");
        plugin.metrics.request(route.model, route.target);
        plugin.metrics.decision(route.reason);
        if let Some(d) = route.detector {
            plugin.metrics.detector(d);
        }
        if plugin
            .health_keys
            .get(route.model)
            .is_some_and(Option::is_some)
        {
            self.health_route = Some(route);
        }
        if model.reward.is_some() {
            self.learning_route = Some(route);
        }
        if cfg.response_metadata || cfg.feedback.is_some() {
            self.meta = Some(ResponseMeta {
                model: Some(model.name.clone()),
                target: Some(target.name.clone()),
                reason: route.reason.header_value(cfg),
                decision: self.decision_id(&model.name, &target.name),
                detector: route
                    .detector
                    .and_then(|d| cfg.detectors.get(d))
                    .map(|d| d.name.clone()),
            });
        }
    }

    fn reply(&mut self, reply: &Reply, raw_body: Option<&[u8]>) {
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        plugin.metrics.local_reply(reply.kind);
        if let Some(d) = reply.detector {
            plugin.metrics.detector(d);
        }
        if let Some(rule) = reply.rule {
            plugin.metrics.decision(Reason::Rule(rule));
        }
        if reply.content == ReplyContent::Echo
            && raw_body.is_none()
            && self.body_note == Some("too-large")
        {
            // The body was not held (over body.max_bytes): an empty echo would lose it silently.
            let detail = format!(
                "the echo reply returns the request body, which is over body.max_bytes ({})",
                cfg.body.max_bytes
            );
            let mut error = Reply::error(413, "too_large", &detail, None);
            error.rule = reply.rule;
            return self.reply(&error, None);
        }
        let echo_type;
        let (content_type, body): (Option<&str>, Option<&[u8]>) = match &reply.content {
            ReplyContent::Json(bytes) => (Some("application/json"), Some(bytes)),
            ReplyContent::Empty => (None, None),
            ReplyContent::Echo => {
                echo_type = HostRequest.header("content-type");
                (echo_type.as_deref(), raw_body)
            }
        };
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(6);
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        let meta = cfg.response_metadata.then(|| ResponseMeta {
            model: reply
                .model
                .and_then(|m| cfg.models.get(m))
                .map(|m| m.name.clone()),
            target: None,
            reason: reply.reason_header(cfg),
            decision: self.vm.ids.borrow_mut().next_id(),
            detector: reply
                .detector
                .and_then(|d| cfg.detectors.get(d))
                .map(|d| d.name.clone()),
        });
        if let Some(m) = &meta {
            push_meta(&mut headers, m, self.body_note);
        }
        forget_client_route_headers(cfg);
        if let Err(status) = abi::send_local_response(u32::from(reply.status), &headers, body) {
            log::error!(
                "inference-router[{}]: cannot send local reply: host status {status}",
                self.context_id
            );
        }
        self.meta = meta;
    }

    /// A local JSON reply that is not a routing decision (feedback, state endpoint).
    fn json_reply(&mut self, status: u16, body: &serde_json::Value) {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        let headers = [("content-type", "application/json")];
        forget_client_route_headers(self.cfg());
        if let Err(s) = abi::send_local_response(u32::from(status), &headers, Some(&bytes)) {
            log::error!(
                "inference-router[{}]: cannot send reply: host status {s}",
                self.context_id
            );
        }
    }

    /// The body fields that `json_to_metadata` wrote into dynamic metadata (metadata mode):
    /// the whole namespace in one host call.
    fn metadata_fields(&self) -> Fields {
        let cfg = self.cfg();
        let path = [
            "metadata",
            "filter_metadata",
            cfg.body.metadata_namespace.as_str(),
        ];
        match abi::get_property(&path) {
            Ok(Some(bytes)) => match decode_pairs(&bytes) {
                Some(ns) => fields_from_metadata(&cfg.pointers, &cfg.numeric_pointers, &ns),
                None => {
                    log::warn!(
                        "inference-router[{}]: metadata namespace {:?} is not in the expected encoding; body fields ignored",
                        self.context_id,
                        cfg.body.metadata_namespace
                    );
                    Fields::with_len(cfg.pointers.len())
                }
            },
            _ => Fields::with_len(cfg.pointers.len()),
        }
    }

    /// Decides with the final body bytes (or none).
    fn finish_with_body(&mut self, bytes: &[u8]) -> Action {
        self.awaiting_body = false;
        if self.role == Role::Feedback {
            self.answer_feedback(bytes);
            return Action::Pause;
        }
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        let parsed = match self.format {
            Some(format) if !bytes.is_empty() => Some(extract(&cfg.pointers, format, bytes)),
            _ => None,
        };
        let outcome = match (parsed, self.format) {
            (Some(Ok(fields)), Some(format)) => {
                let body = Body::Full {
                    fields: &fields,
                    raw: bytes,
                    format,
                };
                let outcome = self.run(body);
                self.pick_shadows(&outcome, body);
                outcome
            }
            (Some(Err(e)), _) => {
                Metrics::bump(plugin.metrics.body_parse_failures);
                match cfg.body.on_invalid {
                    OnInvalid::Reject => Outcome::Reply(Reply::invalid_body(&e.detail)),
                    OnInvalid::Default => {
                        self.body_note = Some("invalid");
                        let outcome = self.run(Body::Absent);
                        self.pick_shadows(&outcome, Body::Absent);
                        outcome
                    }
                }
            }
            _ => {
                let outcome = self.run(Body::Absent);
                self.pick_shadows(&outcome, Body::Absent);
                outcome
            }
        };
        self.apply(outcome, Some(bytes))
    }

    fn answer_feedback(&mut self, body: &[u8]) {
        let plugin = Rc::clone(&self.plugin);
        let decision = HostRequest.header("x-inference-decision");
        let reward = HostRequest.header("x-inference-reward");
        let input = FeedbackInput {
            body,
            header_decision: decision.as_deref(),
            header_reward: reward.as_deref(),
        };
        let mut spent_reset = false;
        let now = now_secs();
        let reply = learning::process_feedback(
            &HostStore,
            &plugin.name,
            &plugin.cfg,
            now,
            &input,
            &mut spent_reset,
        );
        // A model that does not learn itself may still have a router that does.
        let routed = match reply.result {
            Err(learning::Refusal::NotLearning) => router_feedback(
                &HostStore,
                &plugin.name,
                &plugin.cfg,
                now,
                &input,
                &mut spent_reset,
            ),
            _ => None,
        };
        if spent_reset {
            log::warn!("inference-router: a spent-decision bucket was undecodable and was reset");
        }
        match routed {
            Some(Ok(fwd)) => {
                Metrics::bump(plugin.metrics.feedback_accepted);
                self.forward_reward(fwd.model, fwd.child, fwd.reward, body);
                let model = plugin.cfg.models.get(fwd.model).map(|m| m.name.as_str());
                let doc = serde_json::json!({"forwarded": {"model": model, "target": fwd.target, "reward": fwd.reward}});
                return self.json_reply(200, &doc);
            }
            Some(Err(refused)) => {
                if let Err(refusal) = refused.result {
                    plugin.metrics.feedback_rejected(refusal);
                }
                return self.json_reply(refused.status, &refused.body);
            }
            None => {}
        }
        match &reply.result {
            Ok(applied) => {
                Metrics::bump(plugin.metrics.feedback_accepted);
                Metrics::add(plugin.metrics.cas_retries, u64::from(applied.retries));
                if let Some(i) = plugin.cfg.model_by_name(&applied.model) {
                    if let Some(child) = target_child(&plugin.cfg, i, &applied.target) {
                        self.forward_reward(i, child, applied.reward, body);
                    }
                }
            }
            Err(refusal) => {
                plugin.metrics.feedback_rejected(*refusal);
                if *refusal == learning::Refusal::Unavailable {
                    // The sender is told to retry; say why in the log (no request data in it).
                    log::warn!(
                        "inference-router[{}]: feedback not recorded: {}",
                        self.context_id,
                        reply
                            .body
                            .get("detail")
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or_default()
                    );
                }
            }
        }
        self.json_reply(reply.status, &reply.body);
    }

    /// Queues a reward for the model's router (`router.feedback_path`), if it has one.
    fn forward_reward(&self, model: usize, child: i64, reward: f64, client_body: &[u8]) {
        let plugin = Rc::clone(&self.plugin);
        let Some(m) = plugin.cfg.models.get(model) else {
            return;
        };
        let Some(router) = &m.router else {
            return;
        };
        let Some(path) = &router.feedback_path else {
            return;
        };
        let headers = vec![
            (":method".to_string(), "POST".to_string()),
            (":path".to_string(), path.clone()),
            (":authority".to_string(), router.authority.clone()),
            ("content-type".to_string(), "application/json".to_string()),
        ];
        plugin.enqueue_mirror(MirrorJob {
            kind: MirrorKind::Feedback { model },
            cluster: router.cluster.clone(),
            headers,
            body: forward_message(&m.name, child, reward, client_body),
            // Feedback is not on anyone's request path: give the router time.
            timeout_ms: router.timeout_ms.max(FEEDBACK_FORWARD_MIN_TIMEOUT_MS),
        });
    }

    /// Feedback and the state endpoint are answered by the filter itself. Returns the action
    /// when the request was one of them.
    fn own_endpoints(&mut self, end_of_stream: bool) -> Option<Action> {
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        if cfg.feedback.is_none() && cfg.state_endpoint.is_none() {
            return None;
        }
        let path = request_path();
        if let Some(fb) = &cfg.feedback {
            if path == fb.path {
                let method = HostRequest.header(":method").unwrap_or_default();
                if method != "POST" {
                    self.json_reply(405, &serde_json::json!({"error": "method_not_allowed", "detail": "feedback is POSTed"}));
                    return Some(Action::Pause);
                }
                self.role = Role::Feedback;
                if end_of_stream || cfg.body.source == BodySource::Metadata {
                    // No body to read (or none this host lets us read): header-only feedback.
                    self.answer_feedback(&[]);
                    return Some(Action::Pause);
                }
                self.awaiting_body = true;
                return Some(Action::Pause);
            }
        }
        if let Some(ep) = &cfg.state_endpoint {
            if path == ep.path {
                if HostRequest.header(":method").as_deref() != Some("GET") {
                    self.json_reply(405, &serde_json::json!({"error": "method_not_allowed", "detail": "the state endpoint answers GET"}));
                    return Some(Action::Pause);
                }
                if let Some(token) = &ep.token {
                    let given = HostRequest.header("authorization");
                    let ok = given
                        .as_deref()
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
                    if !ok {
                        self.json_reply(401, &serde_json::json!({"error": "unauthorized", "detail": "send Authorization: Bearer <state_endpoint.token>"}));
                        return Some(Action::Pause);
                    }
                }
                let doc = learning::state_document(&HostStore, &plugin.name, cfg);
                self.json_reply(200, &doc);
                return Some(Action::Pause);
            }
        }
        None
    }

    /// The reward for this stream's response, applied now or handed to the evaluator.
    fn learn_from_response(&mut self) {
        let (Some(route), Some(watch)) = (self.learning_route.take(), self.watch.take()) else {
            return;
        };
        let plugin = Rc::clone(&self.plugin);
        let Some(model) = plugin.cfg.models.get(route.model) else {
            return;
        };
        let (Some(settings), Some(target)) = (&model.reward, model.targets.get(route.target))
        else {
            return;
        };
        let usage = match (&watch.sse, &watch.json) {
            (Some(sse), _) => sse.usage(),
            (None, Some(json)) => usage_from_json(json),
            _ => None,
        };
        // A streamed answer's latency is its time to first byte; headers come at once.
        let latency_ms = if watch.streaming {
            watch.first_byte_ms.unwrap_or(watch.latency_ms)
        } else {
            watch.latency_ms
        };
        let obs = Observation {
            status: watch.status,
            latency_ms,
            header: watch.header,
            usage,
        };
        let reward = implicit_reward(settings, &target.price, &obs);
        if settings.evaluator.is_some() {
            let summary = serde_json::json!({
                "model": model.name,
                "target": target.name,
                "decision": self.meta.as_ref().map(|m| m.decision.as_str()),
                "status": obs.status,
                "latency_ms": obs.latency_ms,
                "ttfb_ms": watch.first_byte_ms,
                "usage": obs.usage.map(|u| serde_json::json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens})),
                "implicit_reward": reward.as_ref().ok(),
            });
            let Ok(mut outbox) = plugin.outbox.try_borrow_mut() else {
                return;
            };
            if outbox.len() >= MAX_PENDING_EVALUATIONS {
                outbox.pop_front();
                Metrics::bump(plugin.metrics.evaluator_failures);
            }
            outbox.push_back(EvalJob {
                model: route.model,
                target: target.name.clone(),
                body: serde_json::to_vec(&summary).unwrap_or_default(),
            });
            return;
        }
        match reward {
            Ok(r) => record_reward(
                &plugin,
                route.model,
                &target.name,
                r,
                plugin.metrics.rewards_implicit,
            ),
            Err(e) => {
                Metrics::bump(plugin.metrics.rewards_failed);
                log::warn!(
                    "inference-router[{}]: no implicit reward: {e}",
                    self.context_id
                );
            }
        }
    }
}

impl Http {
    /// Cooldown after a failure (5xx, 429, or Envoy's own 503 for an unreachable upstream) and
    /// the latency sample, into the model's shared health.
    fn record_health(&mut self) {
        let (Some(route), Some((status, retry_after, latency))) =
            (self.health_route.take(), self.health_sample.take())
        else {
            return;
        };
        let plugin = Rc::clone(&self.plugin);
        let (Some(model), Some(Some(key))) = (
            plugin.cfg.models.get(route.model),
            plugin.health_keys.get(route.model),
        ) else {
            return;
        };
        let failed = status >= 500 || status == 429;
        let cool_until = failed.then(|| {
            now_secs().saturating_add(learning::health::cooldown_seconds(
                retry_after.as_deref(),
                model.cooldown_seconds,
            ))
        });
        let sample = learning::health::Sample {
            target: route.target,
            cool_until,
            latency_ms: (!failed).then_some(latency as f64),
        };
        if let Err(e) = learning::health::record(&HostStore, key, model.targets.len(), sample) {
            log::warn!(
                "inference-router[{}]: target health not recorded: {e}",
                self.context_id
            );
        }
    }
}

/// A request the filter answers itself never gets routing headers set; drop what the client
/// sent in them, so access logs and later filters do not show a cluster the client chose.
pub(crate) fn forget_client_route_headers(cfg: &Config) {
    let _ = abi::remove_header(abi::MAP_REQUEST_HEADERS, &cfg.route_header);
    let _ = abi::remove_header(abi::MAP_REQUEST_HEADERS, &cfg.target_header);
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn push_meta<'a>(
    headers: &mut Vec<(&'a str, &'a str)>,
    m: &'a ResponseMeta,
    note: Option<&'static str>,
) {
    if let Some(model) = &m.model {
        headers.push(("x-inference-model", model));
    }
    if let Some(target) = &m.target {
        headers.push(("x-inference-target", target));
    }
    headers.push(("x-inference-reason", &m.reason));
    headers.push(("x-inference-decision", &m.decision));
    if let Some(d) = &m.detector {
        headers.push(("x-inference-detector", d));
    }
    if let Some(note) = note {
        headers.push(("x-inference-body", note));
    }
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        self.on_callout_answer(token_id, body_size);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "test-trap")]
        #[allow(clippy::panic)]
        if HostRequest.header("x-inference-test-trap").is_some() {
            panic!("test-trap build: trap requested by x-inference-test-trap");
        }
        if self.plugin.learns || self.plugin.health_keys.iter().any(Option::is_some) {
            // Latency is measured only for models that learn from it.
            self.started_ns = abi::now_nanos().unwrap_or(0);
        }
        if let Some(action) = self.own_endpoints(end_of_stream) {
            return action;
        }
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        let metadata_fields;
        let body = if cfg.body.source == BodySource::Metadata {
            metadata_fields = self.metadata_fields();
            Body::Fields(&metadata_fields)
        } else if end_of_stream {
            Body::Absent
        } else {
            let method = HostRequest.header(":method").unwrap_or_default();
            let has_body_method = matches!(method.as_str(), "POST" | "PUT" | "PATCH");
            self.format = HostRequest
                .header("content-type")
                .and_then(|ct| format_of_content_type(&ct));
            let too_large = HostRequest
                .header("content-length")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|len| len > cfg.body.max_bytes);
            // Echo replies and requests the filter resends need the body whatever its type.
            if !has_body_method || (self.format.is_none() && !cfg.has_echo && !plugin.resends) {
                Body::Absent
            } else if too_large {
                self.body_note = Some("too-large");
                Metrics::bump(plugin.metrics.body_too_large);
                Body::Absent
            } else {
                Body::Pending
            }
        };
        match self.run(body) {
            Outcome::NeedBody => {
                self.awaiting_body = true;
                Action::Pause
            }
            Outcome::Route(route) => {
                self.pick_shadows(&Outcome::Route(route), body);
                // A request without a body is whole already: it can be resent.
                self.route_request(route, end_of_stream.then_some(&[][..]))
            }
            outcome => self.apply(outcome, None),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.awaiting_body {
            return Action::Continue;
        }
        if self.role == Role::Feedback && body_size > MAX_FEEDBACK_BYTES {
            self.awaiting_body = false;
            self.json_reply(413, &serde_json::json!({"error": "too_large", "detail": format!("feedback bodies are limited to {MAX_FEEDBACK_BYTES} bytes")}));
            return Action::Pause;
        }
        if self.role == Role::Route && body_size as u64 > self.cfg().body.max_bytes {
            self.awaiting_body = false;
            self.body_note = Some("too-large");
            Metrics::bump(self.plugin.metrics.body_too_large);
            let outcome = self.run(Body::Absent);
            return self.apply(outcome, None);
        }
        if !end_of_stream {
            // Keep buffering until the whole body is here.
            return Action::Pause;
        }
        let bytes = match abi::get_buffer(abi::BUFFER_REQUEST_BODY, 0, body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                log::warn!(
                    "inference-router[{}]: cannot read the request body: host status {status}",
                    self.context_id
                );
                Vec::new()
            }
        };
        self.finish_with_body(&bytes)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if !self.awaiting_body {
            return Action::Continue;
        }
        // Trailers end the request: the body buffered so far is all of it.
        let bytes = abi::get_buffer(abi::BUFFER_REQUEST_BODY, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.finish_with_body(&bytes)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if self.health_route.is_some() {
            let get = |name: &str| {
                abi::get_header(abi::MAP_RESPONSE_HEADERS, name)
                    .ok()
                    .flatten()
            };
            let status = get(":status").and_then(|s| s.parse().ok()).unwrap_or(0);
            let retry_after = (status >= 500 || status == 429)
                .then(|| get("retry-after"))
                .flatten();
            self.health_sample = Some((status, retry_after, elapsed_ms(self.started_ns)));
        }
        if let Some(route) = self.learning_route {
            let reward_header = self
                .cfg()
                .models
                .get(route.model)
                .and_then(|m| m.reward.as_ref())
                .and_then(|r| r.header.clone());
            let get = |name: &str| {
                abi::get_header(abi::MAP_RESPONSE_HEADERS, name)
                    .ok()
                    .flatten()
            };
            let content_type = get("content-type").unwrap_or_default();
            let wants_usage = self
                .cfg()
                .models
                .get(route.model)
                .and_then(|m| m.reward.as_ref())
                .is_some_and(|r| r.cost_weight > 0.0 || r.evaluator.is_some());
            let streaming = content_type.starts_with("text/event-stream");
            self.watch = Some(Watch {
                status: get(":status").and_then(|s| s.parse().ok()).unwrap_or(0),
                latency_ms: elapsed_ms(self.started_ns),
                header: reward_header.and_then(|h| get(&h)),
                first_byte_ms: None,
                sse: (wants_usage && streaming).then(SseUsageScanner::default),
                json: (wants_usage
                    && !end_of_stream
                    && format_of_content_type(&content_type) == Some(Format::Json))
                .then(Vec::new),
                streaming,
            });
        }
        if let Some(meta) = &self.meta {
            if self.cfg().response_metadata {
                let mut headers = Vec::with_capacity(6);
                push_meta(&mut headers, meta, self.body_note);
                for (name, value) in headers {
                    // Replace: an upstream cannot forge what the router decided.
                    let _ = abi::set_header(abi::MAP_RESPONSE_HEADERS, name, value);
                }
                // The optional ones are ours too: drop an upstream's when we set none.
                if self.body_note.is_none() {
                    let _ = abi::remove_header(abi::MAP_RESPONSE_HEADERS, "x-inference-body");
                }
                if meta.detector.is_none() {
                    let _ = abi::remove_header(abi::MAP_RESPONSE_HEADERS, "x-inference-detector");
                }
            } else {
                // Feedback needs the decision id even when the other metadata is off.
                let _ = abi::set_header(
                    abi::MAP_RESPONSE_HEADERS,
                    "x-inference-decision",
                    &meta.decision,
                );
            }
        }
        if let Some(action) = self.retry_on_response_headers() {
            return action;
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        if self.retry_holds_response() {
            // Envoy buffers the failed answer while the retry runs.
            return Action::Pause;
        }
        let started = self.started_ns;
        let Some(watch) = self.watch.as_mut() else {
            return Action::Continue;
        };
        if watch.first_byte_ms.is_none() && body_size > 0 {
            watch.first_byte_ms = Some(elapsed_ms(started));
        }
        if watch.sse.is_none() && watch.json.is_none() {
            return Action::Continue;
        }
        // Streaming: each callback sees the chunk passing through; nothing is held back.
        let chunk = abi::get_buffer(abi::BUFFER_RESPONSE_BODY, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Some(sse) = watch.sse.as_mut() {
            sse.feed(&chunk);
        }
        if let Some(json) = watch.json.as_mut() {
            if json.len() + chunk.len() > MAX_USAGE_BODY {
                watch.json = None;
            } else {
                json.extend_from_slice(&chunk);
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.learn_from_response();
        self.record_health();
    }
}

/// The context of a plugin that has no configuration: every stream passes untouched.
pub(crate) struct PassThrough;

impl Context for PassThrough {}

impl HttpContext for PassThrough {}
