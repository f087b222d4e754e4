//! The one mechanism for every callout: a callout in flight is its token and a typed
//! continuation, the value that says what its answer continues. A stream keeps its router,
//! fan-out and retry calls here; the root context its evaluator, shadow and feedback calls.

use crate::vecmap::VecMap;

use crate::host::{Buffer, Call, Host, Map, Status};

/// Callouts in flight, by token, each with its continuation `K`.
pub struct Pending<K> {
    calls: VecMap<u32, K>,
}

impl<K> Default for Pending<K> {
    fn default() -> Self {
        Pending {
            calls: VecMap::new(),
        }
    }
}

impl<K> Pending<K> {
    /// Dispatches `call`; its answer will continue with `then`.
    pub fn send(&mut self, host: &dyn Host, call: &Call<'_>, then: K) -> Result<(), Status> {
        let token = host.dispatch(call)?;
        self.calls.insert(token, then);
        Ok(())
    }

    /// The continuation of an answered callout; `None` for a token this context did not send.
    pub fn take(&mut self, token: u32) -> Option<K> {
        self.calls.remove(&token)
    }
}

/// A callout's answer as the host delivered it: its `:status` (none after a reset), content
/// type and body.
pub struct Answer {
    pub status: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// Reads the answer being delivered (valid only inside the callout event).
    pub fn read(host: &dyn Host, body_size: usize) -> Answer {
        let header = |name: &str| host.header(Map::CalloutHeaders, name).ok().flatten();
        Answer {
            status: header(":status"),
            content_type: header("content-type"),
            body: host
                .buffer(Buffer::CalloutBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default(),
        }
    }

    pub fn classify(&self) -> super::CalloutAnswer {
        super::classify(self.status.as_deref(), &self.body)
    }
}
