//! Deciding before the whole body has arrived: a JSON body is walked chunk by chunk
//! (`payload::PrefixScan`) and, once every field routing reads has been seen, the request is
//! routed and the rest of the body streams to the upstream instead of being held.
//!
//! Small bodies gain nothing from it and keep the whole-body checks (malformed JSON, a routed
//! key given twice): only bodies whose `content-length` is over [`EARLY_MIN_BYTES`] are decided
//! early. A body without one (chunked) is read whole, or found too large, as before.
//!
//! Only a routing decision is taken early. Whatever needs the body itself (detectors, chat
//! summaries, input specs, echo, resends, prefix affinity) makes the decision ask for the whole
//! body, and a refusal waits for it too, so a client is never answered mid-upload. Policy
//! (tenants, rules that refuse, restrict or answer) turns early decisions off: the rest of the
//! body is never read, so a routed key repeated there could slip past it.

use std::rc::Rc;

use super::Stream;
use crate::host::{Action, Buffer, Host};
use crate::payload::{PrefixScan, Progress};
use crate::policy::{Body, Outcome};

/// Bodies up to this size are decided when whole.
pub const EARLY_MIN_BYTES: usize = 64 * 1024;

/// The first read of a body's head: where an OpenAI client's `model` usually is.
const FIRST_WINDOW: usize = 4 * 1024;

impl Stream {
    /// Starts the walk for a body the headers phase waits for, when early decisions may apply:
    /// `length` is the request's `content-length` (within `body.max_bytes`).
    pub(super) fn start_early(&mut self, length: Option<u64>) {
        let plugin = &self.plugin;
        let large = length.is_some_and(|len| len > EARLY_MIN_BYTES as u64);
        if plugin.decides_early && large && self.format == Some(crate::payload::Format::Json) {
            self.early = Some(PrefixScan::new(&plugin.cfg.pointers));
        }
    }

    /// Walks the body's new bytes; routes once the fields are known and the decision needs no
    /// more (`None`: keep buffering).
    pub(super) fn decide_early(&mut self, host: &dyn Host, body_size: usize) -> Option<Action> {
        self.early.as_ref()?;
        let plugin = Rc::clone(&self.plugin);
        match self.walk(host, body_size) {
            Progress::More => return None,
            Progress::GiveUp => {
                self.early = None;
                return None;
            }
            Progress::Complete => {}
        }
        let scan = self.early.take()?;
        if self.must_warm(host) {
            return None;
        }
        let body = Body::Early(scan.fields());
        let outcome = self.run(host, body);
        if !matches!(outcome, Outcome::Route(_)) {
            return None;
        }
        let outcome = self.make_room(host, body, outcome);
        let Outcome::Route(route) = outcome else {
            return None;
        };
        self.pick_shadows(host, route, body);
        self.awaiting_body = false;
        host.bump(plugin.metrics.body_decided_early);
        Some(self.apply(host, outcome, None))
    }

    /// Feeds the walk the bytes buffered since the last call: a first window, then the rest if
    /// the fields were not in it (a body that arrived whole is not copied whole for its head).
    fn walk(&mut self, host: &dyn Host, body_size: usize) -> Progress {
        let plugin = Rc::clone(&self.plugin);
        let mut progress = Progress::More;
        let mut window = FIRST_WINDOW;
        while progress == Progress::More && self.early_fed < body_size {
            let Some(scan) = self.early.as_mut() else {
                return Progress::GiveUp;
            };
            let from = self.early_fed;
            let want = (body_size - from).min(window);
            progress = match host.buffer(Buffer::RequestBody, from, want) {
                Ok(Some(bytes)) if bytes.len() == want => scan.feed(&plugin.cfg.pointers, &bytes),
                // Bytes the walk cannot see would make it lose its place.
                _ => Progress::GiveUp,
            };
            self.early_fed = from + want;
            window = usize::MAX;
        }
        progress
    }
}
