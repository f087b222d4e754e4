//! `fleet`: the etcd cluster replicas share what they learn through, and what can be shared.

use super::checks::{
    check_cluster, check_range, err, err_at, err_in, item, quoted_then, Range, Refusal,
};
use crate::config::dto::FleetDto;
use crate::config::{EtcdAuth, FleetSettings, Model};

const MIN_SYNC_MS: u32 = 100;
const MAX_SYNC_MS: u32 = 600_000;
const DEFAULT_TIMEOUT_MS: u32 = 1000;
const MIN_RETIRE_SECONDS: u64 = 10;
const MAX_RETIRE_SECONDS: u64 = 30 * 86_400;
const MAX_PREFIX_LEN: usize = 256;
const MAX_REPLICA_LEN: usize = 128;
// Their messages say 256 and 128 in words (a literal is smaller than a `format!`).
const _: () = assert!(MAX_PREFIX_LEN == 256 && MAX_REPLICA_LEN == 128);

/// A key part: printable ASCII without `/` (it separates key levels) or spaces.
fn is_key_part(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

pub(super) fn compile_fleet(
    dto: Option<FleetDto>,
    models: &[Model],
    has_budget: bool,
    has_feedback: bool,
) -> Result<Option<FleetSettings>, Refusal> {
    let Some(f) = dto else { return Ok(None) };
    check_cluster("fleet.cluster", "", &f.cluster)?;
    let prefix = &f.prefix;
    let prefix_ok = prefix.len() >= 2
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix.bytes().all(|b| b.is_ascii_graphic());
    if !prefix_ok {
        return err_at("fleet.prefix", "", quoted_then(prefix, "must start with '/', not end with '/', and hold at most 256 printable characters without spaces"));
    }
    let bounds = (u64::from(MIN_SYNC_MS), u64::from(MAX_SYNC_MS));
    check_range(
        "fleet.sync_ms",
        "",
        Range::Between,
        bounds,
        u64::from(f.sync_ms),
    )?;
    let timeout_ms = f.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS.min(f.sync_ms));
    if timeout_ms == 0 || timeout_ms > f.sync_ms {
        return err_at("fleet.timeout_ms", "", format!(
                "must be between 1 and sync_ms ({}) so that sync rounds do not overlap, got {timeout_ms}",
                f.sync_ms
            ));
    }
    if let Some(r) = &f.replica {
        if r.len() > MAX_REPLICA_LEN || !is_key_part(r) {
            let reason = quoted_then(
                r,
                "must be 1 to 128 printable characters without '/' or spaces",
            );
            return err_at("fleet.replica", "", reason);
        }
    }
    let min_retire = MIN_RETIRE_SECONDS.max(u64::from(f.sync_ms).saturating_mul(10) / 1000);
    if !(min_retire..=MAX_RETIRE_SECONDS).contains(&f.retire_after_seconds) {
        return err_at("fleet.retire_after_seconds", "", format!(
                "must be between {min_retire} (at least 10 s and 10 sync periods) and {MAX_RETIRE_SECONDS}, got {}",
                f.retire_after_seconds
            ));
    }
    let auth = match f.auth {
        None => None,
        Some(a) if a.username.is_empty() => return err("fleet.auth.username", "must not be empty"),
        Some(a) if a.password.is_empty() => return err("fleet.auth.password", "must not be empty"),
        Some(a) => Some(EtcdAuth {
            username: a.username,
            password: a.password,
        }),
    };
    check_shareable(models, has_budget, has_feedback)?;
    Ok(Some(FleetSettings {
        authority: f.authority.unwrap_or_else(|| f.cluster.clone()),
        cluster: f.cluster,
        prefix: f.prefix,
        sync_ms: f.sync_ms,
        timeout_ms,
        replica: f.replica,
        retire_after_ms: f.retire_after_seconds.saturating_mul(1000),
        warm_start: f.warm_start,
        auth,
    }))
}

/// What a fleet shares must add up across replicas, and there must be something to share.
fn check_shareable(models: &[Model], has_budget: bool, has_feedback: bool) -> Result<(), Refusal> {
    for (mi, m) in models.iter().enumerate() {
        if m.bandit()
            .is_some_and(|b| matches!(b.algorithm(), crate::bandit::Algorithm::LinUcb { .. }))
        {
            return err_in(&item("models", mi), "strategy.type", "linucb learns on this Envoy only: its regressions are not exchanged through the fleet, so a fleet would route on a partial view; remove `fleet` or use thompson / ucb1");
        }
        if m.bandit().is_some_and(|b| b.decays_per_update()) {
            return err_in(&item("models", mi), "strategy.decay", "\"gamma\" and \"half_life\" discount per update of one replica, which does not add up across a fleet; use {\"half_life_seconds\": s}");
        }
        if m.bandit().is_some_and(|b| b.detects_changes()) {
            return err_in(&item("models", mi), "strategy.change_detection", "cannot be used with fleet: a replica's detector sees only its own rewards and restarts only its own statistics, while routing adds the other replicas' (and retired ones') statistics of the same target, which keep the change hidden; use {\"half_life_seconds\": s} decay in a fleet");
        }
    }
    let learns = models.iter().any(Model::is_bandit);
    let health = has_budget || models.iter().any(|m| !m.fallback.is_empty());
    if !learns && !health && !has_feedback {
        return err("fleet", "no model learns (bandit strategy), tracks target health (fallback, budget) or takes feedback: there is nothing to share");
    }
    Ok(())
}
