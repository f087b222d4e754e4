//! Feedback request bodies.
//!
//! Ours: `{"decision": "<x-inference-decision>", "reward": 0.8}`.
//! Seldon's `Feedback`: `{"request": …, "response": {"meta": {"routing": {…}, "tags": {…}}},
//! "reward": r, "truth": …}`. Seldon routed by child index in `meta.routing`; we need the signed
//! decision, taken from `response.meta.tags["x-inference-decision"]` or from the feedback
//! request's `x-inference-decision` header.

use crate::json::Value;

use crate::bandit::check_reward;

#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub decision: String,
    pub reward: f64,
    /// Seldon's `response.meta.routing`, when given: router name → child index.
    pub routing: Option<crate::json::Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackError(pub String);

#[cfg_attr(test, derive(serde::Deserialize, Debug, PartialEq))]
struct Raw {
    #[cfg_attr(test, serde(default))]
    decision: Option<String>,
    #[cfg_attr(test, serde(default))]
    reward: Option<Value>,
    #[cfg_attr(test, serde(default))]
    response: Option<Value>,
}

/// The fields of an object, as serde's derive took them from a `Value`: `null` for an absent
/// option, other keys ignored.
fn raw(mut object: crate::json::Map<String, Value>) -> Result<Raw, String> {
    let decision = match object.remove("decision") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => return Err(crate::json::read::invalid_type(&other, "a string")),
    };
    let mut option = |key| object.remove(key).filter(|v: &Value| !v.is_null());
    Ok(Raw {
        decision,
        reward: option("reward"),
        response: option("response"),
    })
}

/// Parses a feedback body; `header_decision` is the request's `x-inference-decision`, if any.
pub fn parse_feedback(
    body: &[u8],
    header_decision: Option<&str>,
) -> Result<Feedback, FeedbackError> {
    let value = crate::json::read::from_slice(body)
        .map_err(|e| FeedbackError(format!("the feedback body is not a JSON object: {e}")))?;
    let Value::Object(object) = value else {
        return Err(FeedbackError(
            "the feedback body is not a JSON object".into(),
        ));
    };
    let raw = raw(object)
        .map_err(|e| FeedbackError(format!("the feedback body is not a feedback message: {e}")))?;
    let reward = match raw.reward {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => return Err(FeedbackError("reward must be a number".into())),
        None => return Err(FeedbackError("reward is missing".into())),
    };
    let reward = check_reward(reward).map_err(|e| FeedbackError(crate::quote::text(&e)))?;
    let meta = raw.response.as_ref().and_then(|r| r.get("meta"));
    let tagged = meta
        .and_then(|m| m.get("tags"))
        .and_then(|t| t.get("x-inference-decision"))
        .and_then(Value::as_str);
    let routing = meta
        .and_then(|m| m.get("routing"))
        .and_then(Value::as_object)
        .cloned();
    let decision = raw
        .decision
        .or_else(|| tagged.map(str::to_string))
        .or_else(|| header_decision.map(str::to_string))
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            FeedbackError(
                "no decision: send \"decision\", response.meta.tags[\"x-inference-decision\"], or the x-inference-decision header".into(),
            )
        })?;
    Ok(Feedback {
        decision,
        reward,
        routing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_taken_as_serde_took_them() {
        for v in [
            crate::json::json!({}),
            crate::json::json!({"decision": null, "reward": null, "response": null}),
            crate::json::json!({"decision": "d", "reward": 1, "response": {"a": [1]}, "x": 1}),
            crate::json::json!({"decision": 5}),
            crate::json::json!({"decision": -5}),
            crate::json::json!({"decision": 1.5}),
            crate::json::json!({"decision": 1e300}),
            crate::json::json!({"decision": true}),
            crate::json::json!({"decision": [1]}),
            crate::json::json!({"decision": {"a": 1}}),
            crate::json::json!({"decision": "é\n", "reward": "1"}),
        ] {
            let Value::Object(o) = v.clone() else {
                unreachable!()
            };
            let ours = raw(o).map_err(|e| e.to_string());
            let theirs = serde_json::from_value::<Raw>(v.into()).map_err(|e| e.to_string());
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn ours() {
        let f = parse_feedback(br#"{"decision":"d","reward":0.8}"#, None).unwrap();
        assert_eq!((f.decision.as_str(), f.reward), ("d", 0.8));
    }

    #[test]
    fn seldon() {
        let body = br#"{"request":{"data":{"ndarray":[[1]]}},"response":{"meta":{"routing":{"sentiment":1},"tags":{"x-inference-decision":"t"}}},"reward":1}"#;
        let f = parse_feedback(body, None).unwrap();
        assert_eq!(f.decision, "t");
        assert_eq!(f.routing.unwrap()["sentiment"], 1);
        let body = br#"{"response":{"meta":{}},"reward":0}"#;
        assert_eq!(parse_feedback(body, Some("h")).unwrap().decision, "h");
    }

    #[test]
    fn refusals() {
        for (body, want) in [
            (&br#"{"decision":"d","reward":1.5}"#[..], "within [0, 1]"),
            (br#"{"decision":"d","reward":-0.1}"#, "within [0, 1]"),
            (br#"{"decision":"d","reward":"1"}"#, "must be a number"),
            (br#"{"decision":"d"}"#, "missing"),
            (br#"{"reward":1}"#, "no decision"),
            (b"not json", "not a JSON object"),
            (b"[]", "not a JSON object"),
        ] {
            let e = parse_feedback(body, None).unwrap_err();
            assert!(
                e.0.contains(want),
                "{}: {}",
                String::from_utf8_lossy(body),
                e.0
            );
        }
    }
}
