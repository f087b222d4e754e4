//! Support shared by the fuzz targets: fixed configurations, a request view parsed from fuzz
//! bytes, and the decision flow of one request (headers, then the body if asked for) with the
//! invariants the stream relies on checked as assertions. The `lifecycle` target drives the
//! core's real `Stream` instead, against the in-memory `TestHost`.
//!
//! A failed assertion here is reported by libFuzzer as a crash, like a panic inside the filter:
//! the message says which invariant broke.


use inference_router_core::bandit::ModelState;
use inference_router_core::config::{self, BodySource, Config, OnInvalid};
use inference_router_core::learning::health::Health;
use inference_router_core::payload::{extract, format_of_content_type, Fields, PointerSet};
use inference_router_core::policy::{decide, Body, Outcome, Reason, RequestView, Shared};
use inference_router_core::rng::Rng;

/// The configuration reference and the policy guide; their examples are the fixtures, so they
/// cannot drift.
const DOCS: [&str; 2] = [
    include_str!("../../docs/configuration.md"),
    include_str!("../../docs/policy.md"),
];
const COVERAGE_CONFIG: &str = include_str!("../configs/coverage.json");
const METADATA_CONFIG: &str = include_str!("../configs/metadata.json");

/// Plugin name used for shared-data keys.
pub const PLUGIN: &str = "fuzz";

/// "Now" for every target: 2023-11-14T22:13:20Z.
pub const NOW: u64 = 1_700_000_000;

/// Times of day the decision is tried at: 02:15, 12:00 and 22:13 UTC (the doc's maintenance
/// window, daytime, and the coverage config's night window).
pub const NOWS: [u64; 3] = [1_699_928_100, 1_699_963_200, NOW];

/// Signing key of `configs/coverage.json` (its `feedback.signing_key`).
pub const COVERAGE_SIGNING_KEY: &[u8] = b"fuzz-signing-key-0123456789";

/// A decision id as `plugin` signs it with [`COVERAGE_SIGNING_KEY`] (unbound).
pub fn signed_token(plugin: &str, model: &str, target: &str, expires: u64, nonce: u64) -> String {
    inference_router_core::feedback::TokenKeys::single(COVERAGE_SIGNING_KEY).sign(
        plugin,
        &inference_router_core::feedback::DecisionToken {
            model: model.into(),
            target: target.into(),
            expires,
            nonce,
            bound: None,
            key: String::new(),
            context: None,
        },
        None,
    )
}

/// The JSON block after `<!-- example:NAME -->` in docs/configuration.md or docs/policy.md.
pub fn doc_example(name: &str) -> Option<&'static str> {
    let marker = format!("<!-- example:{name} -->");
    DOCS.iter().find_map(|doc| {
        let after = doc.get(doc.find(&marker)? + marker.len()..)?;
        let fence = "```json";
        let body = after.get(after.find(fence)? + fence.len()..)?;
        body.get(..body.find("```")?)
    })
}

/// The documented examples used as fixtures.
pub const DOC_EXAMPLES: [&str; 8] = [
    "full",
    "bandit",
    "capabilities",
    "input-spec",
    "tenants",
    "residency",
    "budget",
    "fallback",
];

/// A parsed configuration with a learned-looking state for each bandit model.
pub struct Fixture {
    pub name: &'static str,
    pub cfg: Config,
    pub states: Vec<Option<ModelState>>,
}

impl Fixture {
    fn load(name: &'static str, json: &str) -> Fixture {
        let cfg = match config::parse(json.as_bytes()) {
            Ok(cfg) => cfg,
            // A fixture problem, not a finding: say so plainly.
            Err(e) => panic!("fuzz fixture {name} does not parse: {e}"),
        };
        let states = bandit_states(&cfg);
        Fixture { name, cfg, states }
    }

    /// Shared state for a decision at `NOWS[which]`: see [`FixedShared`].
    pub fn shared(&self, which: usize, now: u64) -> FixedShared<'_> {
        FixedShared {
            states: &self.states,
            cooling: which,
            now,
        }
    }
}

/// Per bandit model, a state that has seen a few rewards (so every strategy's non-trivial
/// branch runs); `None` for weighted models.
pub fn bandit_states(cfg: &Config) -> Vec<Option<ModelState>> {
    cfg.models
        .iter()
        .map(|m| {
            let strategy = m.bandit()?;
            let mut state = strategy.initial_state(&m.target_names());
            for (i, reward) in [0.9, 0.2, 0.6, 1.0, 0.0].into_iter().enumerate() {
                let arm = i % state.arms.len().max(1);
                let _ = strategy.update(&mut state, arm, reward);
            }
            Some(state)
        })
        .collect()
}

/// The buffer-mode fixtures: `configs/coverage.json` (every condition, action and strategy
/// kind; feedback on) first, then every documented example (policy features).
///
/// Per thread (a configuration caches MAC state in a `RefCell`, so it is not `Sync`); the fuzzer
/// runs its inputs on one thread, so they are built once.
pub fn fixtures() -> &'static [Fixture] {
    thread_local! {
        static FIXTURES: &'static [Fixture] = Box::leak(load_fixtures().into_boxed_slice());
    }
    FIXTURES.with(|f| *f)
}

fn load_fixtures() -> Vec<Fixture> {
    let mut all = vec![Fixture::load("configs/coverage.json", COVERAGE_CONFIG)];
    for name in DOC_EXAMPLES {
        let json = doc_example(name)
            .unwrap_or_else(|| panic!("docs/*.md have no <!-- example:{name} --> JSON block"));
        all.push(Fixture::load(name, json));
    }
    all
}

/// The JSON of every fixture, by name: the buffer-mode ones, then `configs/metadata.json`.
pub fn fixture_sources() -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("configs/coverage.json", COVERAGE_CONFIG)];
    all.extend(
        DOC_EXAMPLES
            .iter()
            .filter_map(|&n| Some((n, doc_example(n)?))),
    );
    all.push(("configs/metadata.json", METADATA_CONFIG));
    all
}

/// `configs/coverage.json` (feedback on, three bandit models).
pub fn coverage_fixture() -> &'static Fixture {
    match fixtures().first() {
        Some(f) => f,
        None => panic!("no fixtures"),
    }
}

/// `configs/metadata.json`: body fields from dynamic metadata.
pub fn metadata_fixture() -> &'static Fixture {
    thread_local! {
        static FIXTURE: &'static Fixture =
            Box::leak(Box::new(Fixture::load("configs/metadata.json", METADATA_CONFIG)));
    }
    FIXTURE.with(|f| *f)
}

/// Shared state the decision reads: fixed bandit states by model index, and target health that
/// depends on `cooling` (0: nothing cools; 1: every model's first target cools; 2: every
/// target cools) so that the fallback paths run. Even targets have a latency estimate.
pub struct FixedShared<'a> {
    pub states: &'a [Option<ModelState>],
    pub cooling: usize,
    pub now: u64,
}

impl Shared for FixedShared<'_> {
    fn bandit_state(&mut self, model: usize) -> Option<&ModelState> {
        self.states.get(model).and_then(Option::as_ref)
    }

    fn cooling_until(&mut self, _model: usize, target: usize) -> u64 {
        match (self.cooling, target) {
            (1, 0) | (2, _) => self.now + 30,
            _ => 0,
        }
    }

    fn latency_ms(&mut self, _model: usize, target: usize) -> Option<f64> {
        target
            .is_multiple_of(2)
            .then_some(40.0 * (target as f64 + 1.0))
    }
}

/// Shared state with target health decoded from bytes (as the host reads it from shared data).
pub struct HealthShared<'a> {
    pub states: &'a [Option<ModelState>],
    pub health: &'a [Health],
}

impl Shared for HealthShared<'_> {
    fn bandit_state(&mut self, model: usize) -> Option<&ModelState> {
        self.states.get(model).and_then(Option::as_ref)
    }

    fn cooling_until(&mut self, model: usize, target: usize) -> u64 {
        self.health.get(model).map_or(0, |h| h.cooling(target))
    }

    fn latency_ms(&mut self, model: usize, target: usize) -> Option<f64> {
        self.health.get(model).and_then(|h| h.latency(target))
    }
}

/// Request headers as the host hands them over (lowercase names, pseudo-headers included), and
/// proxy properties (dynamic metadata such as `jwt_authn`'s claims) by their dotted path.
#[derive(Debug, Default, Clone)]
pub struct Req {
    pub headers: Vec<(String, String)>,
    pub properties: Vec<(String, Vec<u8>)>,
}

impl Req {
    pub fn new(pairs: &[(&str, &str)]) -> Req {
        Req {
            headers: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            properties: Vec::new(),
        }
    }
}

impl RequestView for Req {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        let key = path.join(".");
        self.properties
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}

/// Splits fuzz bytes into a request: header lines `name: value` (`:path: /x` for
/// pseudo-headers; `@a.b.c: bytes` for the property at path `a.b.c`), a blank line, then the
/// body. No blank line: no body (end of stream with the headers). Header names are lowercased
/// as Envoy does; header bytes that are not UTF-8 are replaced, property bytes are kept.
pub fn parse_request(data: &[u8]) -> (Req, Option<&[u8]>) {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (
            data.get(..at).unwrap_or_default(),
            Some(data.get(at + 2..).unwrap_or_default()),
        ),
        None => (data, None),
    };
    let mut req = Req::default();
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let from = usize::from(line.first() == Some(&b':'));
        let Some(colon) = line
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == b':'))
            .map(|i| i + from)
        else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default();
        let value = line.get(colon + 1..).unwrap_or_default();
        if let Some(path) = name.strip_prefix(b"@") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            let path = String::from_utf8_lossy(path).into_owned();
            req.properties.push((path, value.to_vec()));
            continue;
        }
        let name = String::from_utf8_lossy(name).to_lowercase();
        let value = String::from_utf8_lossy(value).trim_start().to_string();
        req.headers.push((name, value));
    }
    (req, body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Fixed pointers that extraction always looks for, shaped after chat bodies; `/a~1b/~0c`
/// covers escapes, `/` the empty key.
pub const POINTERS: [&str; 10] = [
    "/temperature",
    "/max_tokens",
    "/stream",
    "/messages/0/role",
    "/messages/1/content",
    "/user/tier",
    "/tools",
    "/meta/tags/0",
    "/a~1b/~0c",
    "/",
];

/// A pointer set and the body to extract from. Fuzz bytes that start with `/` carry extra
/// pointers on their first line, separated by spaces (at most 16); the rest is the body.
pub fn pointer_set_and_body(data: &[u8]) -> (PointerSet, &[u8]) {
    let mut set = PointerSet::new();
    for p in POINTERS {
        let _ = set.insert(p);
    }
    let mut body = data;
    if data.first() == Some(&b'/') {
        let end = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        body = data.get(end + 1..).unwrap_or_default();
        if let Ok(line) = std::str::from_utf8(data.get(..end).unwrap_or_default()) {
            for p in line.split(' ').take(16) {
                let _ = set.insert(p);
            }
        }
    }
    (set, body)
}

/// Checks what the host relies on in an outcome: a route names a configured model and target,
/// a rule reason names a configured rule, and the headers derived from it can be built.
pub fn check_outcome(cfg: &Config, outcome: &Outcome) {
    match outcome {
        Outcome::NeedBody => {}
        Outcome::Route(route) => {
            let model = cfg.models.get(route.model);
            assert!(
                model.is_some_and(|m| route.target < m.targets.len()),
                "route out of range: {route:?}"
            );
            if let Reason::Rule(i) = route.reason {
                assert!(i < cfg.rules.len(), "rule reason out of range: {route:?}");
            }
            if let Some(d) = route.detector {
                assert!(d < cfg.detectors.len(), "detector out of range: {route:?}");
            }
            let _ = route.reason.header_value(cfg);
        }
        Outcome::Reply(reply) => {
            assert!(
                (100..=999).contains(&reply.status),
                "reply status {} is not an HTTP status",
                reply.status
            );
            if let Some(m) = reply.model {
                assert!(m < cfg.models.len(), "reply model out of range: {reply:?}");
            }
            if let Some(r) = reply.rule {
                assert!(r < cfg.rules.len(), "reply rule out of range: {reply:?}");
            }
            if let Some(d) = reply.detector {
                assert!(
                    d < cfg.detectors.len(),
                    "reply detector out of range: {reply:?}"
                );
            }
            let _ = reply.reason_header(cfg);
        }
    }
}

/// The host's flow for one request (`on_http_request_headers`, then `finish_with_body`):
/// decide from the headers, and if the core asks for the body, extract the fields it reads
/// and decide again with the fields and the raw body. `metadata`: the fields of a
/// metadata-mode configuration.
pub fn route_request(
    cfg: &Config,
    shared: &mut dyn Shared,
    req: &Req,
    body: Option<&[u8]>,
    metadata: Option<&Fields>,
    now: u64,
) -> Outcome {
    let mut rng = Rng::seed_from_u64(0x5eed ^ now);
    let format = req
        .header("content-type")
        .and_then(|ct| format_of_content_type(&ct));
    let empty_metadata;
    let first = if cfg.body.source == BodySource::Metadata {
        match metadata {
            Some(fields) => Body::Fields(fields),
            None => {
                empty_metadata = Fields::with_len(cfg.pointers.len());
                Body::Fields(&empty_metadata)
            }
        }
    } else if body.is_none() {
        Body::Absent
    } else {
        let method = req.header(":method").unwrap_or_default();
        let has_body_method = matches!(method.as_str(), "POST" | "PUT" | "PATCH");
        let too_large = req
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|len| len > cfg.body.max_bytes);
        if !has_body_method || (format.is_none() && !cfg.has_echo) || too_large {
            Body::Absent
        } else {
            Body::Pending
        }
    };
    let pending = matches!(first, Body::Pending);
    let outcome = decide(cfg, req, first, now, &mut rng, shared);
    check_outcome(cfg, &outcome);
    if outcome != Outcome::NeedBody {
        return outcome;
    }
    assert!(pending, "decide asked for the body although it was given");
    let bytes = body.unwrap_or_default();
    let parsed = match format {
        _ if bytes.len() as u64 > cfg.body.max_bytes => None,
        Some(format) if !bytes.is_empty() => Some(extract(&cfg.pointers, format, bytes)),
        _ => None,
    };
    let outcome = match (parsed, format) {
        (Some(Ok(fields)), Some(format)) => {
            let body = Body::Full {
                fields: &fields,
                raw: bytes,
                format,
            };
            decide(cfg, req, body, now, &mut rng, shared)
        }
        (Some(Err(e)), _) => match cfg.body.on_invalid {
            OnInvalid::Reject => Outcome::Reply(
                inference_router_core::policy::Reply::invalid_body(&e.detail),
            ),
            OnInvalid::Default => decide(cfg, req, Body::Absent, now, &mut rng, shared),
        },
        _ => decide(cfg, req, Body::Absent, now, &mut rng, shared),
    };
    assert!(
        outcome != Outcome::NeedBody,
        "decide still needs the body after reading it"
    );
    check_outcome(cfg, &outcome);
    outcome
}

/// Requests that reach every branch of the decision for a configuration the fuzzer made:
/// each model named by header, path and body, a version pin, unknown and absent models.
pub fn canned_requests(cfg: &Config) -> Vec<(Req, Option<Vec<u8>>)> {
    let json = |m: &str| {
        format!(
            r#"{{"model":"{m}","temperature":0.2,"max_tokens":2048,"stream":true,"messages":[{{"role":"system","content":"x"}},{{"role":"user","content":"hi"}}],"user":{{"tier":"gold","id":7}},"tools":[],"n":3,"meta":{{"tags":["batch"]}}}}"#
        )
        .into_bytes()
    };
    let post = |path: &str| {
        Req::new(&[
            (":method", "POST"),
            (":path", path),
            ("content-type", "application/json"),
            ("x-tenant", "acme"),
            ("x-user-id", "alice"),
            ("cookie", "uid=42"),
        ])
    };
    let mut out = vec![
        (post("/v1/chat/completions"), Some(json("unknown"))),
        (post("/v1/chat/completions"), Some(b"{}".to_vec())),
        (
            post("/v1/chat/completions"),
            Some(b"{\"model\":1}".to_vec()),
        ),
        (post("/v1/chat/completions"), Some(b"not json".to_vec())),
        (Req::new(&[(":method", "GET"), (":path", "/admin/x")]), None),
    ];
    for m in cfg.models.iter().take(8) {
        out.push((post("/v1/chat/completions"), Some(json(&m.name))));
        let mut by_header = post("/");
        by_header
            .headers
            .push((cfg.model_header.clone(), m.name.clone()));
        out.push((by_header, None));
        if let Some(t) = m.targets.last() {
            let path = format!("/v2/models/{}/versions/{}/infer", m.name, t.name);
            out.push((Req::new(&[(":method", "GET"), (":path", &path)]), None));
        }
        let path = format!("/v1/models/{}/versions/nope:predict", m.name);
        out.push((post(&path), Some(b"{\"instances\":[]}".to_vec())));
    }
    out
}
