//! How metric names are written. `telemetry` defines them at plugin start, from the
//! configuration, and increments them by id; nothing is formatted per request.

pub const PREFIX: &str = "inference_router";

/// A name as one segment of a metric name: `.` would split Envoy's stat hierarchy and `:` is not
/// valid in Prometheus names, so both become `_`.
pub fn metric_segment(name: &str) -> String {
    name.chars().map(segment_char).collect()
}

/// A character of a [`metric_segment`].
pub fn segment_char(c: char) -> char {
    if c == '.' || c == ':' {
        '_'
    } else {
        c
    }
}

pub const GAUGE_SUFFIXES: [&str; 4] = ["pulls", "mean_reward_milli", "alpha_milli", "beta_milli"];
