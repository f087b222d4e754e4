//! Rules: `when` conditions (also a shadow's) and `then` actions.

use crate::format_float::plain;
use crate::quote::quoted;
use crate::vecmap::VecMap;

use super::checks::{
    check_header_name, check_range, child, err, err_at, err_in, err_with, item, optional_model,
    parse_hhmm, quoted_then, target_named, Names, Range, Refusal,
};
use crate::config::dto::*;
use crate::config::{
    Action, BodyTest, Condition, HeaderTest, Model, NamedDetector, ReplyBody, Rule, TargetPin,
};
use crate::payload::PointerSet;

/// What the rules and shadows may name, compiled before them.
pub(super) struct Context<'a> {
    pub(super) models: &'a [Model],
    pub(super) index: &'a VecMap<String, usize>,
    pub(super) detectors: &'a [NamedDetector],
    pub(super) source: BodySource,
}

pub(super) fn compile_rules(
    dtos: Vec<RuleDto>,
    ctx: &Context<'_>,
    pointers: &mut PointerSet,
) -> Result<Vec<Rule>, Refusal> {
    let mut rules = Vec::with_capacity(dtos.len());
    let mut names = Names::default();
    for (ri, r) in dtos.into_iter().enumerate() {
        let field = item("rules", ri);
        names.add((&field, "name"), &r.name, "rule", "rule")?;
        let when = compile_when(&child(&field, "when"), r.when, ctx.detectors, pointers)?;
        let then = compile_then(&child(&field, "then"), r.then, ctx)?;
        rules.push(Rule {
            name: r.name,
            when,
            then,
        });
    }
    Ok(rules)
}

/// By pointer index: some rule compares the field as a number.
pub(super) fn numeric_pointers(rules: &[Rule], pointers: usize) -> Vec<bool> {
    let mut numeric_pointers = vec![false; pointers];
    // Nested loops, not a flatten: the same walk in less code.
    for rule in rules {
        for cond in &rule.when {
            let Condition::Body { pointer, test } = cond else {
                continue;
            };
            let numeric = match test {
                BodyTest::Range { .. } => true,
                BodyTest::Exact(v) => v.is_number(),
                BodyTest::OneOf(vs) => vs.iter().all(crate::json::Value::is_number),
                BodyTest::Present(_) => false,
            };
            if let Some(slot) = numeric_pointers.get_mut(*pointer) {
                *slot |= numeric;
            }
        }
    }
    numeric_pointers
}

/// Some rule replies with the request body (so a body may be needed whatever its type).
pub(super) fn has_echo(rules: &[Rule]) -> bool {
    rules.iter().any(|r| {
        matches!(
            r.then,
            Action::Reply {
                body: ReplyBody::Echo,
                ..
            }
        )
    })
}

/// Some rule or shadow decides on what the detectors find.
pub(super) fn has_detected(rules: &[Rule], shadows: &[crate::config::Shadow]) -> bool {
    let detected = |when: &Vec<Condition>| when.iter().any(|c| matches!(c, Condition::Detected(_)));
    // Two plain walks: a chain of two flattens is several times their code.
    rules.iter().any(|r| detected(&r.when)) || shadows.iter().any(|s| detected(&s.when))
}

/// Some rule has a `time_utc` condition (else the clock is not read per request).
pub(super) fn has_time_rules(rules: &[Rule]) -> bool {
    (rules.iter()).any(|r| (r.when.iter()).any(|c| matches!(c, Condition::TimeUtc { .. })))
}

fn one_or_many(v: OneOrMany) -> Vec<String> {
    match v {
        OneOrMany::One(x) => vec![x],
        OneOrMany::Many(xs) => xs,
    }
}

/// Conditions, cheapest first (a body condition is reached only when the others hold).
pub(super) fn compile_when(
    field: &str,
    w: WhenDto,
    detectors: &[NamedDetector],
    pointers: &mut PointerSet,
) -> Result<Vec<Condition>, Refusal> {
    let mut conds = Vec::new();
    if let Some(values) = names(field, "tenant", w.tenant)? {
        conds.push(Condition::Tenant(values));
    }
    if let Some(values) = names(field, "tier", w.tier)? {
        conds.push(Condition::Tier(values));
    }
    if let Some(v) = w.detected {
        conds.push(detected(field, v, detectors)?);
    }
    if let Some(v) = w.method {
        conds.push(method(field, v)?);
    }
    if let Some(prefix) = w.path_prefix {
        if !prefix.starts_with('/') {
            return err_at(
                field,
                "path_prefix",
                quoted_then(&prefix, "must start with '/'"),
            );
        }
        conds.push(Condition::PathPrefix(prefix));
    }
    for (name, c) in w.headers {
        conds.push(header(&child(&child(field, "headers"), &name), name, c)?);
    }
    if let Some(t) = w.time_utc {
        conds.push(time_utc(field, t)?);
    }
    for (ptr, c) in w.body {
        let bf = child(&child(field, "body"), &ptr);
        let pointer = pointers
            .insert(&ptr)
            .or_else(|reason| err_with(bf.clone(), reason))?;
        let test = body_test(&bf, c)?;
        conds.push(Condition::Body { pointer, test });
    }
    // The conditions of one rule of the operator's configuration: few, bounded by it.
    crate::sort::by_key(&mut conds, Condition::cost);
    Ok(conds)
}

/// `when.tenant` / `when.tier` (`key`): at least one value, none empty.
fn names(at: &str, key: &str, v: Option<OneOrMany>) -> Result<Option<Vec<String>>, Refusal> {
    let Some(v) = v else { return Ok(None) };
    let values = one_or_many(v);
    if values.is_empty() || values.iter().any(String::is_empty) {
        return err_in(at, key, "must name at least one non-empty value");
    }
    Ok(Some(values))
}

/// `when.detected`; `at`: the `when` (the path is built only to refuse).
fn detected(at: &str, v: OneOrMany, detectors: &[NamedDetector]) -> Result<Condition, Refusal> {
    let mut idx = Vec::new();
    for name in one_or_many(v) {
        match detectors.iter().position(|d| d.name == name) {
            Some(i) => idx.push(i),
            None => {
                let reason = quoted_then(&name, "is not a configured detector");
                return err_at(at, "detected", reason);
            }
        }
    }
    if idx.is_empty() {
        return err_in(at, "detected", "must name at least one detector");
    }
    Ok(Condition::Detected(idx))
}

/// `when.method`; `at`: the `when`.
fn method(at: &str, v: OneOrMany) -> Result<Condition, Refusal> {
    let methods = one_or_many(v);
    if methods.is_empty() {
        return err_in(at, "method", "must name at least one method");
    }
    for m in &methods {
        if m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()) {
            return err_at(
                at,
                "method",
                quoted_then(m, "is not an uppercase HTTP method"),
            );
        }
    }
    Ok(Condition::Method(methods))
}

fn header(hf: &str, name: String, c: HeaderCondDto) -> Result<Condition, Refusal> {
    check_header_name(hf, "", &name)?;
    let test = match (c.exact, c.prefix, c.present) {
        (Some(v), None, None) => HeaderTest::Exact(v),
        (None, Some(p), None) => HeaderTest::Prefix(p),
        (None, None, Some(b)) => HeaderTest::Present(b),
        _ => {
            return err(
                hf,
                "needs exactly one of \"exact\", \"prefix\" or \"present\"",
            )
        }
    };
    Ok(Condition::Header { name, test })
}

/// `when.time_utc`; `at`: the `when`.
fn time_utc(at: &str, t: TimeWindowDto) -> Result<Condition, Refusal> {
    let from_minute = parse_hhmm(at, "time_utc.from", &t.from)?;
    let to_minute = parse_hhmm(at, "time_utc.to", &t.to)?;
    if from_minute == to_minute {
        return err_in(
            at,
            "time_utc",
            "\"from\" and \"to\" are equal: the window would be empty",
        );
    }
    Ok(Condition::TimeUtc {
        from_minute,
        to_minute,
    })
}

fn body_test(bf: &str, c: BodyCondDto) -> Result<BodyTest, Refusal> {
    // Counted first, then taken: a match on the five options is twice the code.
    let (gt, lt) = (c.gt, c.lt);
    let forms = usize::from(c.exact.is_some())
        + usize::from(c.one_of.is_some())
        + usize::from(c.present.is_some())
        + usize::from(gt.is_some() || lt.is_some());
    if forms != 1 {
        return err(
            bf,
            "needs exactly one of \"exact\", \"one_of\", \"present\", or \"gt\"/\"lt\"",
        );
    }
    Ok(if let Some(v) = c.exact {
        BodyTest::Exact(v)
    } else if let Some(vs) = c.one_of {
        if vs.is_empty() {
            return err_in(bf, "one_of", "must list at least one value");
        }
        BodyTest::OneOf(vs)
    } else if let Some(b) = c.present {
        BodyTest::Present(b)
    } else {
        for (name, v) in [("gt", gt), ("lt", lt)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return err_in(bf, name, "must be a finite number");
            }
        }
        if let (Some(g), Some(l)) = (gt, lt) {
            if g >= l {
                return err_at(
                    bf,
                    "",
                    format!(
                        "\"gt\" ({}) must be below \"lt\" ({}): nothing could match",
                        plain(g),
                        plain(l)
                    ),
                );
            }
        }
        BodyTest::Range { gt, lt }
    })
}

fn compile_then(field: &str, t: ThenDto, ctx: &Context<'_>) -> Result<Action, Refusal> {
    let forms = usize::from(t.model.is_some() || t.target.is_some())
        + usize::from(t.reply.is_some())
        + usize::from(t.reject.is_some())
        + usize::from(t.restrict.is_some());
    if forms != 1 {
        return err(field, "needs exactly one of: \"model\"/\"target\" (pin), \"reply\", \"reject\", or \"restrict\"");
    }
    if let Some(r) = t.restrict {
        if r.region.is_none() && r.tags.is_empty() {
            return err_in(field, "restrict", "needs \"region\" and/or \"tags\"");
        }
        return Ok(Action::Restrict {
            region: r.region,
            tags: r.tags,
        });
    }
    if let Some(reply) = t.reply {
        return then_reply(&child(field, "reply"), reply, ctx.source);
    }
    if let Some(reject) = t.reject {
        return then_reject(&child(field, "reject"), reject);
    }
    then_pin(field, t.model, t.target, ctx)
}

fn then_reply(rf: &str, reply: ReplyDto, source: BodySource) -> Result<Action, Refusal> {
    let status = u64::from(reply.status);
    check_range(rf, "status", Range::To, (200, 599), status)?;
    let body = match (reply.echo, reply.body) {
        (true, Some(_)) => return err(rf, "\"echo\" and \"body\" exclude each other"),
        (true, None) => {
            if source == BodySource::Metadata {
                return err_in(rf, "echo", "needs the raw body, which body.source \"metadata\" does not give; use \"buffer\"");
            }
            ReplyBody::Echo
        }
        (false, Some(v)) => ReplyBody::Json(crate::json::write::to_vec(&v)),
        (false, None) => ReplyBody::Empty,
    };
    Ok(Action::Reply {
        status: reply.status,
        body,
    })
}

fn then_reject(rf: &str, reject: RejectDto) -> Result<Action, Refusal> {
    let status = u64::from(reject.status);
    check_range(rf, "status", Range::To, (400, 599), status)?;
    if reject.message.is_empty() {
        return err_in(rf, "message", "must not be empty");
    }
    Ok(Action::Reject {
        status: reject.status,
        message: reject.message,
    })
}

/// A pin: a model, a target of it, or a target name for whichever model the request names.
fn then_pin(
    field: &str,
    model_name: Option<String>,
    target: Option<String>,
    ctx: &Context<'_>,
) -> Result<Action, Refusal> {
    let model = optional_model(field, "model", ctx.index, model_name.as_ref())?;
    let target = match (target, model) {
        (None, _) => TargetPin::None,
        (Some(name), Some(mi)) => {
            let targets = ctx.models.get(mi).map_or(&[][..], |m| &m.targets);
            let of = model_name.as_deref().unwrap_or_default();
            TargetPin::Index(target_named(field, "target", targets, of, &name)?)
        }
        (Some(name), None) => {
            if !ctx.models.iter().any(|m| m.target_by_name(&name).is_some()) {
                return err_at(
                    field,
                    "target",
                    format!("no model has a target named {}", quoted(&name)),
                );
            }
            TargetPin::Named(name)
        }
    };
    Ok(Action::Pin { model, target })
}
