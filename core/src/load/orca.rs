//! ORCA load reports in the `endpoint-load-metrics` response header, in the two text forms an
//! upstream may send: `TEXT key=value, key=value` and `JSON {...}` (the `BIN` form, a base64
//! protobuf, is not read). vLLM reports its queue and KV-cache use as named metrics when the
//! request asks with `endpoint-load-metrics-format`.

/// The response header carrying a report.
pub const HEADER: &str = "endpoint-load-metrics";
/// The request header asking for one, and in which form.
pub const FORMAT_HEADER: &str = "endpoint-load-metrics-format";

const WAITING: &str = "num_requests_waiting";
const KV_CACHE: &str = "kv_cache_usage_perc";
/// A report longer than this is not read (a header of a few metrics is ~100 bytes).
const MAX_REPORT_BYTES: usize = 4096;

/// What routing reads from a report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    /// Requests queued at the endpoint (`named_metrics.num_requests_waiting`).
    pub waiting: Option<f64>,
    /// KV-cache use as a fraction, clamped to [0, 1] (`named_metrics.kv_cache_usage_perc`).
    pub kv_cache: Option<f64>,
}

/// Why a report was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// `BIN` or an unknown prefix.
    Form,
    /// Not `key=value` pairs / not a JSON object / a value that is not a finite number ≥ 0.
    Malformed,
}

/// Parses a report. One that names neither metric is valid and empty.
pub fn parse(header: &str) -> Result<Report, Invalid> {
    let header = header.trim();
    if header.len() > MAX_REPORT_BYTES {
        return Err(Invalid::Malformed);
    }
    let (form, rest) = header.split_once(' ').unwrap_or((header, ""));
    match form {
        "TEXT" => parse_text(rest),
        "JSON" => parse_json(rest),
        "BIN" => Err(Invalid::Form),
        // Some servers send the payload without its form.
        _ if header.starts_with('{') => parse_json(header),
        _ if header.contains('=') => parse_text(header),
        _ => Err(Invalid::Form),
    }
}

fn parse_text(text: &str) -> Result<Report, Invalid> {
    let mut report = Report::default();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        // `name=value`; newer Envoys also write `name:value`.
        let (key, value) = (pair.split_once('='))
            .or_else(|| crate::substr::rsplit_once(pair, b':'))
            .ok_or(Invalid::Malformed)?;
        let value = crate::parse_float::parse_f64(value.trim()).ok_or(Invalid::Malformed)?;
        let name = key.trim().strip_prefix("named_metrics.");
        set(&mut report, name, value)?;
    }
    Ok(report)
}

fn parse_json(text: &str) -> Result<Report, Invalid> {
    let value = crate::json::read::from_slice(text.as_bytes()).map_err(|_| Invalid::Malformed)?;
    let Some(named) = value
        .as_object()
        .ok_or(Invalid::Malformed)?
        .get("named_metrics")
    else {
        return Ok(Report::default());
    };
    let mut report = Report::default();
    for (name, v) in named.as_object().ok_or(Invalid::Malformed)? {
        let x = v.as_f64().ok_or(Invalid::Malformed)?;
        set(&mut report, Some(name), x)?;
    }
    Ok(report)
}

fn set(report: &mut Report, name: Option<&str>, value: f64) -> Result<(), Invalid> {
    if !value.is_finite() || value < 0.0 {
        return Err(Invalid::Malformed);
    }
    match name {
        Some(WAITING) => report.waiting = Some(value),
        Some(KV_CACHE) => report.kv_cache = Some(value.min(1.0)),
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_forms() {
        let text = "TEXT cpu_utilization=0.3, named_metrics.kv_cache_usage_perc=0.5, named_metrics.num_requests_waiting=3";
        assert_eq!(
            parse(text),
            Ok(Report {
                waiting: Some(3.0),
                kv_cache: Some(0.5)
            })
        );
        let json = r#"JSON {"rps_fractional": 10, "named_metrics": {"kv_cache_usage_perc": 1.5, "num_requests_waiting": 0}}"#;
        assert_eq!(
            parse(json),
            Ok(Report {
                waiting: Some(0.0),
                kv_cache: Some(1.0)
            })
        );
        assert_eq!(parse("TEXT cpu_utilization=0.3"), Ok(Report::default()));
        let bare = Ok(Report {
            waiting: Some(2.0),
            kv_cache: None,
        });
        assert_eq!(parse("named_metrics.num_requests_waiting=2"), bare);
        assert_eq!(parse("TEXT named_metrics.num_requests_waiting:2"), bare);
        assert_eq!(
            parse(r#"{"named_metrics":{"num_requests_waiting":2}}"#),
            bare
        );
        assert_eq!(parse("JSON {}"), Ok(Report::default()));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse("BIN CgQIARAB"), Err(Invalid::Form));
        assert_eq!(parse(""), Err(Invalid::Form));
        assert_eq!(parse("TEXT a"), Err(Invalid::Malformed));
        assert_eq!(parse("garbage"), Err(Invalid::Form));
        assert_eq!(
            parse("TEXT named_metrics.num_requests_waiting=-1"),
            Err(Invalid::Malformed)
        );
        assert_eq!(
            parse("TEXT named_metrics.num_requests_waiting=NaN"),
            Err(Invalid::Malformed)
        );
        assert_eq!(parse("JSON [1]"), Err(Invalid::Malformed));
        assert_eq!(
            parse(r#"JSON {"named_metrics": {"num_requests_waiting": "3"}}"#),
            Err(Invalid::Malformed)
        );
        assert_eq!(
            parse(&format!("TEXT {}", "a=1,".repeat(2000))),
            Err(Invalid::Malformed)
        );
    }
}
