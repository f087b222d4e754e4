//! Matching: the set of NFA states alive after each character, every start position at once
//! (a new thread from the start state at each character), so the work is linear in the text
//! times the states whatever the pattern.

use super::compile::{Nfa, State};

/// States reached at one position, each once.
struct Set {
    list: Vec<u32>,
    member: Vec<bool>,
}

impl Set {
    fn new(states: usize) -> Set {
        Set {
            list: Vec::new(),
            member: vec![false; states],
        }
    }

    fn insert(&mut self, id: u32) -> bool {
        match self.member.get_mut(id as usize) {
            Some(seen) if !*seen => {
                *seen = true;
                self.list.push(id);
                true
            }
            _ => false,
        }
    }

    fn clear(&mut self) {
        for &id in &self.list {
            if let Some(seen) = self.member.get_mut(id as usize) {
                *seen = false;
            }
        }
        self.list.clear();
    }
}

impl Nfa {
    pub(super) fn is_match(&self, text: &str) -> bool {
        let bytes = text.as_bytes();
        let mut now = Set::new(self.states.len());
        let mut next = Set::new(self.states.len());
        let mut stack = Vec::new();
        let mut at = 0;
        loop {
            if self.follow(self.start, bytes, at, &mut now, &mut stack) {
                return true;
            }
            let Some(c) = text.get(at..).and_then(|rest| rest.chars().next()) else {
                return false;
            };
            let after = at + c.len_utf8();
            next.clear();
            for &id in &now.list {
                let target = match self.states.get(id as usize) {
                    Some(State::Char(want, target)) if *want == c => *target,
                    Some(State::Ranges(ranges, target))
                        if ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) =>
                    {
                        *target
                    }
                    _ => continue,
                };
                if self.follow(target, bytes, after, &mut next, &mut stack) {
                    return true;
                }
            }
            std::mem::swap(&mut now, &mut next);
            at = after;
        }
    }

    /// Adds `id` and everything its epsilon moves reach at `at`; `true` on reaching the match.
    fn follow(&self, id: u32, text: &[u8], at: usize, set: &mut Set, stack: &mut Vec<u32>) -> bool {
        stack.clear();
        stack.push(id);
        while let Some(id) = stack.pop() {
            if !set.insert(id) {
                continue;
            }
            match self.states.get(id as usize) {
                Some(State::Match) => return true,
                Some(State::Goto(look, next)) if look.is_none_or(|l| l.holds(text, at)) => {
                    stack.push(*next)
                }
                Some(State::Split(targets)) => stack.extend(targets.iter().rev()),
                _ => {}
            }
        }
        false
    }
}
