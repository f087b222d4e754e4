//! What an OpenAI-style request asks of a model: images, tools, JSON output, streaming, and how
//! much context it needs. Read in one pass into typed structs (JSON by `json::read::FromText`,
//! MessagePack by hand on `msgpack::read`, as serde's derive read it over rmp-serde); fields the
//! summary does not need are skipped, not built.

use crate::json::Value;
#[cfg(test)]
use serde::Deserialize;

use crate::json::read::IgnoredAny;
use crate::msgpack::read::{Reader, Token};
use crate::msgpack::value::value;
use crate::payload::Format;

/// Prompt text kept for detectors; longer prompts are scanned up to this many bytes.
pub const MAX_SCANNED_TEXT: usize = 256 * 1024;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatSummary {
    pub has_image: bool,
    pub has_tools: bool,
    pub json_mode: bool,
    pub stream: bool,
    /// `max_tokens` / `max_completion_tokens`, when given.
    pub max_tokens: Option<u64>,
    /// Characters of prompt text (message contents, `prompt`, `input`).
    pub prompt_chars: u64,
    pub messages: u64,
    /// The prompt text, joined by newlines, at most `MAX_SCANNED_TEXT` bytes.
    pub text: String,
}

impl ChatSummary {
    /// Estimated prompt tokens: one per four characters, plus four per message for the chat
    /// template, rounded up. A deliberately simple, tokenizer-free estimate: good to a few tens
    /// of percent for English text, enough to keep a long prompt off a short-context model.
    pub fn estimated_prompt_tokens(&self) -> u64 {
        self.prompt_chars
            .div_ceil(4)
            .saturating_add(self.messages.saturating_mul(4))
    }

    /// Tokens the request needs from a model's context: prompt estimate plus requested output.
    pub fn needed_context(&self) -> u64 {
        // Saturating: a client may send max_tokens near u64::MAX (found by fuzzing); wrapping
        // would make a huge request look small enough for any context.
        self.estimated_prompt_tokens()
            .saturating_add(self.max_tokens.unwrap_or(0))
    }

    fn add_text(&mut self, s: &str) {
        self.prompt_chars += s.chars().count() as u64;
        if self.text.len() < MAX_SCANNED_TEXT {
            if !self.text.is_empty() {
                self.text.push('\n');
            }
            let room = MAX_SCANNED_TEXT - self.text.len();
            let mut end = s.len().min(room);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            self.text.push_str(s.get(..end).unwrap_or_default());
        }
    }
}

#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
struct Request {
    #[cfg_attr(test, serde(default))]
    messages: Option<Vec<Message>>,
    #[cfg_attr(test, serde(default))]
    prompt: Option<Value>,
    #[cfg_attr(test, serde(default))]
    input: Option<Value>,
    #[cfg_attr(test, serde(default))]
    tools: Option<IgnoredAny>,
    #[cfg_attr(test, serde(default))]
    functions: Option<IgnoredAny>,
    #[cfg_attr(test, serde(default))]
    response_format: Option<Value>,
    #[cfg_attr(test, serde(default))]
    stream: Option<Value>,
    #[cfg_attr(test, serde(default))]
    max_tokens: Option<Value>,
    #[cfg_attr(test, serde(default))]
    max_completion_tokens: Option<Value>,
}

#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
struct Message {
    #[cfg_attr(test, serde(default))]
    content: Option<Value>,
}

// JSON read by hand, accepting what serde's derive did (kept for tests as the reference).
crate::json::read::text_struct!(Request {
    messages default,
    prompt default,
    input default,
    tools default,
    functions default,
    response_format default,
    stream default,
    max_tokens default,
    max_completion_tokens default,
});
crate::json::read::text_struct!(Message { content default });

fn walk_text(v: &Value, out: &mut ChatSummary) {
    match v {
        Value::String(s) => out.add_text(s),
        Value::Array(items) => items.iter().for_each(|i| walk_text(i, out)),
        _ => {}
    }
}

/// Summarises a chat/completions/embeddings request. `None` if the body is not such an object.
pub fn summarize(format: Format, body: &[u8]) -> Option<ChatSummary> {
    let req: Request = match format {
        Format::Json => crate::json::read::from_text(body).ok()?,
        // The same nesting limit as body extraction: the wasm stack is 1 MiB. Bytes after the
        // document are not looked at.
        Format::MessagePack => mp_request(&mut Reader::new(body, 128)).ok()?,
    };
    Some(summary_of(&req))
}

/// What [`mp_struct`] calls for each field it finds, behind `dyn`: a trait of its own rather than
/// `dyn FnMut`, whose vtable holds a `call_once` shim per closure that nothing calls.
trait StructField<'a> {
    fn field(&mut self, r: &mut Reader<'a>, i: usize) -> Result<(), ()>;
}

impl<'a, F: FnMut(&mut Reader<'a>, usize) -> Result<(), ()>> StructField<'a> for F {
    fn field(&mut self, r: &mut Reader<'a>, i: usize) -> Result<(), ()> {
        self(r, i)
    }
}

/// A struct with these fields, as serde's derive read one from rmp-serde: a map (keys by name,
/// as str or bin, or by index; unknown keys skipped, a field given twice refused), an array (the
/// fields in order, the missing ones absent, more items refused) or an empty bin. Only whether
/// it was read matters here, not why not.
fn mp_struct<'a>(
    r: &mut Reader<'a>,
    fields: &[&str],
    field: &mut dyn StructField<'a>,
) -> Result<(), ()> {
    let refused = |_| crate::msgpack::read::Error::Marker;
    match r.token().map_err(drop)? {
        Token::Map(n) => r
            .nested(|r| {
                let mut seen = vec![false; fields.len()];
                for _ in 0..n {
                    let slot = match r.token()? {
                        Token::Str(key) | Token::Bin(key) => {
                            fields.iter().position(|f| f.as_bytes() == key)
                        }
                        Token::Uint(i) => usize::try_from(i).ok().filter(|i| *i < fields.len()),
                        _ => return Err(refused(())),
                    };
                    match slot.and_then(|i| Some((i, seen.get_mut(i)?))) {
                        Some((_, true)) => return Err(refused(())),
                        Some((i, flag)) => {
                            *flag = true;
                            field.field(r, i).map_err(refused)?;
                        }
                        None => r.skip()?,
                    }
                }
                Ok(())
            })
            .map_err(drop),
        Token::Array(n) => r
            .nested(|r| {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                for i in 0..n.min(fields.len()) {
                    field.field(r, i).map_err(refused)?;
                }
                match n > fields.len() {
                    true => Err(refused(())),
                    false => Ok(()),
                }
            })
            .map_err(drop),
        Token::Bin([]) => Ok(()),
        _ => Err(()),
    }
}

/// `None` for nil, else what `read` reads (serde's `Option` over rmp-serde).
fn mp_option<T>(
    r: &mut Reader<'_>,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, ()>,
) -> Result<Option<T>, ()> {
    match r.peek() {
        None => Err(()),
        Some(0xc0) => r.token().map(|_| None).map_err(drop),
        Some(_) => read(r).map(Some),
    }
}

fn mp_value(r: &mut Reader<'_>) -> Result<Value, ()> {
    value(r).map_err(drop)
}

fn mp_message<'a>(r: &mut Reader<'a>) -> Result<Message, ()> {
    let mut m = Message { content: None };
    mp_struct(r, &["content"], &mut |r: &mut Reader<'a>, _| {
        m.content = mp_option(r, mp_value)?;
        Ok(())
    })?;
    Ok(m)
}

/// A sequence of messages: an array of them, or an empty bin.
fn mp_messages(r: &mut Reader<'_>) -> Result<Vec<Message>, ()> {
    match r.token().map_err(drop)? {
        Token::Array(n) => r
            .nested(|r| {
                // A loop rather than `collect` into a `Result`: less code in the module.
                let mut messages = Vec::new();
                for _ in 0..n {
                    messages.push(mp_message(r).map_err(|()| crate::msgpack::read::Error::Marker)?);
                }
                Ok(messages)
            })
            .map_err(drop),
        Token::Bin([]) => Ok(Vec::new()),
        _ => Err(()),
    }
}

fn mp_request<'a>(r: &mut Reader<'a>) -> Result<Request, ()> {
    let mut q = Request {
        messages: None,
        prompt: None,
        input: None,
        tools: None,
        functions: None,
        response_format: None,
        stream: None,
        max_tokens: None,
        max_completion_tokens: None,
    };
    let fields = [
        "messages",
        "prompt",
        "input",
        "tools",
        "functions",
        "response_format",
        "stream",
        "max_tokens",
        "max_completion_tokens",
    ];
    mp_struct(r, &fields, &mut |r: &mut Reader<'a>, i| {
        let skipped = |r: &mut Reader<'_>| r.skip().map(|()| IgnoredAny).map_err(drop);
        // One read per kind of field, then the slot it fills.
        match i {
            0 => q.messages = mp_option(r, mp_messages)?,
            3 | 4 => {
                let given = mp_option(r, skipped)?;
                *if i == 3 {
                    &mut q.tools
                } else {
                    &mut q.functions
                } = given;
            }
            _ => {
                let value = mp_option(r, mp_value)?;
                let slot = match i {
                    1 => &mut q.prompt,
                    2 => &mut q.input,
                    5 => &mut q.response_format,
                    6 => &mut q.stream,
                    7 => &mut q.max_tokens,
                    _ => &mut q.max_completion_tokens,
                };
                *slot = value;
            }
        }
        Ok(())
    })?;
    Ok(q)
}

fn summary_of(req: &Request) -> ChatSummary {
    let mut s = ChatSummary::default();
    for m in req.messages.iter().flatten() {
        s.messages += 1;
        match &m.content {
            Some(Value::String(text)) => s.add_text(text),
            Some(Value::Array(parts)) => {
                for part in parts {
                    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
                    if matches!(kind, "image_url" | "input_image" | "image")
                        || part.get("image_url").is_some()
                    {
                        s.has_image = true;
                    }
                    if let Some(Value::String(text)) = part.get("text") {
                        s.add_text(text);
                    }
                }
            }
            _ => {}
        }
    }
    for v in [&req.prompt, &req.input].into_iter().flatten() {
        walk_text(v, &mut s);
    }
    s.has_tools = req.tools.is_some() || req.functions.is_some();
    s.json_mode = req
        .response_format
        .as_ref()
        .and_then(|r| r.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_object" || t == "json_schema");
    s.stream = req
        .stream
        .as_ref()
        .and_then(Value::as_bool)
        .unwrap_or(false);
    s.max_tokens = req
        .max_completion_tokens
        .as_ref()
        .or(req.max_tokens.as_ref())
        .and_then(Value::as_u64);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    fn sum(v: Value) -> ChatSummary {
        summarize(Format::Json, v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn capabilities() {
        let s = sum(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:..."}}
                ]}
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "response_format": {"type": "json_object"},
            "stream": true,
            "max_tokens": 100
        }));
        assert!(s.has_image && s.has_tools && s.json_mode && s.stream);
        assert_eq!(s.max_tokens, Some(100));
        assert_eq!(s.messages, 2);
        assert_eq!(s.prompt_chars, 8 + 13);
        assert_eq!(s.text, "be brief\nwhat is this?");
        // ceil(21/4) = 6, + 4·2 messages = 14, + 100 requested
        assert_eq!(s.estimated_prompt_tokens(), 14);
        assert_eq!(s.needed_context(), 114);
    }

    #[test]
    fn plain_and_legacy() {
        let s = sum(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": null}),
        );
        assert!(!s.has_image && !s.has_tools && !s.json_mode && !s.stream);
        let s = sum(json!({"model": "m", "prompt": ["a", "bc"], "functions": []}));
        assert_eq!(s.prompt_chars, 3);
        assert!(s.has_tools);
        let s = sum(json!({"input": "embed me"}));
        assert_eq!(s.prompt_chars, 8);
        assert!(summarize(Format::Json, b"[1,2]").is_none());
        assert!(summarize(Format::Json, b"{").is_none());
    }

    #[test]
    fn messagepack() {
        let v =
            json!({"messages": [{"role": "user", "content": "hello"}], "max_completion_tokens": 5});
        let s = summarize(Format::MessagePack, &rmp_serde::to_vec_named(&v).unwrap()).unwrap();
        assert_eq!((s.prompt_chars, s.max_tokens), (5, Some(5)));
    }

    #[test]
    fn messagepack_reads_as_rmp_serde_did() {
        use crate::msgpack::testing::{any_doc, any_request, mutations, respell};
        // How the summary read MessagePack with rmp-serde, the reference for the reader now used.
        let with_rmp = |body: &[u8]| {
            let mut rest = body;
            let mut de = rmp_serde::Deserializer::new(&mut rest);
            de.set_max_depth(128);
            Request::deserialize(&mut de).ok().map(|r| summary_of(&r))
        };
        let mut rng = crate::rng::Rng::seed_from_u64(41);
        let (mut read, mut refused) = (0, 0);
        for round in 0..3000 {
            let doc = match round % 4 {
                0 => any_doc(&mut rng),
                _ => any_request(&mut rng),
            };
            let mut inputs = vec![respell(&doc, &mut rng), doc];
            if round % 8 == 0 {
                inputs.extend(mutations(&inputs[1], &mut rng));
            }
            for body in &inputs {
                let got = summarize(Format::MessagePack, body);
                assert_eq!(got, with_rmp(body), "{body:02x?}");
                if got.is_some_and(|s| s != ChatSummary::default()) {
                    read += 1;
                } else {
                    refused += 1;
                }
            }
        }
        assert!(
            read > 1000 && refused > 1000,
            "{read} read, {refused} refused"
        );
    }

    #[test]
    fn messagepack_structs_in_every_shape_read_as_with_rmp_serde() {
        let with_rmp = |body: &[u8]| {
            let mut rest = body;
            let mut de = rmp_serde::Deserializer::new(&mut rest);
            de.set_max_depth(128);
            Request::deserialize(&mut de).ok().map(|r| summary_of(&r))
        };
        let docs: [&[u8]; 12] = [
            b"\xc4\x00",
            b"\xc4\x01\x00",
            b"\x91\xc4\x00",
            b"\x91\x91\x91\xa2hi",
            b"\x91\x91\x92\xa2hi\xc0",
            b"\x91\x91\xc4\x00",
            b"\x9a\xc0\xc0\xc0\xc0\xc0\xc0\xc0\xc0\xc0\xc0",
            b"\x99\xc0\xa1p\xc0\xc0\xc0\xc0\xc3\x05\x06",
            b"\x82\x01\xa1p\xc4\x05input\xa1q",
            b"\x82\x01\xa1p\xc4\x06prompt\xa1q",
            b"\x82\x09\xa1p\x08\x07",
            b"\x82\xff\xa1p\x08\x07",
        ];
        for doc in docs {
            for cut in 0..=doc.len() {
                let b = &doc[..cut];
                assert_eq!(summarize(Format::MessagePack, b), with_rmp(b), "{b:02x?}");
            }
        }
    }

    #[test]
    fn huge_max_tokens_saturate_the_context_estimate() {
        // fuzz/regressions/inspect/needed-context-overflow.json
        let s = summarize(
            Format::Json,
            br#"{"prompt":"x","max_tokens":18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(s.estimated_prompt_tokens(), 1);
        assert_eq!(s.needed_context(), u64::MAX);
    }

    #[test]
    fn text_is_capped_on_a_char_boundary() {
        let long = "é".repeat(MAX_SCANNED_TEXT);
        let s = sum(json!({"messages": [{"content": long}]}));
        assert!(s.text.len() <= MAX_SCANNED_TEXT);
        assert_eq!(s.prompt_chars, MAX_SCANNED_TEXT as u64);
    }

    #[test]
    fn json_is_read_as_serde_read_it() {
        let mut rng = crate::rng::Rng::seed_from_u64(42);
        for base in [
            r#"{"model":"m","messages":[{"role":"user","content":"hi"},{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"t"}]}],"tools":[{"a":1e400}],"stream":true,"max_tokens":5}"#,
            r#"{"prompt":["a","b"],"input":null,"functions":null,"response_format":{"type":"json_object"},"max_completion_tokens":1.5}"#,
            r#"{"messages":null,"tools":"\ud800","stream":"yes"}"#,
            r#"[[{"content":"x"}],"p"]"#,
            r#"{"messages":[{"content":null},{"content":1},["c"]]}"#,
            r#"{"messages":[{"content":"a","content":"b"}]}"#,
            r#"{"messages":[1]}"#,
            "{}",
            "[]",
        ] {
            for _ in 0..300 {
                let doc = crate::json::documents_tests::respelled(base.as_bytes(), &mut rng);
                crate::json::documents_tests::reads_alike::<Request>(&doc);
            }
            crate::json::documents_tests::reads_alike::<Request>(base.as_bytes());
        }
    }
}
