//! Writes the checked-in seed corpus, `corpus/<target>/`: valid and near-valid inputs for every
//! target. MessagePack bodies, bandit states and signed tokens are made with the same crates
//! and keys the filter uses, so they stay exact.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`
//! (a plain build: no nightly flags needed). Files are overwritten; seeds added by hand under
//! other names are kept.

use std::fs;
use std::path::{Path, PathBuf};

use fuzz_support::{coverage_fixture, doc_example, NOW, PLUGIN};
use inference_router_core::bandit::{self, ModelState};
use inference_router_core::learning::health::Health;
use serde_json::{json, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut seeds = Seeds { root, written: 0 };
    config_parse(&mut seeds)?;
    extract(&mut seeds)?;
    metadata(&mut seeds)?;
    decide(&mut seeds)?;
    feedback(&mut seeds)?;
    bandit_state(&mut seeds)?;
    spent(&mut seeds)?;
    usage(&mut seeds)?;
    inspect(&mut seeds)?;
    policy(&mut seeds)?;
    health(&mut seeds)?;
    callout(&mut seeds)?;
    println!(
        "wrote {} seeds under {}",
        seeds.written,
        seeds.root.display()
    );
    Ok(())
}

struct Seeds {
    root: PathBuf,
    written: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), &bytes)?;
        self.written += 1;
        if target == "decide" {
            // The same requests through the whole lifecycle: an upstream 200 with callouts
            // answering 200, and an upstream 500 with callouts answering 429.
            for (prefix, tag) in [([0u8, 0], "ok"), ([3, 2], "failing")] {
                let seed = [&prefix[..], bytes.as_ref()].concat();
                self.put("lifecycle", &format!("{tag}-{name}"), seed)?;
            }
        }
        Ok(())
    }
}

fn doc(name: &str) -> &'static str {
    doc_example(name).unwrap_or_else(|| panic!("no example:{name} in docs/configuration.md"))
}

const COVERAGE: &str = include_str!("../configs/coverage.json");
const METADATA: &str = include_str!("../configs/metadata.json");

fn config_parse(s: &mut Seeds) -> std::io::Result<()> {
    let t = "config_parse";
    s.put(t, "docs-full.json", doc("full").trim())?;
    s.put(t, "docs-bandit.json", doc("bandit").trim())?;
    s.put(t, "coverage.json", COVERAGE)?;
    s.put(t, "metadata.json", METADATA)?;
    let minimal = r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c","weight":1}]}]}"#;
    s.put(t, "minimal.json", minimal)?;
    let near_valid: [(&str, String); 16] = [
        ("trailing-comma.json", minimal.replace("1}]", "1},]")),
        ("unknown-field.json", minimal.replace("\"weight\"", "\"wieght\"")),
        ("weight-too-large.json", minimal.replace(":1}", ":1000001}")),
        ("no-weight.json", minimal.replace(",\"weight\":1", "")),
        ("uppercase-header.json", format!(r#"{{"route_header":"X-Cluster",{}"#, &minimal[1..])),
        ("same-headers.json", format!(r#"{{"route_header":"x-a","target_header":"x-a",{}"#, &minimal[1..])),
        ("bad-pointer.json", r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c","weight":1}]}],"rules":[{"name":"r","when":{"body":{"/a~2":{"present":true}}},"then":{"target":"a"}}]}"#.into()),
        ("bad-time.json", r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c","weight":1}]}],"rules":[{"name":"r","when":{"time_utc":{"from":"25:00","to":"02:00"}},"then":{"reject":{"status":503,"message":"x"}}}]}"#.into()),
        ("duplicate-model.json", r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c","weight":1}]},{"name":"m","targets":[{"name":"a","cluster":"c","weight":1}]}]}"#.into()),
        ("metric-clash.json", r#"{"models":[{"name":"m.a","targets":[{"name":"a","cluster":"c","weight":1}]},{"name":"m_a","targets":[{"name":"a","cluster":"c","weight":1}]}]}"#.into()),
        ("epsilon-out-of-range.json", r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c"},{"name":"b","cluster":"d"}],"strategy":{"type":"epsilon_greedy","epsilon":1.5}}]}"#.into()),
        ("min-share-sum.json", r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c"},{"name":"b","cluster":"d"}],"strategy":{"type":"ucb1","min_share":{"a":0.6,"b":0.5}}}]}"#.into()),
        ("half-life-zero.json", r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c"}],"strategy":{"type":"thompson","decay":{"half_life":0},"prior":{"alpha":0,"beta":1}}}]}"#.into()),
        ("echo-metadata.json", r#"{"body":{"source":"metadata"},"models":[{"name":"m","targets":[{"name":"a","cluster":"c","weight":1}]}],"rules":[{"name":"e","then":{"reply":{"status":200,"echo":true}}}]}"#.into()),
        ("feedback-short-key.json", r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c"}],"strategy":{"type":"thompson"}}],"feedback":{"signing_key":"short","ttl_seconds":0}}"#.into()),
        ("two-actions.json", r#"{"models":[{"name":"m","targets":[{"name":"a","cluster":"c","weight":1}]}],"rules":[{"name":"r","when":{"method":["GET"],"path_prefix":"v1"},"then":{"model":"m","reject":{"status":200,"message":""}}}]}"#.into()),
    ];
    for (name, body) in near_valid {
        s.put(t, name, body)?;
    }
    s.put(t, "not-an-object.json", "[]")?;
    s.put(t, "empty", "")?;
    Ok(())
}

/// JSON chat bodies, and what the filter's pointers make of them.
fn json_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let chat = json!({
        "model": "chat",
        "temperature": 0.7,
        "max_tokens": 2048,
        "stream": true,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi \u{1F600} \"quoted\" \\ back"}
        ],
        "user": {"tier": "gold", "id": 7},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "meta": {"tags": ["batch", "eu"]},
        "a/b": {"~c": null},
        "": 1
    });
    let mut out = vec![
        ("chat.json", serde_json::to_vec(&chat).unwrap_or_default()),
        ("chat-pretty.json", serde_json::to_vec_pretty(&chat).unwrap_or_default()),
        ("embeddings.json", br#"{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"float"}"#.to_vec()),
        ("kserve-v2.json", br#"{"inputs":[{"name":"in","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#.to_vec()),
        ("numbers.json", br#"{"model":"m","temperature":-0,"max_tokens":18446744073709551615,"n":-9223372036854775808,"x":1e308,"y":2.5e-324,"z":0.1e1}"#.to_vec()),
        ("escapes.json", br#"{"mod\u0065l":"\u00e9\ud83d\ude00","messages":[{"role":"\/user"}],"a\/b":{"\u007ec":1}}"#.to_vec()),
        ("duplicate-model.json", br#"{"model":"a","model":"b"}"#.to_vec()),
        ("duplicate-other.json", br#"{"x":1,"x":2,"model":"a"}"#.to_vec()),
        ("nested-dup.json", br#"{"messages":[{"role":"a","role":"b"}]}"#.to_vec()),
        ("scalar.json", b"\"scalar\"".to_vec()),
        ("array-root.json", br#"[{"model":"m"},1,null]"#.to_vec()),
        ("deep-100.json", format!("{{\"model\":{}{}}}", "[".repeat(100), "]".repeat(100)).into_bytes()),
        ("deep-skipped.json", format!("{{\"x\":{}{},\"model\":\"m\"}}", "[".repeat(300), "]".repeat(300)).into_bytes()),
        ("trailing.json", br#"{"model":"m"} x"#.to_vec()),
        ("truncated.json", br#"{"model":"m","messages":[{"role":"us"#.to_vec()),
        ("bad-utf8.json", b"{\"model\":\"\xc3\x28\"}".to_vec()),
        ("lone-surrogate.json", br#"{"x":"\ud800","model":"m"}"#.to_vec()),
        ("whitespace.json", b" \t\r\n{ \"model\" : \"m\" } \n".to_vec()),
    ];
    // Extra pointers on the first line.
    out.push((
        "pointers-chat.json",
        [
            b"/messages/1/role /user /meta/tags/1 /tools/0/function/name /messages/-/x /messages/01 /~1\n".to_vec(),
            serde_json::to_vec(&chat).unwrap_or_default(),
        ]
        .concat(),
    ));
    out.push((
        "pointers-nested.json",
        b"/a /a/b /a/b/0\n{\"a\":{\"b\":[2,{\"c\":3}]}}".to_vec(),
    ));
    out
}

fn extract(s: &mut Seeds) -> std::io::Result<()> {
    for (name, body) in json_bodies() {
        s.put("extract_json", name, &body)?;
        // The same documents as MessagePack, named (maps) and, for variety, compact.
        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
            continue;
        };
        let stem = name.trim_end_matches(".json");
        if let Ok(mp) = rmp_serde::to_vec_named(&v) {
            s.put("extract_msgpack", &format!("{stem}.msgpack"), mp)?;
        }
    }
    let t = "extract_msgpack";
    // {1: "x", "model": "m"}: a non-string key.
    s.put(
        t,
        "int-key.msgpack",
        [
            0x82, 0x01, 0xa1, b'x', 0xa5, b'm', b'o', b'd', b'e', b'l', 0xa1, b'm',
        ],
    )?;
    // {"model": bin8 "m", "x": fixext1, "y": ext8, "z": timestamp ext -1}
    s.put(
        t,
        "bin-ext.msgpack",
        [
            &[0x84u8, 0xa5][..],
            b"model",
            &[0xc4, 0x01, b'm'],
            &[0xa1, b'x', 0xd4, 0x05, 0xff],
            &[0xa1, b'y', 0xc7, 0x02, 0x07, 0x00, 0x01],
            &[0xa1, b'z', 0xd6, 0xff, 0x00, 0x00, 0x00, 0x01],
        ]
        .concat(),
    )?;
    // {"temperature": float32 0.5, "max_tokens": uint64, "n": int8 -1, "stream": true}
    s.put(
        t,
        "scalars.msgpack",
        [
            &[0x84u8, 0xab][..],
            b"temperature",
            &[0xca, 0x3f, 0x00, 0x00, 0x00],
            &[0xaa],
            b"max_tokens",
            &[0xcf, 0, 0, 0, 0, 0, 0, 0x08, 0],
            &[0xa1, b'n', 0xd0, 0xff],
            &[0xa6],
            b"stream",
            &[0xc3],
        ]
        .concat(),
    )?;
    s.put(t, "array32-bomb.msgpack", [0xdd, 0xff, 0xff, 0xff, 0xff])?;
    s.put(t, "map32-bomb.msgpack", [0xdf, 0xff, 0xff, 0xff, 0xff])?;
    s.put(t, "str32-bomb.msgpack", [0xdb, 0xff, 0xff, 0xff, 0xff])?;
    s.put(t, "deep.msgpack", vec![0x91u8; 200])?;
    s.put(t, "reserved.msgpack", [0xc1])?;
    s.put(t, "nil.msgpack", [0xc0])?;
    s.put(
        t,
        "trailing.msgpack",
        [0x81, 0xa5, b'm', b'o', b'd', b'e', b'l', 0xa1, b'm', 0xc0],
    )?;
    s.put(
        t,
        "pointers-compact.msgpack",
        [
            b"/0 /1/0\n".to_vec(),
            rmp_serde::to_vec(&json!(["m", [1, 2], {"model": "x"}])).unwrap_or_default(),
        ]
        .concat(),
    )?;
    Ok(())
}

fn pairs(items: &[(&str, &[u8])]) -> Vec<u8> {
    inference_router_core::payload::encode_pairs(items)
}

fn metadata(s: &mut Seeds) -> std::io::Result<()> {
    let t = "metadata";
    let hot = 1.5f64.to_le_bytes();
    let long = 4096f64.to_le_bytes();
    s.put(
        t,
        "hot.pairs",
        pairs(&[
            ("model", b"sentiment"),
            ("temperature", &hot),
            ("stream", &[1]),
        ]),
    )?;
    s.put(
        t,
        "long.pairs",
        pairs(&[("model", b"chat"), ("max_tokens", &long), ("stream", &[0])]),
    )?;
    s.put(
        t,
        "user.pairs",
        pairs(&[
            ("model", b"chat"),
            ("user.tier", b"gold"),
            ("user.id", b"u-1"),
        ]),
    )?;
    s.put(
        t,
        "printable-double.pairs",
        pairs(&[("temperature", b"AAAAAAA@"), ("model", b"gpt-4o-m")]),
    )?;
    s.put(
        t,
        "nan.pairs",
        pairs(&[("temperature", &f64::NAN.to_le_bytes())]),
    )?;
    s.put(t, "empty.pairs", pairs(&[]))?;
    s.put(t, "truncated.pairs", [1u8, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0])?;
    s.put(t, "huge-count.pairs", [0xffu8, 0xff, 0xff, 0xff])?;
    // The key's first byte (after the count and one pair of lengths) made invalid UTF-8.
    let mut bad_key = pairs(&[("model", b"chat")]);
    if let Some(b) = bad_key.get_mut(12) {
        *b = 0xff;
    }
    s.put(t, "bad-utf8-key.pairs", bad_key)?;
    Ok(())
}

fn decide(s: &mut Seeds) -> std::io::Result<()> {
    let t = "decide";
    let reqs: [(&str, &str); 16] = [
        ("chat-json.req", ":method: POST\n:path: /v1/chat/completions\ncontent-type: application/json\nx-tenant: acme\n\n{\"model\":\"chat\",\"temperature\":1.5,\"max_tokens\":2048,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}"),
        ("acme-canary.req", ":method: POST\n:path: /v1/completions\ncontent-type: application/json; charset=utf-8\nx-tenant: acme\n\n{\"model\":\"sentiment\",\"temperature\":1.2}"),
        ("long-answers.req", ":method: POST\n:path: /v1/chat/completions\ncontent-type: application/json\n\n{\"model\":\"chat\",\"max_tokens\":4096}"),
        ("kserve-version.req", ":method: POST\n:path: /v2/models/sentiment/versions/v2/infer\ncontent-type: application/json\n\n{\"inputs\":[]}"),
        ("tf-serving.req", ":method: POST\n:path: /v1/models/sentiment/versions/v9:predict?x=1\ncontent-type: application/json\n\n{\"instances\":[[1]]}"),
        ("model-header.req", ":method: GET\n:path: /anything\nx-model: chat\nx-user-id: alice\n"),
        ("sticky.req", ":method: GET\n:path: /v2/models/sentiment/infer\nx-user-id: bob\ncookie: a=b; uid=\"42\"\n"),
        ("seldon-echo.req", ":method: POST\n:path: /api/v1.0/predictions\ncontent-type: text/plain\nx-seldon-route: none\n\nraw body"),
        ("maintenance.req", ":method: PUT\n:path: /v1/chat/completions\ncontent-type: application/json\n\n{}"),
        ("unknown-model.req", ":method: POST\n:path: /v1/chat/completions\ncontent-type: application/json\n\n{\"model\":\"nope\"}"),
        ("model-not-string.req", ":method: POST\n:path: /v1/chat/completions\ncontent-type: application/json\n\n{\"model\":[1]}"),
        ("invalid-json.req", ":method: POST\n:path: /v1/chat/completions\ncontent-type: application/json\n\n{\"model\":"),
        ("too-large.req", ":method: POST\n:path: /v1/chat/completions\ncontent-type: application/json\ncontent-length: 99999999\n\n{\"model\":\"chat\"}"),
        ("coverage-rules.req", ":method: POST\n:path: /v1/chat/completions\ncontent-type: application/vnd.api+json\nx-model-name: chat\ncookie: uid=7\n\n{\"user\":{\"tier\":1},\"tools\":[],\"messages\":[{\"role\":\"system\"}],\"n\":3,\"meta\":{\"tags\":[\"batch\"]},\"temperature\":0.2}"),
        ("admin.req", ":method: DELETE\n:path: /admin/keys\nx-batch: yes-please\nx-ping: 1\n"),
        ("no-body-post.req", ":method: POST\n:path: /v1/chat/completions\ncontent-type: application/json\n"),
    ];
    for (name, req) in reqs {
        s.put(t, name, req)?;
    }
    let mp =
        rmp_serde::to_vec_named(&json!({"model": "chat", "temperature": 0.2, "max_tokens": 2000}))
            .unwrap_or_default();
    s.put(
        t,
        "msgpack.req",
        [&b":method: POST\n:path: /v1/chat/completions\ncontent-type: application/msgpack\n\n"[..], &mp].concat(),
    )?;
    s.put(
        t,
        "echo-msgpack.req",
        [&b":method: POST\n:path: /x\ncontent-type: application/x-msgpack\nx-echo: 1\nx-seldon-route: none\n\n"[..], &mp].concat(),
    )?;
    Ok(())
}

fn token(model: &str, target: &str, nonce: u64) -> String {
    fuzz_support::signed_token(PLUGIN, model, target, NOW + 3600, nonce)
}

fn feedback(s: &mut Seeds) -> std::io::Result<()> {
    let t = "feedback";
    let chat = token("chat", "xl", 1);
    let embed = token("embed", "b", 2);
    let rank = token("rank", "x", 3);
    let iris = token("iris", "v1", 4);
    let expired = fuzz_support::signed_token(PLUGIN, "chat", "small", NOW - 1, 5);
    let bodies: Vec<(&str, Value)> = vec![
        ("ours-chat.json", json!({"decision": chat, "reward": 0.8})),
        ("ours-embed.json", json!({"decision": embed, "reward": 0})),
        ("ours-rank.json", json!({"decision": rank, "reward": 1})),
        (
            "not-learning.json",
            json!({"decision": iris, "reward": 0.5}),
        ),
        ("expired.json", json!({"decision": expired, "reward": 0.5})),
        (
            "forged.json",
            json!({"decision": "chat~small~99999999999~0000000000000001~00000000000000000000000000000000", "reward": 0.5}),
        ),
        (
            "seldon-tag.json",
            json!({"request": {"data": {"ndarray": [[1]]}}, "response": {"meta": {"routing": {"rank": 0}, "tags": {"x-inference-decision": rank}}}, "reward": 1}),
        ),
        (
            "seldon-routing-disagrees.json",
            json!({"response": {"meta": {"routing": {"embed": 0}, "tags": {"x-inference-decision": embed}}}, "reward": 1}),
        ),
        (
            "seldon-header.json",
            json!({"response": {"meta": {}}, "reward": 0.3}),
        ),
        ("reward-only.json", json!({"reward": 0.6})),
        ("reward-out-of-range.json", json!({"reward": 1.5})),
        ("reward-string.json", json!({"reward": "1"})),
        ("no-reward.json", json!({"decision": chat})),
        (
            "truth.json",
            json!({"request": {}, "response": {"meta": {"routing": {"chat": 1}}}, "reward": 0.9, "truth": {"data": {}}}),
        ),
    ];
    for (name, body) in bodies {
        s.put(t, name, serde_json::to_vec(&body).unwrap_or_default())?;
    }
    s.put(t, "empty", "")?;
    s.put(t, "whitespace", " \r\n")?;
    s.put(t, "array", "[]")?;
    s.put(t, "big-reward.json", r#"{"reward":1e999}"#)?;

    let t = "token";
    for (i, tok) in [&chat, &embed, &rank, &iris, &expired].iter().enumerate() {
        s.put(t, &format!("signed-{i}"), tok.as_bytes())?;
    }
    s.put(
        t,
        "fields",
        b"chat~large~\x00\x00\x00\x80\x00\x00\x00\x00\x2a\x00\x00\x00\x00\x00\x00\x00",
    )?;
    s.put(t, "malformed-parts", "a~b~1~2~3~4")?;
    s.put(t, "odd-tag", "sentiment~v2~1000~00000000deadbeef~abc")?;
    s.put(t, "tildes", "~~~~")?;
    Ok(())
}

fn bandit_state(s: &mut Seeds) -> std::io::Result<()> {
    let t = "bandit_state";
    let fx = coverage_fixture();
    for (m, state) in fx.cfg.models.iter().zip(&fx.states) {
        let Some(state) = state else { continue };
        s.put(t, &format!("{}.state", m.name), bandit::encode(state))?;
        if let Ok(named) = rmp_serde::to_vec_named(state) {
            s.put(t, &format!("{}-map.state", m.name), named)?;
        }
        let mut migrated = state.clone();
        migrated.arms.reverse();
        if let Some(a) = migrated.arms.first_mut() {
            a.name = "retired".into();
        }
        s.put(
            t,
            &format!("{}-migrated.state", m.name),
            bandit::encode(&migrated),
        )?;
    }
    let fresh = ModelState::new(&["small", "large"], 1, Default::default());
    let mut v2 = fresh.clone();
    v2.version = 2;
    s.put(t, "version-2.state", bandit::encode(&v2))?;
    let mut huge = fresh.clone();
    for a in &mut huge.arms {
        a.pulls = f64::MAX;
        a.reward_sum = f64::MAX;
        a.alpha = 1e300;
        a.beta = f64::MIN_POSITIVE;
    }
    s.put(t, "extreme.state", bandit::encode(&huge))?;
    let mut nan = fresh.clone();
    if let Some(a) = nan.arms.first_mut() {
        a.alpha = f64::NAN;
    }
    s.put(t, "nan.state", bandit::encode(&nan))?;
    let mut dup = fresh;
    if let Some(a) = dup.arms.get_mut(1) {
        a.name = "small".into();
    }
    s.put(t, "duplicate-arm.state", bandit::encode(&dup))?;
    let mut trailing = bandit::encode(&huge);
    trailing.push(0xc0);
    s.put(t, "trailing.state", trailing)?;
    s.put(t, "garbage.state", [0xc1u8, 0xc1])?;
    Ok(())
}

fn spent(s: &mut Seeds) -> std::io::Result<()> {
    let t = "spent";
    let enc = |v: &[u64]| rmp_serde::to_vec(v).unwrap_or_default();
    s.put(t, "empty", [])?;
    s.put(t, "sorted.bucket", enc(&[0, 1, 42, 1 << 40, u64::MAX]))?;
    s.put(t, "unsorted.bucket", enc(&[9, 3, 42, 1]))?;
    s.put(t, "duplicates.bucket", enc(&[42, 42, 42]))?;
    s.put(
        t,
        "many.bucket",
        enc(&(0..200).map(|i| i * 7919).collect::<Vec<_>>()),
    )?;
    s.put(t, "garbage.bucket", [0xc1u8, 0xc1])?;
    s.put(
        t,
        "map.bucket",
        rmp_serde::to_vec(&json!({"a": 1})).unwrap_or_default(),
    )?;
    Ok(())
}

fn usage(s: &mut Seeds) -> std::io::Result<()> {
    let t = "usage";
    s.put(
        t,
        "completion.json",
        r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#,
    )?;
    s.put(t, "usage-null.json", r#"{"usage":null}"#)?;
    s.put(
        t,
        "usage-negative.json",
        r#"{"usage":{"prompt_tokens":-1,"completion_tokens":1.5}}"#,
    )?;
    s.put(
        t,
        "stream.sse",
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n",
    )?;
    s.put(
        t,
        "stream-crlf.sse",
        "event: message\r\ndata:{\"usage\":{\"prompt_tokens\":18446744073709551615,\"completion_tokens\":1}}\r\n\r\n: comment\r\nid: 1\r\nretry: 10\r\n",
    )?;
    s.put(
        t,
        "stream-partial.sse",
        "data: {\"usage\":{\"prompt_tokens\":3",
    )?;
    s.put(t, "reward-header", "0.75")?;
    s.put(t, "reward-header-bad", " 1e-400 ")?;
    Ok(())
}

fn inspect(s: &mut Seeds) -> std::io::Result<()> {
    let t = "inspect";
    let chat = json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Reply in JSON."},
            {"role": "user", "content": [
                {"type": "text", "text": "card 4111 1111 1111 1111, mail a.b@example.org"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ]}
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_schema"},
        "stream": true,
        "max_completion_tokens": 512
    });
    s.put(
        t,
        "chat.json",
        serde_json::to_vec(&chat).unwrap_or_default(),
    )?;
    s.put(
        t,
        "chat.msgpack",
        rmp_serde::to_vec_named(&chat).unwrap_or_default(),
    )?;
    s.put(t, "completion.json", r#"{"model":"m","prompt":["IBAN GB82 WEST 1234 5698 7654 32","DE89370400440532013000"],"max_tokens":18446744073709551615}"#)?;
    s.put(
        t,
        "embeddings.json",
        r#"{"model":"e","input":[["nested",["deeper"]],"x@y.io"]}"#,
    )?;
    s.put(
        t,
        "kserve.json",
        r#"{"inputs":[{"name":"in","shape":[1,4],"datatype":"FP32","data":[[5.1,3.5,1.4,0.2]]},{"name":"mask","shape":[2],"datatype":"BOOL","data":[true,false]}]}"#,
    )?;
    s.put(
        t,
        "kserve-bad-shape.json",
        r#"{"inputs":[{"name":"in","shape":[1,-4],"datatype":"FP32"},{"name":"mask","shape":[9223372036854775807,9223372036854775807],"datatype":"BOOL","data":[]}]}"#,
    )?;
    s.put(
        t,
        "regex.txt",
        "re:EMP-[0-9]{6}|(?i)secret\\s*=\\s*\\w+\nid EMP-123456 secret = x",
    )?;
    s.put(t, "regex-bad.txt", "re:(\nanything")?;
    s.put(
        t,
        "digits.txt",
        "4111-1111-1111-1111 12345678901234567890123 a@b.c @@ x@.com",
    )?;
    Ok(())
}

/// Requests for the policy features of docs/policy.md (tenants, residency and detectors,
/// capabilities, input specs, budgets).
fn policy(s: &mut Seeds) -> std::io::Result<()> {
    let t = "decide";
    let jwt = "@metadata.filter_metadata.envoy.filters.http.jwt_authn.jwt_payload.tenant";
    let chat = r#"{"messages":[{"role":"user","content":"hello"}],"max_tokens":100}"#;
    let post = |extra: &str, body: &str| {
        format!(":method: POST\n:path: /v1/chat/completions\ncontent-type: application/json\n{extra}\n{body}")
    };
    let reqs = [
        ("tenant-jwt-gold.req", post(&format!("{jwt}: acme\n"), chat)),
        ("tenant-jwt-forbidden.req", post(&format!("{jwt}: hobbyist\nx-model: sentiment\n"), chat)),
        ("tenant-jwt-unknown.req", post(&format!("{jwt}: \u{0}\\xff\n"), chat)),
        ("tenant-missing.req", post("", chat)),
        ("residency-card.req", post("x-data-region: eu\n", r#"{"model":"chat","messages":[{"role":"user","content":"card 4111 1111 1111 1111"}]}"#)),
        ("residency-email-us.req", post("x-data-region: us\n", r#"{"model":"chat","prompt":"write to a.b@example.org"}"#)),
        ("detector-employee.req", post("", r#"{"model":"chat","input":["id EMP-123456"]}"#)),
        ("detector-iban.req", post("", r#"{"model":"chat","messages":[{"content":[{"type":"text","text":"GB82 WEST 1234 5698 7654 32"}]}]}"#)),
        ("capabilities-vision.req", post("", r#"{"model":"chat","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"what is it"}]}],"tools":[],"response_format":{"type":"json_schema"},"stream":true}"#)),
        ("capabilities-context.req", post("", &format!(r#"{{"model":"chat","prompt":"{}","max_completion_tokens":8000}}"#, "x".repeat(2000)))),
        ("input-spec-ok.req", ":method: POST\n:path: /v2/models/iris/infer\ncontent-type: application/json\n\n{\"inputs\":[{\"name\":\"input-0\",\"shape\":[1,4],\"datatype\":\"FP32\",\"data\":[1,2,3,4]}]}".to_string()),
        ("input-spec-bad.req", ":method: POST\n:path: /v2/models/iris/infer\ncontent-type: application/json\n\n{\"inputs\":[{\"name\":\"input-0\",\"shape\":[2,4],\"datatype\":\"INT64\",\"data\":[[1,2,3,4]]},{\"name\":\"x\",\"shape\":[],\"datatype\":\"BYTES\"}]}".to_string()),
        ("budget-cost.req", post("x-max-cost: 0.001\nx-latency-budget-ms: 50\n", r#"{"model":"chat","prompt":"hi","max_tokens":100}"#)),
        ("budget-nan.req", post("x-max-cost: NaN\nx-latency-budget-ms: -inf\n", chat)),
        ("budget-escalate.req", post("x-escalate: true\nx-model: chat\n", chat)),
    ];
    for (name, req) in reqs {
        s.put(t, name, req)?;
    }
    Ok(())
}

fn health(s: &mut Seeds) -> std::io::Result<()> {
    let t = "health";
    let enc = |h: &Health| rmp_serde::to_vec(h).unwrap_or_default();
    s.put(t, "fresh-2.health", enc(&Health::new(2)))?;
    s.put(
        t,
        "cooling-2.health",
        enc(&Health {
            cooling_until: vec![NOW + 100, 0],
            latency_ms: vec![80.0, -1.0],
            ..Health::default()
        }),
    )?;
    s.put(
        t,
        "extreme-2.health",
        enc(&Health {
            cooling_until: vec![u64::MAX, u64::MAX],
            latency_ms: vec![f64::NAN, f64::INFINITY],
            ..Health::default()
        }),
    )?;
    s.put(
        t,
        "three.health",
        enc(&Health {
            cooling_until: vec![0, NOW - 1, NOW + 1],
            latency_ms: vec![1e300, -0.0, 5.0],
            ..Health::default()
        }),
    )?;
    if let Ok(named) = rmp_serde::to_vec_named(&Health::new(2)) {
        s.put(t, "named.health", named)?;
    }
    s.put(t, "retry-after", "120")?;
    s.put(t, "retry-after-huge", "99999999999999999999")?;
    s.put(t, "garbage", [0xc1u8])?;
    Ok(())
}

/// Bodies the filter resends (with a `model` to rewrite) and answers of external routers.
fn callout(s: &mut Seeds) -> std::io::Result<()> {
    let t = "callout";
    s.put(
        t,
        "router-ndarray.json",
        r#"{"data":{"names":["a"],"ndarray":[[1]]},"meta":{}}"#,
    )?;
    s.put(
        t,
        "router-tensor.json",
        r#"{"data":{"tensor":{"shape":[1],"values":[-1]}}}"#,
    )?;
    s.put(t, "router-none.json", r#"{"data":{"ndarray":[-2.0]}}"#)?;
    s.put(t, "router-float.json", r#"{"data":{"ndarray":[[1e20]]}}"#)?;
    s.put(t, "router-two.json", r#"{"data":{"ndarray":[[0,1]]}}"#)?;
    s.put(t, "timeout.txt", "504\nupstream request timeout")?;
    s.put(
        t,
        "reset.txt",
        "503\nupstream connect error or disconnect/reset before headers. reset reason: overflow",
    )?;
    s.put(
        t,
        "chat.json",
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}"#,
    )?;
    s.put(
        t,
        "chat-spaced.json",
        " {\t\"messages\" : [] ,\r\n \"model\" :\"a\\u0022b\" , \"model\":7 }\n",
    )?;
    s.put(
        t,
        "escaped-key.json",
        r#"{"mod\u0065l":"chat","x":{"model":1}}"#,
    )?;
    s.put(t, "no-model.json", r#"{"prompt":"x","n":1e400}"#)?;
    s.put(
        t,
        "feedback-seldon.json",
        r#"{"request":{"data":{"ndarray":[[1]]}},"truth":{"data":{}},"reward":1}"#,
    )?;
    let mp = rmp_serde::to_vec_named(
        &json!({"model": "chat", "stream": true, "messages": [{"content": "hi"}]}),
    )
    .unwrap_or_default();
    s.put(t, "chat.msgpack", mp)?;
    // {"model" (str8): "chat", "x": bin8 [1]}
    s.put(
        t,
        "str8-key.msgpack",
        [
            &[0x82u8, 0xd9, 0x05][..],
            b"model",
            &[0xa4],
            b"chat",
            &[0xa1, b'x', 0xc4, 0x01, 0x01],
        ]
        .concat(),
    )?;
    // {"model" as bin8: "chat"}
    s.put(
        t,
        "bin-key.msgpack",
        [&[0x81u8, 0xc4, 0x05][..], b"model", &[0xa4], b"chat"].concat(),
    )?;
    // map16 with an ext value and a nested map holding "model"
    s.put(
        t,
        "map16-ext.msgpack",
        [
            &[
                0xdeu8, 0x00, 0x02, 0xa1, b'e', 0xd6, 0x01, 1, 2, 3, 4, 0xa1, b'n', 0x81, 0xa5,
            ][..],
            b"model",
            &[0xc0],
        ]
        .concat(),
    )?;
    Ok(())
}
