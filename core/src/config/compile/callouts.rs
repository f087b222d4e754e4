//! Requests the filter sends itself: an external router, a fan-out, shadows, an evaluator;
//! and the policies such a resend could bypass.

use super::checks::{
    check_cluster, check_path, check_timeout, child, err, err_at, err_in, item, model_named,
    target_named, Refusal,
};
use super::rules::{compile_when, Context};
use crate::config::dto::{BodySource, EvaluatorDto, FanOutDto, RouterDto, ShadowDto};
use crate::config::{Evaluator, ExternalRouter, FanOut, Model, Shadow, Tenants};
use crate::format_float::plain;
use crate::payload::PointerSet;

pub(super) fn compile_router(
    field: &str,
    dto: Option<RouterDto>,
) -> Result<Option<ExternalRouter>, Refusal> {
    let Some(r) = dto else { return Ok(None) };
    let rf = child(field, "router");
    check_cluster(&rf, "cluster", &r.cluster)?;
    check_path(&rf, "path", &r.path)?;
    if let Some(p) = &r.feedback_path {
        check_path(&rf, "feedback_path", p)?;
    }
    let timeout_ms = check_timeout(&rf, "timeout_ms", r.timeout_ms)?;
    Ok(Some(ExternalRouter {
        authority: r.authority.unwrap_or_else(|| r.cluster.clone()),
        cluster: r.cluster,
        path: r.path,
        timeout_ms,
        feedback_path: r.feedback_path,
    }))
}

pub(super) fn compile_fan_out(
    field: &str,
    dto: Option<FanOutDto>,
    has_router: bool,
) -> Result<Option<FanOut>, Refusal> {
    let Some(f) = dto else { return Ok(None) };
    let timeout_ms = check_timeout(field, "fan_out.timeout_ms", f.timeout_ms)?;
    if has_router {
        return err_in(
            field,
            "fan_out",
            "excludes \"router\": a fan-out sends to every target",
        );
    }
    Ok(Some(FanOut { timeout_ms }))
}

pub(super) fn compile_evaluator(
    field: &str,
    dto: Option<EvaluatorDto>,
) -> Result<Option<Evaluator>, Refusal> {
    let Some(e) = dto else { return Ok(None) };
    check_cluster(field, "evaluator.cluster", &e.cluster)?;
    check_path(field, "evaluator.path", &e.path)?;
    let timeout_ms = check_timeout(field, "evaluator.timeout_ms", e.timeout_ms)?;
    Ok(Some(Evaluator {
        authority: e.authority.unwrap_or_else(|| e.cluster.clone()),
        cluster: e.cluster,
        path: e.path,
        timeout_ms,
    }))
}

pub(super) fn compile_shadows(
    dtos: Vec<ShadowDto>,
    ctx: &Context<'_>,
    pointers: &mut PointerSet,
) -> Result<Vec<Shadow>, Refusal> {
    let mut shadows = Vec::with_capacity(dtos.len());
    for (si, sh) in dtos.into_iter().enumerate() {
        let field = item("shadows", si);
        let model = model_named(&field, "model", ctx.index, &sh.model)?;
        let targets = ctx.models.get(model).map_or(&[][..], |m| &m.targets);
        let target = target_named(&field, "target", targets, &sh.model, &sh.target)?;
        if !(sh.percent > 0.0 && sh.percent <= 100.0) {
            return err_at(
                &field,
                "percent",
                format!("must be above 0 and at most 100, got {}", plain(sh.percent)),
            );
        }
        let timeout_ms = check_timeout(&field, "timeout_ms", sh.timeout_ms)?;
        if ctx.source == BodySource::Metadata {
            return err(&field, "mirrors the request body, which body.source \"metadata\" does not give; use \"buffer\"");
        }
        let when = compile_when(&child(&field, "when"), sh.when, ctx.detectors, pointers)?;
        shadows.push(Shadow {
            model,
            when,
            target,
            percent: sh.percent,
            rewrite_model: sh.rewrite_model,
            timeout_ms,
        });
    }
    Ok(shadows)
}

/// A router's pick or a fan-out reaches targets the policy did not choose: refuse the
/// combinations where the policy could have excluded some of them.
pub(super) fn check_resends(
    models: &[Model],
    tenants: Option<&Tenants>,
    residency: bool,
) -> Result<(), Refusal> {
    let excluding_tenants = tenants.is_some_and(|t| {
        t.list
            .iter()
            .any(|x| x.region.is_some() || x.allow.is_some())
    });
    for (mi, m) in models.iter().enumerate() {
        // The first way this model resends, in this order (an if chain: less code than an
        // array of pairs searched).
        let resend = if m.router.is_some() {
            "router"
        } else if m.fan_out.is_some() {
            "fan_out"
        } else if m.retry {
            "retry"
        } else {
            continue;
        };
        if m.tracks_load {
            return err_in(&item("models", mi), resend, "cannot be combined with load tracking (least_loaded, capacity, endpoints): requests the filter resends by callout hold no slot");
        }
        // Of the three, a router's pick and a fan-out reach targets the policy did not choose.
        if m.router.is_none() && m.fan_out.is_none() {
            continue;
        }
        let what = resend;
        let conflict = if m.capability_routing {
            Some("capability routing (targets[].capabilities / max_context_tokens)")
        } else if residency {
            Some("residency")
        } else if excluding_tenants {
            Some("tenant allow-lists or regions")
        } else {
            None
        };
        if let Some(conflict) = conflict {
            return err_at(&item("models", mi), what, format!("cannot be combined with {conflict}: it would reach targets the policy may exclude"));
        }
    }
    Ok(())
}
