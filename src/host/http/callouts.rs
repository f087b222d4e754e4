//! What one stream sends by callout, and the shadow copies it hands to the root context.
//!
//! - External router (`model.router`): the stream pauses, the request body goes to the router,
//!   and its answer picks the target (`router`), every target (fan-out), or none (the body is the
//!   answer). A router that is down, slow or malformed leaves the strategy's decision in place.
//! - Fan-out (`model.fan_out`, or the router's `-1`): the request goes to every target at once;
//!   one JSON reply carries every answer.
//! - Retry (`model.retry`): a 5xx / 429 from the upstream is held back (response headers paused)
//!   while the same request goes to the first other fallback target; the client sees only the
//!   retry's answer, or the original failure when the retry gets no answer at all.
//! - Shadows: once the request goes upstream, copies are queued for the root context, which
//!   sends them on its tick (a callout from this context would die with the stream).
//!
//! Everything that is not a host call (reading the router's answer, combining answers, rewriting
//! the model field) is in `crate::callout`.

use std::rc::Rc;

use proxy_wasm::types::Action;

use super::{push_meta, HostRequest, Http, ResponseMeta};
use crate::callout::{
    classify, fan_out_reply, is_failure, is_streamed, parse_router_answer, retry_target,
    rewrite_model, CalloutAnswer, RouterChoice, TargetResult, ALL_CHILDREN, NO_CHILD,
    RESENT_HEADERS,
};
use crate::host::metrics::Metrics;
use crate::host::{abi, now_secs, MirrorJob, MirrorKind};
use crate::policy::{shadow_applies, Body, Outcome, Reason, ReplyKind, RequestView, Route};

/// A fan-out the router asked for (`-1`) on a model without `fan_out` settings waits this long.
const DEFAULT_FAN_OUT_TIMEOUT_MS: u32 = 5000;
/// How long a retry may take (Envoy's default route timeout).
const RETRY_TIMEOUT_MS: u32 = 15_000;
/// On a retried answer: `<failed target>,<retry target>`.
const ATTEMPTS_HEADER: &str = "x-inference-attempts";
/// Marks shadow copies for the shadow upstream (value: the model's name).
const SHADOW_HEADER: &str = "x-inference-shadow";

/// The request as the filter resends it: the body as the client sent it, and the headers that
/// matter upstream.
pub(super) struct Held {
    body: Vec<u8>,
    method: String,
    path: String,
    authority: String,
    extra: Vec<(&'static str, String)>,
    streamed: bool,
}

impl Held {
    fn capture(body: &[u8], format: Option<crate::payload::Format>) -> Held {
        let header = |n: &str| HostRequest.header(n);
        let extra: Vec<(&'static str, String)> = RESENT_HEADERS
            .iter()
            .filter_map(|&n| header(n).map(|v| (n, v)))
            .collect();
        let accept = extra
            .iter()
            .find(|(n, _)| *n == "accept")
            .map(|(_, v)| v.as_str());
        Held {
            streamed: is_streamed(format, body, accept),
            body: body.to_vec(),
            method: header(":method").unwrap_or_else(|| "POST".into()),
            path: header(":path").unwrap_or_else(|| "/".into()),
            authority: header(":authority").unwrap_or_default(),
            extra,
        }
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = vec![
            (":method", self.method.as_str()),
            (":path", self.path.as_str()),
            (":authority", self.authority.as_str()),
        ];
        h.extend(self.extra.iter().map(|(n, v)| (*n, v.as_str())));
        h
    }
}

/// The callout(s) a stream waits for.
#[derive(Default)]
pub(super) enum Waiting {
    #[default]
    Nothing,
    /// The router's answer; `route` is the strategy's decision, kept for a fallback.
    Router {
        token: u32,
        route: Route,
    },
    FanOut(FanOutWait),
}

pub(super) struct FanOutWait {
    model: usize,
    /// Callouts still out: token → target index.
    tokens: Vec<(u32, usize)>,
    results: Vec<Option<TargetResult>>,
}

/// A retry of a failed upstream answer.
pub(super) struct Retry {
    model: usize,
    failed: usize,
    state: RetryState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RetryState {
    /// Watching the upstream's answer.
    Armed,
    /// The failed answer is held back while the retry runs.
    Calling { token: u32, next: usize },
    /// Nothing more to do: the response passes.
    Done,
}

impl Http {
    /// Models whose requests this stream may resend need the body kept.
    fn resends(&self, model: usize) -> bool {
        !self.shadows.is_empty()
            || self
                .plugin
                .cfg
                .models
                .get(model)
                .is_some_and(|m| m.router.is_some() || m.fan_out.is_some() || m.retry)
    }

    /// Draws which shadows mirror this request (if it is routed upstream).
    pub(super) fn pick_shadows(&mut self, outcome: &Outcome, body: Body<'_>) {
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        let Outcome::Route(route) = outcome else {
            return;
        };
        if cfg.shadows.is_empty() {
            return;
        }
        let now = now_secs();
        let mut rng = self.vm.rng.borrow_mut();
        self.shadows = (0..cfg.shadows.len())
            .filter(|&i| shadow_applies(cfg, i, route.model, &HostRequest, body, now, &mut rng))
            .collect();
    }

    /// Applies a routing decision: asks the model's router, fans out, or routes upstream.
    /// `raw` is the whole request body when the filter holds it (empty for a request without
    /// one), `None` when it does not (over `body.max_bytes`, or still streaming).
    pub(super) fn route_request(&mut self, route: Route, raw: Option<&[u8]>) -> Action {
        let plugin = Rc::clone(&self.plugin);
        let Some(model) = plugin.cfg.models.get(route.model) else {
            return Action::Continue;
        };
        if let Some(raw) = raw.filter(|_| self.resends(route.model)) {
            self.held = Some(Held::capture(raw, self.format));
        }
        // A rule or a version in the path pinned the target, or a cost / latency budget chose
        // it. (Configurations where the policy could exclude targets are refused at start.)
        let pinned = matches!(
            route.reason,
            Reason::Rule(_) | Reason::PathVersion | Reason::Budget | Reason::Escalated
        );
        let decides = (model.router.is_some() || model.fan_out.is_some())
            && !pinned
            // Inference calls carry a body; a GET (readiness, metadata) is routed as usual.
            && matches!(
                HostRequest.header(":method").as_deref(),
                Some("POST" | "PUT" | "PATCH")
            );
        if decides {
            if model.router.is_some() {
                if self.ask_router(route) {
                    return Action::Pause;
                }
            } else if model.fan_out.is_some() && self.held.as_ref().is_some_and(|h| !h.streamed) {
                self.start_fan_out(route.model);
                return Action::Pause;
            }
        }
        self.route_upstream(route);
        Action::Continue
    }

    /// Sets the routing headers, queues the shadow copies and arms the retry.
    fn route_upstream(&mut self, route: Route) {
        self.route(route);
        self.mirror(route.model);
        let plugin = Rc::clone(&self.plugin);
        let retries = plugin.cfg.models.get(route.model).is_some_and(|m| m.retry);
        if retries && self.held.as_ref().is_some_and(|h| !h.streamed) {
            self.retry = Some(Retry {
                model: route.model,
                failed: route.target,
                state: RetryState::Armed,
            });
        }
    }

    fn resume(&self, stream: u32) {
        if let Err(status) = abi::continue_stream(stream) {
            log::error!(
                "inference-router[{}]: cannot resume the {} stream: host status {status}",
                self.context_id,
                if stream == abi::STREAM_REQUEST {
                    "request"
                } else {
                    "response"
                }
            );
        }
    }

    /// Starts the router callout; `false` (counted as a router failure) when it cannot start.
    fn ask_router(&mut self, route: Route) -> bool {
        let plugin = Rc::clone(&self.plugin);
        let Some(router) = plugin
            .cfg
            .models
            .get(route.model)
            .and_then(|m| m.router.as_ref())
        else {
            return false;
        };
        let Some(held) = &self.held else {
            Metrics::bump(plugin.metrics.router_failures);
            log::warn!(
                "inference-router[{}]: the router was not asked: the request body is not held (over body.max_bytes); using the strategy's choice",
                self.context_id
            );
            return false;
        };
        let mut headers = vec![
            (":method", "POST"),
            (":path", router.path.as_str()),
            (":authority", router.authority.as_str()),
        ];
        if let Some((_, ct)) = held.extra.iter().find(|(n, _)| *n == "content-type") {
            headers.push(("content-type", ct.as_str()));
        } else {
            headers.push(("content-type", "application/json"));
        }
        match abi::http_call(
            &router.cluster,
            &headers,
            Some(&held.body),
            router.timeout_ms,
        ) {
            Ok(token) => {
                self.waiting = Waiting::Router { token, route };
                true
            }
            Err(status) => {
                Metrics::bump(plugin.metrics.router_failures);
                log::warn!(
                    "inference-router[{}]: router callout to cluster {:?} not started (host status {status}); using the strategy's choice",
                    self.context_id,
                    router.cluster
                );
                false
            }
        }
    }

    /// Sends the held request to every target of `model`; the reply goes out when all answered.
    fn start_fan_out(&mut self, model: usize) {
        let plugin = Rc::clone(&self.plugin);
        let Some(m) = plugin.cfg.models.get(model) else {
            return;
        };
        let timeout = m
            .fan_out
            .as_ref()
            .map_or(DEFAULT_FAN_OUT_TIMEOUT_MS, |f| f.timeout_ms);
        let mut wait = FanOutWait {
            model,
            tokens: Vec::with_capacity(m.targets.len()),
            results: vec![None; m.targets.len()],
        };
        plugin.metrics.decision(Reason::FanOut);
        if let Some(held) = &self.held {
            let headers = held.headers();
            for (ti, target) in m.targets.iter().enumerate() {
                match abi::http_call(&target.cluster, &headers, Some(&held.body), timeout) {
                    Ok(token) => {
                        plugin.metrics.request(model, ti);
                        wait.tokens.push((token, ti));
                    }
                    Err(status) => {
                        log::warn!(
                            "inference-router[{}]: fan-out callout to cluster {:?} not started: host status {status}",
                            self.context_id,
                            target.cluster
                        );
                        if let Some(slot) = wait.results.get_mut(ti) {
                            *slot = Some(TargetResult {
                                target: target.name.clone(),
                                status: None,
                                content_type: None,
                                body: Vec::new(),
                            });
                        }
                    }
                }
            }
        }
        if wait.tokens.is_empty() {
            self.finish_fan_out(wait);
        } else {
            self.waiting = Waiting::FanOut(wait);
        }
    }

    fn finish_fan_out(&mut self, wait: FanOutWait) {
        let plugin = Rc::clone(&self.plugin);
        let Some(m) = plugin.cfg.models.get(wait.model) else {
            return;
        };
        let results: Vec<TargetResult> = wait
            .results
            .into_iter()
            .zip(&m.targets)
            .map(|(r, t)| {
                r.unwrap_or_else(|| TargetResult {
                    target: t.name.clone(),
                    status: None,
                    content_type: None,
                    body: Vec::new(),
                })
            })
            .collect();
        let reply = fan_out_reply(&m.name, &results);
        if reply.partial {
            Metrics::bump(plugin.metrics.fan_out_partial);
        }
        let meta = self.local_meta(wait.model, None, Reason::FanOut, ALL_CHILDREN);
        self.send_reply(
            reply.status,
            Some("application/json"),
            &reply.body,
            meta,
            &[],
        );
    }

    /// Metadata of a reply the filter sends for a model (fan-out, router echo, retry).
    fn local_meta(
        &mut self,
        model: usize,
        target: Option<usize>,
        reason: Reason,
        decision_target: &str,
    ) -> ResponseMeta {
        let plugin = Rc::clone(&self.plugin);
        let m = plugin.cfg.models.get(model);
        let target_name = target.and_then(|t| m.and_then(|m| m.targets.get(t)));
        let model_name = m.map(|m| m.name.clone()).unwrap_or_default();
        ResponseMeta {
            decision: self.decision_id(
                &model_name,
                target_name.map_or(decision_target, |t| t.name.as_str()),
            ),
            model: Some(model_name),
            target: target_name.map(|t| t.name.clone()),
            reason: reason.header_value(&plugin.cfg),
            detector: None,
        }
    }

    fn send_reply(
        &mut self,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
        meta: ResponseMeta,
        extra: &[(&str, &str)],
    ) {
        let cfg_meta = self.plugin.cfg.response_metadata;
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(8);
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        if cfg_meta {
            push_meta(&mut headers, &meta, self.body_note);
        } else if self.plugin.cfg.feedback.is_some() {
            headers.push(("x-inference-decision", &meta.decision));
        }
        headers.extend_from_slice(extra);
        super::forget_client_route_headers(&self.plugin.cfg);
        if let Err(s) = abi::send_local_response(u32::from(status), &headers, Some(body)) {
            log::error!(
                "inference-router[{}]: cannot send reply: host status {s}",
                self.context_id
            );
        }
        self.meta = (cfg_meta || self.plugin.cfg.feedback.is_some()).then_some(meta);
    }

    /// Queues this request's shadow copies for the root context.
    fn mirror(&mut self, model: usize) {
        if self.shadows.is_empty() {
            return;
        }
        let plugin = Rc::clone(&self.plugin);
        let Some(held) = &self.held else {
            for _ in self.shadows.drain(..) {
                Metrics::bump(plugin.metrics.shadow_dropped);
            }
            return;
        };
        let model_name = plugin
            .cfg
            .models
            .get(model)
            .map(|m| m.name.as_str())
            .unwrap_or_default();
        for index in std::mem::take(&mut self.shadows) {
            let Some(shadow) = plugin.cfg.shadows.get(index) else {
                continue;
            };
            let Some(target) = plugin
                .cfg
                .models
                .get(shadow.model)
                .and_then(|m| m.targets.get(shadow.target))
            else {
                continue;
            };
            let body = match (&shadow.rewrite_model, self.format) {
                (Some(name), Some(format)) => match rewrite_model(format, &held.body, name) {
                    Ok(Some(b)) => b,
                    Ok(None) => held.body.clone(),
                    Err(e) => {
                        log::warn!(
                            "inference-router[{}]: shadow copy sent without the model rewrite: {e}",
                            self.context_id
                        );
                        held.body.clone()
                    }
                },
                _ => held.body.clone(),
            };
            let mut headers: Vec<(String, String)> = held
                .headers()
                .into_iter()
                .filter(|(n, _)| *n != "content-length")
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            headers.push((SHADOW_HEADER.to_string(), model_name.to_string()));
            plugin.enqueue_mirror(MirrorJob {
                kind: MirrorKind::Shadow { index },
                cluster: target.cluster.clone(),
                headers,
                body,
                timeout_ms: shadow.timeout_ms,
            });
        }
    }

    /// A callout of this stream answered (or failed: no `:status`).
    pub(super) fn on_callout_answer(&mut self, token: u32, body_size: usize) {
        let (status, body) = abi::callout_answer(body_size);
        if let Some(retry) = &self.retry {
            if let RetryState::Calling { token: t, next } = retry.state {
                if t == token {
                    return self.retry_answered(next, status, body);
                }
            }
        }
        match std::mem::take(&mut self.waiting) {
            Waiting::Router { token: t, route } if t == token => {
                self.router_answered(route, status.as_deref(), &body);
            }
            Waiting::FanOut(mut wait) => {
                let Some(pos) = wait.tokens.iter().position(|(t, _)| *t == token) else {
                    self.waiting = Waiting::FanOut(wait);
                    return;
                };
                let (_, ti) = wait.tokens.swap_remove(pos);
                let name = self
                    .plugin
                    .cfg
                    .models
                    .get(wait.model)
                    .and_then(|m| m.targets.get(ti))
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                let content_type =
                    abi::get_header(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, "content-type")
                        .ok()
                        .flatten();
                if let Some(slot) = wait.results.get_mut(ti) {
                    *slot = Some(TargetResult {
                        target: name,
                        status,
                        content_type,
                        body,
                    });
                }
                if wait.tokens.is_empty() {
                    self.finish_fan_out(wait);
                } else {
                    self.waiting = Waiting::FanOut(wait);
                }
            }
            other => self.waiting = other,
        }
    }

    fn router_answered(&mut self, route: Route, status: Option<&str>, body: &[u8]) {
        let plugin = Rc::clone(&self.plugin);
        let Some(model) = plugin.cfg.models.get(route.model) else {
            return;
        };
        let choice = match classify(status, body) {
            CalloutAnswer::Status(200) => parse_router_answer(body, model.targets.len()),
            CalloutAnswer::Status(s) => Err(format!("the router answered status {s}")),
            CalloutAnswer::Failed(why) => Err(format!("the router gave no answer: {why}")),
        };
        let streamed = self.held.as_ref().is_none_or(|h| h.streamed);
        match choice {
            Ok(RouterChoice::Child(target)) => {
                self.route_upstream(Route::new(route.model, target, Reason::Router));
                self.resume(abi::STREAM_REQUEST);
            }
            Ok(RouterChoice::All) if !streamed => self.start_fan_out(route.model),
            Ok(RouterChoice::All) => {
                log::info!(
                    "inference-router[{}]: the router chose every child for a streamed request, which cannot be fanned out; using the strategy's choice",
                    self.context_id
                );
                self.route_upstream(route);
                self.resume(abi::STREAM_REQUEST);
            }
            Ok(RouterChoice::None) => {
                plugin.metrics.decision(Reason::Router);
                plugin.metrics.local_reply(ReplyKind::Echo);
                let content_type = self
                    .held
                    .as_ref()
                    .and_then(|h| h.extra.iter().find(|(n, _)| *n == "content-type"))
                    .map(|(_, v)| v.clone());
                let body = self
                    .held
                    .as_ref()
                    .map(|h| h.body.clone())
                    .unwrap_or_default();
                let meta = self.local_meta(route.model, None, Reason::Router, NO_CHILD);
                self.send_reply(200, content_type.as_deref(), &body, meta, &[]);
            }
            Err(why) => {
                Metrics::bump(plugin.metrics.router_failures);
                log::warn!(
                    "inference-router[{}]: router of model {:?}: {why}; using the strategy's choice",
                    self.context_id,
                    model.name
                );
                self.route_upstream(route);
                self.resume(abi::STREAM_REQUEST);
            }
        }
    }

    /// Response headers: a failure of a retried model is held back while the retry runs.
    pub(super) fn retry_on_response_headers(&mut self) -> Option<Action> {
        let plugin = Rc::clone(&self.plugin);
        let retry = self.retry.as_mut()?;
        // Only the filter says which attempts were made.
        let _ = abi::remove_header(abi::MAP_RESPONSE_HEADERS, ATTEMPTS_HEADER);
        if retry.state != RetryState::Armed {
            return None;
        }
        retry.state = RetryState::Done;
        let status: u16 = abi::get_header(abi::MAP_RESPONSE_HEADERS, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if !is_failure(status) {
            return None;
        }
        let model = plugin.cfg.models.get(retry.model)?;
        let next = retry_target(&model.fallback, retry.failed)?;
        let target = model.targets.get(next)?;
        let held = self.held.as_ref()?;
        let headers = held.headers();
        match abi::http_call(
            &target.cluster,
            &headers,
            Some(&held.body),
            RETRY_TIMEOUT_MS,
        ) {
            Ok(token) => {
                retry.state = RetryState::Calling { token, next };
                Metrics::bump(plugin.metrics.retry_attempts);
                plugin.metrics.request(retry.model, next);
                plugin.metrics.decision(Reason::Fallback);
                Some(Action::Pause)
            }
            Err(s) => {
                log::warn!(
                    "inference-router[{}]: retry callout to cluster {:?} not started: host status {s}",
                    self.context_id,
                    target.cluster
                );
                Metrics::bump(plugin.metrics.retry_failed);
                None
            }
        }
    }

    /// Response body: held back (buffered by Envoy) while the retry runs.
    pub(super) fn retry_holds_response(&self) -> bool {
        self.retry
            .as_ref()
            .is_some_and(|r| matches!(r.state, RetryState::Calling { .. }))
    }

    fn retry_answered(&mut self, next: usize, status: Option<String>, body: Vec<u8>) {
        let plugin = Rc::clone(&self.plugin);
        let Some(retry) = self.retry.as_mut() else {
            return;
        };
        retry.state = RetryState::Done;
        let (model, failed) = (retry.model, retry.failed);
        let names = plugin.cfg.models.get(model).map(|m| {
            let name = |t: usize| {
                m.targets
                    .get(t)
                    .map(|t| t.name.as_str())
                    .unwrap_or_default()
            };
            format!("{},{}", name(failed), name(next))
        });
        let attempts = names.unwrap_or_default();
        match classify(status.as_deref(), &body) {
            CalloutAnswer::Status(s) => {
                Metrics::bump(if is_failure(s) {
                    plugin.metrics.retry_failed
                } else {
                    plugin.metrics.retry_recovered
                });
                let content_type =
                    abi::get_header(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, "content-type")
                        .ok()
                        .flatten();
                let meta = self.local_meta(model, Some(next), Reason::Fallback, "");
                self.send_reply(
                    s,
                    content_type.as_deref(),
                    &body,
                    meta,
                    &[(ATTEMPTS_HEADER, &attempts)],
                );
            }
            CalloutAnswer::Failed(why) => {
                // No answer at all: the client gets the original failure, held until now.
                Metrics::bump(plugin.metrics.retry_failed);
                log::warn!(
                    "inference-router[{}]: retry on a fallback target failed ({why}); passing the original answer",
                    self.context_id
                );
                let _ = abi::set_header(abi::MAP_RESPONSE_HEADERS, ATTEMPTS_HEADER, &attempts);
                self.resume(abi::STREAM_RESPONSE);
            }
        }
    }
}
