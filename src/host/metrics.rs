//! Counter ids, defined once per VM from the names the core derives.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use crate::config::Config;
use crate::metrics::MetricNames;
use crate::policy::{Reason, ReplyKind};

pub(crate) struct Metrics {
    requests: Vec<Vec<u32>>,
    decisions_fixed: Vec<u32>,
    decisions_rules: Vec<u32>,
    pub body_parse_failures: u32,
    pub body_too_large: u32,
    local_replies: Vec<u32>,
}

fn define(name: &str) -> Result<u32, String> {
    hostcalls::define_metric(MetricType::Counter, name).map_err(|s| format!("{name}: {s:?}"))
}

fn define_all(names: &[String]) -> Result<Vec<u32>, String> {
    names.iter().map(|n| define(n)).collect()
}

impl Metrics {
    pub fn define(cfg: &Config) -> Result<Self, String> {
        let names = MetricNames::for_config(cfg);
        Ok(Metrics {
            requests: names
                .requests
                .iter()
                .map(|per_model| define_all(per_model))
                .collect::<Result<_, _>>()?,
            decisions_fixed: define_all(&names.decisions_fixed)?,
            decisions_rules: define_all(&names.decisions_rules)?,
            body_parse_failures: define(&names.body_parse_failures)?,
            body_too_large: define(&names.body_too_large)?,
            local_replies: define_all(&names.local_replies)?,
        })
    }

    pub fn bump(id: u32) {
        // A failed increment loses one count; it must never fail the request.
        let _ = hostcalls::increment_metric(id, 1);
    }

    pub fn request(&self, model: usize, target: usize) {
        if let Some(&id) = self.requests.get(model).and_then(|m| m.get(target)) {
            Self::bump(id);
        }
    }

    pub fn decision(&self, reason: Reason) {
        let id = match reason {
            Reason::Rule(i) => self.decisions_rules.get(i),
            fixed => fixed
                .fixed_index()
                .and_then(|i| self.decisions_fixed.get(i)),
        };
        if let Some(&id) = id {
            Self::bump(id);
        }
    }

    pub fn local_reply(&self, kind: ReplyKind) {
        if let Some(&id) = self.local_replies.get(kind.index()) {
            Self::bump(id);
        }
    }
}
