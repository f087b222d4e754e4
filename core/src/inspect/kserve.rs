//! KServe v2 / Open Inference Protocol request validation against a model's declared inputs.

use crate::json::Value;
use crate::quote::quoted;

/// The datatypes of the Open Inference Protocol.
pub const DATATYPES: [&str; 13] = [
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "FP32", "FP64", "BYTES",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub name: String,
    pub datatype: String,
    /// Dimensions; -1 matches any size.
    pub shape: Vec<i64>,
}

#[cfg_attr(test, derive(serde::Deserialize, Debug, PartialEq))]
struct Request {
    inputs: Vec<Input>,
}

#[cfg_attr(test, derive(serde::Deserialize, Debug, PartialEq))]
struct Input {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[cfg_attr(test, serde(default))]
    data: Option<Value>,
}

// Read by hand, accepting what serde's derive did.
crate::json::read::text_struct!(Request { inputs });
crate::json::read::text_struct!(Input { name, shape, datatype, data default });

/// Why a request does not fit the spec: the input it concerns (empty for the request as a
/// whole) and a sentence naming what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub input: String,
    pub detail: String,
}

fn err(input: &str, detail: String) -> SpecError {
    SpecError {
        input: input.to_string(),
        detail,
    }
}

fn count_values(v: &Value) -> u64 {
    match v {
        Value::Array(items) => items.iter().map(count_values).sum(),
        _ => 1,
    }
}

fn shape_text(shape: &[i64]) -> String {
    let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", crate::quote::join(&dims, ", "))
}

/// Checks a JSON KServe v2 inference request against `spec`.
pub fn validate(spec: &[InputSpec], body: &[u8]) -> Result<(), SpecError> {
    let req: Request = crate::json::read::from_text(body).map_err(|e| {
        err(
            "",
            format!("not a KServe v2 inference request (expected {{\"inputs\": [{{\"name\", \"shape\", \"datatype\", \"data\"}}]}}): {e}"),
        )
    })?;
    for input in &req.inputs {
        if !spec.iter().any(|s| s.name == input.name) {
            let names: Vec<String> = spec.iter().map(|s| s.name.clone()).collect();
            return Err(err(
                &input.name,
                format!(
                    "input {} is not an input of this model (inputs: {})",
                    quoted(&input.name),
                    crate::quote::join(&names, ", ")
                ),
            ));
        }
    }
    for s in spec {
        let Some(input) = req.inputs.iter().find(|i| i.name == s.name) else {
            return Err(err(
                &s.name,
                format!("input {} is missing", quoted(&s.name)),
            ));
        };
        if input.datatype != s.datatype {
            return Err(err(
                &s.name,
                format!(
                    "input {} has datatype {}, expected {}",
                    quoted(&s.name),
                    input.datatype,
                    s.datatype
                ),
            ));
        }
        let fits = input.shape.len() == s.shape.len()
            && input
                .shape
                .iter()
                .zip(&s.shape)
                .all(|(&got, &want)| got >= 0 && (want < 0 || got == want));
        if !fits {
            return Err(err(
                &s.name,
                format!(
                    "input {} has shape {}, expected {}",
                    quoted(&s.name),
                    shape_text(&input.shape),
                    shape_text(&s.shape)
                ),
            ));
        }
        if let Some(data) = &input.data {
            let expected = input
                .shape
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?));
            let got = count_values(data);
            if expected != Some(got) {
                return Err(err(
                    &s.name,
                    format!(
                        "input {} has {got} values, expected {} for shape {}",
                        quoted(&s.name),
                        expected
                            .map_or_else(|| "a countable number".to_string(), |e| e.to_string()),
                        shape_text(&input.shape)
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;

    fn spec() -> Vec<InputSpec> {
        vec![InputSpec {
            name: "input-0".into(),
            datatype: "FP32".into(),
            shape: vec![-1, 4],
        }]
    }

    fn check(v: Value) -> Result<(), SpecError> {
        validate(&spec(), v.to_string().as_bytes())
    }

    #[test]
    fn valid() {
        assert_eq!(
            check(
                json!({"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [[1,2,3,4],[5,6,7,8]]}]})
            ),
            Ok(())
        );
        assert_eq!(
            check(
                json!({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [1,2,3,4]}]})
            ),
            Ok(())
        );
    }

    #[test]
    fn refusals_name_input_and_expectation() {
        let e = check(json!({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [1,2,3,4]}]})).unwrap_err();
        assert_eq!(e.input, "input-0");
        assert!(
            e.detail.contains("datatype FP64, expected FP32"),
            "{}",
            e.detail
        );
        let e = check(json!({"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP32", "data": [1,2,3]}]})).unwrap_err();
        assert!(
            e.detail.contains("shape [1, 3], expected [-1, 4]"),
            "{}",
            e.detail
        );
        let e = check(json!({"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1,2,3]}]})).unwrap_err();
        assert!(e.detail.contains("3 values, expected 8"), "{}", e.detail);
        let e = check(json!({"inputs": []})).unwrap_err();
        assert!(e.detail.contains("\"input-0\" is missing"), "{}", e.detail);
        let e = check(json!({"inputs": [{"name": "other", "shape": [1], "datatype": "FP32"}]}))
            .unwrap_err();
        assert!(
            e.detail.contains("not an input of this model"),
            "{}",
            e.detail
        );
        let e = check(json!({"instances": [[1,2,3,4]]})).unwrap_err();
        assert!(
            e.detail.contains("not a KServe v2 inference request"),
            "{}",
            e.detail
        );
        let e =
            check(json!({"inputs": [{"name": "input-0", "shape": [-2, 4], "datatype": "FP32"}]}))
                .unwrap_err();
        assert!(e.detail.contains("shape [-2, 4]"), "{}", e.detail);
    }

    #[test]
    fn read_as_serde_read_it() {
        let mut rng = crate::rng::Rng::seed_from_u64(41);
        for base in [
            r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}"#,
            r#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32"}]}"#,
            r#"{"inputs":[["x",[1],"INT8",[[1]]]]}"#,
            r#"{"inputs":[{"name":"x","shape":[1.5],"datatype":"FP32"}]}"#,
            r#"{"inputs":[{"name":"x","shape":[9223372036854775808],"datatype":"FP32"}]}"#,
            r#"{"inputs":{}}"#,
            r#"{"id":"a","inputs":[],"outputs":[{"name":"y"}]}"#,
            r#"{"inputs":[{"name":"x","name":"y","shape":[],"datatype":"B"}]}"#,
            r#"{}"#,
            r#"[[]]"#,
        ] {
            for _ in 0..200 {
                let doc = crate::json::documents_tests::respelled(base.as_bytes(), &mut rng);
                crate::json::documents_tests::reads_alike::<Request>(&doc);
            }
            crate::json::documents_tests::reads_alike::<Request>(base.as_bytes());
        }
    }
}
