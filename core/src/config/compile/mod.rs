//! Validation and compilation of [`ConfigDto`] into [`Config`]. Every check names the field,
//! and the sections are checked in document order, so the first error reported stays the same
//! whatever the split:
//!
//! - [`checks`]: field checks and name lookups shared by the sections;
//! - [`model`]: models, their targets, strategy, reward, input spec and fallback;
//! - [`rules`]: rules (`when` conditions, `then` actions);
//! - [`policy`]: detectors, tenants, residency, budget;
//! - [`callouts`]: router, fan-out, shadows, evaluator, and what a resend may not bypass;
//! - [`endpoints`]: the feedback and state endpoints;
//! - [`fleet`]: learning as one fleet through etcd;
//! - [`addr`]: endpoint addresses (`ip:port`), checked as std reads them.

mod addr;
mod callouts;
mod checks;
mod endpoints;
mod fleet;
mod model;
mod policy;
mod rules;

use checks::quoted_then;
use checks::{check_header_name, check_range, err, err_at, err_with, item, Range, Refusal};

use crate::config::dto::*;
use crate::config::*;
use std::mem::take;

/// Largest accepted `body.max_bytes` (64 MiB): beyond that a sidecar's memory is at risk.
pub const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// Parses, validates and compiles a configuration document.
pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ConfigError {
            field: String::new(),
            reason: "the plugin configuration is empty; a JSON object with `models` is required"
                .into(),
        });
    }
    let dto: ConfigDto = crate::config::read::document(bytes)?;
    compile(dto).map_err(|e| *e)
}

/// Takes the sections out of `dto` rather than moving them: it stays whole, so each refusal
/// drops it with one call instead of dropping the sections not yet moved, one by one.
fn compile(mut dto: ConfigDto) -> Result<Config, Refusal> {
    check_headers(&dto)?;
    let body = check_body(&dto.body)?;
    let (models, model_index) = model::compile_models(take(&mut dto.models))?;
    let default_model = checks::optional_model(
        "default_model",
        "",
        &model_index,
        dto.default_model.as_ref(),
    )?;
    let detectors = policy::compile_detectors(take(&mut dto.detectors))?;
    let mut pointers = PointerSet::new();
    let ctx = rules::Context {
        models: &models,
        index: &model_index,
        detectors: &detectors,
        source: body.source,
    };
    let rules = rules::compile_rules(take(&mut dto.rules), &ctx, &mut pointers)?;
    // Sized before shadows add pointers: only metadata bodies read it, and they refuse shadows.
    let numeric_pointers = rules::numeric_pointers(&rules, pointers.len());
    let feedback = endpoints::compile_feedback(dto.feedback.take(), dto.tenants.is_some())?;
    let state_endpoint =
        endpoints::compile_state_endpoint(dto.state_endpoint.take(), feedback.as_ref())?;
    let tenants = (dto.tenants.take())
        .map(|t| policy::compile_tenants(t, &models, &model_index))
        .transpose()?;
    model::check_tenant_features(&models, tenants.as_ref())?;
    let residency_header = policy::compile_residency(dto.residency.take())?;
    let budget = policy::compile_budget(dto.budget.take())?;
    let shadows = callouts::compile_shadows(take(&mut dto.shadows), &ctx, &mut pointers)?;
    callouts::check_resends(&models, tenants.as_ref(), residency_header.is_some())?;
    check_metadata_body(body.source, &detectors, &models)?;
    let fleet = fleet::compile_fleet(
        dto.fleet.take(),
        &models,
        budget.is_some(),
        feedback.is_some(),
    )?;
    let has_detected_rules = rules::has_detected(&rules, &shadows);
    let scan = compile_scan(dto.scan.take(), has_detected_rules)?;
    let load = compile_load(dto.load.take(), &models)?;
    let registry = (dto.registry.take())
        .map(|r| compile_registry(r, &models))
        .transpose()?;
    Ok(Config {
        load,
        registry,
        fleet,
        scan,
        has_detected_rules,
        has_echo: rules::has_echo(&rules),
        has_time_rules: rules::has_time_rules(&rules),
        tenants,
        residency_header,
        detectors,
        budget,
        shadows,
        route_header: take(&mut dto.route_header),
        target_header: take(&mut dto.target_header),
        model_header: take(&mut dto.model_header),
        response_metadata: dto.response_metadata,
        body,
        default_model,
        models,
        model_index,
        rules,
        pointers,
        numeric_pointers,
        feedback,
        state_endpoint,
    })
}

#[inline(never)]
fn compile_registry(
    r: crate::registry::RegistryDto,
    models: &[Model],
) -> Result<crate::registry::RegistrySettings, Refusal> {
    crate::registry::compile(r, models).map_err(Box::new)
}

/// Longest accepted `load.stale_ms` (an hour) and `load.retry_after_seconds`.
const MAX_LOAD_STALE_MS: u64 = 3_600_000;
const MAX_RETRY_AFTER_SECONDS: u32 = 3600;

fn compile_load(dto: Option<LoadDto>, models: &[Model]) -> Result<LoadSettings, Refusal> {
    let configured = dto.is_some();
    let d = dto.unwrap_or_default();
    if configured && !models.iter().any(|m| m.tracks_load) {
        return err("load", "no model tracks load: give a target `capacity` or `endpoints`, or a model the `least_loaded` strategy");
    }
    check_header_name("load.endpoint_header", "", &d.endpoint_header)?;
    let orca_format = match d.orca_format.as_str() {
        "text" => OrcaFormat::Text,
        "json" => OrcaFormat::Json,
        "none" => OrcaFormat::None,
        other => {
            return err_at(
                "load.orca_format",
                "",
                quoted_then(other, "is not one of text, json, none"),
            )
        }
    };
    check_range(
        "load.stale_ms",
        "",
        Range::To,
        (100, MAX_LOAD_STALE_MS),
        d.stale_ms,
    )?;
    check_range(
        "load.retry_after_seconds",
        "",
        Range::To,
        (1, u64::from(MAX_RETRY_AFTER_SECONDS)),
        u64::from(d.retry_after_seconds),
    )?;
    Ok(LoadSettings {
        endpoint_header: d.endpoint_header,
        orca_format,
        stale_ms: d.stale_ms,
        retry_after_seconds: d.retry_after_seconds,
    })
}

/// Largest accepted `scan.max_bytes` (text read from one payload).
const MAX_SCAN_BYTES: u64 = 16 * 1024 * 1024;

fn compile_scan(dto: Option<ScanDto>, has_detected: bool) -> Result<ScanSettings, Refusal> {
    let Some(s) = dto else {
        return Ok(ScanSettings {
            max_bytes: DEFAULT_SCAN_MAX_BYTES as usize,
            unscanned: Unscanned::Refuse,
        });
    };
    if !has_detected {
        return err(
            "scan",
            "applies to rules and shadows with `when.detected`, and none has one",
        );
    }
    check_range(
        "scan.max_bytes",
        "",
        Range::Between,
        (1, MAX_SCAN_BYTES),
        s.max_bytes,
    )?;
    Ok(ScanSettings {
        max_bytes: usize::try_from(s.max_bytes).unwrap_or(usize::MAX),
        unscanned: s.unscanned,
    })
}

fn check_headers(dto: &ConfigDto) -> Result<(), Refusal> {
    check_header_name("route_header", "", &dto.route_header)?;
    check_header_name("target_header", "", &dto.target_header)?;
    check_header_name("model_header", "", &dto.model_header)?;
    if dto.route_header == dto.target_header {
        return err("target_header", "must differ from route_header");
    }
    if dto.model_header == dto.route_header || dto.model_header == dto.target_header {
        return err(
            "model_header",
            "must differ from route_header and target_header",
        );
    }
    Ok(())
}

fn check_body(body: &BodyDto) -> Result<BodySettings, Refusal> {
    check_range(
        "body.max_bytes",
        "",
        Range::Between,
        (1, MAX_BODY_LIMIT),
        body.max_bytes,
    )?;
    if body.source == BodySource::Metadata && body.metadata_namespace.trim().is_empty() {
        return err(
            "body.metadata_namespace",
            "must not be empty when body.source is \"metadata\"",
        );
    }
    Ok(BodySettings {
        source: body.source,
        max_bytes: body.max_bytes,
        on_invalid: body.on_invalid,
        metadata_namespace: body.metadata_namespace.clone(),
    })
}

/// With `body.source: "metadata"` there is no raw body: refuse what needs one.
fn check_metadata_body(
    source: BodySource,
    detectors: &[NamedDetector],
    models: &[Model],
) -> Result<(), Refusal> {
    if source != BodySource::Metadata {
        return Ok(());
    }
    if !detectors.is_empty() {
        return err(
            "detectors",
            "scan the prompt text, which body.source \"metadata\" does not give; use \"buffer\"",
        );
    }
    for (mi, m) in models.iter().enumerate() {
        // The first feature, in this order, that needs the body (an if chain: less code than
        // an array of pairs searched).
        let needs_body = if m.capability_routing {
            Some("targets[].capabilities / max_context_tokens")
        } else if m.input_spec.is_some() {
            Some("input_spec")
        } else if m.retry {
            Some("retry")
        } else if m.fan_out.is_some() {
            Some("fan_out")
        } else if m.router.is_some() {
            Some("router")
        } else {
            None
        };
        if let Some(what) = needs_body {
            return err_with(item("models", mi), format!("{what} needs the request body, which body.source \"metadata\" does not give; use \"buffer\""));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod messages_tests;
