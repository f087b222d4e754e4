//! The fields routing reads, from the start of a JSON body fed chunk by chunk as it arrives, so
//! the decision can be made once every pointer's value has been seen (an OpenAI client's
//! `model` usually comes long before its prompt ends).
//!
//! The walk is resumable: open containers, the key or value being read and the value being kept
//! survive between chunks. Values a pointer ends at are kept whole and parsed with serde_json
//! (deeper pointers are served from them, as in `extract`); everything else is only walked for
//! its structure. It is no validator: a body decided early is never read past the point of
//! decision, and a walk that finds the structure broken gives up, leaving the body to the
//! whole-body path, which reports the error.

use crate::json::Value;

use super::extract::{array_index, fill_from_value, Fields, MAX_DEPTH};
use super::pointer::PointerSet;

/// What the bytes fed so far allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Some pointer has not been seen yet.
    More,
    /// Every pointer's value is known: `fields` holds them.
    Complete,
    /// The document ended or broke before that: read the whole body instead.
    GiveUp,
}

#[derive(Debug, Clone, Copy)]
enum Frame {
    /// An object and its trie node (`None`: off every pointer's path, or inside a kept value).
    Object(Option<usize>),
    /// An array, its trie node and the index of its current element.
    Array(Option<usize>, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Value,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    Colon,
    CommaOrEnd,
    Str {
        key: bool,
        escaped: bool,
    },
    /// A number or `true` / `false` / `null`, up to the next delimiter.
    Scalar,
    Done,
}

/// A value a pointer ends at, kept from its first byte.
#[derive(Debug)]
struct Kept {
    node: usize,
    /// Open containers when it started: it ends when the stack is back to this.
    depth: usize,
    bytes: Vec<u8>,
}

#[derive(Debug)]
pub struct PrefixScan {
    fields: Fields,
    stack: Vec<Frame>,
    state: State,
    /// The key being read, raw, when its object is on a pointer's path.
    key: Vec<u8>,
    /// The trie node the innermost object's current key leads to.
    next: Option<usize>,
    kept: Option<Kept>,
    progress: Progress,
}

impl PrefixScan {
    pub fn new(set: &PointerSet) -> Self {
        PrefixScan {
            fields: Fields::with_len(set.len()),
            stack: Vec::new(),
            state: State::Value,
            key: Vec::new(),
            next: None,
            kept: None,
            progress: Progress::More,
        }
    }

    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// Walks the next chunk of the body; stops as soon as the outcome is known.
    pub fn feed(&mut self, set: &PointerSet, chunk: &[u8]) -> Progress {
        if self.progress != Progress::More {
            return self.progress;
        }
        let mut kept_from = 0;
        let mut i = 0;
        while let Some(&b) = chunk.get(i) {
            i = match self.step(set, chunk, i, b, &mut kept_from) {
                Some(next) => next,
                None => {
                    if self.progress == Progress::More {
                        self.progress = Progress::GiveUp;
                    }
                    return self.progress;
                }
            };
            if self.progress != Progress::More {
                return self.progress;
            }
        }
        if let Some(kept) = &mut self.kept {
            kept.bytes
                .extend_from_slice(chunk.get(kept_from..).unwrap_or_default());
        }
        self.progress
    }

    /// One step at `chunk[i]` (= `b`): the index to continue from, or `None` when the
    /// structure is broken.
    fn step(
        &mut self,
        set: &PointerSet,
        chunk: &[u8],
        i: usize,
        b: u8,
        kept_from: &mut usize,
    ) -> Option<usize> {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.state {
            State::Str { key, escaped } => {
                let (next, closed) = self.string(set, chunk, i, key, escaped)?;
                if closed && !key {
                    self.value_done(set, chunk, next, kept_from)?;
                }
                return Some(next);
            }
            State::Scalar => {
                if ws || matches!(b, b',' | b'}' | b']') {
                    // The delimiter is not part of the value: look at it again.
                    self.value_done(set, chunk, i, kept_from)?;
                    return Some(i);
                }
            }
            _ if ws => {}
            State::Value => self.value_start(set, i, b, kept_from)?,
            State::ValueOrEnd if b == b']' => self.close(set, chunk, i, b, kept_from)?,
            State::ValueOrEnd => self.value_start(set, i, b, kept_from)?,
            State::KeyOrEnd if b == b'}' => self.close(set, chunk, i, b, kept_from)?,
            State::KeyOrEnd | State::Key if b == b'"' => {
                self.key.clear();
                self.state = State::Str {
                    key: true,
                    escaped: false,
                };
            }
            State::Colon if b == b':' => self.state = State::Value,
            State::CommaOrEnd if b == b',' => self.comma()?,
            State::CommaOrEnd if matches!(b, b'}' | b']') => {
                self.close(set, chunk, i, b, kept_from)?;
            }
            // Only whitespace may follow the document; anything else is for the whole-body
            // path to report.
            _ => return None,
        }
        Some(i.saturating_add(1))
    }

    fn value_start(
        &mut self,
        set: &PointerSet,
        i: usize,
        b: u8,
        kept_from: &mut usize,
    ) -> Option<()> {
        let node = if self.kept.is_some() {
            None
        } else {
            self.value_node(set)
        };
        let ends_here = node.is_some_and(|n| set.nodes.get(n).is_some_and(|n| !n.ends.is_empty()));
        if let (true, Some(node)) = (ends_here, node) {
            *kept_from = i;
            self.kept = Some(Kept {
                node,
                depth: self.stack.len(),
                bytes: Vec::new(),
            });
        }
        // Containers inside a kept value need no node: the kept value serves them.
        let inner = if ends_here { None } else { node };
        match b {
            b'{' => self.open(Frame::Object(inner), State::KeyOrEnd),
            b'[' => self.open(Frame::Array(inner, 0), State::ValueOrEnd),
            // A document that is not a container holds no pointer.
            _ if self.stack.is_empty() => None,
            b'"' => {
                self.state = State::Str {
                    key: false,
                    escaped: false,
                };
                Some(())
            }
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                self.state = State::Scalar;
                Some(())
            }
            _ => None,
        }
    }

    /// The trie node of the value about to start.
    fn value_node(&self, set: &PointerSet) -> Option<usize> {
        match self.stack.last() {
            None => Some(0),
            Some(Frame::Object(Some(_))) => self.next,
            Some(Frame::Array(Some(node), index)) => set
                .nodes
                .get(*node)?
                .children
                .iter()
                .find(|(token, _)| array_index(token) == Some(*index))
                .map(|(_, child)| *child),
            Some(Frame::Object(None) | Frame::Array(None, _)) => None,
        }
    }

    fn open(&mut self, frame: Frame, state: State) -> Option<()> {
        if self.stack.len() >= MAX_DEPTH {
            return None;
        }
        self.stack.push(frame);
        self.state = state;
        Some(())
    }

    fn close(
        &mut self,
        set: &PointerSet,
        chunk: &[u8],
        i: usize,
        b: u8,
        kept_from: &mut usize,
    ) -> Option<()> {
        match (self.stack.pop()?, b) {
            (Frame::Object(_), b'}') | (Frame::Array(..), b']') => {
                self.value_done(set, chunk, i.saturating_add(1), kept_from)
            }
            _ => None,
        }
    }

    fn comma(&mut self) -> Option<()> {
        match self.stack.last_mut()? {
            Frame::Object(_) => self.state = State::Key,
            Frame::Array(_, index) => {
                *index = index.saturating_add(1);
                self.state = State::Value;
            }
        }
        Some(())
    }

    /// Inside a string from `chunk[i]`: skips to its closing quote (or the chunk's end).
    /// Returns where to continue and whether the string closed.
    fn string(
        &mut self,
        set: &PointerSet,
        chunk: &[u8],
        i: usize,
        key: bool,
        mut escaped: bool,
    ) -> Option<(usize, bool)> {
        let rest = chunk.get(i..).unwrap_or_default();
        let mut at = 0;
        let closing = loop {
            if escaped {
                if at >= rest.len() {
                    break None;
                }
                escaped = false;
                at += 1;
                continue;
            }
            let Some(p) = rest
                .get(at..)
                .and_then(|r| r.iter().position(|&c| c == b'"' || c == b'\\'))
            else {
                break None;
            };
            at += p;
            if rest.get(at) == Some(&b'"') {
                break Some(at);
            }
            escaped = true;
            at += 1;
        };
        if key && self.wants_key() {
            let end = closing.unwrap_or(rest.len());
            self.key
                .extend_from_slice(rest.get(..end).unwrap_or_default());
        }
        let Some(at) = closing else {
            self.state = State::Str { key, escaped };
            return Some((chunk.len(), false));
        };
        if key {
            self.key_done(set)?;
        }
        Some((i.saturating_add(at).saturating_add(1), true))
    }

    /// Whether the key being read matters: its object is on a pointer's path.
    fn wants_key(&self) -> bool {
        self.kept.is_none() && matches!(self.stack.last(), Some(Frame::Object(Some(_))))
    }

    /// A key was read: the node its value leads to, if any.
    fn key_done(&mut self, set: &PointerSet) -> Option<()> {
        self.state = State::Colon;
        self.next = None;
        let Some(Frame::Object(Some(node))) = self.stack.last().copied() else {
            return Some(());
        };
        if self.kept.is_some() {
            return Some(());
        }
        let key: String = if self.key.contains(&b'\\') {
            let mut quoted = Vec::with_capacity(self.key.len().saturating_add(2));
            quoted.push(b'"');
            quoted.extend_from_slice(&self.key);
            quoted.push(b'"');
            match crate::json::read::from_slice(&quoted).ok()? {
                Value::String(s) => s,
                _ => return None,
            }
        } else {
            String::from_utf8(std::mem::take(&mut self.key)).ok()?
        };
        self.next = set
            .nodes
            .get(node)?
            .children
            .iter()
            .find(|(token, _)| *token == key)
            .map(|(_, child)| *child);
        Some(())
    }

    /// A value ended just before `chunk[end]`: a kept one is parsed into the fields.
    fn value_done(
        &mut self,
        set: &PointerSet,
        chunk: &[u8],
        end: usize,
        kept_from: &mut usize,
    ) -> Option<()> {
        self.state = if self.stack.is_empty() {
            State::Done
        } else {
            State::CommaOrEnd
        };
        if self
            .kept
            .as_ref()
            .is_some_and(|k| k.depth == self.stack.len())
        {
            let mut kept = self.kept.take()?;
            kept.bytes.extend_from_slice(chunk.get(*kept_from..end)?);
            let value = crate::json::read::from_slice(&kept.bytes).ok()?;
            fill_from_value(set, kept.node, &value, &mut self.fields);
            if self.fields.all_found() {
                self.progress = Progress::Complete;
            }
        }
        if self.state == State::Done && self.progress == Progress::More {
            self.progress = Progress::GiveUp;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::json;
    use crate::payload::{extract, Format};

    fn set(pointers: &[&str]) -> PointerSet {
        let mut set = PointerSet::new();
        for p in pointers {
            set.insert(p).unwrap();
        }
        set
    }

    /// Feeds `body` cut at `cut` (and the rest in one more chunk).
    fn scan_split(set: &PointerSet, body: &[u8], cut: usize) -> (Progress, Fields) {
        let mut scan = PrefixScan::new(set);
        let (a, b) = body.split_at(cut);
        let mut p = scan.feed(set, a);
        if p == Progress::More {
            p = scan.feed(set, b);
        }
        (p, scan.fields().clone())
    }

    const DOCS: &[&str] = &[
        r#"{"model":"chat","messages":[{"role":"user","content":"hi \"there\" \\ {["}]}"#,
        r#" { "messages" : [ { "role" : "system" , "content" : "a,b]}" } ] , "model" : "big" , "parameters" : {"temperature": -1.5e3, "x": [true,false,null]}, "user": "u\u00e9" } "#,
        r#"{"mo\u0064el":"escaped-key","parameters":{"temperature":0.2},"messages":[{"role":"assistant","content":""}],"user":"x"}"#,
        r#"{"parameters":{"temperature":1},"user":{"id":[1,2,{"k":"v"}]},"messages":[{"role":"tool"},{"role":"user"}],"model":"last"}"#,
    ];

    #[test]
    fn every_cut_finds_what_the_whole_body_extract_finds() {
        // The first document lacks two pointers: it is read to its end and given up.
        let set = set(&["/parameters/temperature", "/messages/0/role", "/user"]);
        for doc in DOCS {
            let whole = extract(&set, Format::Json, doc.as_bytes()).unwrap();
            let expected = if whole.all_found() {
                Progress::Complete
            } else {
                Progress::GiveUp
            };
            for cut in 0..=doc.len() {
                let (progress, fields) = scan_split(&set, doc.as_bytes(), cut);
                assert_eq!(progress, expected, "{doc} cut at {cut}");
                assert_eq!(fields, whole, "{doc} cut at {cut}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let set = set(&["/parameters/temperature", "/messages/0/role", "/user"]);
        for doc in DOCS {
            let mut scan = PrefixScan::new(&set);
            let mut progress = Progress::More;
            for b in doc.as_bytes() {
                progress = scan.feed(&set, std::slice::from_ref(b));
            }
            let whole = extract(&set, Format::Json, doc.as_bytes()).unwrap();
            assert_eq!(progress == Progress::Complete, whole.all_found(), "{doc}");
            assert_eq!(scan.fields(), &whole);
        }
    }

    #[test]
    fn decides_before_the_rest_arrives() {
        let set = PointerSet::new();
        let mut scan = PrefixScan::new(&set);
        let start = br#"{"model":"chat","messages":[{"role":"user","content":"a very long pro"#;
        assert_eq!(scan.feed(&set, start), Progress::Complete);
        assert_eq!(scan.fields().get(0), Some(&json!("chat")));
        // The outcome is kept: later bytes are not read.
        assert_eq!(scan.feed(&set, b"\x00 garbage"), Progress::Complete);
    }

    #[test]
    fn waits_while_the_model_value_is_cut() {
        let set = PointerSet::new();
        let mut scan = PrefixScan::new(&set);
        assert_eq!(scan.feed(&set, br#"{"model":"ch"#), Progress::More);
        assert_eq!(scan.feed(&set, br#"at-"#), Progress::More);
        assert_eq!(scan.feed(&set, br#"large", "#), Progress::Complete);
        assert_eq!(scan.fields().get(0), Some(&json!("chat-large")));
        let mut scan = PrefixScan::new(&set);
        // A number may go on in the next chunk.
        assert_eq!(scan.feed(&set, br#"{"model":12"#), Progress::More);
        assert_eq!(scan.feed(&set, br#"3}"#), Progress::Complete);
        assert_eq!(scan.fields().get(0), Some(&json!(123)));
    }

    #[test]
    fn a_missing_pointer_gives_up_at_the_end_of_the_document() {
        let set = set(&["/user"]);
        let mut scan = PrefixScan::new(&set);
        assert_eq!(
            scan.feed(&set, br#"{"model":"m","messages":[]"#),
            Progress::More
        );
        assert_eq!(scan.feed(&set, b"} "), Progress::GiveUp);
        assert_eq!(scan.feed(&set, br#"{"user":"u"}"#), Progress::GiveUp);
    }

    #[test]
    fn broken_or_unroutable_documents_give_up() {
        let set = PointerSet::new();
        for doc in [
            &br#"["model"]"#[..],
            br#""model""#,
            b"12",
            br#"{"messages" "x", "model": "m"}"#,
            br#"{"messages": [}, "model": "m"}"#,
            br#"{"messages": {], "model": "m"}"#,
            br#"{"messages": x, "model": "m"}"#,
            br#"{"model": tru"#,
            br#"{"model": nul}"#,
            b"}",
        ] {
            let mut scan = PrefixScan::new(&set);
            let progress = scan.feed(&set, doc);
            assert_ne!(
                progress,
                Progress::Complete,
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
        let mut deep = b"{\"a\":".to_vec();
        deep.extend(std::iter::repeat_n(b'[', 200));
        let mut scan = PrefixScan::new(&set);
        assert_eq!(scan.feed(&set, &deep), Progress::GiveUp);
    }

    #[test]
    fn a_key_that_is_not_valid_utf8_gives_up() {
        let set = PointerSet::new();
        let mut scan = PrefixScan::new(&set);
        assert_eq!(scan.feed(&set, b"{\"mo\xffdel\":\"m\"}"), Progress::GiveUp);
    }

    #[test]
    fn array_elements_by_index() {
        let set = set(&["/messages/1/content"]);
        let doc = br#"{"messages":[{"content":"a"},{"role":"u","content":"b"}],"model":"m"}"#;
        let (progress, fields) = scan_split(&set, doc, 20);
        assert_eq!(progress, Progress::Complete);
        assert_eq!(fields.get(1), Some(&json!("b")));
    }
}
