//! Detector patterns (`regex::Regex`, user configuration) against regex-lite, the engine the
//! filter used before: the same patterns refused with the same message, the same texts matched.
//! The input is a pattern and a text, split at the first NUL.
#![no_main]

use inference_router_core::regex::Regex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, text) = input.split_once('\0').unwrap_or((input, ""));
    if pattern.len() > 1024 {
        return; // the filter refuses longer patterns before compiling them
    }
    match (Regex::new(pattern), regex_lite::Regex::new(pattern)) {
        (Err(ours), Err(theirs)) => assert_eq!(ours, theirs.to_string(), "{pattern:?}"),
        (Ok(ours), Ok(theirs)) => {
            assert_eq!(ours.is_match(text), theirs.is_match(text), "{pattern:?} on {text:?}")
        }
        (ours, theirs) => panic!("{pattern:?}: ours {:?}, regex-lite {:?}", ours.err(), theirs.err()),
    }
});
