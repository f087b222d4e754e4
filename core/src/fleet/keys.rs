//! Where a plugin's fleet state lives in etcd, and in this Envoy's shared data.
//!
//! etcd, under `<prefix>/v1/<plugin>/`:
//!
//! | key | value | written |
//! |---|---|---|
//! | `learned/replicas/<replica>` | the replica's contribution (JSON, `fleet::doc`) | by that replica, at most once per `sync_ms` |
//! | `learned/retired` | what retired replicas learned, folded together | when a replica is retired |
//! | `spent/<expires>-<nonce>` | the incarnation that accepted the decision id | once per accepted feedback, on a lease that ends after the token expires |
//!
//! One range read of `learned/` returns everything a sync merges. No request data is in any
//! key or value: model and target names, replica ids and decision nonces only.

use crate::learning::shared_prefix;

/// The plugin name as one key level: bytes outside `[A-Za-z0-9._:~-]` are percent-encoded,
/// so a `/` in a name cannot add a level.
fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'~' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The etcd keys of one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    base: String,
}

impl Keys {
    pub fn new(prefix: &str, plugin: &str) -> Keys {
        Keys {
            base: format!("{prefix}/v1/{}", escape(plugin)),
        }
    }

    /// Everything a sync reads.
    pub fn learned(&self) -> String {
        format!("{}/learned/", self.base)
    }

    pub fn replica(&self, replica: &str) -> String {
        format!("{}/learned/replicas/{replica}", self.base)
    }

    pub fn retired(&self) -> String {
        format!("{}/learned/retired", self.base)
    }

    pub fn spent(&self, expires: u64, nonce: u64) -> String {
        format!("{}/spent/{expires}-{nonce:016x}", self.base)
    }

    /// The replica a key read from `learned/` belongs to; `None` for the retired key (and
    /// anything else).
    pub fn replica_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        let prefix = format!("{}/learned/replicas/", self.base);
        let rest = key.strip_prefix(prefix.as_bytes())?;
        std::str::from_utf8(rest).ok().filter(|r| !r.is_empty())
    }

    pub fn is_retired(&self, key: &[u8]) -> bool {
        key == self.retired().as_bytes()
    }
}

/// Shared-data keys of the fleet's bookkeeping in this Envoy (all VMs share them).
pub fn local(plugin: &str, what: &str) -> String {
    format!("{}/fleet/{what}", shared_prefix(plugin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("/ir", "a/b c");
        assert_eq!(k.learned(), "/ir/v1/a%2Fb%20c/learned/");
        assert_eq!(
            k.replica("gw-1~00ff"),
            "/ir/v1/a%2Fb%20c/learned/replicas/gw-1~00ff"
        );
        assert_eq!(
            k.spent(1700, 255),
            "/ir/v1/a%2Fb%20c/spent/1700-00000000000000ff"
        );
        assert_eq!(k.replica_of(k.replica("x").as_bytes()), Some("x"));
        assert_eq!(k.replica_of(k.retired().as_bytes()), None);
        assert!(k.is_retired(k.retired().as_bytes()));
        assert!(k.retired().starts_with(&k.learned()));
    }
}
