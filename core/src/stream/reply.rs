//! What the response says about the decision (`x-inference-*`), and the one way the filter
//! answers a request itself.

use std::borrow::Cow;

use super::Stream;
use crate::config::Config;
use crate::feedback::DecisionToken;
use crate::host::{Host, Map};
use crate::policy::{Reason, Reply, ReplyContent, Route};

const MODEL: &str = "x-inference-model";
const TARGET: &str = "x-inference-target";
const REASON: &str = "x-inference-reason";
pub(super) const DECISION: &str = "x-inference-decision";
const DETECTOR: &str = "x-inference-detector";
const BODY: &str = "x-inference-body";

/// What the response will say about the decision. Names are kept as indices into the stream's
/// configuration (which outlives it) and read when the headers are written: no copy of a model,
/// target or detector name per request.
pub(super) struct ResponseMeta {
    model: Option<usize>,
    target: Option<usize>,
    reason: Cow<'static, str>,
    pub decision: String,
    /// The detector whose firing decided (never what it matched).
    detector: Option<usize>,
}

impl ResponseMeta {
    fn new(
        model: Option<usize>,
        target: Option<usize>,
        reason: Cow<'static, str>,
        decision: String,
        detector: Option<usize>,
    ) -> Self {
        ResponseMeta {
            model,
            target,
            reason,
            decision,
            detector,
        }
    }

    fn model_name<'a>(&self, cfg: &'a Config) -> Option<&'a str> {
        let m = cfg.models.get(self.model?)?;
        Some(m.name.as_str())
    }

    fn target_name<'a>(&self, cfg: &'a Config) -> Option<&'a str> {
        let m = cfg.models.get(self.model?)?;
        Some(m.targets.get(self.target?)?.name.as_str())
    }

    fn detector_name<'a>(&self, cfg: &'a Config) -> Option<&'a str> {
        Some(cfg.detectors.get(self.detector?)?.name.as_str())
    }

    /// The headers, in order; `full` false: the decision id alone (feedback needs it even when
    /// the other metadata is off).
    fn headers<'a>(
        &'a self,
        cfg: &'a Config,
        full: bool,
        note: Option<&'static str>,
    ) -> Vec<(&'static str, &'a str)> {
        if !full {
            return vec![(DECISION, self.decision.as_str())];
        }
        let mut h = Vec::with_capacity(6);
        if let Some(model) = self.model_name(cfg) {
            h.push((MODEL, model));
        }
        if let Some(target) = self.target_name(cfg) {
            h.push((TARGET, target));
        }
        h.push((REASON, &*self.reason));
        h.push((DECISION, self.decision.as_str()));
        if let Some(d) = self.detector_name(cfg) {
            h.push((DETECTOR, d));
        }
        if let Some(note) = note {
            h.push((BODY, note));
        }
        h
    }

    /// Tags the upstream's response. Replaces: an upstream cannot forge what the router decided.
    pub(super) fn tag_response(&self, host: &dyn Host, cfg: &Config, note: Option<&'static str>) {
        for (name, value) in self.headers(cfg, cfg.response_metadata, note) {
            let _ = host.set_header(Map::ResponseHeaders, name, value);
        }
        if cfg.response_metadata {
            // The optional ones are ours too: drop an upstream's when we set none.
            if note.is_none() {
                let _ = host.remove_header(Map::ResponseHeaders, BODY);
            }
            if self.detector_name(cfg).is_none() {
                let _ = host.remove_header(Map::ResponseHeaders, DETECTOR);
            }
        }
    }
}

/// A request the filter answers itself never gets routing headers set; drop what the client
/// sent in them, so access logs and later filters do not show a cluster the client chose.
fn forget_client_route_headers(host: &dyn Host, cfg: &Config) {
    let _ = host.remove_header(Map::RequestHeaders, &cfg.route_header);
    let _ = host.remove_header(Map::RequestHeaders, &cfg.target_header);
}

/// A local reply: status, body, and the headers beside the metadata.
pub(super) struct LocalReply<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: Option<&'a [u8]>,
    pub extra: &'a [(&'a str, &'a str)],
}

impl Stream {
    /// A signed token when feedback is on (it names model and target, and expires), else a
    /// unique id.
    pub(super) fn decision_id(
        &self,
        host: &dyn Host,
        model: &str,
        target: &str,
        context: Option<crate::bandit::Context>,
    ) -> String {
        match &self.plugin.cfg.feedback {
            Some(fb) => fb.keys.sign(
                &self.plugin.name,
                &DecisionToken {
                    model: model.to_string(),
                    target: target.to_string(),
                    expires: host.now_secs().saturating_add(fb.ttl_seconds),
                    nonce: self.vm.next_u64(),
                    bound: None,
                    key: String::new(),
                    context,
                },
                self.principal.as_deref(),
            ),
            None => self.vm.next_id(),
        }
    }

    /// Metadata of a request routed upstream.
    pub(super) fn routed_meta(&self, host: &dyn Host, route: Route) -> ResponseMeta {
        let cfg = &self.plugin.cfg;
        let (model, target) = names(cfg, route.model, Some(route.target));
        let decision = self.decision_id(host, model, target.unwrap_or_default(), route.context);
        let reason = route.reason.header_text(cfg);
        ResponseMeta::new(
            Some(route.model),
            Some(route.target),
            reason,
            decision,
            route.detector,
        )
    }

    /// Metadata of a reply the filter sends for a model (fan-out, router echo, retry);
    /// `decision_target` names the decision when no target served (fan-out, router echo).
    /// `None` when neither response metadata nor feedback is on.
    pub(super) fn callout_meta(
        &self,
        host: &dyn Host,
        model: usize,
        target: Option<usize>,
        reason: Reason,
        decision_target: &str,
    ) -> Option<ResponseMeta> {
        let cfg = &self.plugin.cfg;
        if !cfg.response_metadata && cfg.feedback.is_none() {
            return None;
        }
        let (model_name, target_name) = names(cfg, model, target);
        let graded = target_name.unwrap_or(decision_target);
        let decision = self.decision_id(host, model_name, graded, None);
        Some(ResponseMeta::new(
            Some(model),
            target,
            reason.header_text(cfg),
            decision,
            None,
        ))
    }

    /// Answers with a decision's reply (a rule's, or the filter's own error).
    pub(super) fn reply(&mut self, host: &dyn Host, reply: &Reply, raw_body: Option<&[u8]>) {
        let plugin = std::rc::Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
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
            // Counted once, as the error it became (the detector still fired).
            if let Some(d) = reply.detector {
                plugin.metrics.detector(host, d);
            }
            return self.reply(host, &error, None);
        }
        plugin.metrics.local_reply(host, reply.kind);
        if let Some(d) = reply.detector {
            plugin.metrics.detector(host, d);
        }
        if let Some(why) = reply.unscanned {
            let bypassed = cfg.scan.unscanned == crate::config::Unscanned::Bypass;
            plugin.metrics.unscanned(host, why, bypassed);
        }
        if let Some(rule) = reply.rule {
            plugin.metrics.decision(host, Reason::Rule(rule));
        }
        let echo_type;
        let (content_type, body) = match &reply.content {
            ReplyContent::Json(bytes) => (Some("application/json"), Some(bytes.as_slice())),
            ReplyContent::Empty => (None, None),
            ReplyContent::Echo => {
                echo_type = host.request_header("content-type");
                (echo_type.as_deref(), raw_body)
            }
        };
        // Replies carry no decision id of their own unless the metadata is on.
        let meta = cfg.response_metadata.then(|| {
            let reason = Cow::Owned(reply.reason_header(cfg));
            ResponseMeta::new(reply.model, None, reason, self.vm.next_id(), reply.detector)
        });
        let retry_after = reply.retry_after.map(|s| s.to_string());
        let extra = retry_after.as_deref().map(|s| ("retry-after", s));
        let local = LocalReply {
            status: reply.status,
            content_type,
            body,
            extra: extra.as_slice(),
        };
        self.send_local(host, &local, meta);
    }

    /// An error of the filter's own endpoints: no routing metadata.
    pub(super) fn send_error(&mut self, host: &dyn Host, reply: &Reply) {
        let body = match &reply.content {
            ReplyContent::Json(bytes) => Some(bytes.as_slice()),
            _ => None,
        };
        self.send_json(host, reply.status, body.unwrap_or_default());
    }

    pub(super) fn send_json(&mut self, host: &dyn Host, status: u16, body: &[u8]) {
        let local = LocalReply {
            status,
            content_type: Some("application/json"),
            body: Some(body),
            extra: &[],
        };
        self.send_local(host, &local, None);
    }

    /// The one local-reply sender. `meta` (when given) becomes the reply's `x-inference-*`
    /// headers, in full when response metadata is on, else the decision id alone.
    pub(super) fn send_local(
        &mut self,
        host: &dyn Host,
        reply: &LocalReply<'_>,
        meta: Option<ResponseMeta>,
    ) {
        let cfg = &self.plugin.cfg;
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(8);
        if let Some(ct) = reply.content_type {
            headers.push(("content-type", ct));
        }
        if let Some(m) = &meta {
            headers.extend(m.headers(cfg, cfg.response_metadata, self.body_note));
        }
        headers.extend_from_slice(reply.extra);
        forget_client_route_headers(host, cfg);
        self.headers.forget();
        let grpc_message;
        let (body, grpc) = match self.grpc {
            None => (reply.body, None),
            Some(_) => {
                // A gRPC client reads no body: the status and a message are all it gets.
                headers.retain(|(n, _)| *n != "content-type");
                let (status, message) = grpc_reply(reply);
                grpc_message = message;
                (Some(grpc_message.as_bytes()), Some(status))
            }
        };
        if let Err(s) = host.send_local_response(reply.status, &headers, body, grpc) {
            crate::host_log!(
                Error,
                "inference-router[{}]: cannot send a local reply: host status {s}",
                self.context_id
            );
        }
        self.meta = meta;
    }
}

/// The gRPC status and message of a reply to a gRPC call: from the JSON error's `error` and
/// `detail` where there is one.
fn grpc_reply(reply: &LocalReply<'_>) -> (u32, String) {
    let json = reply
        .body
        .filter(|_| reply.content_type == Some("application/json"))
        .and_then(|b| crate::json::read::from_slice(b).ok());
    let field = |k: &str| {
        json.as_ref()
            .and_then(|j| j.get(k)?.as_str().map(str::to_string))
    };
    let error = field("error").unwrap_or_default();
    let status = crate::payload::grpc::status_for(reply.status, &error);
    let message = match (field("detail"), status) {
        (_, crate::payload::grpc::code::UNIMPLEMENTED) if (200..300).contains(&reply.status) => {
            "a rule answered this call with an HTTP reply, which a gRPC client cannot read"
                .to_string()
        }
        (Some(detail), _) => format!("{error}: {detail}"),
        (None, _) => format!("the router answered HTTP {}", reply.status),
    };
    (status, message)
}

/// The names of a model and (optionally) one of its targets; empty when out of range.
fn names(cfg: &Config, model: usize, target: Option<usize>) -> (&str, Option<&str>) {
    let m = cfg.models.get(model);
    let t = target.and_then(|t| m.and_then(|m| m.targets.get(t)));
    (
        m.map_or("", |m| m.name.as_str()),
        t.map(|t| t.name.as_str()),
    )
}
