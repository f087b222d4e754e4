//! Request inspection for policy (`src/inspect`): `openai::summarize` of JSON and MessagePack
//! bodies (and the token estimates drawn from it), the built-in sensitive-data detectors over
//! the summary's text and over the raw bytes, `kserve::validate` against a fixed input spec, and
//! user regex detectors (input `re:<pattern>` on the first line, the text after it).
#![no_main]

use inference_router_core::inspect::detect::Detector;
use inference_router_core::inspect::kserve::{validate, InputSpec};
use inference_router_core::inspect::openai::{summarize, MAX_SCANNED_TEXT};
use inference_router_core::payload::Format;
use libfuzzer_sys::fuzz_target;

fn spec() -> Vec<InputSpec> {
    vec![
        InputSpec {
            name: "in".into(),
            datatype: "FP32".into(),
            shape: vec![1, -1],
        },
        InputSpec {
            name: "mask".into(),
            datatype: "BOOL".into(),
            shape: vec![-1],
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    let builtins: Vec<Detector> = ["email", "card", "iban"]
        .into_iter()
        .filter_map(Detector::builtin)
        .collect();
    for format in [Format::Json, Format::MessagePack] {
        if let Some(s) = summarize(format, data) {
            let _ = s.estimated_prompt_tokens();
            let _ = s.needed_context();
            assert!(
                s.text.len() <= MAX_SCANNED_TEXT,
                "scanned text over its bound"
            );
            for d in &builtins {
                let _ = d.fires(&s.text);
            }
        }
    }
    let text = String::from_utf8_lossy(data);
    for d in &builtins {
        let _ = d.fires(&text);
    }
    if let Err(e) = validate(&spec(), data) {
        let _ = (e.input, e.detail);
    }
    if let Some(rest) = data.strip_prefix(b"re:") {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let pattern = String::from_utf8_lossy(rest.get(..end).unwrap_or_default());
        let haystack = String::from_utf8_lossy(rest.get(end + 1..).unwrap_or_default());
        if let Ok(d) = Detector::regex(&pattern) {
            let _ = d.fires(&haystack);
        }
    }
});
