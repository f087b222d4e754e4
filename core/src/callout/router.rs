//! An external router speaking Seldon's router contract.
//!
//! The filter POSTs the client's request body (a SeldonMessage such as
//! `{"data":{"ndarray":[[1,2]]}}`) to the router, which answers the child to use as a
//! SeldonMessage holding one number: `{"data":{"names":["t:0"],"ndarray":[[N]]},"meta":{}}`
//! (also accepted: `{"data":{"ndarray":[N]}}` and `{"data":{"tensor":{"values":[N]}}}`).
//! `N ≥ 0` is the index of a target, `-1` all of them (fan-out), `-2` none (the request body is
//! the answer). Rewards for a router's decisions are forwarded to its `/send-feedback` as Seldon's
//! Feedback message, `meta.routing` naming the child under the model's name (which is the
//! router's predictive-unit id, `PREDICTIVE_UNIT_ID`, in a Seldon graph).

use crate::json::{json, Value};

use crate::config::Config;
/// Where it always was; the reward's pipeline is [`crate::learning::process_feedback`].
pub use crate::learning::RouterForward;

/// Seldon's child index for "every child"; also the decision token's target for a fan-out the
/// router chose (target names start with a letter or digit, so it names no target).
pub const ALL_CHILDREN: &str = "-1";
/// Seldon's child index for "no child": the request body is the answer.
pub const NO_CHILD: &str = "-2";

/// What the router decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterChoice {
    Child(usize),
    All,
    None,
}

/// Reads a router's answer for a model with `children` targets. `Err` says why the answer
/// cannot be used (the request then falls back to the model's own strategy).
pub fn parse_router_answer(body: &[u8], children: usize) -> Result<RouterChoice, String> {
    let doc = crate::json::read::from_slice(body)
        .map_err(|e| format!("the router's answer is not JSON: {e}"))?;
    let data = doc
        .get("data")
        .ok_or("the router's answer has no \"data\"")?;
    let values = if let Some(nd) = data.get("ndarray") {
        flatten(nd)
    } else if let Some(t) = data.get("tensor") {
        t.get("values").map(flatten).unwrap_or_default()
    } else {
        return Err("the router's answer has neither data.ndarray nor data.tensor".into());
    };
    let [n] = values.as_slice() else {
        return Err(if values.is_empty() {
            "the router's answer holds no child index".to_string()
        } else {
            "the router's answer holds more than one value, not one child index".to_string()
        });
    };
    let n = n
        .as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
                .map(|f| f as i64)
        })
        .ok_or("the router's child index is not an integer")?;
    match n {
        -1 => Ok(RouterChoice::All),
        -2 => Ok(RouterChoice::None),
        n => match usize::try_from(n) {
            Ok(i) if i < children => Ok(RouterChoice::Child(i)),
            _ => Err(format!(
                "the router chose child {n}, out of range for {children} targets"
            )),
        },
    }
}

/// The leaves of a nested JSON array (a lone value is its own leaf), stopping at the second:
/// a child index is one number.
fn flatten(v: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().rev()),
            leaf => {
                out.push(leaf);
                if out.len() > 1 {
                    break;
                }
            }
        }
    }
    out
}

/// Seldon's child index of a decision token's target: a target's index, or the router's own
/// `-1` / `-2`.
pub fn target_child(cfg: &Config, model: usize, target: &str) -> Option<i64> {
    match target {
        ALL_CHILDREN => Some(-1),
        NO_CHILD => Some(-2),
        t => cfg
            .models
            .get(model)?
            .target_by_name(t)
            .and_then(|i| i64::try_from(i).ok()),
    }
}

/// The Feedback message forwarded to a router: the client's `request` and `truth` when its
/// feedback carried them (Seldon's form), `meta.routing` naming the child, and the reward.
pub fn forward_message(model: &str, child: i64, reward: f64, client_body: &[u8]) -> Vec<u8> {
    // `null` is no document, as serde_json read it into an `Option`.
    let client = crate::json::read::from_slice(client_body)
        .ok()
        .filter(|v| !v.is_null());
    let field = |name: &str| {
        client
            .as_ref()
            .and_then(|c| c.get(name))
            .filter(|v| v.is_object())
            .cloned()
    };
    let mut msg = json!({
        "request": field("request").unwrap_or_else(|| json!({"data": {"ndarray": []}})),
        "response": { "meta": { "routing": { model: child } } },
        "reward": reward,
    });
    if let (Some(truth), Some(obj)) = (field("truth"), msg.as_object_mut()) {
        obj.insert("truth".into(), truth);
    }
    crate::json::write::to_vec(&msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seldon_answers() {
        let p = |b: &str| parse_router_answer(b.as_bytes(), 3);
        assert_eq!(
            p(r#"{"data":{"names":["t:0"],"ndarray":[[1]]},"meta":{}}"#),
            Ok(RouterChoice::Child(1))
        );
        assert_eq!(p(r#"{"data":{"ndarray":[2]}}"#), Ok(RouterChoice::Child(2)));
        assert_eq!(
            p(r#"{"data":{"tensor":{"shape":[1,1],"values":[0]}}}"#),
            Ok(RouterChoice::Child(0))
        );
        assert_eq!(p(r#"{"data":{"ndarray":[[-1]]}}"#), Ok(RouterChoice::All));
        assert_eq!(
            p(r#"{"data":{"ndarray":[[-2.0]]}}"#),
            Ok(RouterChoice::None)
        );
        assert_eq!(
            p(r#"{"data":{"ndarray":[[1.0]]}}"#),
            Ok(RouterChoice::Child(1))
        );
    }

    #[test]
    fn unusable_answers() {
        for b in [
            r#"{"data":{"ndarray":[[3]]}}"#,
            r#"{"data":{"ndarray":[[-3]]}}"#,
            r#"{"data":{"ndarray":[[1.5]]}}"#,
            r#"{"data":{"ndarray":[[1,2]]}}"#,
            r#"{"data":{"ndarray":[]}}"#,
            r#"{"data":{"ndarray":[["1"]]}}"#,
            r#"{"data":{"tensor":{}}}"#,
            r#"{"data":{}}"#,
            r#"{"status":{"code":500,"info":"boom"}}"#,
            "not json",
            "",
        ] {
            assert!(parse_router_answer(b.as_bytes(), 3).is_err(), "{b}");
        }
        let big: String = format!(r#"{{"data":{{"ndarray":[{}1]}}}}"#, "[1],".repeat(10_000));
        assert!(parse_router_answer(big.as_bytes(), 3).is_err());
    }

    fn cfg() -> Config {
        crate::config::parse(
            serde_json::to_vec(&json!({
                "models": [
                    { "name": "iris",
                      "targets": [ { "name": "a", "cluster": "c1", "weight": 1 },
                                   { "name": "b", "cluster": "c2", "weight": 1 } ],
                      "router": { "cluster": "router", "feedback_path": "/send-feedback" } },
                    { "name": "plain",
                      "targets": [ { "name": "a", "cluster": "c1", "weight": 1 } ] }
                ],
                "feedback": { "signing_key": "0123456789abcdef0123456789abcdef" }
            }))
            .unwrap()
            .as_slice(),
        )
        .unwrap()
    }

    #[test]
    fn forwarded_message() {
        let client = br#"{"request":{"data":{"ndarray":[[5,6]]}},"truth":{"data":{"ndarray":[[1]]}},"response":{},"reward":1}"#;
        let m: Value = serde_json::from_slice(&forward_message("iris", 1, 1.0, client)).unwrap();
        assert_eq!(
            m,
            json!({"request": {"data": {"ndarray": [[5, 6]]}},
                   "truth": {"data": {"ndarray": [[1]]}},
                   "response": {"meta": {"routing": {"iris": 1}}}, "reward": 1.0})
        );
        let m: Value = serde_json::from_slice(&forward_message("iris", -1, 0.5, b"")).unwrap();
        assert_eq!(
            m,
            json!({"request": {"data": {"ndarray": []}},
                   "response": {"meta": {"routing": {"iris": -1}}}, "reward": 0.5})
        );
    }

    #[test]
    fn children() {
        let cfg = cfg();
        assert_eq!(target_child(&cfg, 0, "b"), Some(1));
        assert_eq!(target_child(&cfg, 0, "-1"), Some(-1));
        assert_eq!(target_child(&cfg, 0, "-2"), Some(-2));
        assert_eq!(target_child(&cfg, 0, "zz"), None);
    }
}
