//! gRPC calls: the model is named inside the first message, so the filter decides once that
//! message is in (a first message over `body.max_bytes`: once its routing fields are), without
//! waiting for the rest of the call; a streaming call is never waited for to its end.

use std::rc::Rc;

use super::{Role, Stream};
use crate::host::{Action, Buffer, Host};
use crate::inspect::scan::NotScanned;
use crate::payload::grpc::{self, Read, Routing, Rpc};
use crate::policy::{Body, Outcome, Reply};

impl Stream {
    /// The body a gRPC call needs (`None`: not a gRPC call). The model RPCs name their model in
    /// the first message; other RPCs are decided by headers and path, unless a detector must
    /// read every message.
    pub(super) fn grpc_wanted(
        &mut self,
        host: &dyn Host,
        content_type: Option<&str>,
    ) -> Option<Body<'static>> {
        if !content_type.is_some_and(grpc::is_grpc) {
            return None;
        }
        let rpc = grpc::rpc_of(&host.request_header(":path").unwrap_or_default());
        self.grpc = Some(rpc);
        let wanted = rpc.names_model() || self.plugin.cfg.has_detected_rules;
        Some(if wanted { Body::Pending } else { Body::Absent })
    }

    /// A body chunk of a gRPC call that is not the last: decides as soon as the routing fields
    /// are in (`None`: not such a call, or the usual path decides: the whole body is wanted, or
    /// it is over `body.max_bytes`).
    pub(super) fn grpc_early(
        &mut self,
        host: &dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Option<Action> {
        let rpc = self.grpc?;
        if !self.awaiting_body || self.role != Role::Route || end_of_stream {
            return None;
        }
        let streaming = rpc == Rpc::KServeStream;
        let cfg = &self.plugin.cfg;
        // Detectors read every message of a unary call: wait for its end.
        if cfg.has_detected_rules && !streaming {
            return None;
        }
        let limit = usize::try_from(cfg.body.max_bytes).unwrap_or(usize::MAX);
        let over = body_size > limit;
        if rpc.names_model() && self.grpc_incomplete(host, body_size, limit) {
            return Some(Action::Pause);
        }
        let bytes = host
            .buffer(Buffer::RequestBody, 0, body_size.min(limit))
            .ok()
            .flatten()
            .unwrap_or_default();
        if !self.grpc_ready(rpc, &bytes) {
            // Over the limit without the routing fields: the usual too-large path.
            return (!over).then_some(Action::Pause);
        }
        self.awaiting_body = false;
        let outcome = self.grpc_decide(host, rpc, &bytes, false);
        Some(self.apply(host, outcome, Some(&bytes)))
    }

    /// Whether a first message that fits the limit is still arriving, from its 5-byte prefix
    /// alone (the body is not copied on every chunk while it buffers).
    fn grpc_incomplete(&self, host: &dyn Host, body_size: usize, limit: usize) -> bool {
        let head = host
            .buffer(Buffer::RequestBody, 0, 5)
            .ok()
            .flatten()
            .unwrap_or_default();
        match grpc::first_frame_len(&head) {
            None => body_size < 5,
            Some(len) => body_size < len && len <= limit,
        }
    }

    /// Whether the body so far decides the call: the whole first message is in (so a field
    /// written twice reads as the model server reads it: the last value), or, for a first
    /// message larger than `body.max_bytes`, its routing fields are.
    fn grpc_ready(&self, rpc: Rpc, bytes: &[u8]) -> bool {
        if !rpc.names_model() {
            return true;
        }
        match grpc::first_frame_len(bytes) {
            None => false,
            Some(len) if bytes.len() >= len => true,
            Some(len)
                if u64::try_from(len).unwrap_or(u64::MAX) > self.plugin.cfg.body.max_bytes =>
            {
                !matches!(grpc::read_first(rpc, bytes, false), Read::NeedMore)
            }
            Some(_) => false,
        }
    }

    /// Decides a gRPC call from the body read so far (`whole`: all of it).
    pub(super) fn grpc_decide(
        &mut self,
        host: &dyn Host,
        rpc: Rpc,
        bytes: &[u8],
        whole: bool,
    ) -> Outcome {
        let plugin = Rc::clone(&self.plugin);
        let routing = if rpc.names_model() {
            match grpc::read_first(rpc, bytes, whole) {
                Read::Done(r) => r,
                Read::NeedMore => {
                    self.body_note = Some("too-large");
                    return self.decide_and_draw(host, Body::Unread(NotScanned::TooLarge));
                }
                Read::Compressed => {
                    // Routed by headers and path (the filter does not decompress).
                    self.body_note = Some("compressed");
                    return self.decide_and_draw(host, Body::Unread(NotScanned::Compressed));
                }
                Read::Malformed(why) => {
                    host.bump(plugin.metrics.body_parse_failures);
                    return Outcome::Reply(Reply::invalid_body(why));
                }
            }
        } else {
            Routing::default()
        };
        let fields = grpc::fields(&plugin.cfg.pointers, &routing);
        let body = Body::Grpc {
            routing: &routing,
            fields: &fields,
            raw: bytes,
            whole,
        };
        self.decide_and_draw(host, body)
    }
}
