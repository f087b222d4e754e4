//! What the upstream's response shows, turned into a reward (models that learn from responses)
//! and into target health (fallback cooldowns, latency estimates) when the stream is done.

use crate::callout::is_failure;
use crate::config::{Config, Model};
use crate::host::{Host, Map};
use crate::learning::health;
use crate::payload::{format_of_content_type, Format};
use crate::plugin::{EvalJob, Plugin};
use crate::policy::Route;
use crate::reward::{implicit_reward, usage_from_json, Observation, SseUsageScanner};

/// Largest non-streamed response body copied to read token usage from.
const MAX_USAGE_BODY: usize = 1024 * 1024;

/// The response, as far as a reward needs it.
struct Watch {
    status: u16,
    latency_ms: u64,
    header: Option<String>,
    first_byte_ms: Option<u64>,
    sse: Option<SseUsageScanner>,
    json: Option<Vec<u8>>,
    streaming: bool,
}

/// What one stream's response is watched for.
#[derive(Default)]
pub(super) struct Observed {
    /// The upstream route of a model that learns from responses, and what its response said.
    learning: Option<Route>,
    watch: Option<Watch>,
    /// The upstream route of a model whose target health is tracked, and what its response
    /// said (status, `Retry-After`, latency).
    health: Option<Route>,
    health_sample: Option<HealthSample>,
    /// A gRPC answer whose `grpc-status` is still to come in its trailers.
    grpc_pending: bool,
}

/// What a response said about its target's health, and when its headers came (Unix ns).
struct HealthSample {
    status: u16,
    retry_after: Option<String>,
    latency_ms: u64,
    at_ns: u64,
}

/// Milliseconds since `started_ns`: read only when a response is watched (one host call).
fn elapsed_ms(host: &dyn Host, started_ns: u64) -> u64 {
    host.now_nanos()
        .map_or(0, |n| n.saturating_sub(started_ns) / 1_000_000)
}

/// The clock (ns) and the milliseconds since `started_ns`, from one host call.
fn now_and_elapsed(host: &dyn Host, started_ns: u64) -> (u64, u64) {
    let now = host.now_nanos().unwrap_or(0);
    (now, now.saturating_sub(started_ns) / 1_000_000)
}

/// The HTTP status a `grpc-status` in `map` stands for.
fn grpc_status(host: &dyn Host, map: Map) -> Option<u16> {
    let value = host.header(map, "grpc-status").ok().flatten()?;
    let code = crate::parse_int::unsigned::<u32>(value.trim(), 10).unwrap_or(u32::MAX);
    Some(crate::payload::grpc::http_equivalent(code))
}

fn model_of<'a>(cfg: &'a Config, route: &Route) -> Option<&'a Model> {
    cfg.models.get(route.model)
}

impl Observed {
    /// A request went upstream on `route`.
    pub(super) fn watch(&mut self, plugin: &Plugin, route: Route) {
        if plugin
            .health_keys
            .get(route.model)
            .is_some_and(Option::is_some)
        {
            self.health = Some(route);
        }
        if model_of(&plugin.cfg, &route).is_some_and(|m| m.reward.is_some()) {
            self.learning = Some(route);
        }
    }

    pub(super) fn response_headers(
        &mut self,
        host: &dyn Host,
        cfg: &Config,
        started_ns: u64,
        end_of_stream: bool,
        grpc: bool,
    ) {
        if self.health.is_none() && self.learning.is_none() {
            return;
        }
        let (now_ns, elapsed_ms) = now_and_elapsed(host, started_ns);
        let mut status: u16 = host
            .response_header(":status")
            .and_then(|s| crate::parse_int::unsigned(&s, 10))
            .unwrap_or(0);
        if grpc && status == 200 {
            // A gRPC call's outcome is its `grpc-status`: here in a trailers-only answer, else
            // in the trailers.
            match grpc_status(host, Map::ResponseHeaders) {
                Some(s) => status = s,
                None => self.grpc_pending = true,
            }
        }
        if self.health.is_some() {
            let retry_after = is_failure(status)
                .then(|| host.response_header("retry-after"))
                .flatten();
            self.health_sample = Some(HealthSample {
                status,
                retry_after,
                latency_ms: elapsed_ms,
                at_ns: now_ns,
            });
        }
        let Some(settings) = self
            .learning
            .and_then(|r| model_of(cfg, &r)?.reward.as_ref())
        else {
            return;
        };
        let content_type = host.response_header("content-type").unwrap_or_default();
        let wants_usage = settings.cost_weight > 0.0 || settings.evaluator.is_some();
        let streaming = content_type.starts_with("text/event-stream");
        let json = wants_usage
            && !end_of_stream
            && format_of_content_type(&content_type) == Some(Format::Json);
        self.watch = Some(Watch {
            status,
            latency_ms: elapsed_ms,
            header: settings
                .header
                .as_deref()
                .and_then(|h| host.response_header(h)),
            first_byte_ms: None,
            sse: (wants_usage && streaming).then(SseUsageScanner::default),
            json: json.then(Vec::new),
            streaming,
        });
    }

    /// The trailers: a gRPC call's status, read as the HTTP status it stands for.
    pub(super) fn response_trailers(&mut self, host: &dyn Host) {
        if !self.grpc_pending {
            return;
        }
        self.grpc_pending = false;
        // Trailers without a status are a broken answer.
        let status = grpc_status(host, Map::ResponseTrailers).unwrap_or(500);
        self.set_status(status);
    }

    fn set_status(&mut self, status: u16) {
        if let Some(w) = self.watch.as_mut() {
            w.status = status;
        }
        if let Some(h) = self.health_sample.as_mut() {
            h.status = status;
        }
    }

    /// A response body chunk passing through: nothing is held back.
    pub(super) fn response_body(&mut self, host: &dyn Host, body_size: usize, started_ns: u64) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        if watch.first_byte_ms.is_none() && body_size > 0 {
            watch.first_byte_ms = Some(elapsed_ms(host, started_ns));
        }
        if watch.sse.is_none() && watch.json.is_none() {
            return;
        }
        let chunk = host
            .buffer(crate::host::Buffer::ResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Some(sse) = watch.sse.as_mut() {
            sse.feed(&chunk);
        }
        if let Some(json) = watch.json.as_mut() {
            if json.len().saturating_add(chunk.len()) > MAX_USAGE_BODY {
                watch.json = None;
            } else {
                json.extend_from_slice(&chunk);
            }
        }
    }

    /// The stream is done: the reward (applied now or handed to the evaluator) and the health.
    pub(super) fn learn(
        &mut self,
        host: &dyn Host,
        plugin: &Plugin,
        decision: Option<&str>,
        ctx: u32,
    ) {
        if std::mem::take(&mut self.grpc_pending) {
            // The call ended without a status: it failed.
            self.set_status(500);
        }
        if let (Some(route), Some(watch)) = (self.learning.take(), self.watch.take()) {
            reward(host, plugin, route, watch, decision, ctx);
        }
        if let (Some(route), Some(sample)) = (self.health.take(), self.health_sample.take()) {
            record_health(host, plugin, route, sample, ctx);
        }
    }
}

fn reward(
    host: &dyn Host,
    plugin: &Plugin,
    route: Route,
    watch: Watch,
    decision: Option<&str>,
    ctx: u32,
) {
    let Some(model) = plugin.cfg.models.get(route.model) else {
        return;
    };
    let (Some(settings), Some(target)) = (&model.reward, model.targets.get(route.target)) else {
        return;
    };
    let usage = match (&watch.sse, &watch.json) {
        (Some(sse), _) => sse.usage(),
        (None, Some(json)) => usage_from_json(json),
        _ => None,
    };
    // A streamed answer's latency is its time to first byte; headers come at once.
    let latency_ms = match (watch.streaming, watch.first_byte_ms) {
        (true, Some(ttfb)) => ttfb,
        _ => watch.latency_ms,
    };
    let obs = Observation {
        status: watch.status,
        latency_ms,
        header: watch.header,
        usage,
    };
    let reward = implicit_reward(settings, &target.price, &obs);
    if settings.evaluator.is_some() {
        let summary = crate::json::json!({
            "model": model.name,
            "target": target.name,
            "decision": decision,
            "status": obs.status,
            "latency_ms": obs.latency_ms,
            "ttfb_ms": watch.first_byte_ms,
            "usage": obs.usage.map(|u| crate::json::json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens})),
            "implicit_reward": reward.as_ref().ok(),
        });
        let job = EvalJob {
            model: route.model,
            target: target.name.clone(),
            context: route.context,
            body: crate::json::write::to_vec(&summary),
        };
        return plugin.enqueue_evaluation(host, job);
    }
    match reward {
        Ok(r) => plugin.record_reward(
            host,
            route.model,
            crate::learning::Graded {
                target: &target.name,
                context: route.context.as_ref(),
            },
            r,
            plugin.metrics.rewards_implicit,
        ),
        Err(e) => {
            host.bump(plugin.metrics.rewards_failed);
            crate::host_log!(Warn, "inference-router[{ctx}]: no implicit reward: {e}");
        }
    }
}

/// Cooldown after a failure (5xx, 429, or Envoy's own 503 for an unreachable upstream) and
/// the latency sample, into the model's shared health.
fn record_health(host: &dyn Host, plugin: &Plugin, route: Route, sample: HealthSample, ctx: u32) {
    let (Some(model), Some(Some(key))) = (
        plugin.cfg.models.get(route.model),
        plugin.health_keys.get(route.model),
    ) else {
        return;
    };
    let failed = is_failure(sample.status);
    // A cooldown counts from the end of the failed response (the clock is read again).
    let cool_until = failed.then(|| {
        host.now_secs().saturating_add(health::cooldown_seconds(
            sample.retry_after.as_deref(),
            model.cooldown_seconds,
        ))
    });
    let sample = health::Sample {
        target: route.target,
        cool_until,
        latency_ms: (!failed).then_some(sample.latency_ms as f64),
        at_ms: sample.at_ns / 1_000_000,
    };
    let store = crate::host::HostStore(host);
    if let Err(e) = health::record(&store, key, model.targets.len(), sample) {
        crate::host_log!(
            Warn,
            "inference-router[{ctx}]: target health not recorded: {e}"
        );
    }
}
