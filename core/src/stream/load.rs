//! A request's slot in its model's load document (`crate::load`): taken when the decision
//! routes it (a target found full is excluded and the decision made again), given back when
//! the stream ends, with what the response showed (latency, time to first byte, the upstream's
//! load report and address).

use std::rc::Rc;

use super::Stream;
use crate::host::{Host, Map};
use crate::load::{self, orca, Ask, Done, ReserveError};
use crate::plugin::{now_ms, Plugin};
use crate::policy::{Body, Outcome, Route};

/// A request's place in the load document.
#[derive(Debug, Default)]
pub(super) struct Ticket {
    model: usize,
    target: usize,
    /// The slot was taken (a failed reservation leaves the request uncounted).
    reserved: bool,
    pub(super) endpoint: Option<String>,
    report: Option<orca::Report>,
    answered_by: Option<String>,
    ttfb_ms: Option<f64>,
}

/// What taking a slot found.
enum Slot {
    Taken,
    Full,
    /// Not a load-tracking model, or shared data failed: routed uncounted.
    Untracked,
}

impl Stream {
    /// The decision, with a slot taken for its target: a target found full is excluded and the
    /// decision made again (each time one more target is out, so this ends).
    pub(super) fn decide_with_room(&mut self, host: &dyn Host, body: Body<'_>) -> Outcome {
        if self.ticket.is_some() {
            let now = self.request_ms(host);
            self.give_back(host, None, now);
        }
        let outcome = self.run(host, body);
        let outcome = self.make_room(host, body, outcome);
        if let (Outcome::Reply(r), Some(ids)) = (&outcome, &self.plugin.metrics.load) {
            if r.retry_after.is_some() {
                host.bump(ids.over_capacity);
            }
        }
        outcome
    }

    /// Takes a slot for a routed decision's target; one found full is excluded and the
    /// decision made again.
    pub(super) fn make_room(
        &mut self,
        host: &dyn Host,
        body: Body<'_>,
        mut outcome: Outcome,
    ) -> Outcome {
        let plugin = Rc::clone(&self.plugin);
        for _ in 0..plugin
            .cfg
            .models
            .iter()
            .map(|m| m.targets.len())
            .max()
            .unwrap_or(0)
        {
            let Outcome::Route(route) = outcome else {
                break;
            };
            match self.take_slot(host, route, body) {
                Slot::Taken | Slot::Untracked => break,
                Slot::Full => {
                    if let Some(ids) = &plugin.metrics.load {
                        host.bump(ids.full_skips);
                    }
                    self.full.push((route.model, route.target));
                    outcome = self.run(host, body);
                }
            }
        }
        outcome
    }

    fn take_slot(&mut self, host: &dyn Host, route: Route, body: Body<'_>) -> Slot {
        let plugin = Rc::clone(&self.plugin);
        let (Some(model), Some(Some(key))) = (
            plugin.cfg.models.get(route.model),
            plugin.load_keys.get(route.model),
        ) else {
            return Slot::Untracked;
        };
        let raw = match body {
            Body::Full { raw, .. } | Body::Grpc { raw, .. } => Some(raw),
            _ => None,
        };
        let ask = Ask {
            model,
            target: route.target,
            affinity: model
                .affinity
                .and_then(|n| load::affinity::affinity_key(raw?, n)),
            now_ms: self.request_ms(host),
            stale_ms: plugin.cfg.load.stale_ms,
        };
        let reserved = {
            let Ok(mut rng) = self.vm.rng.try_borrow_mut() else {
                return Slot::Untracked;
            };
            load::reserve(&crate::host::HostStore(host), key, &ask, &mut rng)
        };
        let mut ticket = Ticket {
            model: route.model,
            target: route.target,
            ..Ticket::default()
        };
        match reserved {
            Ok(r) => {
                ticket.reserved = true;
                ticket.endpoint = r.endpoint;
                self.ticket = Some(ticket);
                Slot::Taken
            }
            Err(ReserveError::Full) => Slot::Full,
            Err(ReserveError::Store(e)) => {
                untracked(host, &plugin, &format!("no slot could be taken ({e})"));
                // Still watched: the response's latency and load report count.
                self.ticket = Some(ticket);
                Slot::Untracked
            }
        }
    }

    /// Sets the endpoint the filter picked (a client's own choice never stands) and asks the
    /// upstream for a load report.
    pub(super) fn apply_slot(&self, host: &dyn Host) {
        let cfg = &self.plugin.cfg;
        let Some(ticket) = &self.ticket else {
            return;
        };
        let header = cfg.load.endpoint_header.as_str();
        let _ = match &ticket.endpoint {
            Some(e) => host.set_header(Map::RequestHeaders, header, e),
            None if self.plugin.picks_endpoints => host.remove_header(Map::RequestHeaders, header),
            None => Ok(()),
        };
        if let Some(form) = cfg.load.orca_format.header_value() {
            let _ = host.set_header(Map::RequestHeaders, orca::FORMAT_HEADER, form);
        }
    }

    /// The response's headers: time to first byte, the load report (removed: it is the
    /// upstream's business, not the client's) and, where the filter picks endpoints, who answered.
    pub(super) fn watch_load(&mut self, host: &dyn Host) {
        let plugin = Rc::clone(&self.plugin);
        let Some(ticket) = self.ticket.as_mut() else {
            return;
        };
        let now = host.now_nanos().unwrap_or(0);
        ticket.ttfb_ms = Some(now.saturating_sub(self.started_ns) as f64 / 1e6);
        if let Some(h) = host.response_header(orca::HEADER) {
            let _ = host.remove_header(Map::ResponseHeaders, orca::HEADER);
            let parsed = orca::parse(&h).ok();
            if let Some(ids) = &plugin.metrics.load {
                host.bump(if parsed.is_some() {
                    ids.reports
                } else {
                    ids.reports_invalid
                });
            }
            ticket.report = parsed;
        }
        let picks = (plugin.cfg.models.get(ticket.model))
            .and_then(|m| m.targets.get(ticket.target))
            .is_some_and(|t| t.picks_endpoint());
        if picks {
            ticket.answered_by = host
                .property(&["upstream", "address"])
                .ok()
                .flatten()
                .and_then(|b| String::from_utf8(b).ok());
        }
    }

    /// When the request started (ms): its timing start, read once (a host call otherwise).
    fn request_ms(&self, host: &dyn Host) -> u64 {
        match self.started_ns {
            0 => now_ms(host),
            started => started / 1_000_000,
        }
    }

    /// Gives the slot back (the stream ended at `now_ms`, or a new decision replaces this one)
    /// and records what the response showed; `latency_ms` only for a response seen to its end.
    pub(super) fn give_back(&mut self, host: &dyn Host, latency_ms: Option<f64>, now_ms: u64) {
        let plugin = Rc::clone(&self.plugin);
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let (Some(model), Some(Some(key))) = (
            plugin.cfg.models.get(ticket.model),
            plugin.load_keys.get(ticket.model),
        ) else {
            return;
        };
        let done = Done {
            target: ticket.target,
            reserved: ticket.reserved,
            endpoint: ticket.endpoint,
            answered_by: ticket.answered_by,
            latency_ms: latency_ms.filter(|_| ticket.ttfb_ms.is_some()),
            ttfb_ms: ticket.ttfb_ms,
            report: ticket.report,
            now_ms,
            stale_ms: plugin.cfg.load.stale_ms,
        };
        if let Err(e) = load::release(&crate::host::HostStore(host), key, model, &done) {
            untracked(
                host,
                &plugin,
                &format!("a slot could not be given back ({e})"),
            );
        }
    }
}

fn untracked(host: &dyn Host, plugin: &Plugin, what: &str) {
    if let Some(ids) = &plugin.metrics.load {
        host.bump(ids.untracked);
    }
    crate::host_log!(Warn, "inference-router: load: {what}");
}
