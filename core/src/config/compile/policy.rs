//! Policy sections: sensitive-data detectors, tenants, residency, budget.

use crate::vecmap::VecMap;

use super::checks::{
    check_header_name, check_name, child, err, err_at, err_in, item, optional_model, quoted_then,
    refuse_at, target_named, Refusal,
};
use crate::config::dto::{
    BudgetDto, DetectorDto, JwtClaimDto, ResidencyDto, TenantDto, TenantsDto,
};
use crate::config::{
    Budget, JwtPayload, Model, ModelAllow, NamedDetector, Tenant, Tenants, ValueSource,
};
use crate::inspect::detect::Detector;

pub(super) fn compile_detectors(dtos: Vec<DetectorDto>) -> Result<Vec<NamedDetector>, Refusal> {
    let mut detectors: Vec<NamedDetector> = Vec::with_capacity(dtos.len());
    for (di, d) in dtos.into_iter().enumerate() {
        let field = item("detectors", di);
        check_name(&field, "name", &d.name)?;
        if detectors.iter().any(|x| x.name == d.name) {
            return err_at(
                &field,
                "name",
                quoted_then(&d.name, "is used by an earlier detector"),
            );
        }
        let detector = match (d.builtin, d.regex) {
            (Some(b), None) => Detector::builtin(&b).ok_or_else(|| {
                let reason = quoted_then(&b, "is not a built-in detector (email, card, iban)");
                refuse_at(&field, "builtin", reason)
            })?,
            (None, Some(re)) => {
                Detector::regex(&re).map_err(|reason| refuse_at(&field, "regex", reason))?
            }
            _ => return err(&field, "needs exactly one of \"builtin\" or \"regex\""),
        };
        detectors.push(NamedDetector {
            name: d.name,
            detector,
        });
    }
    Ok(detectors)
}

pub(super) fn compile_tenants(
    t: TenantsDto,
    models: &[Model],
    index: &VecMap<String, usize>,
) -> Result<Tenants, Refusal> {
    let source = match value_source("tenants", t.header, t.jwt)? {
        Some(source) => source,
        None => return err("tenants", "needs exactly one of \"header\" or \"jwt\""),
    };
    let mut list = Vec::with_capacity(t.list.len());
    for (ti, d) in t.list.into_iter().enumerate() {
        let tenant = compile_tenant(&item("tenants.list", ti), d, &list, models, index)?;
        list.push(tenant);
    }
    Ok(Tenants {
        source,
        required: t.required,
        list,
    })
}

fn compile_tenant(
    f: &str,
    d: TenantDto,
    earlier: &[Tenant],
    models: &[Model],
    index: &VecMap<String, usize>,
) -> Result<Tenant, Refusal> {
    if d.name.is_empty() || earlier.iter().any(|x| x.name == d.name) {
        return err_in(
            f,
            "name",
            "must be a non-empty name, unique among the tenants",
        );
    }
    let default_model = optional_model(f, "default_model", index, d.default_model.as_ref())?;
    let allow = match d.allow {
        None => None,
        Some(map) => {
            let per_model = tenant_allow(f, map, models, index)?;
            if let Some(dm) = default_model {
                if matches!(per_model.get(dm), Some(ModelAllow::Denied) | None) {
                    return err_in(f, "default_model", "is not in the tenant's allow list");
                }
            }
            Some(per_model)
        }
    };
    Ok(Tenant {
        name: d.name,
        tier: d.tier,
        region: d.region,
        default_model,
        allow,
    })
}

/// A tenant's `allow` map → by model index: denied, every target, or these targets.
fn tenant_allow(
    f: &str,
    map: VecMap<String, Vec<String>>,
    models: &[Model],
    index: &VecMap<String, usize>,
) -> Result<Vec<ModelAllow>, Refusal> {
    let mut per_model = vec![ModelAllow::Denied; models.len()];
    for (model_name, targets) in map {
        let field = child(&child(f, "allow"), &model_name);
        let Some(&mi) = index.get(&model_name) else {
            return err(&field, "is not the name of a configured model");
        };
        let Some(m) = models.get(mi) else { continue };
        let entry = if targets.is_empty() {
            ModelAllow::All
        } else {
            // A loop, not a `collect` into a `Result`: the same in less code.
            let mut indices = Vec::with_capacity(targets.len());
            for tn in &targets {
                indices.push(target_named(&field, "", &m.targets, &model_name, tn)?);
            }
            ModelAllow::Targets(indices)
        };
        if let Some(slot) = per_model.get_mut(mi) {
            *slot = entry;
        }
    }
    Ok(per_model)
}

pub(super) fn compile_residency(dto: Option<ResidencyDto>) -> Result<Option<String>, Refusal> {
    let Some(r) = dto else { return Ok(None) };
    match r.header {
        Some(h) => {
            check_header_name("residency.header", "", &h)?;
            Ok(Some(h))
        }
        None => err("residency.header", "is required"),
    }
}

pub(super) fn compile_budget(dto: Option<BudgetDto>) -> Result<Option<Budget>, Refusal> {
    let Some(b) = dto else { return Ok(None) };
    check_header_name("budget.cost_header", "", &b.cost_header)?;
    check_header_name("budget.latency_header", "", &b.latency_header)?;
    check_header_name("budget.escalate_header", "", &b.escalate_header)?;
    let jwt = match b.jwt {
        Some(j) if j.namespace.is_empty() || j.payload_key.is_empty() => {
            return err("budget.jwt", "namespace and payload_key must not be empty")
        }
        Some(j) => Some(JwtPayload {
            namespace: j.namespace,
            payload_key: j.payload_key,
        }),
        None => None,
    };
    Ok(Some(Budget {
        cost_header: b.cost_header,
        latency_header: b.latency_header,
        escalate_header: b.escalate_header,
        default_output_tokens: b.default_output_tokens,
        jwt,
    }))
}

/// A header or a verified JWT claim, at most one; `None` when neither is given.
pub(super) fn value_source(
    field: &str,
    header: Option<String>,
    jwt: Option<JwtClaimDto>,
) -> Result<Option<ValueSource>, Refusal> {
    match (header, jwt) {
        (None, None) => Ok(None),
        (Some(h), None) => {
            check_header_name(field, "header", &h)?;
            Ok(Some(ValueSource::Header(h)))
        }
        (None, Some(j)) => {
            if j.namespace.is_empty() || j.payload_key.is_empty() || j.claim.is_empty() {
                return err_in(
                    field,
                    "jwt",
                    "namespace, payload_key and claim must not be empty",
                );
            }
            Ok(Some(ValueSource::Jwt {
                namespace: j.namespace,
                payload_key: j.payload_key,
                claim: j.claim,
            }))
        }
        (Some(_), Some(_)) => err(field, "needs exactly one of \"header\" or \"jwt\""),
    }
}
