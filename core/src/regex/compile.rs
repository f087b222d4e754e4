//! The syntax tree to a Thompson NFA, state for state as regex-lite built it, because its size
//! limit (10 MiB of NFA) is part of which patterns load: the same states, split targets and
//! ranges are counted at the sizes regex-lite counted them, so a pattern refused for its size
//! before is refused now, on any target.

use std::mem::size_of;
use std::sync::Arc;

use super::err::SIZE_LIMIT;
use super::{Look, Node, Ranges};

const SIZE_LIMIT_BYTES: usize = 10 << 20;

/// regex-lite's NFA state, never built: the size limit counts every state at its size, which
/// this twin has on every target because its fields are the same.
#[allow(dead_code)]
enum CountedState {
    Char {
        target: u32,
        ch: char,
    },
    Ranges {
        target: u32,
        ranges: Vec<(char, char)>,
    },
    Splits {
        targets: Vec<u32>,
        reverse: bool,
    },
    Goto {
        target: u32,
        look: Option<Look>,
    },
    Capture {
        target: u32,
        slot: u32,
    },
    Fail,
    Match,
}

pub(super) enum State {
    Char(char, u32),
    Ranges(Ranges, u32),
    /// Epsilon moves to each target (alternation, repetition).
    Split(Vec<u32>),
    /// An epsilon move, behind an assertion if it has one (captures compile to this too).
    Goto(Option<Look>, u32),
    Fail,
    Match,
}

pub(super) struct Nfa {
    pub(super) states: Vec<State>,
    pub(super) start: u32,
}

/// A compiled piece: its first state, and the state its end is patched from.
type Built = (u32, u32);

pub(super) fn compile(node: &Node) -> Result<Nfa, &'static str> {
    let mut c = Compiler {
        states: Vec::new(),
        groups: 0,
        extra: 0,
        over: false,
    };
    let (start, end) = c.capture(0, None, node);
    let matched = c.add(State::Match);
    c.patch(end, matched);
    if c.over {
        return Err(SIZE_LIMIT);
    }
    Ok(Nfa {
        states: c.states,
        start,
    })
}

struct Compiler {
    states: Vec<State>,
    /// Capture slots regex-lite kept a name for: the highest index compiled, plus one.
    groups: usize,
    /// Heap bytes beyond the states: ranges, split targets, capture names.
    extra: usize,
    /// Over the size limit: nothing more is built, and every loop and recursion ends at once.
    over: bool,
}

impl Compiler {
    fn node(&mut self, node: &Node) -> Built {
        if self.over {
            return (0, 0);
        }
        match node {
            Node::Empty => self.one(State::Goto(None, 0)),
            Node::Char(c) => self.one(State::Char(*c, 0)),
            Node::Class(ranges) if ranges.is_empty() => self.one(State::Fail),
            Node::Class(ranges) => self.one(State::Ranges(ranges.clone(), 0)),
            Node::Look(look) => self.one(State::Goto(Some(*look), 0)),
            Node::Repeat { min, max, sub } => self.repeat(sub, *min, *max),
            Node::Capture {
                index,
                name_len,
                sub,
            } => self.capture(*index, *name_len, sub),
            Node::Concat(subs) => self.concat(subs.iter(), subs.len()),
            Node::Alternation(subs) => self.alternation(subs),
        }
    }

    fn one(&mut self, state: State) -> Built {
        let id = self.add(state);
        (id, id)
    }

    fn split(&mut self) -> u32 {
        self.add(State::Split(Vec::new()))
    }

    fn capture(&mut self, index: u32, name_len: Option<usize>, sub: &Node) -> Built {
        let index = index as usize;
        if index >= self.groups {
            self.groups = index + 1;
            self.extra += name_len.map_or(0, |len| len + size_of::<u32>());
        }
        let start = self.add(State::Goto(None, 0));
        let inner = self.node(sub);
        let end = self.add(State::Goto(None, 0));
        self.patch(start, inner.0);
        self.patch(inner.1, end);
        (start, end)
    }

    /// `sub` `n` times in a row (an empty state for none).
    fn concat<'n>(&mut self, mut subs: impl Iterator<Item = &'n Node>, n: usize) -> Built {
        let Some(first) = subs.next().filter(|_| n > 0) else {
            return self.one(State::Goto(None, 0));
        };
        let (start, mut end) = self.node(first);
        for sub in subs.take(n - 1) {
            if self.over {
                break;
            }
            let next = self.node(sub);
            self.patch(end, next.0);
            end = next.1;
        }
        (start, end)
    }

    fn exactly(&mut self, sub: &Node, n: u32) -> Built {
        self.concat(std::iter::repeat(sub), n as usize)
    }

    fn alternation(&mut self, subs: &[Node]) -> Built {
        let mut subs = subs.iter();
        let Some(first) = subs.next() else {
            return self.one(State::Fail);
        };
        let first = self.node(first);
        let Some(second) = subs.next() else {
            return first;
        };
        let second = self.node(second);
        let split = self.split();
        let end = self.add(State::Goto(None, 0));
        for branch in [first, second] {
            self.patch(split, branch.0);
            self.patch(branch.1, end);
        }
        for sub in subs {
            let branch = self.node(sub);
            self.patch(split, branch.0);
            self.patch(branch.1, end);
        }
        (split, end)
    }

    fn repeat(&mut self, sub: &Node, min: u32, max: Option<u32>) -> Built {
        match (min, max) {
            (0, Some(1)) => self.optional(sub),
            (min, None) => self.at_least(sub, min),
            (min, Some(max)) if min == max => self.exactly(sub, min),
            (min, Some(max)) => self.bounded(sub, min, max),
        }
    }

    fn optional(&mut self, sub: &Node) -> Built {
        let split = self.split();
        let inner = self.node(sub);
        let empty = self.add(State::Goto(None, 0));
        self.patch(split, inner.0);
        self.patch(split, empty);
        self.patch(inner.1, empty);
        (split, empty)
    }

    fn bounded(&mut self, sub: &Node, min: u32, max: u32) -> Built {
        let prefix = self.exactly(sub, min);
        let empty = self.add(State::Goto(None, 0));
        let mut end = prefix.1;
        for _ in min..max {
            if self.over {
                break;
            }
            let split = self.split();
            let inner = self.node(sub);
            self.patch(end, split);
            self.patch(split, inner.0);
            self.patch(split, empty);
            end = inner.1;
        }
        self.patch(end, empty);
        (prefix.0, empty)
    }

    fn at_least(&mut self, sub: &Node, n: u32) -> Built {
        if n == 0 && !sub.matches_empty() {
            let split = self.split();
            let inner = self.node(sub);
            self.patch(split, inner.0);
            self.patch(inner.1, split);
            return (split, split);
        }
        if n == 0 {
            let inner = self.node(sub);
            let plus = self.split();
            self.patch(inner.1, plus);
            self.patch(plus, inner.0);
            let question = self.split();
            let empty = self.add(State::Goto(None, 0));
            self.patch(question, inner.0);
            self.patch(question, empty);
            self.patch(plus, empty);
            return (question, empty);
        }
        let prefix = if n > 1 {
            Some(self.exactly(sub, n - 1))
        } else {
            None
        };
        let last = self.node(sub);
        let split = self.split();
        if let Some(prefix) = prefix {
            self.patch(prefix.1, last.0);
        }
        self.patch(last.1, split);
        self.patch(split, last.0);
        (prefix.map_or(last.0, |p| p.0), split)
    }

    /// A new state's id; nothing is added once over the limit (the compile fails then).
    fn add(&mut self, state: State) -> u32 {
        if self.over {
            return 0;
        }
        if let State::Ranges(ranges, _) = &state {
            self.extra += ranges.len() * size_of::<(char, char)>();
        }
        let id = self.states.len() as u32;
        self.states.push(state);
        self.check();
        id
    }

    fn patch(&mut self, from: u32, to: u32) {
        if self.over {
            return;
        }
        match self.states.get_mut(from as usize) {
            Some(State::Split(targets)) => {
                targets.push(to);
                self.extra += size_of::<u32>();
                self.check();
            }
            Some(State::Char(_, next) | State::Ranges(_, next) | State::Goto(_, next)) => {
                *next = to
            }
            _ => {}
        }
    }

    /// Memory as regex-lite counted it, at most the limit, so state ids fit in a `u32`.
    fn check(&mut self) {
        let used = self.states.len() * size_of::<CountedState>()
            + self.groups * size_of::<Option<Arc<str>>>()
            + self.extra;
        self.over = used > SIZE_LIMIT_BYTES;
    }
}
