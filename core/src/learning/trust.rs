//! Who may reward what (`feedback.bind`, `evaluators`, `budget_per_minute`).
//!
//! With a binding, each decision id carries a keyed tag of the principal that asked (a tenant,
//! a verified JWT claim or a configured header). Feedback is then accepted from that principal
//! only, or from an evaluator; a decision made for a request without a principal can be rewarded
//! by evaluators only. Each principal but the evaluators has a budget of rewards per minute on
//! this Envoy. Without a binding, whoever holds a decision id may reward it once.

use crate::bandit::{cas_update, Change, Codec, SharedStore, UpdateFailure};
use crate::config::{Bind, Config, FeedbackSettings};
use crate::feedback::DecisionToken;
use crate::policy::{read_value, RequestView};

use super::{shared_prefix, Refusal};

/// The principal of a request under `feedback.bind`; `None` without a binding or when the
/// request has none (no header, no verified token, no configured tenant).
pub fn principal<R: RequestView + ?Sized>(cfg: &Config, req: &R) -> Option<String> {
    let bind = cfg.feedback.as_ref()?.bind.as_ref()?;
    let value = match bind {
        Bind::Value(source) => read_value(req, source),
        Bind::Tenant => {
            let tenants = cfg.tenants.as_ref()?;
            read_value(req, &tenants.source).filter(|name| tenants.by_name(name).is_some())
        }
    };
    value.filter(|v| !v.is_empty())
}

/// What a feedback sender may do with a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// No binding, or an evaluator: no budget applies.
    Free,
    /// The decision's own principal, held to the budget under this tag.
    Budgeted(u64),
}

/// Whether `principal` may reward the decision of `token`; the refusal's detail otherwise.
pub fn authorize(
    fb: &FeedbackSettings,
    plugin: &str,
    token: &DecisionToken,
    principal: Option<&str>,
) -> Result<Grant, (Refusal, &'static str)> {
    if fb.bind.is_none() {
        return Ok(Grant::Free);
    }
    let Some(principal) = principal else {
        return Err((
            Refusal::Unauthorized,
            "feedback must come from the principal the decision was made for (feedback.bind), and this request has none",
        ));
    };
    if fb.evaluators.iter().any(|e| e == principal) {
        return Ok(Grant::Free);
    }
    let Some(bound) = token.bound else {
        return Err((
            Refusal::Unauthorized,
            "the decision was made for a request without a principal: only an evaluator may reward it",
        ));
    };
    match fb.keys.principal_tag(&token.key, plugin, principal) {
        Some(tag) if tag == bound => Ok(Grant::Budgeted(tag)),
        _ => Err((
            Refusal::Unauthorized,
            "the decision was made for another principal",
        )),
    }
}

/// Shards of the budget table; each holds at most [`PRINCIPALS_PER_SHARD`] principals a minute.
const SHARDS: u64 = 16;
const PRINCIPALS_PER_SHARD: usize = 1024;
const ENTRY: usize = 12;

fn budget_key(plugin: &str, tag: u64) -> String {
    format!("{}/reward-budget/{}", shared_prefix(plugin), tag % SHARDS)
}

/// Why a reward was not charged to a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetError {
    /// Spent for this minute: retry in this many seconds.
    Spent { retry_after: u64 },
    /// Too many principals this minute, or the store failed: the reward is refused.
    Unavailable,
}

/// Counts one reward of the principal `tag` in the current minute, unless it already had
/// `per_minute`: one [`cas_update`] of the principal's shard. A shard is a minute (8 bytes) then
/// (tag, count) entries (8 + 4 bytes), all big-endian; another minute's shard (or undecodable
/// bytes) is started afresh.
pub fn charge<S: SharedStore + ?Sized>(
    store: &S,
    plugin: &str,
    tag: u64,
    per_minute: u32,
    now_secs: u64,
) -> Result<(), BudgetError> {
    let minute = now_secs / 60;
    let fresh = Table {
        minute,
        entries: Vec::new(),
    };
    let outcome = cas_update(
        store,
        &budget_key(plugin, tag),
        super::MAX_CAS_ATTEMPTS,
        &TableCodec,
        &fresh,
        |table| {
            let mut table = if table.minute == minute {
                table
            } else {
                fresh.clone()
            };
            let count = table.count(tag);
            if count >= per_minute {
                return Err(BudgetError::Spent {
                    retry_after: 60 - now_secs % 60,
                });
            }
            if !table.set(tag, count.saturating_add(1)) {
                return Err(BudgetError::Unavailable);
            }
            Ok(Change::Write(table))
        },
    );
    match outcome {
        Ok(_) => Ok(()),
        Err(UpdateFailure::Rejected(e)) => Err(e),
        Err(_) => Err(BudgetError::Unavailable),
    }
}

/// One shard's counts for one minute.
#[derive(Clone)]
struct Table {
    minute: u64,
    entries: Vec<(u64, u32)>,
}

impl Table {
    fn count(&self, tag: u64) -> u32 {
        self.entries
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or(0, |(_, c)| *c)
    }

    /// Sets a count; `false` when the principal is new and the shard is full.
    fn set(&mut self, tag: u64, count: u32) -> bool {
        if let Some(entry) = self.entries.iter_mut().find(|(t, _)| *t == tag) {
            entry.1 = count;
            return true;
        }
        if self.entries.len() >= PRINCIPALS_PER_SHARD {
            return false;
        }
        self.entries.push((tag, count));
        true
    }
}

struct TableCodec;

impl Codec for TableCodec {
    type Value = Table;
    type Error = ();

    fn decode(&self, bytes: &[u8]) -> Result<Table, ()> {
        let (head, rest) = bytes.split_first_chunk::<8>().ok_or(())?;
        if rest.len() % ENTRY != 0 {
            return Err(());
        }
        let entries = rest
            .chunks_exact(ENTRY)
            .filter_map(|e| {
                let (tag, count) = e.split_first_chunk::<8>()?;
                let count: [u8; 4] = count.try_into().ok()?;
                Some((crate::be::from_be(*tag), u32::from_be_bytes(count)))
            })
            .collect();
        Ok(Table {
            minute: crate::be::from_be(*head),
            entries,
        })
    }

    fn encode(&self, table: &Table) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + table.entries.len() * ENTRY);
        out.extend_from_slice(&crate::be::to_be(table.minute));
        for (tag, count) in &table.entries {
            out.extend_from_slice(&crate::be::to_be(*tag));
            out.extend_from_slice(&count.to_be_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bandit::MemoryStore;

    #[test]
    fn a_budget_per_principal_per_minute() {
        let s = MemoryStore::new();
        let now = 6_000; // the start of minute 100
        for _ in 0..3 {
            assert_eq!(charge(&s, "p", 7, 3, now), Ok(()));
        }
        assert_eq!(
            charge(&s, "p", 7, 3, now + 15),
            Err(BudgetError::Spent { retry_after: 45 })
        );
        // Another principal of the same shard has its own count.
        assert_eq!(charge(&s, "p", 7 + SHARDS, 3, now), Ok(()));
        // The next minute starts afresh.
        assert_eq!(charge(&s, "p", 7, 3, now + 60), Ok(()));
    }

    #[test]
    fn a_full_shard_refuses_new_principals() {
        let s = MemoryStore::new();
        for i in 0..PRINCIPALS_PER_SHARD as u64 {
            assert_eq!(charge(&s, "p", i * SHARDS, 1, 60), Ok(()));
        }
        assert_eq!(
            charge(&s, "p", PRINCIPALS_PER_SHARD as u64 * SHARDS, 1, 60),
            Err(BudgetError::Unavailable)
        );
        assert_eq!(charge(&s, "p", 0, 2, 60), Ok(()));
    }
}
