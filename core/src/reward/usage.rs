//! OpenAI token usage from a response body: a whole JSON document, or a stream of server-sent
//! events scanned chunk by chunk (the response is never held back for this).

use crate::json::Value;

use crate::payload::{extract, Format, PointerSet};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: n("prompt_tokens"),
        completion_tokens: n("completion_tokens"),
    })
    .filter(|u| u.prompt_tokens > 0 || u.completion_tokens > 0)
}

/// Usage from a complete (non-streamed) JSON response, reading only `/usage`.
pub fn usage_from_json(body: &[u8]) -> Option<Usage> {
    let mut set = PointerSet::new();
    let i = set.insert("/usage").ok()?;
    let fields = extract(&set, Format::Json, body).ok()?;
    let usage = fields.get(i)?.clone();
    usage_of(&crate::json::json!({ "usage": usage }))
}

/// Finds the `usage` object in an SSE stream (`data: {...}` lines; OpenAI sends it in the last
/// chunk when `stream_options.include_usage` is set). Keeps at most one partial line, bounded.
#[derive(Debug, Default)]
pub struct SseUsageScanner {
    partial: Vec<u8>,
    usage: Option<Usage>,
    overflowed: bool,
}

/// A line longer than this is skipped rather than buffered.
const MAX_LINE: usize = 256 * 1024;

impl SseUsageScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            // `pos` is within `rest`; checked, not `split_at`: no panic path compiled.
            let (line, tail) = rest.split_at_checked(pos).unwrap_or((rest, &[]));
            rest = tail.get(1..).unwrap_or_default();
            if self.overflowed {
                self.overflowed = false;
                self.partial.clear();
                continue;
            }
            if self.partial.is_empty() {
                self.line(line);
            } else {
                self.partial.extend_from_slice(line);
                let full = std::mem::take(&mut self.partial);
                self.line(&full);
            }
        }
        if !self.overflowed {
            if self.partial.len() + rest.len() > MAX_LINE {
                self.overflowed = true;
                self.partial.clear();
            } else {
                self.partial.extend_from_slice(rest);
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        // Cheap filter before parsing: only the chunk with usage is of interest.
        if !data.windows(7).any(|w| w == b"\"usage\"") {
            return;
        }
        let data = data.strip_suffix(b"\r").unwrap_or(data);
        if let Ok(v) = crate::json::read::from_slice(data) {
            if let Some(u) = usage_of(&v) {
                self.usage = Some(u);
            }
        }
    }

    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_usage() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"#;
        assert_eq!(
            usage_from_json(body),
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 30
            })
        );
        assert_eq!(usage_from_json(b"{}"), None);
        assert_eq!(usage_from_json(b"not json"), None);
    }

    #[test]
    fn sse_usage_across_chunk_boundaries() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}\n\ndata: [DONE]\n\n";
        for split in [1, 7, 40, 80, stream.len()] {
            let mut s = SseUsageScanner::default();
            for chunk in stream.chunks(split) {
                s.feed(chunk);
            }
            assert_eq!(
                s.usage(),
                Some(Usage {
                    prompt_tokens: 5,
                    completion_tokens: 7
                }),
                "split {split}"
            );
        }
    }

    #[test]
    fn sse_huge_line_is_skipped_not_buffered() {
        let mut s = SseUsageScanner::default();
        s.feed(b"data: ");
        for _ in 0..100 {
            s.feed(&[b'x'; 10_000]);
        }
        assert!(s.partial.len() <= MAX_LINE);
        s.feed(b"\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n");
        assert_eq!(s.usage().map(|u| u.prompt_tokens), Some(1));
    }
}
