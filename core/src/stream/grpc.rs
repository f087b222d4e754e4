//! gRPC calls: the model is named inside the first message, so the filter reads the body only as
//! far as the routing fields (`payload::grpc`) and decides on the first chunk that holds them;
//! a streaming call is never waited for to its end.

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
        let wait_whole = cfg.has_detected_rules && !streaming;
        if wait_whole || body_size as u64 > cfg.body.max_bytes {
            return None;
        }
        let bytes = host
            .buffer(Buffer::RequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let ready =
            !rpc.names_model() || !matches!(grpc::read_first(rpc, &bytes, false), Read::NeedMore);
        if !ready {
            return Some(Action::Pause);
        }
        self.awaiting_body = false;
        let outcome = self.grpc_decide(host, rpc, &bytes, false);
        Some(self.apply(host, outcome, Some(&bytes)))
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
