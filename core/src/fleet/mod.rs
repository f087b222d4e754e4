//! Learning as one fleet: every replica (an Envoy, or an Istio sidecar) shares what it learned
//! through etcd's v3 JSON gateway, reached by callouts to an Envoy cluster.
//!
//! - each replica publishes its own contribution (per model and configuration identity: per
//!   target observations, reward sums, posterior increments; and target health) under its own
//!   key, and merges everyone else's into the view routing uses (`sync`); contributions add, so
//!   replicas never contend for a key;
//! - a feedback is accepted once fleet-wide: an etcd transaction creates its spent key, on a
//!   lease that ends after the token expires (`spend`);
//! - a replica not heard from for `retire_after_seconds` is folded into the retired document,
//!   so what it learned stays counted and keys do not pile up (`sync`);
//! - nothing on a request's path waits for etcd, except the first requests after a replica
//!   starts (`warm_start`, at most `timeout_ms`) and feedback, which must be spent.
//!
//! | module | holds |
//! |---|---|
//! | `etcd` | the gateway's requests and answers |
//! | `base64` | the gateway's base64 for keys and values |
//! | `keys` | where things live in etcd and in shared data |
//! | `doc` | the contribution and retired documents (JSON) |
//! | `merge` | local state ⇄ documents: identity, own contribution, fleet part, health |
//! | `local` | the fleet's bookkeeping in shared data: sync rounds, identity, token, leases, feedback in doubt |
//! | `sync` | the root context's rounds: publish, read and merge, retire, leases, auth |
//! | `spend` | a feedback's spend, and the answers that are in doubt |

mod base64;
pub mod doc;
pub mod etcd;
pub mod keys;
pub mod local;
pub mod merge;
pub mod spend;
pub mod sync;

use crate::callout::{classify, Answer, CalloutAnswer};
use crate::config::FleetSettings;
use crate::host::Host;
use crate::substr;

/// What an etcd request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// etcd answered 200.
    Answered,
    /// etcd refused it (4xx): nothing was done.
    Refused(String),
    /// The auth token is missing, expired or wrong: log in again.
    Unauthenticated,
    /// The request never reached etcd (no healthy member, connection refused).
    NotSent,
    /// It may or may not have been applied (timeout, reset, an etcd 5xx).
    Unknown(String),
}

/// What an etcd answer means; its body (when `Answered`) is `answer.body`.
pub fn outcome(answer: &Answer) -> Outcome {
    let text = || {
        crate::json::read::from_slice(&answer.body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str().map(str::to_owned)))
            .unwrap_or_else(|| crate::utf8::lossy(&answer.body).chars().take(200).collect())
    };
    match classify(answer.status.as_deref(), &answer.body) {
        CalloutAnswer::Failed("unreachable") => Outcome::NotSent,
        CalloutAnswer::Failed(why) => Outcome::Unknown(why.to_owned()),
        CalloutAnswer::Status(200) => Outcome::Answered,
        CalloutAnswer::Status(s) => {
            let why = text();
            let auth = substr::contains(&why, "auth token")
                || substr::contains(&why, "user name is empty");
            if s == 401 || auth {
                Outcome::Unauthenticated
            } else if (400..500).contains(&s) {
                Outcome::Refused(why)
            } else {
                Outcome::Unknown(format!("{s} {why}"))
            }
        }
    }
}

/// The headers of a request to etcd's gateway, with the auth token when there is one.
pub fn headers<'a>(
    fleet: &'a FleetSettings,
    path: &'a str,
    token: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", fleet.authority.as_str()),
        ("content-type", "application/json"),
    ];
    if let Some(t) = token {
        h.push(("authorization", t));
    }
    h
}

/// How long a login may take: etcd hashes the password (bcrypt) on every login, which takes a
/// while on a busy member; logins are rare, so they get more time than other requests.
pub fn login_timeout_ms(fleet: &FleetSettings) -> u32 {
    fleet.timeout_ms.max(LOGIN_TIMEOUT_MS)
}

const LOGIN_TIMEOUT_MS: u32 = 3000;

/// After a refused login, no other is tried for this long (each costs etcd a bcrypt hash).
pub const LOGIN_BACKOFF_MS: u64 = 5000;

/// Seconds a refused feedback should wait before it is sent again.
pub fn retry_after_secs(fleet: &FleetSettings) -> u64 {
    u64::from(fleet.sync_ms).div_ceil(1000).max(1)
}

/// The clock in Unix ms.
pub fn now_ms(host: &dyn Host) -> u64 {
    crate::plugin::now_ms(host)
}

#[cfg(test)]
mod tests {
    use super::etcd::AnswerError;
    use super::Outcome;

    /// What `#[derive(Debug)]` wrote, which the logs showed.
    #[test]
    fn debug_is_what_derive_wrote() {
        // Only ever written with `{:?}`, which the dead-code lint does not count as a read.
        #[allow(dead_code)]
        #[derive(Debug)]
        enum Derived {
            Answered,
            Refused(String),
            Unauthenticated,
            NotSent,
            Unknown(String),
            NotEtcd,
            Malformed(&'static str),
        }
        let text = "etcd \"said\" \\ no\n\u{7f}";
        let pairs = [
            (
                format!("{:?}", Outcome::Answered),
                format!("{:?}", Derived::Answered),
            ),
            (
                format!("{:?}", Outcome::Refused(text.into())),
                format!("{:?}", Derived::Refused(text.into())),
            ),
            (
                format!("{:?}", Outcome::Unauthenticated),
                format!("{:?}", Derived::Unauthenticated),
            ),
            (
                format!("{:?}", Outcome::NotSent),
                format!("{:?}", Derived::NotSent),
            ),
            (
                format!("{:?}", Outcome::Unknown("503 x".into())),
                format!("{:?}", Derived::Unknown("503 x".into())),
            ),
            (
                format!("{:?}", AnswerError::NotEtcd),
                format!("{:?}", Derived::NotEtcd),
            ),
            (
                format!("{:?}", AnswerError::Refused(text.into())),
                format!("{:?}", Derived::Refused(text.into())),
            ),
            (
                format!("{:?}", AnswerError::Malformed("kvs.key")),
                format!("{:?}", Derived::Malformed("kvs.key")),
            ),
        ];
        for (ours, derived) in pairs {
            assert_eq!(ours, derived);
        }
    }
}
