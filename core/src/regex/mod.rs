//! The regular expressions of user-defined sensitive-data detectors: the syntax of regex-lite
//! 0.1 (which the filter used before; `docs/policy.md`), matched in linear time by a Thompson
//! NFA simulation, without its captures, match positions and caches: a detector only asks
//! whether a text matches. ~30 KB less module than the crate with its hash map and Unicode
//! tables. The same patterns load, with the same refusals, and match the same texts: the
//! crate is the reference the tests and the `regex` fuzz target compare with.

mod compile;
mod err;
mod parse;
mod run;

use std::fmt;

/// Sorted, disjoint inclusive character ranges.
type Ranges = Vec<(char, char)>;

pub struct Regex {
    nfa: compile::Nfa,
    pattern: Box<str>,
}

impl Regex {
    /// Compiles a pattern; the error is regex-lite's sentence for it.
    pub fn new(pattern: &str) -> Result<Regex, &'static str> {
        let node = parse::parse(pattern)?;
        let nfa = compile::compile(&node)?;
        Ok(Regex {
            nfa,
            pattern: pattern.into(),
        })
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.nfa.is_match(text)
    }
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Regex").field(&&*self.pattern).finish()
    }
}

/// The syntax tree, shaped as regex-lite shaped it (the nesting limit and the size limit are
/// counted on this shape): single-item concatenations and alternations collapse, `x{0}` is
/// empty and `x{1}` is `x`.
#[derive(Debug, PartialEq)]
enum Node {
    Empty,
    Char(char),
    /// No ranges: matches nothing.
    Class(Ranges),
    Look(Look),
    Repeat {
        min: u32,
        max: Option<u32>,
        sub: Box<Node>,
    },
    /// A capture group: only its index and name length count (in the size limit).
    Capture {
        index: u32,
        name_len: Option<usize>,
        sub: Box<Node>,
    },
    Concat(Vec<Node>),
    Alternation(Vec<Node>),
}

impl Node {
    fn concat(mut subs: Vec<Node>) -> Node {
        match subs.len() {
            0 => Node::Empty,
            1 => subs.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(subs),
        }
    }

    /// Never given an empty list by the parser (there is always one branch).
    fn alternation(mut subs: Vec<Node>) -> Node {
        match subs.len() {
            0 => Node::Class(Vec::new()),
            1 => subs.pop().unwrap_or(Node::Empty),
            _ => Node::Alternation(subs),
        }
    }

    fn repetition(min: u32, max: Option<u32>, sub: Node) -> Node {
        match (min, max) {
            (0, Some(0)) => Node::Empty,
            (1, Some(1)) => sub,
            _ => Node::Repeat {
                min,
                max,
                sub: Box::new(sub),
            },
        }
    }

    fn subs(&self) -> &[Node] {
        match self {
            Node::Repeat { sub, .. } | Node::Capture { sub, .. } => std::slice::from_ref(sub),
            Node::Concat(subs) | Node::Alternation(subs) => subs,
            _ => &[],
        }
    }

    fn matches_empty(&self) -> bool {
        match self {
            Node::Empty | Node::Look(_) => true,
            Node::Char(_) | Node::Class(_) => false,
            Node::Repeat { min, sub, .. } => *min == 0 || sub.matches_empty(),
            Node::Capture { sub, .. } => sub.matches_empty(),
            Node::Concat(subs) => subs.iter().all(Node::matches_empty),
            Node::Alternation(subs) => subs.iter().any(Node::matches_empty),
        }
    }
}

/// Zero-width assertions. Word characters are ASCII `[0-9A-Za-z_]`, judged on the bytes either
/// side. The discriminants are regex-lite's: they fix the size of the state the size limit
/// counts (`compile::CountedState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Look {
    Start = 1 << 0,
    End = 1 << 1,
    StartLF = 1 << 2,
    EndLF = 1 << 3,
    StartCRLF = 1 << 4,
    EndCRLF = 1 << 5,
    Word = 1 << 6,
    WordNegate = 1 << 7,
    WordStart = 1 << 8,
    WordEnd = 1 << 9,
    WordStartHalf = 1 << 10,
    WordEndHalf = 1 << 11,
}

impl Look {
    fn holds(self, text: &[u8], at: usize) -> bool {
        let before = at.checked_sub(1).and_then(|i| text.get(i)).copied();
        let after = text.get(at).copied();
        let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let (w_before, w_after) = (word(before), word(after));
        match self {
            Look::Start => at == 0,
            Look::End => after.is_none(),
            Look::StartLF => before.is_none_or(|b| b == b'\n'),
            Look::EndLF => after.is_none_or(|b| b == b'\n'),
            Look::StartCRLF => match before {
                None | Some(b'\n') => true,
                Some(b'\r') => after != Some(b'\n'),
                _ => false,
            },
            Look::EndCRLF => match after {
                None | Some(b'\r') => true,
                Some(b'\n') => before != Some(b'\r'),
                _ => false,
            },
            Look::Word => w_before != w_after,
            Look::WordNegate => w_before == w_after,
            Look::WordStart => !w_before && w_after,
            Look::WordEnd => w_before && !w_after,
            Look::WordStartHalf => !w_before,
            Look::WordEndHalf => !w_after,
        }
    }
}

#[cfg(test)]
mod tests;
