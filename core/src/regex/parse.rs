//! Pattern text to a syntax tree, accepting exactly the language regex-lite 0.1 accepted and
//! refusing the rest with its messages: the filter used that crate until the module had to
//! shrink, and a detector pattern that loaded before must load (and match) the same way now.
//! Parse order decides which message a pattern with two faults gets, so the reading order below
//! is part of that contract (the differential tests pin it).

use super::err::*;
use super::{Look, Node, Ranges};

/// Nesting deeper than this is refused, in the parser and again over the finished tree (a
/// stack of repetition operators nests without recursing in the parser).
const NEST_LIMIT: u32 = 50;

#[derive(Clone, Copy, Default)]
struct Flags {
    case_insensitive: bool,
    multi_line: bool,
    dot_all: bool,
    crlf: bool,
    verbose: bool,
}

pub(super) struct Parser<'a> {
    pattern: &'a str,
    pos: usize,
    depth: u32,
    captures: u32,
    names: Vec<&'a str>,
    flags: Flags,
}

type Parsed<T> = Result<T, &'static str>;

pub(super) fn parse(pattern: &str) -> Parsed<Node> {
    let mut parser = Parser {
        pattern,
        pos: 0,
        depth: 0,
        captures: 0,
        names: Vec::new(),
        flags: Flags::default(),
    };
    let node = parser.alternation()?;
    check_nesting(&node, 0)?;
    Ok(node)
}

fn check_nesting(node: &Node, depth: u32) -> Parsed<()> {
    if depth > NEST_LIMIT {
        return Err(TOO_MUCH_NESTING);
    }
    node.subs()
        .iter()
        .try_for_each(|sub| check_nesting(sub, depth + 1))
}

/// Cursor primitives: the current character, moves, and the verbose mode's skipping.
impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.pattern.get(self.pos..).unwrap_or_default()
    }

    fn cur(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn done(&self) -> bool {
        self.pos >= self.pattern.len()
    }

    /// Moves one character on; `false` when that reaches the end.
    fn bump(&mut self) -> bool {
        if let Some(c) = self.cur() {
            self.pos += c.len_utf8();
        }
        !self.done()
    }

    fn bump_if(&mut self, prefix: &str) -> bool {
        let found = self.rest().starts_with(prefix);
        if found {
            self.pos += prefix.len();
        }
        found
    }

    fn bump_and_bump_space(&mut self) -> bool {
        if !self.bump() {
            return false;
        }
        self.bump_space();
        !self.done()
    }

    /// In verbose mode (`x`), skips whitespace and `#` comments up to the end of their line.
    fn bump_space(&mut self) {
        if !self.flags.verbose {
            return;
        }
        while let Some(c) = self.cur() {
            if c.is_whitespace() {
                self.bump();
            } else if c == '#' {
                self.bump();
                while let Some(c) = self.cur() {
                    self.bump();
                    if c == '\n' {
                        break;
                    }
                }
            } else {
                break;
            }
        }
    }

    /// The character after the current one.
    fn peek(&self) -> Option<char> {
        let mut chars = self.rest().chars();
        chars.next()?;
        chars.next()
    }

    /// The next character after the current one that verbose mode does not skip. A `#` starts
    /// a comment that no newline ends here (a newline is whitespace, and whitespace is looked at
    /// first): regex-lite's reading, kept.
    fn peek_space(&self) -> Option<char> {
        if !self.flags.verbose {
            return self.peek();
        }
        let first = self.cur()?;
        let after = self.rest().get(first.len_utf8()..).unwrap_or_default();
        let mut in_comment = false;
        for c in after.chars() {
            if c.is_whitespace() {
                continue;
            } else if !in_comment && c == '#' {
                in_comment = true;
            } else {
                return Some(c);
            }
        }
        after.chars().next()
    }

    fn enter(&mut self) -> Parsed<u32> {
        let old = self.depth;
        if old > NEST_LIMIT {
            return Err(TOO_MUCH_NESTING);
        }
        self.depth = old + 1;
        Ok(old)
    }
}

/// The grammar: alternation of concatenations of groups, classes, repetitions and primitives.
impl<'a> Parser<'a> {
    fn alternation(&mut self) -> Parsed<Node> {
        let depth = self.enter()?;
        let mut alternates = Vec::new();
        let mut concat = Vec::new();
        loop {
            self.bump_space();
            let Some(c) = self.cur() else { break };
            match c {
                '(' => {
                    let outer = self.flags;
                    if let Some(sub) = self.group()? {
                        concat.push(sub);
                        self.flags = outer;
                    }
                    if self.cur() != Some(')') {
                        return Err(UNCLOSED_GROUP);
                    }
                    self.bump();
                }
                ')' if depth == 0 => return Err(UNOPENED_GROUP),
                ')' => break,
                '|' => {
                    alternates.push(Node::concat(std::mem::take(&mut concat)));
                    self.bump();
                }
                '[' => concat.push(self.class()?),
                '?' | '*' | '+' => self.uncounted_repetition(&mut concat)?,
                '{' => self.counted_repetition(&mut concat)?,
                _ => concat.push(self.primitive()?),
            }
        }
        self.depth = depth;
        alternates.push(Node::concat(concat));
        Ok(Node::alternation(alternates))
    }

    fn primitive(&mut self) -> Parsed<Node> {
        let c = self.cur().unwrap_or_default();
        self.bump();
        Ok(match c {
            '\\' => return self.escape(),
            '.' => Node::Class(self.dot()),
            '^' => Node::Look(self.line_look(Look::StartLF, Look::StartCRLF, Look::Start)),
            '$' => Node::Look(self.line_look(Look::EndLF, Look::EndCRLF, Look::End)),
            c => self.literal(c),
        })
    }

    fn dot(&self) -> Ranges {
        let max = char::MAX;
        if self.flags.dot_all {
            vec![('\0', max)]
        } else if self.flags.crlf {
            vec![('\0', '\x09'), ('\x0B', '\x0C'), ('\x0E', max)]
        } else {
            vec![('\0', '\x09'), ('\x0B', max)]
        }
    }

    fn line_look(&self, lf: Look, crlf: Look, whole: Look) -> Look {
        match (self.flags.multi_line, self.flags.crlf) {
            (false, _) => whole,
            (true, false) => lf,
            (true, true) => crlf,
        }
    }

    /// A literal character; under `i` an ASCII letter becomes the class of both its cases.
    fn literal(&self, c: char) -> Node {
        if self.flags.case_insensitive {
            if let Some(folded) = fold_range((c, c)) {
                return Node::Class(canonical(vec![(c, c), folded]));
            }
        }
        Node::Char(c)
    }

    fn uncounted_repetition(&mut self, concat: &mut Vec<Node>) -> Parsed<()> {
        let sub = concat.pop().ok_or(UNCOUNTED_REP_SUB_MISSING)?;
        let (min, max) = match self.cur() {
            Some('?') => (0, Some(1)),
            Some('*') => (0, None),
            _ => (1, None),
        };
        // A lazy `?` after the operator changes which match is preferred, never whether one
        // exists: `is_match` does not need it.
        if self.bump() && self.cur() == Some('?') {
            self.bump();
        }
        concat.push(Node::repetition(min, max, sub));
        Ok(())
    }

    fn counted_repetition(&mut self, concat: &mut Vec<Node>) -> Parsed<()> {
        let sub = concat.pop().ok_or(COUNTED_REP_SUB_MISSING)?;
        if !self.bump_and_bump_space() {
            return Err(COUNTED_REP_UNCLOSED);
        }
        let min = self.decimal()?;
        let mut max = Some(min);
        if self.done() {
            return Err(COUNTED_REP_MIN_UNCLOSED);
        }
        if self.cur() == Some(',') {
            if !self.bump_and_bump_space() {
                return Err(COUNTED_REP_COMMA_UNCLOSED);
            }
            max = match self.cur() {
                Some('}') => None,
                _ => Some(self.decimal()?),
            };
            if self.done() {
                return Err(COUNTED_REP_MIN_MAX_UNCLOSED);
            }
        }
        if self.cur() != Some('}') {
            return Err(COUNTED_REP_INVALID);
        }
        if self.bump_and_bump_space() && self.cur() == Some('?') {
            self.bump();
        }
        if max.is_some_and(|max| min > max) {
            return Err(COUNTED_REP_INVALID_RANGE);
        }
        concat.push(Node::repetition(min, max, sub));
        Ok(())
    }

    /// A decimal number with whitespace around it (skipped whatever the flags).
    fn decimal(&mut self) -> Parsed<u32> {
        while self.cur().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let mut digits = String::new();
        while let Some(c) = self.cur().filter(char::is_ascii_digit) {
            digits.push(c);
            self.bump_and_bump_space();
        }
        while self.cur().is_some_and(char::is_whitespace) {
            self.bump_and_bump_space();
        }
        if digits.is_empty() {
            return Err(DECIMAL_NO_DIGITS);
        }
        crate::parse_int::unsigned(&digits, 10).ok_or(DECIMAL_INVALID)
    }

    /// After a `(`: a look-around (refused), a named or numbered capture, flags for the rest of
    /// the enclosing group (`None`), or a group with flags.
    fn group(&mut self) -> Parsed<Option<Node>> {
        self.bump_and_bump_space();
        if ["?=", "?!", "?<=", "?<!"].iter().any(|p| self.bump_if(p)) {
            return Err(LOOK_UNSUPPORTED);
        }
        if self.bump_if("?P<") || self.bump_if("?<") {
            let index = self.next_capture();
            let name = self.capture_name()?;
            let sub = self.alternation()?;
            return Ok(Some(Node::Capture {
                index,
                name_len: Some(name.len()),
                sub: Box::new(sub),
            }));
        }
        if !self.bump_if("?") {
            let index = self.next_capture();
            let sub = self.alternation()?;
            return Ok(Some(Node::Capture {
                index,
                name_len: None,
                sub: Box::new(sub),
            }));
        }
        if self.done() {
            return Err(UNCLOSED_GROUP_QUESTION);
        }
        let start = self.pos;
        self.flags = self.inline_flags()?;
        if self.cur() == Some(')') {
            return if self.pos == start {
                Err(EMPTY_FLAGS)
            } else {
                Ok(None)
            };
        }
        self.bump();
        self.alternation().map(Some)
    }

    /// Capture indices count from 1 (0 is the whole match); a pattern of at most 1024
    /// characters cannot run out of them.
    fn next_capture(&mut self) -> u32 {
        self.captures = self.captures.saturating_add(1);
        self.captures
    }

    fn capture_name(&mut self) -> Parsed<&'a str> {
        if self.done() {
            return Err(MISSING_GROUP_NAME);
        }
        let start = self.pos;
        while let Some(c) = self.cur() {
            if c == '>' {
                break;
            }
            if !is_capture_char(c, self.pos == start) {
                return Err(INVALID_GROUP_NAME);
            }
            if !self.bump() {
                break;
            }
        }
        let name = self.pattern.get(start..self.pos).unwrap_or_default();
        if self.done() {
            return Err(UNCLOSED_GROUP_NAME);
        }
        self.bump();
        if name.is_empty() {
            return Err(EMPTY_GROUP_NAME);
        }
        if self.names.contains(&name) {
            return Err(DUPLICATE_CAPTURE_NAME);
        }
        self.names.push(name);
        Ok(name)
    }

    /// Flags up to the `:` or `)` that ends them: `i`, `m`, `s`, `R`, `U`, `x`, and `u`
    /// (accepted and ignored), with at most one `-` negating those after it.
    fn inline_flags(&mut self) -> Parsed<Flags> {
        let mut flags = self.flags;
        let mut negate = false;
        let mut last_was_negation = false;
        let mut seen = 0u8;
        while let Some(c) = self.cur().filter(|c| !matches!(c, ':' | ')')) {
            if c == '-' {
                last_was_negation = true;
                if negate {
                    return Err(FLAG_REPEATED_NEGATION);
                }
                negate = true;
            } else {
                last_was_negation = false;
                let on = !negate;
                let bit = match c {
                    'i' => Some(&mut flags.case_insensitive),
                    'm' => Some(&mut flags.multi_line),
                    's' => Some(&mut flags.dot_all),
                    'R' => Some(&mut flags.crlf),
                    'x' => Some(&mut flags.verbose),
                    'U' | 'u' => None,
                    _ => return Err(FLAG_UNRECOGNIZED),
                };
                if let Some(flag) = bit {
                    *flag = on;
                }
                let mask = 1u8
                    << b"imsRxUu"
                        .iter()
                        .position(|&f| char::from(f) == c)
                        .unwrap_or_default();
                if seen & mask != 0 {
                    return Err(FLAG_DUPLICATE);
                }
                seen |= mask;
            }
            if !self.bump() {
                return Err(FLAG_UNEXPECTED_EOF);
            }
        }
        if last_was_negation {
            return Err(FLAG_DANGLING_NEGATION);
        }
        Ok(flags)
    }
}

/// Escapes, in and out of brackets.
impl Parser<'_> {
    /// After a `\`.
    fn escape(&mut self) -> Parsed<Node> {
        let Some(c) = self.cur() else {
            return Err(ESCAPE_UNEXPECTED_EOF);
        };
        match c {
            '0'..='9' => return Err(BACKREF_UNSUPPORTED),
            'p' | 'P' => return Err(UNICODE_CLASS_UNSUPPORTED),
            'x' | 'u' | 'U' => return self.hex(),
            'd' | 's' | 'w' | 'D' | 'S' | 'W' => return Ok(self.perl_class()),
            _ => {}
        }
        self.bump();
        if is_escapable(c) {
            return Ok(self.literal(c));
        }
        let look = match c {
            'a' => return Ok(self.literal('\x07')),
            'f' => return Ok(self.literal('\x0C')),
            't' => return Ok(self.literal('\t')),
            'n' => return Ok(self.literal('\n')),
            'r' => return Ok(self.literal('\r')),
            'v' => return Ok(self.literal('\x0B')),
            'A' => Look::Start,
            'z' => Look::End,
            'b' if self.cur() == Some('{') => self.special_word_boundary()?.unwrap_or(Look::Word),
            'b' => Look::Word,
            'B' => Look::WordNegate,
            '<' => Look::WordStart,
            '>' => Look::WordEnd,
            _ => return Err(ESCAPE_UNRECOGNIZED),
        };
        Ok(Node::Look(look))
    }

    /// `\b{start}`, `\b{end}`, `\b{start-half}`, `\b{end-half}`; `None` (back at the `{`) when
    /// what follows cannot be one, so that `\b{2}` is a counted repetition.
    fn special_word_boundary(&mut self) -> Parsed<Option<Look>> {
        let is_name = |c: char| c.is_ascii_alphabetic() || c == '-';
        let start = self.pos;
        if !self.bump_and_bump_space() {
            return Err(SPECIAL_WORD_OR_REP_UNEXPECTED_EOF);
        }
        if !self.cur().is_some_and(is_name) {
            self.pos = start;
            return Ok(None);
        }
        let mut name = String::new();
        while let Some(c) = self.cur().filter(|&c| is_name(c)) {
            name.push(c);
            self.bump_and_bump_space();
        }
        if self.cur() != Some('}') {
            return Err(SPECIAL_WORD_BOUNDARY_UNCLOSED);
        }
        self.bump();
        Ok(Some(match name.as_str() {
            "start" => Look::WordStart,
            "end" => Look::WordEnd,
            "start-half" => Look::WordStartHalf,
            "end-half" => Look::WordEndHalf,
            _ => return Err(SPECIAL_WORD_BOUNDARY_UNRECOGNIZED),
        }))
    }

    /// `\xNN`, `\uNNNN`, `\UNNNNNNNN`, or any of them with a braced number of any length.
    fn hex(&mut self) -> Parsed<Node> {
        let digits = match self.cur() {
            Some('x') => 2,
            Some('u') => 4,
            _ => 8,
        };
        if !self.bump_and_bump_space() {
            return Err(HEX_UNEXPECTED_EOF);
        }
        if self.cur() == Some('{') {
            return self.hex_braced();
        }
        let mut text = String::new();
        for i in 0..digits {
            if i > 0 && !self.bump_and_bump_space() {
                return Err(HEX_FIXED_UNEXPECTED_EOF);
            }
            match self.cur().filter(char::is_ascii_hexdigit) {
                Some(c) => text.push(c),
                None => return Err(HEX_FIXED_INVALID_DIGIT),
            }
        }
        self.bump_and_bump_space();
        let c = scalar(&text).ok_or(HEX_FIXED_INVALID)?;
        Ok(self.literal(c))
    }

    fn hex_braced(&mut self) -> Parsed<Node> {
        let mut text = String::new();
        while self.bump_and_bump_space() {
            match self.cur() {
                Some('}') => break,
                Some(c) if c.is_ascii_hexdigit() => text.push(c),
                _ => return Err(HEX_BRACE_INVALID_DIGIT),
            }
        }
        if self.done() {
            return Err(HEX_BRACE_UNEXPECTED_EOF);
        }
        self.bump_and_bump_space();
        if text.is_empty() {
            return Err(HEX_BRACE_EMPTY);
        }
        let c = scalar(&text).ok_or(HEX_BRACE_INVALID)?;
        Ok(self.literal(c))
    }

    fn perl_class(&mut self) -> Node {
        let c = self.cur().unwrap_or_default();
        self.bump();
        let name = match c.to_ascii_lowercase() {
            'd' => "digit",
            's' => "space",
            _ => "word",
        };
        let mut ranges = posix_class(name).unwrap_or_default();
        if c.is_ascii_uppercase() {
            ranges = negate(&ranges);
        }
        Node::Class(ranges)
    }
}

/// Bracketed classes.
impl Parser<'_> {
    fn class(&mut self) -> Parsed<Node> {
        let mut union = Vec::new();
        if !self.bump_and_bump_space() {
            return Err(CLASS_UNCLOSED);
        }
        let negated = self.cur() == Some('^');
        if negated && !self.bump_and_bump_space() {
            return Err(CLASS_UNCLOSED_AFTER_NEGATION);
        }
        while self.cur() == Some('-') {
            union.push(('-', '-'));
            if !self.bump_and_bump_space() {
                return Err(CLASS_UNCLOSED_AFTER_DASH);
            }
        }
        if union.is_empty() && self.cur() == Some(']') {
            union.push((']', ']'));
            if !self.bump_and_bump_space() {
                return Err(CLASS_UNCLOSED_AFTER_CLOSING);
            }
        }
        loop {
            self.bump_space();
            let Some(c) = self.cur() else {
                return Err(CLASS_UNCLOSED);
            };
            let doubled = self.peek() == Some(c);
            match c {
                '[' => match self.posix_item() {
                    Some(ranges) => union.extend(ranges),
                    None => return Err(CLASS_NEST_UNSUPPORTED),
                },
                ']' => {
                    self.bump();
                    return Ok(Node::Class(self.finish_class(union, negated)));
                }
                '&' if doubled => return Err(CLASS_INTERSECTION_UNSUPPORTED),
                '-' if doubled => return Err(CLASS_DIFFERENCE_UNSUPPORTED),
                '~' if doubled => return Err(CLASS_SYMDIFFERENCE_UNSUPPORTED),
                _ => self.class_range(&mut union)?,
            }
        }
    }

    /// Case folding comes before negation: `(?i)[^x]` matches neither `x` nor `X`.
    fn finish_class(&self, union: Ranges, negated: bool) -> Ranges {
        let mut ranges = canonical(union);
        if self.flags.case_insensitive {
            let folded: Vec<_> = ranges.iter().filter_map(|&r| fold_range(r)).collect();
            ranges.extend(folded);
            ranges = canonical(ranges);
        }
        if negated {
            ranges = negate(&ranges);
        }
        ranges
    }

    /// One item of a class, or a range of two single characters.
    fn class_range(&mut self, union: &mut Ranges) -> Parsed<()> {
        let first = self.class_item()?;
        self.bump_space();
        if self.done() {
            return Err(CLASS_UNCLOSED_AFTER_ITEM);
        }
        if self.cur() != Some('-') || matches!(self.peek_space(), Some(']' | '-')) {
            union.extend(item_ranges(first)?);
            return Ok(());
        }
        if !self.bump_and_bump_space() {
            return Err(CLASS_UNCLOSED_AFTER_DASH);
        }
        let last = self.class_item()?;
        let (Node::Char(start), Node::Char(end)) = (first, last) else {
            return Err(CLASS_INVALID_RANGE_ITEM);
        };
        if start > end {
            return Err(CLASS_INVALID_RANGE);
        }
        union.push((start, end));
        Ok(())
    }

    fn class_item(&mut self) -> Parsed<Node> {
        let c = self.cur().unwrap_or_default();
        self.bump();
        if c == '\\' {
            self.escape()
        } else {
            Ok(Node::Char(c))
        }
    }

    /// `[:name:]` or `[:^name:]` inside brackets; anything else leaves the position at the `[`.
    fn posix_item(&mut self) -> Option<Ranges> {
        let start = self.pos;
        let found = self.posix_name();
        if found.is_none() {
            self.pos = start;
        }
        found
    }

    fn posix_name(&mut self) -> Option<Ranges> {
        if !self.bump() || self.cur() != Some(':') || !self.bump() {
            return None;
        }
        let negated = self.cur() == Some('^');
        if negated && !self.bump() {
            return None;
        }
        let name_start = self.pos;
        while self.cur() != Some(':') && self.bump() {}
        if self.done() {
            return None;
        }
        let name = self.pattern.get(name_start..self.pos)?;
        if !self.bump_if(":]") {
            return None;
        }
        let ranges = posix_class(name)?;
        Some(if negated { negate(&ranges) } else { ranges })
    }
}

fn item_ranges(item: Node) -> Parsed<Ranges> {
    match item {
        Node::Char(c) => Ok(vec![(c, c)]),
        Node::Class(ranges) => Ok(ranges),
        _ => Err(CLASS_INVALID_ITEM),
    }
}

fn scalar(hex: &str) -> Option<char> {
    crate::parse_int::unsigned(hex, 16).and_then(char::from_u32)
}

fn is_meta(c: char) -> bool {
    matches!(
        c,
        '\\' | '.'
            | '+'
            | '*'
            | '?'
            | '('
            | ')'
            | '|'
            | '['
            | ']'
            | '{'
            | '}'
            | '^'
            | '$'
            | '#'
            | '&'
            | '-'
            | '~'
    )
}

/// Characters a `\` makes literal: the meta characters and ASCII punctuation other than `<`
/// and `>` (which are word boundaries).
fn is_escapable(c: char) -> bool {
    is_meta(c) || (c.is_ascii() && !c.is_ascii_alphanumeric() && c != '<' && c != '>')
}

fn is_capture_char(c: char, first: bool) -> bool {
    c == '_'
        || if first {
            c.is_alphabetic()
        } else {
            matches!(c, '.' | '[' | ']') || c.is_alphanumeric()
        }
}

fn posix_class(name: &str) -> Option<Ranges> {
    let ascii: &[(u8, u8)] = match name {
        "alnum" => &[(b'0', b'9'), (b'A', b'Z'), (b'a', b'z')],
        "alpha" => &[(b'A', b'Z'), (b'a', b'z')],
        "ascii" => &[(0, 0x7F)],
        "blank" => &[(b'\t', b'\t'), (b' ', b' ')],
        "cntrl" => &[(0, 0x1F), (0x7F, 0x7F)],
        "digit" => &[(b'0', b'9')],
        "graph" => &[(b'!', b'~')],
        "lower" => &[(b'a', b'z')],
        "print" => &[(b' ', b'~')],
        "punct" => &[(b'!', b'/'), (b':', b'@'), (b'[', b'`'), (b'{', b'~')],
        "space" => &[(b'\t', b'\r'), (b' ', b' ')],
        "upper" => &[(b'A', b'Z')],
        "word" => &[(b'0', b'9'), (b'A', b'Z'), (b'_', b'_'), (b'a', b'z')],
        "xdigit" => &[(b'0', b'9'), (b'A', b'F'), (b'a', b'f')],
        _ => return None,
    };
    Some(
        ascii
            .iter()
            .map(|&(a, b)| (char::from(a), char::from(b)))
            .collect(),
    )
}

/// The other case of the ASCII letters in a range: of its lower-case part if it has one,
/// otherwise of its upper-case part (regex-lite's rule: a range over both, like `X-c`, folds
/// only `a-c`).
fn fold_range((start, end): (char, char)) -> Option<(char, char)> {
    let shift = |lo: char, hi: char, up: bool| {
        let (s, e) = (start.max(lo) as u32, end.min(hi) as u32);
        let moved = |c: u32| char::from_u32(if up { c - 32 } else { c + 32 }).unwrap_or_default();
        (s <= e).then(|| (moved(s), moved(e)))
    };
    shift('a', 'z', true).or_else(|| shift('A', 'Z', false))
}

/// Sorted, with overlapping and adjacent ranges merged. An insertion sort: a class has as many
/// ranges as its pattern (at most 1024 characters) writes, at most twice that folded.
pub(super) fn canonical(mut ranges: Ranges) -> Ranges {
    crate::sort::insertion(&mut ranges, Ord::cmp);
    let mut merged: Ranges = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start as u32 <= (last.1 as u32).saturating_add(1) => {
                last.1 = last.1.max(end);
            }
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The complement of canonical ranges. Around the surrogate gap the neighbours of U+D7FF and
/// U+E000 are each other, which can leave an inverted range that matches nothing: regex-lite's
/// result, kept because the size limit counts ranges.
fn negate(ranges: &[(char, char)]) -> Ranges {
    let next = |c: char| {
        if c == '\u{D7FF}' {
            '\u{E000}'
        } else {
            char::from_u32(c as u32 + 1).unwrap_or(c)
        }
    };
    let prev = |c: char| {
        if c == '\u{E000}' {
            '\u{D7FF}'
        } else {
            char::from_u32(c as u32 - 1).unwrap_or(c)
        }
    };
    let mut out = Vec::with_capacity(ranges.len() + 1);
    let mut from = Some('\0');
    for &(start, end) in ranges {
        if let Some(f) = from.filter(|_| start > '\0') {
            out.push((f, prev(start)));
        }
        from = (end < char::MAX).then(|| next(end));
    }
    if let Some(f) = from {
        out.push((f, char::MAX));
    }
    out
}
