//! One HTTP stream, driven by the host's events: request headers → body chunks → decide →
//! apply → response headers → response body → done → reward. The host shell calls one method
//! per event and returns the `Action` it gets; every effect goes through the `Host` it passes.
//!
//! - `reply`: what the response says about the decision, and the one local-reply sender;
//! - `endpoints`: the filter's own endpoints (feedback, state);
//! - `resend`: what the stream sends by callout (router, fan-out, retry) and the shadow copies;
//! - `observe`: what the response shows, turned into a reward and into target health;
//! - `fleet`: feedback spent through etcd, and the wait for the fleet's first view.

mod early;
mod endpoints;
mod fleet;
mod grpc;
mod headers;
mod load;
mod observe;
mod reply;
mod resend;

use std::rc::Rc;

use crate::callout::{Answer, Pending};
use crate::config::{BodySource, OnInvalid};
use crate::host::{Action, Buffer, Host, Map};
use crate::inspect::scan::NotScanned;
use crate::learning;
use crate::payload::grpc::Rpc;
use crate::payload::{decode_pairs, extract, fields_from_metadata, format_of_content_type};
use crate::payload::{Fields, Format};
use crate::plugin::{Plugin, VmState};
use crate::policy::{decide, Body, Outcome, Reply, RequestView, Route};

use observe::Observed;
use reply::ResponseMeta;
use resend::{FanOut, Held, Retry, Then, SHADOW_HEADER};

/// Largest feedback body read.
const MAX_FEEDBACK_BYTES: usize = 64 * 1024;

/// Request headers and properties as the decision reads them, through the host (headers
/// through the stream's cache).
struct HostRequest<'a> {
    host: &'a dyn Host,
    headers: &'a headers::HeaderCache,
}

impl RequestView for HostRequest<'_> {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(self.host, name)
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.host.property(path).ok().flatten()
    }
}

/// What this stream is, once its headers are seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Route,
    /// A feedback request whose body is being read.
    Feedback,
}

pub struct Stream {
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
    /// What the response is watched for (reward, health), once the request went upstream.
    observed: Observed,
    /// The request as the filter may resend it (router, fan-out, retry, shadows).
    held: Option<Held>,
    /// Shadows drawn for this request, copied once it goes upstream.
    shadows: Vec<usize>,
    /// Callouts this stream waits for, each with what its answer continues.
    pending: Pending<Then>,
    fan_out: Option<FanOut>,
    retry: Option<Retry>,
    /// A feedback body kept while its id is spent through etcd (forwarded to a router).
    feedback_body: Vec<u8>,
    /// A spend whose lease etcd had forgotten was sent again once.
    lease_retried: bool,
    /// This request looked for the fleet's first view (it waits at most once).
    warm_checked: bool,
    /// The request waits for the fleet's first view; its body is held meanwhile.
    warming: bool,
    /// While it waited, the whole body arrived.
    warm_body_done: bool,
    /// Who asked, under `feedback.bind`: the decision id is bound to it.
    principal: Option<String>,
    /// A gRPC call, and its RPC: replies are gRPC statuses, the model is in the first message.
    grpc: Option<Rpc>,
    /// The request headers read so far (`headers`).
    headers: headers::HeaderCache,
    /// This request's slot in its model's load document, once routed.
    ticket: Option<load::Ticket>,
    /// Targets found full when their slot was to be taken: out of this request's candidates.
    full: Vec<(usize, usize)>,
    /// The walk of a JSON body still arriving, while an early decision may come of it.
    early: Option<crate::payload::PrefixScan>,
    /// Body bytes walked so far.
    early_fed: usize,
}

impl Stream {
    pub fn new(context_id: u32, plugin: Rc<Plugin>, vm: VmState) -> Self {
        Stream {
            context_id,
            plugin,
            vm,
            role: Role::Route,
            started_ns: 0,
            awaiting_body: false,
            format: None,
            body_note: None,
            meta: None,
            observed: Observed::default(),
            held: None,
            shadows: Vec::new(),
            pending: Pending::default(),
            fan_out: None,
            retry: None,
            feedback_body: Vec::new(),
            lease_retried: false,
            warm_checked: false,
            warming: false,
            warm_body_done: false,
            principal: None,
            grpc: None,
            headers: headers::HeaderCache::default(),
            ticket: None,
            full: Vec::new(),
            early: None,
            early_fed: 0,
        }
    }

    pub fn on_request_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        if self.plugin.times_requests {
            // Latency is measured only for models that learn from it or track health.
            self.started_ns = host.now_nanos().unwrap_or(0);
        }
        if let Some(action) = self.own_endpoints(host, end_of_stream) {
            return action;
        }
        // Only the filter marks shadow copies: a client's mark would mislead the upstream.
        let _ = host.remove_header(Map::RequestHeaders, SHADOW_HEADER);
        self.headers.forget();
        self.principal = learning::trust::principal(&self.plugin.cfg, &self.request(host));
        self.headers_decision(host, end_of_stream)
    }

    /// The headers phase's decision: final, or a pause for the body.
    fn headers_decision(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        let plugin = Rc::clone(&self.plugin);
        let metadata_fields;
        let body = if plugin.cfg.body.source == BodySource::Metadata {
            metadata_fields = self.metadata_fields(host);
            Body::Fields(&metadata_fields)
        } else if end_of_stream {
            Body::Absent
        } else {
            self.body_wanted(host)
        };
        match self.decide_and_draw(host, body) {
            Outcome::NeedBody => {
                self.awaiting_body = true;
                Action::Pause
            }
            // Just started: wait for the fleet's view, then decide again.
            _ if self.must_warm(host)
                && self.start_warm(host, fleet::Deferred::Headers { end_of_stream }) =>
            {
                Action::Pause
            }
            // A request without a body is whole already: it can be resent.
            outcome => self.apply(host, outcome, end_of_stream.then_some(&[][..])),
        }
    }

    pub fn on_request_body(
        &mut self,
        host: &dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.warming {
            // Held until the decision: letting it go would let the headers go undecided.
            self.warm_body_done |= end_of_stream;
            return Action::Pause;
        }
        if !self.awaiting_body {
            return Action::Continue;
        }
        if self.role == Role::Feedback && body_size > MAX_FEEDBACK_BYTES {
            self.awaiting_body = false;
            let detail = format!("feedback bodies are limited to {MAX_FEEDBACK_BYTES} bytes");
            self.send_error(host, &Reply::error(413, "too_large", &detail, None));
            return Action::Pause;
        }
        if let Some(action) = self.grpc_early(host, body_size, end_of_stream) {
            return action;
        }
        if self.role == Role::Route && body_size as u64 > self.plugin.cfg.body.max_bytes {
            self.awaiting_body = false;
            self.body_note = Some("too-large");
            host.bump(self.plugin.metrics.body_too_large);
            let outcome = self.decide_with_room(host, Body::Unread(NotScanned::TooLarge));
            return self.apply(host, outcome, None);
        }
        if !end_of_stream {
            // Keep buffering until the whole body is here, or what routing reads is.
            return self.decide_early(host, body_size).unwrap_or(Action::Pause);
        }
        let bytes = match host.buffer(Buffer::RequestBody, 0, body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                crate::host_log!(
                    Warn,
                    "inference-router[{}]: cannot read the request body: host status {status}",
                    self.context_id
                );
                Vec::new()
            }
        };
        self.finish_with_body(host, &bytes)
    }

    pub fn on_request_trailers(&mut self, host: &dyn Host) -> Action {
        if self.warming {
            self.warm_body_done = true;
            return Action::Pause;
        }
        if !self.awaiting_body {
            return Action::Continue;
        }
        // Trailers end the request: the body buffered so far is all of it.
        let bytes = self.whole_body(host);
        self.finish_with_body(host, &bytes)
    }

    /// Everything of the request body Envoy buffered.
    fn whole_body(&self, host: &dyn Host) -> Vec<u8> {
        host.buffer(Buffer::RequestBody, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    pub fn on_response_headers(&mut self, host: &dyn Host, end_of_stream: bool) -> Action {
        self.watch_load(host);
        self.observed.response_headers(
            host,
            &self.plugin.cfg,
            self.started_ns,
            end_of_stream,
            self.grpc.is_some(),
        );
        if let Some(meta) = &self.meta {
            meta.tag_response(host, &self.plugin.cfg, self.body_note);
        }
        self.retry_on_response_headers(host)
            .unwrap_or(Action::Continue)
    }

    pub fn on_response_body(&mut self, host: &dyn Host, body_size: usize) -> Action {
        if self.retry_holds_response() {
            // Envoy buffers the failed answer while the retry runs.
            return Action::Pause;
        }
        self.observed
            .response_body(host, body_size, self.started_ns);
        Action::Continue
    }

    /// The upstream's trailers: a gRPC call's status.
    pub fn on_response_trailers(&mut self, host: &dyn Host) -> Action {
        self.observed.response_trailers(host);
        Action::Continue
    }

    /// A callout of this stream answered (or failed: no `:status`).
    pub fn on_callout_answer(&mut self, host: &dyn Host, token: u32, body_size: usize) {
        let Some(then) = self.pending.take(token) else {
            return;
        };
        let answer = Answer::read(host, body_size);
        match then {
            Then::Router { route } => self.router_answered(host, route, &answer),
            Then::FanOut { target } => self.fan_out_answered(host, target, answer),
            Then::Retry { next } => self.retry_answered(host, next, answer),
            Then::Fleet(then) => self.fleet_answered(host, then, &answer),
        }
    }

    /// The stream is done (Envoy's log phase): rewards and health from what the response showed.
    pub fn on_done(&mut self, host: &dyn Host) {
        if self.ticket.is_some() {
            let now = host.now_nanos().unwrap_or(0);
            let took = now.saturating_sub(self.started_ns) as f64 / 1e6;
            self.give_back(host, Some(took), now / 1_000_000);
        }
        let decision = self.meta.as_ref().map(|m| m.decision.as_str());
        self.observed
            .learn(host, &self.plugin, decision, self.context_id);
    }

    /// Whether the headers phase should wait for the body: only for methods that carry one,
    /// of a type the filter reads (or any type when it echoes or resends), within the limit.
    /// With a sensitive-data rule, every body that follows is waited for, whatever the method,
    /// and one that cannot be read says why (`Body::Unread`): its rule refuses it.
    fn body_wanted(&mut self, host: &dyn Host) -> Body<'static> {
        let method = self.header(host, ":method").unwrap_or_default();
        let has_body_method = self.plugin.cfg.has_detected_rules
            || matches!(method.as_str(), "POST" | "PUT" | "PATCH");
        if !has_body_method {
            return Body::Absent;
        }
        let content_type = self.header(host, "content-type");
        if let Some(body) = self.grpc_wanted(host, content_type.as_deref()) {
            return body;
        }
        let plugin = &self.plugin;
        let cfg = &plugin.cfg;
        self.format = content_type.as_deref().and_then(format_of_content_type);
        let compressed = self
            .header(host, "content-encoding")
            .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
        let length = self
            .header(host, "content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let too_large = length.is_some_and(|len| len > cfg.body.max_bytes);
        let any_type = cfg.has_echo || plugin.resends;
        if compressed {
            // Routed by headers and path: the filter does not decompress.
            self.body_note = Some("compressed");
            Body::Unread(NotScanned::Compressed)
        } else if self.format.is_none() && !any_type {
            Body::Unread(NotScanned::ContentType)
        } else if too_large {
            self.body_note = Some("too-large");
            host.bump(plugin.metrics.body_too_large);
            Body::Unread(NotScanned::TooLarge)
        } else {
            self.start_early(length);
            Body::Pending
        }
    }

    fn run(&mut self, host: &dyn Host, body: Body<'_>) -> Outcome {
        let plugin = Rc::clone(&self.plugin);
        let Ok(mut rng) = self.vm.rng.try_borrow_mut() else {
            return Outcome::Reply(internal_error());
        };
        let full = std::mem::take(&mut self.full);
        let mut shared = plugin.shared(host).with_full(&full);
        // The request's start when it was timed, else one host call, and none when nothing
        // looks at the time.
        if self.started_ns > 0 {
            shared = shared.with_now_ms(self.started_ns / 1_000_000);
        }
        let now = match (plugin.needs_clock, self.started_ns) {
            (false, _) => 0,
            (true, 0) => host.now_secs(),
            (true, started) => started / 1_000_000_000,
        };
        let outcome = decide(
            &plugin.cfg,
            &HostRequest {
                host,
                headers: &self.headers,
            },
            body,
            now,
            &mut rng,
            &mut shared,
        );
        drop(shared);
        self.full = full;
        outcome
    }

    /// The body fields that `json_to_metadata` wrote into dynamic metadata (metadata mode):
    /// the whole namespace in one host call.
    fn metadata_fields(&self, host: &dyn Host) -> Fields {
        let cfg = &self.plugin.cfg;
        let path = [
            "metadata",
            "filter_metadata",
            cfg.body.metadata_namespace.as_str(),
        ];
        let Ok(Some(bytes)) = host.property(&path) else {
            return Fields::with_len(cfg.pointers.len());
        };
        match decode_pairs(&bytes) {
            Some(ns) => fields_from_metadata(&cfg.pointers, &cfg.numeric_pointers, &ns),
            None => {
                crate::host_log!(
                    Warn,
                    "inference-router[{}]: metadata namespace {} is not in the expected encoding; body fields ignored",
                    self.context_id,
                    crate::quote::quoted(&cfg.body.metadata_namespace)
                );
                Fields::with_len(cfg.pointers.len())
            }
        }
    }

    /// Decides with the final body bytes (or none).
    fn finish_with_body(&mut self, host: &dyn Host, bytes: &[u8]) -> Action {
        self.awaiting_body = false;
        if self.role == Role::Feedback {
            self.answer_feedback(host, bytes);
            return Action::Pause;
        }
        if self.must_warm(host) && self.start_warm(host, fleet::Deferred::Body(bytes.to_vec())) {
            return Action::Pause;
        }
        if let Some(rpc) = self.grpc {
            let outcome = self.grpc_decide(host, rpc, bytes, true);
            return self.apply(host, outcome, Some(bytes));
        }
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        let parsed = match self.format {
            Some(format) if !bytes.is_empty() => {
                Some((format, extract(&cfg.pointers, format, bytes)))
            }
            _ => None,
        };
        let outcome = match parsed {
            Some((format, Ok(fields))) => {
                let body = Body::Full {
                    fields: &fields,
                    raw: bytes,
                    format,
                };
                self.decide_and_draw(host, body)
            }
            Some((_, Err(e))) => {
                host.bump(plugin.metrics.body_parse_failures);
                match cfg.body.on_invalid {
                    OnInvalid::Reject => Outcome::Reply(Reply::invalid_body(&e.detail)),
                    OnInvalid::Default => {
                        self.body_note = Some("invalid");
                        self.decide_and_draw(host, Body::Unread(NotScanned::Malformed))
                    }
                }
            }
            // A body of a type the filter does not read (held for a resend or an echo).
            None if !bytes.is_empty() => {
                self.decide_and_draw(host, Body::Unread(NotScanned::ContentType))
            }
            None => self.decide_and_draw(host, Body::Absent),
        };
        self.apply(host, outcome, Some(bytes))
    }

    /// Decides, then draws the shadows of a routed request.
    fn decide_and_draw(&mut self, host: &dyn Host, body: Body<'_>) -> Outcome {
        let outcome = self.decide_with_room(host, body);
        if let Outcome::Route(route) = outcome {
            self.pick_shadows(host, route, body);
        }
        outcome
    }

    /// Applies a decision; returns the action for the current callback.
    fn apply(&mut self, host: &dyn Host, outcome: Outcome, raw_body: Option<&[u8]>) -> Action {
        match outcome {
            Outcome::Route(route) => self.route_request(host, route, raw_body),
            Outcome::Reply(reply) => {
                self.reply(host, &reply, raw_body);
                Action::Pause
            }
            Outcome::NeedBody => {
                // Only reachable if the body was already final: the core asked for a body it has.
                crate::host_log!(
                    Error,
                    "inference-router[{}]: decision still needs the body after reading it",
                    self.context_id
                );
                self.reply(host, &internal_error(), None);
                Action::Pause
            }
        }
    }

    /// Sets the routing headers and remembers what the response is watched for.
    fn route(&mut self, host: &dyn Host, route: Route) {
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        let Some(target) = cfg
            .models
            .get(route.model)
            .and_then(|m| m.targets.get(route.target))
        else {
            return;
        };
        self.headers.forget();
        // Setting replaces whatever the client sent: a client cannot pick its own cluster.
        let set = |name: &str, value: &str| host.set_header(Map::RequestHeaders, name, value);
        if let Err(status) = set(&cfg.route_header, &target.cluster)
            .and_then(|()| set(&cfg.target_header, &target.name))
        {
            crate::host_log!(
                Error,
                "inference-router[{}]: cannot set routing headers: host status {status}",
                self.context_id
            );
        }
        self.apply_slot(host);
        // Envoy re-selects the route after a header change today, but upstream Envoy is
        // removing that implicit refresh: ask for it explicitly.
        let _ = host.clear_route_cache();
        plugin.metrics.request(host, route.model, route.target);
        plugin.metrics.decision(host, route.reason);
        if let Some(d) = route.detector {
            plugin.metrics.detector(host, d);
        }
        if let Some(why) = route.bypassed {
            plugin.metrics.unscanned(host, why, true);
        }
        self.observed.watch(&plugin, route);
        if cfg.response_metadata || cfg.feedback.is_some() {
            self.meta = Some(self.routed_meta(host, route));
        }
    }
}

impl Stream {
    /// The request as the decision reads it.
    fn request<'a>(&'a self, host: &'a dyn Host) -> HostRequest<'a> {
        HostRequest {
            host,
            headers: &self.headers,
        }
    }

    /// One request header, through the stream's cache.
    fn header(&self, host: &dyn Host, name: &str) -> Option<String> {
        self.headers.get(host, name)
    }
}

fn internal_error() -> Reply {
    Reply::error(
        500,
        "internal",
        "the routing decision could not be made",
        None,
    )
}
