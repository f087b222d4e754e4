//! A fan-out's reply: every target's answer in one JSON document.
//!
//! `{"model": m, "responses": [{"target": t, "status": s, "body": b}, …], "partial": p}`, in
//! target order. `body` is the answer's JSON when it was JSON (by content type), else its text.
//! A target that could not be reached in time appears with `"status": null` and `"error"`.
//! `partial` is true when some target failed: no answer, or a 5xx / 429. The reply's status is
//! 200 when at least one target answered 2xx, else 502.

use crate::json::{json, Value};

use super::answer::{classify, is_failure, CalloutAnswer};
use crate::payload::{format_of_content_type, Format};

/// One target's answer as the host read it: `:status` (if any), content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResult {
    pub target: String,
    pub status: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanOutReply {
    pub status: u16,
    pub body: Vec<u8>,
    pub partial: bool,
}

fn body_value(content_type: Option<&str>, body: &[u8]) -> Value {
    if content_type.and_then(format_of_content_type) == Some(Format::Json) {
        if let Ok(v) = crate::json::read::from_slice(body) {
            return v;
        }
    }
    Value::String(crate::utf8::lossy(body).into_owned())
}

/// Combines the answers (in target order) into the reply.
pub fn fan_out_reply(model: &str, results: &[TargetResult]) -> FanOutReply {
    let mut partial = false;
    let mut any_ok = false;
    let responses: Vec<Value> = results
        .iter()
        .map(|r| match classify(r.status.as_deref(), &r.body) {
            CalloutAnswer::Status(s) => {
                partial |= is_failure(s);
                any_ok |= (200..300).contains(&s);
                json!({
                    "target": r.target,
                    "status": s,
                    "body": body_value(r.content_type.as_deref(), &r.body),
                })
            }
            CalloutAnswer::Failed(why) => {
                partial = true;
                json!({ "target": r.target, "status": null, "error": why })
            }
        })
        .collect();
    let doc = json!({ "model": model, "responses": responses, "partial": partial });
    FanOutReply {
        status: if any_ok { 200 } else { 502 },
        body: crate::json::write::to_vec(&doc),
        partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(target: &str, status: Option<&str>, ct: Option<&str>, body: &[u8]) -> TargetResult {
        TargetResult {
            target: target.into(),
            status: status.map(str::to_string),
            content_type: ct.map(str::to_string),
            body: body.to_vec(),
        }
    }

    #[test]
    fn all_answer() {
        let out = fan_out_reply(
            "iris",
            &[
                r(
                    "v1",
                    Some("200"),
                    Some("application/json"),
                    br#"{"p":[0.9]}"#,
                ),
                r("v2", Some("200"), Some("text/plain"), b"hello"),
            ],
        );
        assert_eq!((out.status, out.partial), (200, false));
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(
            v,
            json!({"model": "iris", "partial": false, "responses": [
                {"target": "v1", "status": 200, "body": {"p": [0.9]}},
                {"target": "v2", "status": 200, "body": "hello"}]})
        );
    }

    #[test]
    fn failures_make_it_partial() {
        let out = fan_out_reply(
            "iris",
            &[
                r("v1", Some("200"), Some("application/json"), b"not json"),
                r(
                    "v2",
                    Some("504"),
                    Some("text/plain"),
                    b"upstream request timeout",
                ),
                r("v3", None, None, b""),
                r(
                    "v4",
                    Some("500"),
                    Some("application/json"),
                    br#"{"error":"x"}"#,
                ),
            ],
        );
        assert_eq!((out.status, out.partial), (200, true));
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["responses"][0]["body"], "not json");
        assert_eq!(
            v["responses"][1],
            json!({"target": "v2", "status": null, "error": "timeout"})
        );
        assert_eq!(v["responses"][2]["status"], Value::Null);
        assert_eq!(
            v["responses"][3],
            json!({"target": "v4", "status": 500, "body": {"error": "x"}})
        );
    }

    #[test]
    fn none_ok_is_502() {
        let out = fan_out_reply("m", &[r("a", Some("429"), None, b"")]);
        assert_eq!((out.status, out.partial), (502, true));
        let out = fan_out_reply("m", &[r("a", Some("404"), None, b"")]);
        assert_eq!((out.status, out.partial), (502, false));
    }
}
