//! Requests the filter sends itself — an external router's decision, a fan-out to every target,
//! a retry on a fallback target, shadow copies, rewards forwarded to a router — and what their
//! answers mean. [`pending`] is the one mechanism by which the stream and the root context
//! dispatch callouts and continue when they answer.
//!
//! - [`answer`]: a callout's answer, or why there was none (Envoy's own timeout / connect-failure
//!   replies are failures, not upstream answers).
//! - [`router`]: Seldon's router contract (the child index it answers) and the feedback message
//!   forwarded to it.
//! - [`fanout`]: every target's answer combined into one reply.
//! - [`body`]: the request body as resent (model field rewritten for shadows; streamed or not).

pub mod answer;
pub mod body;
pub mod fanout;
pub mod pending;
pub mod router;

pub use answer::{classify, is_failure, status_class, CalloutAnswer, StatusClass};
pub use body::{is_streamed, rewrite_model};
pub use fanout::{fan_out_reply, FanOutReply, TargetResult};
pub use pending::{Answer, Pending};
pub use router::{
    forward_message, parse_router_answer, target_child, RouterChoice, RouterForward, ALL_CHILDREN,
    NO_CHILD,
};

/// Request headers copied onto a resent request besides `:method`, `:path`, `:authority`: what
/// the upstream needs to read it, and the trace context (W3C, Envoy's request id, B3), so a
/// callout shows in the client's trace.
pub const RESENT_HEADERS: [&str; 12] = [
    "content-type",
    "accept",
    "authorization",
    "traceparent",
    "tracestate",
    "x-request-id",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
];

/// The first fallback target of a model that is not `failed`: where a retry goes.
pub fn retry_target(fallback: &[usize], failed: usize) -> Option<usize> {
    fallback.iter().copied().find(|&t| t != failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_target_skips_the_failed_one() {
        assert_eq!(retry_target(&[1, 2], 1), Some(2));
        assert_eq!(retry_target(&[1, 2], 0), Some(1));
        assert_eq!(retry_target(&[1], 1), None);
        assert_eq!(retry_target(&[], 0), None);
    }
}
