//! One HTTP stream: build the request view, let the core decide, apply the decision, and tag the
//! response with what was decided.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::metrics::Metrics;
use super::{Plugin, VmState};
use crate::config::{BodySource, Config, OnInvalid};
use crate::payload::{extract, format_of_content_type, Fields, Format};
use crate::policy::{decide, Body, Outcome, Reply, ReplyContent, RequestView, Route};

/// Request headers read through the host, one call per header asked for.
struct HostRequest;

impl RequestView for HostRequest {
    fn header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }
}

fn now_unix_secs() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// What the response will say about the decision.
struct ResponseMeta {
    model: Option<String>,
    target: Option<String>,
    reason: String,
    decision: String,
}

pub(crate) struct Http {
    context_id: u32,
    plugin: Rc<Plugin>,
    vm: VmState,
    /// The headers phase paused for the body.
    awaiting_body: bool,
    format: Option<Format>,
    /// `x-inference-body`: why the body was not used, when it was not.
    body_note: Option<&'static str>,
    meta: Option<ResponseMeta>,
}

impl Http {
    pub fn new(context_id: u32, plugin: Rc<Plugin>, vm: VmState) -> Self {
        Http {
            context_id,
            plugin,
            vm,
            awaiting_body: false,
            format: None,
            body_note: None,
            meta: None,
        }
    }

    fn cfg(&self) -> &Config {
        &self.plugin.cfg
    }

    fn run(&mut self, body: Body<'_>) -> Outcome {
        let plugin = Rc::clone(&self.plugin);
        let mut rng = self.vm.rng.borrow_mut();
        decide(&plugin.cfg, &HostRequest, body, now_unix_secs(), &mut rng)
    }

    fn next_decision_id(&self) -> String {
        self.vm.ids.borrow_mut().next_id()
    }

    /// Applies a decision; returns the action for the current callback.
    fn apply(&mut self, outcome: Outcome, raw_body: Option<&[u8]>) -> Action {
        match outcome {
            Outcome::Route(route) => {
                self.route(route);
                Action::Continue
            }
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
        let set = |name: &str, value: &str| {
            hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
        };
        if let Err(status) = set(&cfg.route_header, &target.cluster)
            .and_then(|()| set(&cfg.target_header, &target.name))
        {
            log::error!(
                "inference-router[{}]: cannot set routing headers: {status:?}",
                self.context_id
            );
        }
        // Envoy re-selects the route after a header change today, but upstream Envoy is
        // removing that implicit refresh: ask for it explicitly.
        let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        plugin.metrics.request(route.model, route.target);
        plugin.metrics.decision(route.reason);
        if cfg.response_metadata {
            self.meta = Some(ResponseMeta {
                model: Some(model.name.clone()),
                target: Some(target.name.clone()),
                reason: route.reason.header_value(cfg),
                decision: self.next_decision_id(),
            });
        }
    }

    fn reply(&mut self, reply: &Reply, raw_body: Option<&[u8]>) {
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        plugin.metrics.local_reply(reply.kind);
        if let Some(rule) = reply.rule {
            plugin.metrics.decision(crate::policy::Reason::Rule(rule));
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
            decision: self.next_decision_id(),
        });
        if let Some(m) = &meta {
            push_meta(&mut headers, m, self.body_note);
        }
        if let Err(status) = hostcalls::send_http_response(u32::from(reply.status), headers, body) {
            log::error!(
                "inference-router[{}]: cannot send local reply: {status:?}",
                self.context_id
            );
        }
        self.meta = meta;
    }

    /// The body fields from dynamic metadata that `json_to_metadata` wrote (metadata mode).
    fn metadata_fields(&self) -> Fields {
        let cfg = self.cfg();
        let mut fields = Fields::with_len(cfg.pointers.len());
        for (i, pointer) in cfg.pointers.iter().enumerate() {
            let key = pointer.trim_start_matches('/').replace('/', ".");
            let path = vec![
                "metadata",
                "filter_metadata",
                cfg.body.metadata_namespace.as_str(),
                key.as_str(),
            ];
            if let Ok(Some(bytes)) = hostcalls::get_property(path) {
                if let Some(v) = decode_metadata_value(&bytes) {
                    fields.set(i, v);
                }
            }
        }
        fields
    }

    /// Decides with the final body bytes (or none).
    fn finish_with_body(&mut self, bytes: &[u8]) -> Action {
        self.awaiting_body = false;
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        let parsed = match self.format {
            Some(format) if !bytes.is_empty() => Some(extract(&cfg.pointers, format, bytes)),
            _ => None,
        };
        let outcome = match parsed {
            Some(Ok(fields)) => self.run(Body::Fields(&fields)),
            Some(Err(e)) => {
                Metrics::bump(plugin.metrics.body_parse_failures);
                match cfg.body.on_invalid {
                    OnInvalid::Reject => Outcome::Reply(Reply::invalid_body(&e.detail)),
                    OnInvalid::Default => {
                        self.body_note = Some("invalid");
                        self.run(Body::Absent)
                    }
                }
            }
            None => self.run(Body::Absent),
        };
        self.apply(outcome, Some(bytes))
    }
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
    if let Some(note) = note {
        headers.push(("x-inference-body", note));
    }
}

/// Envoy hands a metadata value to wasm as the bytes of a CEL value: a string as its UTF-8
/// bytes, a number as an 8-byte little-endian double, a bool as one byte. `json_to_metadata`
/// should be configured with `type: STRING` for string fields; numbers stay numbers.
fn decode_metadata_value(bytes: &[u8]) -> Option<serde_json::Value> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !s.is_empty() && s.chars().all(|c| !c.is_control()) {
            return Some(serde_json::Value::String(s.to_string()));
        }
    }
    if let Ok(arr) = <[u8; 8]>::try_from(bytes) {
        let f = f64::from_le_bytes(arr);
        return serde_json::Number::from_f64(f).map(serde_json::Value::Number);
    }
    None
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
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
            if !has_body_method || (self.format.is_none() && !cfg.has_echo) {
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
            outcome => self.apply(outcome, None),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.awaiting_body {
            return Action::Continue;
        }
        if body_size as u64 > self.cfg().body.max_bytes {
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
        let bytes = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size) {
            Ok(b) => b.unwrap_or_default(),
            Err(status) => {
                log::warn!(
                    "inference-router[{}]: cannot read the request body: {status:?}",
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
        let bytes = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.finish_with_body(&bytes)
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(meta) = &self.meta {
            let mut headers = Vec::with_capacity(5);
            push_meta(&mut headers, meta, self.body_note);
            for (name, value) in headers {
                // Replace: an upstream cannot forge what the router decided.
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
            }
        }
        Action::Continue
    }
}
