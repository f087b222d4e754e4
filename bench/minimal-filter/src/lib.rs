//! The minimal wasm filter of the benchmark: copies the request header `x-model` into
//! `x-inference-cluster` (or sets `chat` when it is absent), which Envoy routes on with
//! `cluster_header`. One header read, one header write per request, nothing else: the cost of
//! being a wasm filter at all, which every wasm configuration is compared to.
//!
//! With the plugin configuration `mimic`, it instead makes the same host calls per request as
//! inference-router's header routing (clock, header read, two header writes, one removal,
//! clear_route_cache, two counters; four response headers), with no decision logic: the analysis row that splits
//! inference-router's cost into host calls and work inside the module (`BENCH_ANALYSIS=1`).
//!
//! With `repeat <call> <n>` it does its minimal work plus `n` more host calls of one kind per
//! request (`get_header`, `replace_header`, `increment_metric`, `clear_route_cache`, `clock`,
//! `get_shared_data`): what one host call costs inside Envoy (`BENCH_HOSTCALLS=1`).
//!
//! Benchmark code: the SDK's convenience calls (which panic on an unexpected host status) are
//! acceptable here; the real filter goes through its own non-panicking ABI layer.

use std::cell::Cell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    mimic: Option<Rc<Mimic>>,
    repeat: Option<Rc<Repeat>>,
}

#[derive(Clone, Copy)]
enum Call {
    GetHeader,
    ReplaceHeader,
    IncrementMetric(u32),
    ClearRouteCache,
    Clock,
    GetSharedData,
}

struct Repeat {
    call: Call,
    times: usize,
}

const SHARED_KEY: &str = "bench/minimal/value";

impl Repeat {
    fn parse(config: &str) -> Option<Repeat> {
        let mut words = config.split_whitespace();
        if words.next()? != "repeat" {
            return None;
        }
        let call = match words.next()? {
            "get_header" => Call::GetHeader,
            "replace_header" => Call::ReplaceHeader,
            "increment_metric" => Call::IncrementMetric(
                hostcalls::define_metric(MetricType::Counter, "bench.repeat").ok()?,
            ),
            "clear_route_cache" => Call::ClearRouteCache,
            "clock" => Call::Clock,
            "get_shared_data" => {
                // A value the size of a small bandit state.
                hostcalls::set_shared_data(SHARED_KEY, Some(&[7u8; 96]), None).ok()?;
                Call::GetSharedData
            }
            _ => return None,
        };
        let times = words.next()?.parse().ok()?;
        Some(Repeat { call, times })
    }

    fn run(&self, ctx: &dyn HttpContext) {
        for _ in 0..self.times {
            match self.call {
                Call::GetHeader => {
                    let _ = ctx.get_http_request_header("x-user-id");
                }
                Call::ReplaceHeader => ctx.set_http_request_header("x-bench", Some("value")),
                Call::IncrementMetric(id) => {
                    let _ = hostcalls::increment_metric(id, 1);
                }
                Call::ClearRouteCache => {
                    let _ = hostcalls::call_foreign_function("clear_route_cache", None);
                }
                Call::Clock => {
                    let _ = ctx.get_current_time();
                }
                Call::GetSharedData => {
                    let _ = hostcalls::get_shared_data(SHARED_KEY);
                }
            }
        }
    }
}

/// What the mimic needs across requests.
struct Mimic {
    counters: [u32; 2],
    next_id: Cell<u64>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        let config = String::from_utf8_lossy(&config);
        if config.starts_with("repeat") {
            self.repeat = Some(Rc::new(match Repeat::parse(&config) {
                Some(r) => r,
                None => return false,
            }));
        } else if config.trim() == "mimic" {
            let define = |name: &str| hostcalls::define_metric(MetricType::Counter, name);
            let (Ok(a), Ok(b)) = (
                define("bench.mimic.requests"),
                define("bench.mimic.decisions"),
            ) else {
                return false;
            };
            self.mimic = Some(Rc::new(Mimic {
                counters: [a, b],
                next_id: Cell::new(0x5eed),
            }));
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(match (&self.mimic, &self.repeat) {
            (Some(m), _) => Box::new(MimicHttp(Rc::clone(m))),
            (None, Some(r)) => Box::new(RepeatHttp(Rc::clone(r))),
            (None, None) => Box::new(Minimal),
        })
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Minimal;

impl Context for Minimal {}

impl HttpContext for Minimal {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let model = self.get_http_request_header("x-model");
        let cluster = model.as_deref().unwrap_or("chat");
        self.set_http_request_header("x-inference-cluster", Some(cluster));
        Action::Continue
    }
}

struct RepeatHttp(Rc<Repeat>);

impl Context for RepeatHttp {}

impl HttpContext for RepeatHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let model = self.get_http_request_header("x-model");
        let cluster = model.as_deref().unwrap_or("chat");
        self.set_http_request_header("x-inference-cluster", Some(cluster));
        self.0.run(self);
        Action::Continue
    }
}

struct MimicHttp(Rc<Mimic>);

impl Context for MimicHttp {}

impl HttpContext for MimicHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let _ = self.get_current_time();
        let model = self.get_http_request_header("x-model");
        let cluster = model.as_deref().unwrap_or("chat");
        self.set_http_request_header("x-inference-cluster", Some(cluster));
        self.set_http_request_header("x-inference-target", Some("stable"));
        // A client's shadow mark is removed.
        self.set_http_request_header("x-inference-shadow", None);
        let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        for id in self.0.counters {
            let _ = hostcalls::increment_metric(id, 1);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let id = self.0.next_id.get().wrapping_add(1);
        self.0.next_id.set(id);
        let decision = format!("{id:024x}");
        self.set_http_response_header("x-inference-model", Some("chat"));
        self.set_http_response_header("x-inference-target", Some("stable"));
        self.set_http_response_header("x-inference-reason", Some("weighted"));
        self.set_http_response_header("x-inference-decision", Some(&decision));
        Action::Continue
    }
}
