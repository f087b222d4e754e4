//! What a callout's answer means.
//!
//! Envoy answers a callout itself when the upstream cannot: `504 upstream request timeout` when
//! the callout's timeout passes, `503 upstream connect error or disconnect/reset before headers…`
//! or `503 no healthy upstream` when no connection could be made, and no `:status` at all when
//! the stream was reset. Those are failures to reach the target, reported as such, not answers
//! from it.

/// A callout's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutAnswer {
    /// The target answered with this status.
    Status(u16),
    /// The target could not be reached in time; why, in a few words.
    Failed(&'static str),
}

/// Classifies a callout answer from its `:status` (as the host read it) and body.
pub fn classify(status: Option<&str>, body: &[u8]) -> CalloutAnswer {
    let Some(status) = status.and_then(|s| crate::parse_int::unsigned::<u16>(s.trim(), 10)) else {
        return CalloutAnswer::Failed("no answer (connection reset or failure)");
    };
    let text = body.trim_ascii();
    match status {
        504 if text == b"upstream request timeout" => CalloutAnswer::Failed("timeout"),
        503 if text.starts_with(b"upstream connect error or disconnect/reset before headers")
            || text == b"no healthy upstream" =>
        {
            CalloutAnswer::Failed("unreachable")
        }
        s => CalloutAnswer::Status(s),
    }
}

/// 5xx and 429: the answers a retry or a fan-out counts as failures. Defined with the implicit
/// reward (which callouts may depend on, not the other way round), so health, rewards and
/// callouts share one predicate.
pub use crate::reward::is_failure;

/// Status classes of shadow metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    S2xx,
    S3xx,
    S4xx,
    S5xx,
    Failed,
}

impl StatusClass {
    pub const ALL: [StatusClass; 5] = [
        StatusClass::S2xx,
        StatusClass::S3xx,
        StatusClass::S4xx,
        StatusClass::S5xx,
        StatusClass::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::S2xx => "2xx",
            StatusClass::S3xx => "3xx",
            StatusClass::S4xx => "4xx",
            StatusClass::S5xx => "5xx",
            StatusClass::Failed => "failed",
        }
    }

    pub fn index(self) -> usize {
        StatusClass::ALL
            .iter()
            .position(|c| *c == self)
            .unwrap_or_default()
    }
}

/// The metric class of a callout answer (1xx and other oddities count as failed).
pub fn status_class(answer: &CalloutAnswer) -> StatusClass {
    match answer {
        CalloutAnswer::Status(s) => match s {
            200..=299 => StatusClass::S2xx,
            300..=399 => StatusClass::S3xx,
            400..=499 => StatusClass::S4xx,
            500..=599 => StatusClass::S5xx,
            _ => StatusClass::Failed,
        },
        CalloutAnswer::Failed(_) => StatusClass::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_own_failures_are_not_answers() {
        assert_eq!(
            classify(Some("504"), b"upstream request timeout"),
            CalloutAnswer::Failed("timeout")
        );
        assert_eq!(
            classify(
                Some("503"),
                b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused"
            ),
            CalloutAnswer::Failed("unreachable")
        );
        assert_eq!(
            classify(Some("503"), b"no healthy upstream"),
            CalloutAnswer::Failed("unreachable")
        );
        assert!(matches!(classify(None, b""), CalloutAnswer::Failed(_)));
        assert!(matches!(classify(Some("x"), b""), CalloutAnswer::Failed(_)));
        // An upstream's own 503 or 504 is an answer.
        assert_eq!(
            classify(Some("503"), br#"{"error":"overloaded"}"#),
            CalloutAnswer::Status(503)
        );
        assert_eq!(classify(Some("504"), b""), CalloutAnswer::Status(504));
        assert_eq!(classify(Some("200"), b"{}"), CalloutAnswer::Status(200));
    }

    #[test]
    fn classes() {
        let c = |s| status_class(&CalloutAnswer::Status(s)).as_str();
        assert_eq!(
            [
                c(200),
                c(204),
                c(302),
                c(404),
                c(429),
                c(500),
                c(503),
                c(100)
            ],
            ["2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx", "failed"]
        );
        assert_eq!(
            status_class(&CalloutAnswer::Failed("timeout")),
            StatusClass::Failed
        );
        for (i, c) in StatusClass::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
    }

    #[test]
    fn failures() {
        assert!(is_failure(500) && is_failure(503) && is_failure(429));
        assert!(!is_failure(200) && !is_failure(404) && !is_failure(499));
    }
}
