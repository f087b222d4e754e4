//! What a stream does with the fleet (`fleet`): a feedback's decision id is spent through etcd
//! before its reward is applied, and a request that arrives before this replica merged the
//! fleet's first view waits for it (at most `timeout_ms`; `warm_start`).

use std::rc::Rc;

use super::reply::LocalReply;
use super::resend::Then;
use super::Stream;
use crate::callout::Answer;
use crate::config::FleetSettings;
use crate::fleet::spend::{self, Spent, StreamCall};
use crate::fleet::sync::{self, Outgoing};
use crate::fleet::{self, etcd, local, outcome, Outcome};
use crate::host::{Action, Call, Host, HostStore, Stream as Half};
use crate::json::json;
use crate::learning::{self, Checked, FeedbackReply, Refusal};

/// What a stream's fleet callout continues.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum FleetThen {
    /// A spend's request (kept to be sent once more if it never reached etcd).
    Spend(Outgoing<StreamCall>, bool),
    /// The first view, which this request waits for; then the decision it put off.
    Warm(Deferred),
    /// A login to etcd, then this request and what it continues.
    Login(Box<FleetThen>, etcd::Request),
}

/// A decision put off until the fleet's first view is merged.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Deferred {
    /// The headers phase's decision (no body needed, or none to come).
    Headers { end_of_stream: bool },
    /// The body phase's decision, with the whole body.
    Body(Vec<u8>),
}

impl Stream {
    /// Sends a request to etcd from this stream (logging in first when the fleet uses etcd
    /// auth and this Envoy has no token yet); `false` when the host refused to start it.
    fn send_etcd(
        &mut self,
        host: &dyn Host,
        fleet: &FleetSettings,
        request: &etcd::Request,
        then: FleetThen,
    ) -> bool {
        let token = local::token(&self.plugin.name).read(host);
        if token.is_empty() {
            if let Some(login) = sync::login(fleet) {
                if !sync::may_log_in(host, &self.plugin, fleet::now_ms(host)) {
                    return false;
                }
                let then = FleetThen::Login(Box::new(then), request.clone());
                return self.dispatch_etcd(host, fleet, &login, None, then);
            }
        }
        let token = (!token.is_empty()).then_some(token.as_str());
        self.dispatch_etcd(host, fleet, request, token, then)
    }

    fn dispatch_etcd(
        &mut self,
        host: &dyn Host,
        fleet: &FleetSettings,
        request: &etcd::Request,
        token: Option<&str>,
        then: FleetThen,
    ) -> bool {
        let headers = fleet::headers(fleet, request.path, token);
        let timeout_ms = match then {
            FleetThen::Login(..) => fleet::login_timeout_ms(fleet),
            _ => fleet.timeout_ms,
        };
        let call = Call {
            cluster: &fleet.cluster,
            headers: &headers,
            body: &request.body,
            timeout_ms,
        };
        match self.pending.send(host, &call, Then::Fleet(then)) {
            Ok(()) => {
                if let Some(ids) = &self.plugin.metrics.fleet {
                    host.bump(ids.etcd_requests);
                }
                true
            }
            Err(status) => {
                crate::host_log!(
                    Warn,
                    "inference-router[{}]: fleet: request to cluster {} not started: host status {status}",
                    self.context_id,
                    crate::quote::quoted(&fleet.cluster)
                );
                false
            }
        }
    }

    /// A fleet callout of this stream answered.
    pub(super) fn fleet_answered(&mut self, host: &dyn Host, then: FleetThen, answer: &Answer) {
        let plugin = Rc::clone(&self.plugin);
        let Some(fleet) = &plugin.cfg.fleet else {
            return;
        };
        match then {
            FleetThen::Spend(out, false) if outcome(answer) == Outcome::NotSent => {
                // Nothing reached etcd (a member just went away): the next member, once.
                let request = out.request.clone();
                if !self.send_etcd(host, fleet, &request, FleetThen::Spend(out, true)) {
                    self.not_sent(host, fleet, None);
                }
            }
            FleetThen::Spend(out, _) => self.spend_answered(host, out.call, answer),
            FleetThen::Warm(deferred) => self.warm_answered(host, deferred, answer),
            FleetThen::Login(next, request) => {
                let sent = sync::logged_in(
                    host,
                    &plugin,
                    &outcome(answer),
                    &answer.body,
                    fleet::now_ms(host),
                ) && self.send_etcd(host, fleet, &request, (*next).clone());
                if !sent {
                    self.not_sent(host, fleet, Some(*next));
                }
            }
        }
    }

    /// What a request that never reached etcd continues with: a feedback is refused (503), a
    /// request waiting for the first view goes on without it.
    fn not_sent(&mut self, host: &dyn Host, fleet: &FleetSettings, then: Option<FleetThen>) {
        match then {
            Some(FleetThen::Warm(deferred)) => self.warm_resume(host, deferred, None),
            Some(FleetThen::Login(next, _)) => self.not_sent(host, fleet, Some(*next)),
            _ => self.feedback_unavailable(
                host,
                fleet,
                "the fleet's state store cannot be reached from this replica now",
            ),
        }
    }

    // ---- feedback ------------------------------------------------------------------------

    /// Checks a feedback, then spends its decision id fleet-wide (the answer continues it).
    pub(super) fn spend_feedback(&mut self, host: &dyn Host, fleet: &FleetSettings, body: &[u8]) {
        let plugin = Rc::clone(&self.plugin);
        let headers = super::endpoints::FeedbackHeaders::read(host, &plugin.cfg);
        let (cfg, now) = (&plugin.cfg, host.now_secs());
        let input = headers.input(body);
        let checked = learning::admit(&HostStore(host), &plugin.name, cfg, now, &input);
        let checked = match checked {
            Ok(c) => c,
            Err(refused) => return self.feedback_reply(host, &refused.reply(), &[], None),
        };
        self.feedback_body = body.to_vec();
        let first = spend::begin(host, &plugin, fleet, checked, fleet::now_ms(host));
        self.send_spend(host, fleet, first);
    }

    fn send_spend(
        &mut self,
        host: &dyn Host,
        fleet: &FleetSettings,
        out: Option<Outgoing<StreamCall>>,
    ) {
        let sent = match out {
            Some(out) => {
                let request = out.request.clone();
                self.send_etcd(host, fleet, &request, FleetThen::Spend(out, false))
            }
            None => false,
        };
        if !sent {
            self.not_sent(host, fleet, None);
        }
    }

    fn spend_answered(&mut self, host: &dyn Host, call: StreamCall, answer: &Answer) {
        let plugin = Rc::clone(&self.plugin);
        let Some(fleet) = &plugin.cfg.fleet else {
            return;
        };
        let now_ms = fleet::now_ms(host);
        let checked = match call {
            StreamCall::Lease { checked, bucket } => {
                match spend::lease_answer(host, &plugin, bucket, answer, now_ms) {
                    Ok(lease) => {
                        let next = spend::spend(host, &plugin, fleet, checked, lease);
                        return self.send_spend(host, fleet, next);
                    }
                    Err(why) => {
                        let detail =
                            format!("no lease for the decision id could be had ({why}); try again");
                        return self.feedback_unavailable(host, fleet, &detail);
                    }
                }
            }
            StreamCall::Spend { checked } => checked,
        };
        match spend::spent(host, &plugin, &checked, answer, now_ms) {
            Spent::Apply => self.apply_spent(host, fleet, &checked, now_ms),
            Spent::AlreadyApplied => {
                let body = json!({
                    "accepted": { "model": checked.token.model, "target": checked.token.target, "reward": checked.reward },
                    "detail": "recorded by an earlier attempt whose answer was lost",
                });
                self.send_json(host, 200, &crate::json::write::to_vec(&body));
            }
            Spent::Replayed => {
                let reply = learning::refusal(
                    Refusal::Replayed,
                    "this decision's feedback was already accepted",
                );
                self.feedback_reply(host, &reply, &[], None);
            }
            Spent::LeaseGone if !self.lease_retried => {
                self.lease_retried = true;
                let next = spend::begin(host, &plugin, fleet, checked, now_ms);
                self.send_spend(host, fleet, next);
            }
            Spent::LeaseGone => self.feedback_unavailable(
                host,
                fleet,
                "etcd keeps losing the decision id's lease; try again",
            ),
            Spent::Retry { why, .. } => self.feedback_unavailable(host, fleet, &why),
        }
    }

    /// The id is spent by this replica: apply the reward (or release the id if that fails).
    fn apply_spent(
        &mut self,
        host: &dyn Host,
        fleet: &FleetSettings,
        checked: &Checked,
        now_ms: u64,
    ) {
        let plugin = Rc::clone(&self.plugin);
        let reply =
            learning::complete(&HostStore(host), &plugin.name, &plugin.cfg, checked, now_ms);
        if reply.result.is_err() {
            self.release(host, fleet, checked);
        }
        let body = std::mem::take(&mut self.feedback_body);
        let retry = fleet::retry_after_secs(fleet).to_string();
        self.feedback_reply(host, &reply, &body, Some(&retry));
    }

    /// Queues the deletion of a spent id whose reward was not applied, so a retry can count.
    fn release(&self, host: &dyn Host, fleet: &FleetSettings, checked: &Checked) {
        let key = fleet::keys::Keys::new(&fleet.prefix, &self.plugin.name)
            .spent(checked.token.expires, checked.token.nonce);
        let request = etcd::txn(&[], &[etcd::Op::Delete(&key)], &[]);
        let token = local::token(&self.plugin.name).read(host);
        let headers = fleet::headers(
            fleet,
            request.path,
            (!token.is_empty()).then_some(token.as_str()),
        )
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        self.plugin.enqueue_mirror(
            host,
            crate::plugin::MirrorJob {
                kind: crate::plugin::MirrorKind::Unspend,
                cluster: fleet.cluster.clone(),
                headers,
                body: request.body,
                timeout_ms: fleet.timeout_ms,
            },
        );
    }

    /// 503 with `Retry-After`: the feedback was not recorded (or is in doubt, and will be
    /// counted once if it was).
    fn feedback_unavailable(&mut self, host: &dyn Host, fleet: &FleetSettings, detail: &str) {
        let reply = learning::refusal(Refusal::Unavailable, detail);
        let retry = fleet::retry_after_secs(fleet).to_string();
        self.feedback_reply(host, &reply, &[], Some(&retry));
    }

    /// Counts and sends a feedback's answer (forwarding an accepted reward to the router). A
    /// refusal for want of shared state (`unavailable`) says when to try again: `retry_after`
    /// seconds, 1 by default.
    pub(super) fn feedback_reply(
        &mut self,
        host: &dyn Host,
        reply: &FeedbackReply,
        client_body: &[u8],
        retry_after: Option<&str>,
    ) {
        self.feedback_counted(host, reply, client_body);
        let body = crate::json::write::to_vec(&reply.body);
        let mut extra = Vec::with_capacity(1);
        // The clock is read only for the one answer that names the next minute: no host call
        // and no formatting for every accepted feedback.
        let next_minute;
        match reply.result {
            Err(Refusal::Unavailable) => extra.push(("retry-after", retry_after.unwrap_or("1"))),
            Err(Refusal::OverBudget) => {
                next_minute = (60 - host.now_secs() % 60).to_string();
                extra.push(("retry-after", next_minute.as_str()));
            }
            _ => {}
        }
        let local = LocalReply {
            status: reply.status,
            content_type: Some("application/json"),
            body: Some(&body),
            extra: &extra,
        };
        self.send_local(host, &local, None);
    }

    // ---- warm start ----------------------------------------------------------------------

    /// Whether this request must wait for the fleet's first view (this replica just started).
    pub(super) fn must_warm(&self, host: &dyn Host) -> bool {
        let plugin = &self.plugin;
        let Some(fleet) = &plugin.cfg.fleet else {
            return false;
        };
        if !fleet.warm_start || plugin.warm.get() || self.warm_checked {
            return false;
        }
        if sync::warm(host, plugin) {
            plugin.warm.set(true);
            return false;
        }
        true
    }

    /// Reads the fleet's view for this request; `false` (go on without it) when the read
    /// cannot be sent.
    pub(super) fn start_warm(&mut self, host: &dyn Host, deferred: Deferred) -> bool {
        let plugin = Rc::clone(&self.plugin);
        let Some(fleet) = &plugin.cfg.fleet else {
            return false;
        };
        self.warm_checked = true;
        let request = sync::read_request(&plugin, fleet);
        let sent = self.send_etcd(host, fleet, &request, FleetThen::Warm(deferred));
        self.warming = sent;
        if !sent {
            // etcd's cluster cannot be reached from here at all: stop looking on this VM.
            plugin.warm.set(true);
        }
        sent
    }

    fn warm_answered(&mut self, host: &dyn Host, deferred: Deferred, answer: &Answer) {
        let range = match (outcome(answer), etcd::parse_range(&answer.body)) {
            (Outcome::Answered, Ok(range)) => Some(range),
            (other, _) => {
                sync::read_failed(host, &self.plugin, &format!("{other:?}"));
                None
            }
        };
        self.warm_resume(host, deferred, range.as_ref());
    }

    /// Merges the first view (when it came) and makes the decision that waited for it.
    fn warm_resume(&mut self, host: &dyn Host, deferred: Deferred, range: Option<&etcd::Range>) {
        self.warming = false;
        let plugin = Rc::clone(&self.plugin);
        if let (Some(fleet), Some(range)) = (&plugin.cfg.fleet, range) {
            sync::merge_read(host, &plugin, fleet, &range.kvs, fleet::now_ms(host), false);
        }
        let action = match deferred {
            Deferred::Headers { end_of_stream } => {
                let action = self.headers_decision(host, end_of_stream);
                if self.awaiting_body && self.warm_body_done {
                    // The body came while the request waited: it is all here.
                    let bytes = self.whole_body(host);
                    self.finish_with_body(host, &bytes)
                } else {
                    action
                }
            }
            Deferred::Body(bytes) => self.finish_with_body(host, &bytes),
        };
        if action == Action::Continue {
            let _ = host.continue_stream(Half::Request);
        }
    }
}
