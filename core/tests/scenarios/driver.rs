//! A VM for scenarios: the root context configured on a `TestHost`, and streams driven event by
//! event the way Envoy calls a filter.
// Test support: a failed step panics, as a failing test should.
#![allow(
    dead_code,
    clippy::panic,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use inference_router_core::host::Action;
use inference_router_core::plugin::VmState;
use inference_router_core::root::Root;
use inference_router_core::stream::Stream;
pub use inference_router_core::testing::{Dispatched, LocalReply, TestHost};
use serde_json::Value;

pub struct Vm {
    pub host: TestHost,
    pub root: Root,
    next_context: u32,
}

/// What the request phase ended in.
pub struct Sent {
    pub stream: Stream,
    /// The action of the last request callback the filter saw.
    pub action: Action,
}

impl Vm {
    /// A VM whose configuration the plugin accepted.
    pub fn start(config: &Value) -> Vm {
        Self::try_start(config).unwrap_or_else(|e| panic!("configuration refused: {e:?}"))
    }

    /// The critical log lines when the configuration is refused.
    pub fn try_start(config: &Value) -> Result<Vm, Vec<String>> {
        Self::try_start_seeded(config, (7, 11))
    }

    /// A VM of its own Envoy whose entropy is `seeds` (replicas of a fleet differ in it).
    pub fn start_seeded(config: &Value, seeds: (u64, u64)) -> Vm {
        Self::try_start_seeded(config, seeds)
            .unwrap_or_else(|e| panic!("configuration refused: {e:?}"))
    }

    fn try_start_seeded(config: &Value, seeds: (u64, u64)) -> Result<Vm, Vec<String>> {
        let host = TestHost::new();
        host.configure(&config.to_string());
        let mut root = Root::new(VmState::new(seeds.0, seeds.1));
        if !root.configure(&host) {
            return Err(host.critical_logs());
        }
        Ok(Vm {
            host,
            root,
            next_context: 2,
        })
    }

    /// Sends a request's headers and (when there is one) its whole body, as Envoy does for a
    /// buffered request: headers, then one body callback with end of stream.
    pub fn send(&mut self, headers: &[(&str, &str)], body: &[u8]) -> Sent {
        let Sent {
            mut stream,
            mut action,
        } = self.open(headers, body, body.is_empty());
        if !body.is_empty() && self.host.reply().is_none() {
            action = stream.on_request_body(&self.host, body.len(), true);
        }
        Sent { stream, action }
    }

    /// `send`, then the upstream's answer and the end of the stream.
    pub fn exchange(
        &mut self,
        headers: &[(&str, &str)],
        body: &[u8],
        response: &[(&str, &str)],
        response_body: &[u8],
    ) -> Sent {
        let mut sent = self.send(headers, body);
        self.respond(&mut sent, response, response_body);
        sent
    }

    /// The upstream answers a stream that went upstream, and the stream ends.
    pub fn respond(&self, sent: &mut Sent, response: &[(&str, &str)], body: &[u8]) -> Action {
        self.host.respond(response, body);
        let action = sent.stream.on_response_headers(&self.host, body.is_empty());
        if !body.is_empty() {
            sent.stream.on_response_body(&self.host, body.len());
        }
        sent.stream.on_done(&self.host);
        action
    }

    /// The callout with `token` answers.
    pub fn answer(&self, sent: &mut Sent, token: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.host.callout_answer(headers, body);
        sent.stream.on_callout_answer(&self.host, token, body.len());
    }

    /// `n` root ticks.
    pub fn tick(&mut self, n: usize) {
        for _ in 0..n {
            self.root.on_tick(&self.host);
        }
    }

    /// A root-context callout answers.
    pub fn answer_root(&mut self, token: u32, headers: &[(&str, &str)], body: &[u8]) {
        self.host.callout_answer(headers, body);
        self.root.on_callout_answer(&self.host, token, body.len());
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.host.counter(&format!("inference_router.{name}"))
    }

    /// The cluster the request was routed to (the route header the filter set).
    pub fn routed_cluster(&self) -> Option<String> {
        self.host.request_header_value("x-inference-cluster")
    }

    pub fn reply(&self) -> LocalReply {
        self.host.reply().expect("the filter answered itself")
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        self.host.response_header_value(name)
    }
}

/// The three-model configuration of the e2e suite: each model has one target with weight > 0.
pub fn deterministic_models() -> Value {
    serde_json::json!([
        { "name": "sentiment",
          "targets": [ { "name": "v1", "cluster": "sentiment-v1", "weight": 1 },
                       { "name": "v2", "cluster": "sentiment-v2", "weight": 0 } ] },
        { "name": "chat",
          "targets": [ { "name": "small", "cluster": "llm-small", "weight": 1 },
                       { "name": "large", "cluster": "llm-large", "weight": 0 } ] },
        { "name": "iris",
          "targets": [ { "name": "v1", "cluster": "iris-v1", "weight": 1 },
                       { "name": "v2", "cluster": "iris-v2", "weight": 0 } ] }
    ])
}

pub fn deterministic() -> Value {
    serde_json::json!({ "models": deterministic_models() })
}

pub const OK: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];

pub fn post_json(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "models"),
        ("content-type", "application/json"),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers for the families beyond routing and body.
// ---------------------------------------------------------------------------------------------

/// The seeds of a second VM (another Envoy worker, or the VM a reload starts).
pub const OTHER_VM_SEEDS: (u64, u64) = (101, 202);

impl Vm {
    /// Configures a new root context with `config` on the same host (same shared data and
    /// metrics, as a reload or a second worker sees them). Returns `false` (and keeps the old
    /// root) when the configuration is refused.
    pub fn reload(&mut self, config: &Value) -> bool {
        self.host.configure(&config.to_string());
        let mut root = Root::new(VmState::new(OTHER_VM_SEEDS.0, OTHER_VM_SEEDS.1));
        if !root.configure(&self.host) {
            return false;
        }
        self.root = root;
        true
    }

    /// Request headers only, leaving the stream open for body chunks (`body_chunk`).
    pub fn start_request(&mut self, headers: &[(&str, &str)], body: &[u8]) -> Sent {
        self.open(headers, body, false)
    }

    /// A new stream of the current root, and its request headers.
    fn open(&mut self, headers: &[(&str, &str)], body: &[u8], end_of_stream: bool) -> Sent {
        self.next_context += 1;
        let mut stream = self
            .root
            .stream(self.next_context)
            .expect("a configured plugin");
        self.host.request(headers, body);
        let action = stream.on_request_headers(&self.host, end_of_stream);
        Sent { stream, action }
    }

    /// The upstream's response headers (and body, when given) without ending the stream.
    pub fn response_headers(
        &self,
        sent: &mut Sent,
        response: &[(&str, &str)],
        body: &[u8],
    ) -> Action {
        self.host.respond(response, body);
        sent.stream.on_response_headers(&self.host, body.is_empty())
    }

    /// A response body chunk of the size of the body given to `response_headers`.
    pub fn response_body(&self, sent: &mut Sent, size: usize) -> Action {
        sent.stream.on_response_body(&self.host, size)
    }

    /// The stream ends (Envoy's log phase).
    pub fn done(&self, sent: &mut Sent) {
        sent.stream.on_done(&self.host);
    }

    /// A routed request answered 200 by the upstream: its decision id and target name.
    pub fn decision(&mut self, model: &str) -> (String, String) {
        let mut sent = self.send(&get(&format!("/v2/models/{model}/ready")), b"");
        assert_eq!(
            sent.action,
            Action::Continue,
            "{model} was not routed upstream"
        );
        self.respond(&mut sent, OK, b"");
        let id = self
            .response_header("x-inference-decision")
            .expect("a decision id");
        let target = self
            .response_header("x-inference-target")
            .expect("a target");
        (id, target)
    }

    /// POSTs a JSON feedback body; the filter's answer.
    pub fn feedback(&mut self, body: &Value) -> LocalReply {
        let bytes = serde_json::to_vec(body).expect("json");
        let sent = self.send(&post_json(FEEDBACK_PATH), &bytes);
        assert_eq!(sent.action, Action::Pause);
        self.reply()
    }

    /// Header-only feedback.
    pub fn feedback_headers(&mut self, decision: &str, reward: &str) -> LocalReply {
        let sent = self.send(
            &[
                (":method", "POST"),
                (":path", FEEDBACK_PATH),
                (":authority", "models"),
                ("x-inference-decision", decision),
                ("x-inference-reward", reward),
            ],
            b"",
        );
        assert_eq!(sent.action, Action::Pause);
        self.reply()
    }

    /// GET the state endpoint with `token`: the reply.
    pub fn state_with(&mut self, token: &str) -> LocalReply {
        let auth = format!("Bearer {token}");
        let sent = self.send(
            &[
                (":method", "GET"),
                (":path", STATE_PATH),
                ("authorization", &auth),
            ],
            b"",
        );
        assert_eq!(sent.action, Action::Pause);
        self.reply()
    }

    /// The state document (the test token), which must be answered 200.
    pub fn state(&mut self) -> Value {
        let r = self.state_with(STATE_TOKEN);
        assert_eq!(
            r.status,
            200,
            "state endpoint: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json().into()
    }

    /// One model's entry of the state document.
    pub fn model_state(&mut self, model: &str) -> Value {
        let doc = self.state();
        let m = doc["models"][model].clone();
        assert!(m.is_object(), "no state for {model:?} in {doc}");
        m
    }

    pub fn observations(&mut self, model: &str) -> u64 {
        self.model_state(model)["observations"]
            .as_u64()
            .expect("observations")
    }

    /// `[alpha, beta, pulls]` of one target in the state document.
    pub fn arm(&mut self, model: &str, target: &str) -> [f64; 3] {
        let m = self.model_state(model);
        let t = m["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["name"] == target)
            .unwrap_or_else(|| panic!("no target {target} in {m}"))
            .clone();
        let n = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("{k} in {t}"));
        [n("alpha"), n("beta"), n("pulls")]
    }

    /// The callouts dispatched since the current stream started (or since the last `request`).
    pub fn dispatched(&self) -> Vec<Dispatched> {
        self.host.dispatched()
    }

    /// The only callout dispatched.
    pub fn one_dispatched(&self) -> Dispatched {
        let d = self.host.dispatched();
        assert_eq!(d.len(), 1, "one callout expected: {d:?}");
        d.into_iter().next().expect("one callout")
    }
}

impl LocalReplyExt for LocalReply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub trait LocalReplyExt {
    fn text(&self) -> String;
}

/// Asserts one of the filter's JSON error replies: status, JSON content type, the code, a
/// non-empty detail and `x-inference-reason: error`. Returns the JSON.
#[track_caller]
pub fn assert_error(reply: &LocalReply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status, status, "{reply:?} {}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json"),
        "{reply:?}"
    );
    let v = reply.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    assert_eq!(
        reply.header("x-inference-reason"),
        Some("error"),
        "{reply:?}"
    );
    v.into()
}

/// Asserts a refusal of the filter's own endpoints (feedback, state): status and code, and no
/// routing metadata.
#[track_caller]
pub fn assert_refused(reply: &LocalReply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let v = reply.json();
    assert_eq!(v["error"], code, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    v.into()
}

pub fn get(path: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "GET"),
        (":path", path),
        (":authority", "models"),
    ]
}

/// `(name, value)` pairs with `extra` appended.
pub fn with<'a>(
    mut headers: Vec<(&'a str, &'a str)>,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    headers.extend_from_slice(extra);
    headers
}

pub fn status(code: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![(":status", code), ("content-type", "application/json")]
}

/// A chat-completions body naming `model`.
pub fn chat_body(model: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "model": model,
        "messages": [ { "role": "user", "content": "Is this review positive? \"Great value\"" } ],
        "max_tokens": 16
    }))
    .expect("json")
}

pub const SIGNING_KEY: &str = "e2e-signing-key-0123456789abcdef";
pub const STATE_PATH: &str = "/inference-router/state";
pub const STATE_TOKEN: &str = "ops-secret-0123456789";
pub const FEEDBACK_PATH: &str = "/feedback";

pub fn feedback_section(ttl_seconds: u64) -> Value {
    serde_json::json!({ "path": FEEDBACK_PATH, "signing_key": SIGNING_KEY, "ttl_seconds": ttl_seconds })
}

pub fn state_section() -> Value {
    serde_json::json!({ "path": STATE_PATH, "token": STATE_TOKEN })
}

pub fn sentiment_targets() -> Value {
    serde_json::json!([ { "name": "v1", "cluster": "sentiment-v1" },
                        { "name": "v2", "cluster": "sentiment-v2" } ])
}

/// A model with these targets and strategy, and `reward` when given.
pub fn bandit_model(name: &str, targets: Value, strategy: Value, reward: Option<Value>) -> Value {
    let mut m = serde_json::json!({ "name": name, "targets": targets, "strategy": strategy });
    if let Some(r) = reward {
        m["reward"] = r;
    }
    m
}

/// The shared-data key of a bandit model's state under the default plugin name.
pub fn state_key(model: &str) -> String {
    format!("inference-router/v1/inference-router/state/{model}")
}

pub use inference_router_core::payload::encode_pairs;

/// Headers as a test writes them.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// A callout's (or upstream's) answer: headers and body.
pub type Reply<'a> = (Headers<'a>, &'a [u8]);
