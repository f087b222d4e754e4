//! The filter's own endpoints: feedback (`feedback.path`, POST) and the state endpoint
//! (`state_endpoint.path`, GET, optionally behind a bearer token).

use std::rc::Rc;

use super::headers::HeaderCache;
use super::{HostRequest, Role, Stream};
use crate::config::{BodySource, Config};
use crate::host::{Action, Host, HostStore};
use crate::learning::{self, trust, FeedbackInput, FeedbackReply, Refusal};
use crate::policy::Reply;

/// Whether `Authorization` carries `token` as a bearer token. The scheme is case-insensitive
/// (RFC 9110 §11.1); the tokens are compared as SHA-256 digests in constant time, so neither
/// their content nor their length shows in the time taken.
fn bearer_matches(authorization: Option<&str>, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let given = authorization
        .map(str::trim)
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim_start());
    let Some(given) = given else { return false };
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The path without its query.
fn request_path(host: &dyn Host) -> String {
    let path = host.request_header(":path").unwrap_or_default();
    match path.split_once('?') {
        Some((p, _)) => p.to_string(),
        None => path,
    }
}

/// The feedback headers (header-only feedback, or the decision id beside a body), and who sent
/// it (`feedback.bind`).
pub(super) struct FeedbackHeaders {
    decision: Option<String>,
    reward: Option<String>,
    principal: Option<String>,
}

impl FeedbackHeaders {
    pub(super) fn read(host: &dyn Host, cfg: &Config) -> Self {
        FeedbackHeaders {
            decision: host.request_header("x-inference-decision"),
            reward: host.request_header("x-inference-reward"),
            principal: trust::principal(
                cfg,
                &HostRequest {
                    host,
                    headers: &HeaderCache::default(),
                },
            ),
        }
    }

    pub(super) fn input<'a>(&'a self, body: &'a [u8]) -> FeedbackInput<'a> {
        FeedbackInput {
            body,
            header_decision: self.decision.as_deref(),
            header_reward: self.reward.as_deref(),
            principal: self.principal.as_deref(),
        }
    }
}

impl Stream {
    /// Feedback and the state endpoint are answered by the filter itself. Returns the action
    /// when the request was one of them.
    pub(super) fn own_endpoints(&mut self, host: &dyn Host, end_of_stream: bool) -> Option<Action> {
        let plugin = Rc::clone(&self.plugin);
        let cfg = &plugin.cfg;
        if cfg.feedback.is_none() && cfg.state_endpoint.is_none() {
            return None;
        }
        let path = request_path(host);
        // Read only for the filter's own paths: one host call saved on every routed request.
        let method = || host.request_header(":method").unwrap_or_default();
        if cfg.feedback.as_ref().is_some_and(|fb| path == fb.path) {
            if method() != "POST" {
                let reply = Reply::error(405, "method_not_allowed", "feedback is POSTed", None);
                self.send_error(host, &reply);
                return Some(Action::Pause);
            }
            self.role = Role::Feedback;
            if end_of_stream || cfg.body.source == BodySource::Metadata {
                // No body to read (or none this host lets us read): header-only feedback.
                self.answer_feedback(host, &[]);
            } else {
                self.awaiting_body = true;
            }
            return Some(Action::Pause);
        }
        let ep = cfg.state_endpoint.as_ref().filter(|ep| path == ep.path)?;
        let refusal = if method() != "GET" {
            Some(Reply::error(
                405,
                "method_not_allowed",
                "the state endpoint answers GET",
                None,
            ))
        } else {
            let given = host.request_header("authorization");
            let authorized = ep
                .token
                .as_ref()
                .is_none_or(|token| bearer_matches(given.as_deref(), token));
            (!authorized).then(|| {
                let detail = "send Authorization: Bearer <state_endpoint.token>";
                Reply::error(401, "unauthorized", detail, None)
            })
        };
        match refusal {
            Some(reply) => self.send_error(host, &reply),
            None => {
                let doc =
                    learning::state_document(&HostStore(host), &plugin.name, cfg, self.vm.build);
                self.send_json(host, 200, &crate::json::write::to_vec(&doc));
            }
        }
        Some(Action::Pause)
    }

    /// Verifies, spends and applies (or forwards) one feedback, and answers it. With a fleet,
    /// the id is spent through etcd first (`stream::fleet`).
    pub(super) fn answer_feedback(&mut self, host: &dyn Host, body: &[u8]) {
        let plugin = Rc::clone(&self.plugin);
        if let Some(fleet) = &plugin.cfg.fleet {
            return self.spend_feedback(host, fleet, body);
        }
        let headers = FeedbackHeaders::read(host, &plugin.cfg);
        let input = headers.input(body);
        let now = host.now_secs();
        let store = HostStore(host);
        let reply = learning::process_feedback(&store, &plugin.name, &plugin.cfg, now, &input);
        self.feedback_reply(host, &reply, body, None);
    }

    /// Counts a feedback's answer, and forwards an accepted reward to the model's router.
    pub(super) fn feedback_counted(
        &self,
        host: &dyn Host,
        reply: &FeedbackReply,
        client_body: &[u8],
    ) {
        let plugin = &self.plugin;
        match &reply.result {
            Ok(accepted) => {
                host.bump(plugin.metrics.feedback_accepted);
                if let Some(applied) = &accepted.applied {
                    host.add(plugin.metrics.cas_retries, u64::from(applied.retries));
                    if let Some(alarm) = &applied.alarm {
                        let cfg = &plugin.cfg;
                        let model = cfg.models.iter().position(|m| m.name == applied.model);
                        let model = model.unwrap_or(usize::MAX);
                        plugin.metrics.change_alarm(host, cfg, model, alarm);
                    }
                }
                if let Some(fwd) = &accepted.forward {
                    plugin.forward_reward(host, fwd, client_body);
                }
            }
            Err(refusal) => {
                plugin.metrics.feedback_rejected(host, *refusal);
                if *refusal == Refusal::Unavailable {
                    // The sender is told to retry; say why in the log (no request data in it).
                    crate::host_log!(
                        Warn,
                        "inference-router[{}]: feedback not recorded: {}",
                        self.context_id,
                        reply
                            .body
                            .get("detail")
                            .and_then(crate::json::Value::as_str)
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_matches;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_tokens_must_match() {
        let token = "0123456789abcdef";
        for ok in [
            "Bearer 0123456789abcdef",
            "bearer 0123456789abcdef",
            "BEARER  0123456789abcdef ",
        ] {
            assert!(bearer_matches(Some(ok), token), "{ok}");
        }
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Basic 0123456789abcdef"),
            Some("Bearer 0123456789abcde"),
            Some("Bearer 0123456789abcdef0"),
            Some("0123456789abcdef"),
        ] {
            assert!(!bearer_matches(bad, token), "{bad:?}");
        }
    }
}
