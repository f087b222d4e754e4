//! Field checks and name lookups shared by the sections; each error names the field.

use crate::config::{ConfigError, Target};
use crate::format_float::plain;
use crate::metrics::metric_segment;
use crate::quote::quoted;
use crate::vecmap::{VecMap, VecSet};

/// A refused configuration, boxed: a `Result` carrying it is at most one word wider than its
/// `Ok` value, so each `?` of the compiler moves one word instead of a `ConfigError`'s six.
pub(super) type Refusal = Box<ConfigError>;

const MAX_NAME_LEN: usize = 128;
// Its message says 128 in words (a literal is smaller than a `format!`).
const _: () = assert!(MAX_NAME_LEN == 128);
/// Longest callout timeout (router, fan-out, shadow, evaluator).
const MAX_TIMEOUT_MS: u32 = 60_000;

/// `Err` refusing `field` for `reason`. This and the three below are inlined, so the caller
/// sees the result is an error; each is one call of a cold builder, not allocations at every
/// site.
#[inline(always)]
pub(super) fn err<T>(field: &str, reason: &str) -> Result<T, Refusal> {
    Err(refuse(field, reason))
}

/// [`err`] for the field `at.key` (see [`path`]).
#[inline(always)]
pub(super) fn err_in<T>(at: &str, key: &str, reason: &str) -> Result<T, Refusal> {
    Err(refuse_in(at, key, reason))
}

/// [`err_in`] with a reason already written.
#[inline(always)]
pub(super) fn err_at<T>(at: &str, key: &str, reason: String) -> Result<T, Refusal> {
    Err(refuse_at(at, key, reason))
}

/// [`err`] for a field or reason already built.
#[inline(always)]
pub(super) fn err_with<T>(
    field: impl Into<String>,
    reason: impl Into<String>,
) -> Result<T, Refusal> {
    Err(refusal(field.into(), reason.into()))
}

/// The one place a refusal is boxed (cold: a configuration is refused once, if at all).
#[cold]
#[inline(never)]
pub(super) fn refusal(field: String, reason: String) -> Refusal {
    Box::new(ConfigError { field, reason })
}

#[cold]
#[inline(never)]
fn refuse(field: &str, reason: &str) -> Refusal {
    refusal(field.to_owned(), reason.to_owned())
}

#[cold]
#[inline(never)]
fn refuse_in(at: &str, key: &str, reason: &str) -> Refusal {
    refusal(path(at, key), reason.to_owned())
}

#[cold]
#[inline(never)]
pub(super) fn refuse_at(at: &str, key: &str, reason: String) -> Refusal {
    refusal(path(at, key), reason)
}

/// The path `at.key`, or `at` alone when `key` is empty. The checks below take their field
/// as these two parts and join them only to refuse it: a value that passes builds no path.
/// A `key` is always a literal; a name from the document is joined by [`child`].
fn path(at: &str, key: &str) -> String {
    if key.is_empty() {
        at.to_owned()
    } else {
        child(at, key)
    }
}

/// `field.key`: the path of a field under `field` (one function, not a `format!` per site).
pub(super) fn child(field: &str, key: &str) -> String {
    let mut path = String::with_capacity(field.len() + 1 + key.len());
    path.push_str(field);
    path.push('.');
    path.push_str(key);
    path
}

/// `"value" then`: the value quoted as `{:?}` quotes it, then what is wrong with it (one
/// writer for every such message).
#[inline(never)]
pub(super) fn quoted_then(value: &str, then: &str) -> String {
    format!("{} {then}", quoted(value))
}

/// `field[i]`: the path of an item of the list `field`.
pub(super) fn item(field: &str, i: usize) -> String {
    format!("{field}[{i}]")
}

/// `at.key[i]`: [`item`] of [`child`] in one call.
pub(super) fn item_in(at: &str, key: &str, i: usize) -> String {
    format!("{at}.{key}[{i}]")
}

pub(super) fn check_name(at: &str, key: &str, name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return err_in(at, key, "must be 1 to 128 characters");
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if !first_ok || !rest_ok {
        return err_at(at, key, quoted_then(name, "may hold only letters, digits, '.', '_', ':' and '-', and must start with a letter or digit"));
    }
    Ok(())
}

/// The names of one list (models, the targets of a model, rules) and the metric segments
/// they give: two different names may still give the same metric name.
#[derive(Default)]
pub(super) struct Names {
    names: VecSet<String>,
    metrics: VecSet<String>,
}

impl Names {
    /// Checks `name` (the field `at.key`) and records it. `earlier` / `earlier_metric`: how
    /// the messages call an earlier entry of the list ("target of this model" / "target").
    pub(super) fn add(
        &mut self,
        (at, key): (&str, &str),
        name: &str,
        earlier: &str,
        earlier_metric: &str,
    ) -> Result<(), Refusal> {
        check_name(at, key, name)?;
        // One `format!` for both messages.
        let (clash, earlier) = if !self.names.insert(name.to_string()) {
            ("is used by", earlier)
        } else if !self.metrics.insert(metric_segment(name)) {
            ("gives the same metric name as", earlier_metric)
        } else {
            return Ok(());
        };
        err_at(
            at,
            key,
            format!("{} {clash} an earlier {earlier}", quoted(name)),
        )
    }
}

pub(super) fn check_header_name(at: &str, key: &str, name: &str) -> Result<(), Refusal> {
    if name.is_empty() {
        return err_in(at, key, "must not be empty");
    }
    let reason = if name.starts_with(':') {
        "is a pseudo-header; name a regular header"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        "is not a valid HTTP header name"
    } else if name.chars().any(|c| c.is_ascii_uppercase()) {
        "must be lowercase (Envoy and HTTP/2 use lowercase header names)"
    } else {
        return Ok(());
    };
    err_at(at, key, quoted_then(name, reason))
}

/// `HH:MM` → minute of the day.
pub(super) fn parse_hhmm(at: &str, key: &str, s: &str) -> Result<u32, Refusal> {
    let parsed = s.split_once(':').and_then(|(h, m)| {
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let h: u32 = crate::parse_int::unsigned(h, 10)?;
        let m: u32 = crate::parse_int::unsigned(m, 10)?;
        (h < 24 && m < 60).then_some(h * 60 + m)
    });
    match parsed {
        Some(minute) => Ok(minute),
        None => err_at(
            at,
            key,
            quoted_then(s, "is not a UTC time of day as \"HH:MM\" (00:00 to 23:59)"),
        ),
    }
}

pub(super) fn check_path(at: &str, key: &str, path: &str) -> Result<(), Refusal> {
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
        return err_at(
            at,
            key,
            quoted_then(path, "must be a path starting with '/', without query"),
        );
    }
    Ok(())
}

pub(super) fn check_weight(at: &str, key: &str, v: f64) -> Result<f64, Refusal> {
    if !v.is_finite() || v < 0.0 {
        return err_at(
            at,
            key,
            format!("must be a finite number of at least 0, got {}", plain(v)),
        );
    }
    Ok(v)
}

/// An Envoy cluster name: not empty, no spaces or control characters.
pub(super) fn is_cluster_name(cluster: &str) -> bool {
    !cluster.is_empty() && !cluster.chars().any(|c| c.is_ascii_control() || c == ' ')
}

/// The cluster a callout (router, evaluator) is sent to.
pub(super) fn check_cluster(at: &str, key: &str, cluster: &str) -> Result<(), Refusal> {
    if !is_cluster_name(cluster) {
        return err_in(at, key, "must be a non-empty Envoy cluster name");
    }
    Ok(())
}

/// How [`check_range`] words a value out of range.
#[derive(Clone, Copy)]
pub(super) enum Range {
    /// "must be between {lo} and {hi}, got {got}"
    Between,
    /// "must be {lo} to {hi}, got {got}"
    To,
}

/// `got` within `[lo, hi]`: one message writer for every bounded number.
pub(super) fn check_range(
    at: &str,
    key: &str,
    words: Range,
    (lo, hi): (u64, u64),
    got: u64,
) -> Result<(), Refusal> {
    if (lo..=hi).contains(&got) {
        return Ok(());
    }
    // One `format!` for both wordings.
    let (between, and) = match words {
        Range::Between => ("between ", "and"),
        Range::To => ("", "to"),
    };
    err_at(
        at,
        key,
        format!("must be {between}{lo} {and} {hi}, got {got}"),
    )
}

/// `got` at most `max`.
pub(super) fn check_at_most(at: &str, key: &str, max: u64, got: u64) -> Result<(), Refusal> {
    if got <= max {
        return Ok(());
    }
    err_at(at, key, format!("must be at most {max}, got {got}"))
}

/// An entry a list names a second time.
pub(super) fn listed_twice(field: String, name: &str) -> Refusal {
    refusal(field, quoted_then(name, "is listed twice"))
}

/// A callout's timeout: 1 ms to a minute.
pub(super) fn check_timeout(at: &str, key: &str, timeout_ms: u32) -> Result<u32, Refusal> {
    let bounds = (1, u64::from(MAX_TIMEOUT_MS));
    check_range(at, key, Range::Between, bounds, u64::from(timeout_ms))?;
    Ok(timeout_ms)
}

/// The index of a model another section names.
pub(super) fn model_named(
    at: &str,
    key: &str,
    index: &VecMap<String, usize>,
    name: &str,
) -> Result<usize, Refusal> {
    match index.get(name) {
        Some(&i) => Ok(i),
        None => err_at(
            at,
            key,
            quoted_then(name, "is not the name of a configured model"),
        ),
    }
}

/// [`model_named`] for an optional name.
pub(super) fn optional_model(
    at: &str,
    key: &str,
    index: &VecMap<String, usize>,
    name: Option<&String>,
) -> Result<Option<usize>, Refusal> {
    name.map(|n| model_named(at, key, index, n)).transpose()
}

/// The index of a target of model `model` (its name, for the message) another field names.
pub(super) fn target_named(
    at: &str,
    key: &str,
    targets: &[Target],
    model: &str,
    name: &str,
) -> Result<usize, Refusal> {
    match targets.iter().position(|t| t.name == name) {
        Some(i) => Ok(i),
        None => err_at(
            at,
            key,
            format!(
                "{} is not a target of model {}",
                quoted(name),
                quoted(model)
            ),
        ),
    }
}
