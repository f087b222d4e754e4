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
//! Every callout is a `Pending` entry whose continuation (`Then`) says what its answer continues.

use std::rc::Rc;

use super::reply::LocalReply;
use super::{HostRequest, Stream};
use crate::callout::{
    fan_out_reply, is_failure, is_streamed, parse_router_answer, retry_target, rewrite_model,
    Answer, CalloutAnswer, RouterChoice, TargetResult, ALL_CHILDREN, NO_CHILD, RESENT_HEADERS,
};
use crate::host::{Action, Call, Host, Map};
use crate::plugin::{MirrorJob, MirrorKind};
use crate::policy::{shadow_applies, Body, Reason, ReplyKind, Route};

/// A fan-out the router asked for (`-1`) on a model without `fan_out` settings waits this long.
const DEFAULT_FAN_OUT_TIMEOUT_MS: u32 = 5000;
/// How long a retry may take (Envoy's default route timeout).
const RETRY_TIMEOUT_MS: u32 = 15_000;
/// On a retried answer: `<failed target>,<retry target>`.
const ATTEMPTS_HEADER: &str = "x-inference-attempts";
/// Marks shadow copies for the shadow upstream (value: the model's name).
pub(super) const SHADOW_HEADER: &str = "x-inference-shadow";

/// What a stream's callout answer continues.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Then {
    /// The router's answer; `route` is the strategy's decision, kept for a fallback.
    Router { route: Route },
    /// One target's answer to a fan-out.
    FanOut { target: usize },
    /// The retry of a failed answer, on target `next`.
    Retry { next: usize },
    /// A request to the fleet's etcd (a feedback's spend, the first view).
    Fleet(super::fleet::FleetThen),
}

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
    fn capture(host: &dyn Host, body: &[u8], format: Option<crate::payload::Format>) -> Held {
        let header = |n: &str| host.request_header(n);
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

    fn content_type(&self) -> Option<&str> {
        self.extra
            .iter()
            .find(|(n, _)| *n == "content-type")
            .map(|(_, v)| v.as_str())
    }
}

/// A fan-out in progress: every target's answer, as it arrives.
pub(super) struct FanOut {
    model: usize,
    results: Vec<Option<TargetResult>>,
    /// Callouts still out.
    outstanding: usize,
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
    Calling,
    /// Nothing more to do: the response passes.
    Done,
}

fn no_answer(target: &str) -> TargetResult {
    TargetResult {
        target: target.to_string(),
        status: None,
        content_type: None,
        body: Vec::new(),
    }
}

impl Stream {
    /// Models whose requests this stream may resend need the body kept.
    fn resends(&self, model: usize) -> bool {
        // A gRPC call is routed once: its answer ends in trailers a callout cannot relay.
        if self.grpc.is_some() {
            return false;
        }
        !self.shadows.is_empty()
            || self
                .plugin
                .cfg
                .models
                .get(model)
                .is_some_and(|m| m.router.is_some() || m.fan_out.is_some() || m.retry)
    }

    /// Draws which shadows mirror this routed request.
    pub(super) fn pick_shadows(&mut self, host: &dyn Host, route: Route, body: Body<'_>) {
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        if cfg.shadows.is_empty() {
            return;
        }
        let now = host.now_secs();
        let Ok(mut rng) = self.vm.rng.try_borrow_mut() else {
            return;
        };
        let req = HostRequest {
            host,
            headers: &self.headers,
        };
        self.shadows = (0..cfg.shadows.len())
            .filter(|&i| shadow_applies(cfg, i, route.model, &req, body, now, &mut rng))
            .collect();
    }

    /// Applies a routing decision: asks the model's router, fans out, or routes upstream.
    /// `raw` is the whole request body when the filter holds it (empty for a request without
    /// one), `None` when it does not (over `body.max_bytes`, or still streaming).
    pub(super) fn route_request(
        &mut self,
        host: &dyn Host,
        route: Route,
        raw: Option<&[u8]>,
    ) -> Action {
        let plugin = Rc::clone(&self.plugin);
        let Some(model) = plugin.cfg.models.get(route.model) else {
            return Action::Continue;
        };
        if let Some(raw) = raw.filter(|_| self.resends(route.model)) {
            self.held = Some(Held::capture(host, raw, self.format));
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
            && matches!(host.request_header(":method").as_deref(), Some("POST" | "PUT" | "PATCH"));
        if decides {
            if model.router.is_some() {
                if self.ask_router(host, route) {
                    return Action::Pause;
                }
            } else if self.held.as_ref().is_some_and(|h| !h.streamed) {
                self.start_fan_out(host, route.model);
                return Action::Pause;
            }
        }
        self.route_upstream(host, route);
        Action::Continue
    }

    /// Sets the routing headers, queues the shadow copies and arms the retry.
    fn route_upstream(&mut self, host: &dyn Host, route: Route) {
        self.route(host, route);
        self.mirror(host, route.model);
        let retries = self
            .plugin
            .cfg
            .models
            .get(route.model)
            .is_some_and(|m| m.retry);
        if retries {
            // A streamed or unheld request cannot be resent; its answer still loses any
            // upstream's claim of attempts.
            let resendable = self.held.as_ref().is_some_and(|h| !h.streamed);
            self.retry = Some(Retry {
                model: route.model,
                failed: route.target,
                state: if resendable {
                    RetryState::Armed
                } else {
                    RetryState::Done
                },
            });
        }
    }

    fn resume(&self, host: &dyn Host, stream: crate::host::Stream) {
        if let Err(status) = host.continue_stream(stream) {
            crate::host_log!(
                Error,
                "inference-router[{}]: cannot resume the {stream:?} stream: host status {status}",
                self.context_id
            );
        }
    }

    /// Starts the router callout; `false` (counted as a router failure) when it cannot start.
    fn ask_router(&mut self, host: &dyn Host, route: Route) -> bool {
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
            host.bump(plugin.metrics.router_failures);
            crate::host_log!(
                Warn,
                "inference-router[{}]: the router was not asked: the request body is not held (over body.max_bytes); using the strategy's choice",
                self.context_id
            );
            return false;
        };
        let headers = [
            (":method", "POST"),
            (":path", router.path.as_str()),
            (":authority", router.authority.as_str()),
            (
                "content-type",
                held.content_type().unwrap_or("application/json"),
            ),
        ];
        let call = Call {
            cluster: &router.cluster,
            headers: &headers,
            body: &held.body,
            timeout_ms: router.timeout_ms,
        };
        match self.pending.send(host, &call, Then::Router { route }) {
            Ok(()) => true,
            Err(status) => {
                host.bump(plugin.metrics.router_failures);
                crate::host_log!(
                    Warn,
                    "inference-router[{}]: router callout to cluster {} not started (host status {status}); using the strategy's choice",
                    self.context_id,
                    crate::quote::quoted(&router.cluster)
                );
                false
            }
        }
    }

    pub(super) fn router_answered(&mut self, host: &dyn Host, route: Route, answer: &Answer) {
        let plugin = Rc::clone(&self.plugin);
        let Some(model) = plugin.cfg.models.get(route.model) else {
            return;
        };
        let choice = match answer.classify() {
            CalloutAnswer::Status(200) => parse_router_answer(&answer.body, model.targets.len()),
            CalloutAnswer::Status(s) => Err(format!("the router answered status {s}")),
            CalloutAnswer::Failed(why) => Err(format!("the router gave no answer: {why}")),
        };
        let streamed = self.held.as_ref().is_none_or(|h| h.streamed);
        let upstream = match choice {
            Ok(RouterChoice::Child(target)) => Route::new(route.model, target, Reason::Router),
            Ok(RouterChoice::All) if !streamed => return self.start_fan_out(host, route.model),
            Ok(RouterChoice::All) => {
                crate::host_log!(
                    Info,
                    "inference-router[{}]: the router chose every child for a streamed request, which cannot be fanned out; using the strategy's choice",
                    self.context_id
                );
                route
            }
            Ok(RouterChoice::None) => return self.echo_for_router(host, route.model),
            Err(why) => {
                host.bump(plugin.metrics.router_failures);
                crate::host_log!(
                    Warn,
                    "inference-router[{}]: router of model {}: {why}; using the strategy's choice",
                    self.context_id,
                    crate::quote::quoted(&model.name)
                );
                route
            }
        };
        self.route_upstream(host, upstream);
        self.resume(host, crate::host::Stream::Request);
    }

    /// The router chose no child: the request body is the answer.
    fn echo_for_router(&mut self, host: &dyn Host, model: usize) {
        let plugin = Rc::clone(&self.plugin);
        plugin.metrics.decision(host, Reason::Router);
        plugin.metrics.local_reply(host, ReplyKind::Echo);
        let held = self.held.take();
        let meta = self.callout_meta(host, model, None, Reason::Router, NO_CHILD);
        let reply = LocalReply {
            status: 200,
            content_type: held.as_ref().and_then(Held::content_type),
            body: Some(held.as_ref().map_or(&[][..], |h| h.body.as_slice())),
            extra: &[],
        };
        self.send_local(host, &reply, meta);
        self.held = held;
    }

    /// Sends the held request to every target of `model`; the reply goes out when all answered.
    fn start_fan_out(&mut self, host: &dyn Host, model: usize) {
        let plugin = Rc::clone(&self.plugin);
        let Some(m) = plugin.cfg.models.get(model) else {
            return;
        };
        let timeout_ms = m
            .fan_out
            .as_ref()
            .map_or(DEFAULT_FAN_OUT_TIMEOUT_MS, |f| f.timeout_ms);
        let mut results = vec![None; m.targets.len()];
        let mut outstanding = 0usize;
        plugin.metrics.decision(host, Reason::FanOut);
        if let Some(held) = &self.held {
            let headers = held.headers();
            for ((ti, target), slot) in m.targets.iter().enumerate().zip(results.iter_mut()) {
                let call = Call {
                    cluster: &target.cluster,
                    headers: &headers,
                    body: &held.body,
                    timeout_ms,
                };
                match self.pending.send(host, &call, Then::FanOut { target: ti }) {
                    Ok(()) => {
                        outstanding += 1;
                        plugin.metrics.request(host, model, ti);
                    }
                    Err(status) => {
                        crate::host_log!(
                            Warn,
                            "inference-router[{}]: fan-out callout to cluster {} not started: host status {status}",
                            self.context_id,
                            crate::quote::quoted(&target.cluster)
                        );
                        *slot = Some(no_answer(&target.name));
                    }
                }
            }
        }
        self.fan_out = Some(FanOut {
            model,
            results,
            outstanding,
        });
        self.finish_fan_out_if_done(host);
    }

    pub(super) fn fan_out_answered(&mut self, host: &dyn Host, target: usize, answer: Answer) {
        let Some(fan) = self.fan_out.as_mut() else {
            return;
        };
        let name = self
            .plugin
            .cfg
            .models
            .get(fan.model)
            .and_then(|m| m.targets.get(target))
            .map(|t| t.name.clone())
            .unwrap_or_default();
        fan.outstanding = fan.outstanding.saturating_sub(1);
        if let Some(slot) = fan.results.get_mut(target) {
            *slot = Some(TargetResult {
                target: name,
                status: answer.status,
                content_type: answer.content_type,
                body: answer.body,
            });
        }
        self.finish_fan_out_if_done(host);
    }

    /// Once no fan-out callout is out, one JSON reply carries every target's answer.
    fn finish_fan_out_if_done(&mut self, host: &dyn Host) {
        if self.fan_out.as_ref().is_none_or(|f| f.outstanding > 0) {
            return;
        }
        let Some(fan) = self.fan_out.take() else {
            return;
        };
        let plugin = Rc::clone(&self.plugin);
        let Some(m) = plugin.cfg.models.get(fan.model) else {
            return;
        };
        let results: Vec<TargetResult> = fan
            .results
            .into_iter()
            .zip(&m.targets)
            .map(|(r, t)| r.unwrap_or_else(|| no_answer(&t.name)))
            .collect();
        let combined = fan_out_reply(&m.name, &results);
        if combined.partial {
            host.bump(plugin.metrics.fan_out_partial);
        }
        let meta = self.callout_meta(host, fan.model, None, Reason::FanOut, ALL_CHILDREN);
        let reply = LocalReply {
            status: combined.status,
            content_type: Some("application/json"),
            body: Some(&combined.body),
            extra: &[],
        };
        self.send_local(host, &reply, meta);
    }

    /// Queues this request's shadow copies for the root context.
    fn mirror(&mut self, host: &dyn Host, model: usize) {
        if self.shadows.is_empty() {
            return;
        }
        let plugin = Rc::clone(&self.plugin);
        let shadows = std::mem::take(&mut self.shadows);
        let Some(held) = &self.held else {
            for _ in shadows {
                host.bump(plugin.metrics.shadow_dropped);
            }
            return;
        };
        let model_name = plugin
            .cfg
            .models
            .get(model)
            .map(|m| m.name.as_str())
            .unwrap_or_default();
        for index in shadows {
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
            let rewritten = match (&shadow.rewrite_model, self.format) {
                (Some(name), Some(format)) => match rewrite_model(format, &held.body, name) {
                    Ok(b) => b,
                    Err(e) => {
                        crate::host_log!(
                            Warn,
                            "inference-router[{}]: shadow copy sent without the model rewrite: {e}",
                            self.context_id
                        );
                        None
                    }
                },
                _ => None,
            };
            let body = rewritten.unwrap_or_else(|| held.body.clone());
            let mut headers: Vec<(String, String)> = held
                .headers()
                .into_iter()
                .filter(|(n, _)| *n != "content-length")
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            headers.push((SHADOW_HEADER.to_string(), model_name.to_string()));
            let job = MirrorJob {
                kind: MirrorKind::Shadow { index },
                cluster: target.cluster.clone(),
                headers,
                body,
                timeout_ms: shadow.timeout_ms,
            };
            plugin.enqueue_mirror(host, job);
        }
    }

    /// Response headers: a failure of a retried model is held back while the retry runs.
    pub(super) fn retry_on_response_headers(&mut self, host: &dyn Host) -> Option<Action> {
        let plugin = Rc::clone(&self.plugin);
        let retry = self.retry.as_mut()?;
        // Only the filter says which attempts were made.
        let _ = host.remove_header(Map::ResponseHeaders, ATTEMPTS_HEADER);
        if retry.state != RetryState::Armed {
            return None;
        }
        retry.state = RetryState::Done;
        let status: u16 = host
            .response_header(":status")
            .and_then(|s| crate::parse_int::unsigned(&s, 10))
            .unwrap_or(0);
        if !is_failure(status) {
            return None;
        }
        let model = plugin.cfg.models.get(retry.model)?;
        let next = retry_target(&model.fallback, retry.failed)?;
        let target = model.targets.get(next)?;
        let held = self.held.as_ref()?;
        let headers = held.headers();
        let call = Call {
            cluster: &target.cluster,
            headers: &headers,
            body: &held.body,
            timeout_ms: RETRY_TIMEOUT_MS,
        };
        match self.pending.send(host, &call, Then::Retry { next }) {
            Ok(()) => {
                retry.state = RetryState::Calling;
                host.bump(plugin.metrics.retry_attempts);
                plugin.metrics.request(host, retry.model, next);
                plugin.metrics.decision(host, Reason::Fallback);
                Some(Action::Pause)
            }
            Err(s) => {
                crate::host_log!(
                    Warn,
                    "inference-router[{}]: retry callout to cluster {} not started: host status {s}",
                    self.context_id,
                    crate::quote::quoted(&target.cluster)
                );
                host.bump(plugin.metrics.retry_failed);
                None
            }
        }
    }

    /// Response body: held back (buffered by Envoy) while the retry runs.
    pub(super) fn retry_holds_response(&self) -> bool {
        self.retry
            .as_ref()
            .is_some_and(|r| r.state == RetryState::Calling)
    }

    pub(super) fn retry_answered(&mut self, host: &dyn Host, next: usize, answer: Answer) {
        let plugin = Rc::clone(&self.plugin);
        let Some(retry) = self.retry.as_mut() else {
            return;
        };
        retry.state = RetryState::Done;
        let (model, failed) = (retry.model, retry.failed);
        let attempts = plugin
            .cfg
            .models
            .get(model)
            .map(|m| {
                let name = |t: usize| {
                    m.targets
                        .get(t)
                        .map(|t| t.name.as_str())
                        .unwrap_or_default()
                };
                format!("{},{}", name(failed), name(next))
            })
            .unwrap_or_default();
        match answer.classify() {
            CalloutAnswer::Status(s) => {
                host.bump(if is_failure(s) {
                    plugin.metrics.retry_failed
                } else {
                    plugin.metrics.retry_recovered
                });
                let meta = self.callout_meta(host, model, Some(next), Reason::Fallback, "");
                let extra = [(ATTEMPTS_HEADER, attempts.as_str())];
                let reply = LocalReply {
                    status: s,
                    content_type: answer.content_type.as_deref(),
                    body: Some(&answer.body),
                    extra: &extra,
                };
                self.send_local(host, &reply, meta);
            }
            CalloutAnswer::Failed(why) => {
                // No answer at all: the client gets the original failure, held until now.
                host.bump(plugin.metrics.retry_failed);
                crate::host_log!(
                    Warn,
                    "inference-router[{}]: retry on a fallback target failed ({why}); passing the original answer",
                    self.context_id
                );
                let _ = host.set_header(Map::ResponseHeaders, ATTEMPTS_HEADER, &attempts);
                self.resume(host, crate::host::Stream::Response);
            }
        }
    }
}
