//! Inputs for the tests that compare these readers with rmp-serde: the same document spelled
//! in the other ways MessagePack allows, documents changed a little, and bytes changed a little.

use super::read::{Error, Reader, Token};
use crate::rng::Rng;

/// A parsed document, kept whole so that it can be written back differently.
#[derive(Debug, Clone)]
pub enum Tree<'a> {
    Leaf(Token<'a>),
    Array(Vec<Tree<'a>>),
    Map(Vec<(Tree<'a>, Tree<'a>)>),
    Ext(i8, &'a [u8]),
}

pub fn parse<'a>(r: &mut Reader<'a>) -> Result<Tree<'a>, Error> {
    Ok(match r.token()? {
        Token::Array(n) => Tree::Array((0..n).map(|_| parse(r)).collect::<Result<_, _>>()?),
        Token::Map(n) => Tree::Map(
            (0..n)
                .map(|_| Ok((parse(r)?, parse(r)?)))
                .collect::<Result<_, Error>>()?,
        ),
        Token::Ext(len) => {
            let (tag, data) = r.ext(len)?;
            Tree::Ext(tag, data)
        }
        leaf => Tree::Leaf(leaf),
    })
}

/// `bytes` (one document) written back with random choices: other widths of integers, lengths
/// and strings, integers as floats and back, strings as bins, small-integer arrays as bins,
/// and now and then an item dropped, repeated or added, or a map key replaced by an index.
pub fn respell(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut r = Reader::new(bytes, 2000);
    let Ok(tree) = parse(&mut r) else {
        return bytes.to_vec();
    };
    let mut out = Vec::new();
    emit(&tree, &mut out, rng);
    out.extend_from_slice(r.rest());
    out
}

fn emit(t: &Tree, out: &mut Vec<u8>, rng: &mut Rng) {
    match t {
        Tree::Leaf(leaf) => emit_leaf(*leaf, out, rng),
        Tree::Ext(tag, data) => {
            out.push(0xc7);
            out.push(data.len() as u8);
            out.push(*tag as u8);
            out.extend_from_slice(data);
        }
        Tree::Array(items) => {
            let mut items = items.clone();
            shake(&mut items, rng, || Tree::Leaf(Token::Nil));
            if let Some(bytes) = as_bytes(&items).filter(|_| rng.below(3) == 0) {
                return sized(out, 0xc4, 0xc4, &bytes, rng);
            }
            header(out, items.len(), 0x90, 16, 0xdc, rng);
            items.iter().for_each(|i| emit(i, out, rng));
        }
        Tree::Map(entries) => {
            let mut entries = entries.clone();
            let extra = || (Tree::Leaf(Token::Str(b"other")), Tree::Leaf(Token::Uint(1)));
            shake(&mut entries, rng, extra);
            header(out, entries.len(), 0x80, 16, 0xde, rng);
            for (k, v) in &entries {
                match rng.below(16) {
                    0 => emit_leaf(Token::Uint(rng.below(6)), out, rng),
                    _ => emit(k, out, rng),
                }
                emit(v, out, rng);
            }
        }
    }
}

/// Now and then drops, repeats or adds an item.
fn shake<T: Clone>(items: &mut Vec<T>, rng: &mut Rng, extra: impl Fn() -> T) {
    let at = rng.below(items.len() as u64 + 1) as usize;
    match rng.below(32) {
        0 if at < items.len() => drop(items.remove(at)),
        1 if at < items.len() => {
            let copy = items[at].clone();
            items.insert(at, copy);
        }
        2 => items.insert(at, extra()),
        _ => {}
    }
}

fn as_bytes(items: &[Tree]) -> Option<Vec<u8>> {
    items
        .iter()
        .map(|i| match i {
            Tree::Leaf(Token::Uint(v)) => u8::try_from(*v).ok(),
            _ => None,
        })
        .collect()
}

fn emit_leaf(t: Token, out: &mut Vec<u8>, rng: &mut Rng) {
    match t {
        Token::Nil => out.push(0xc0),
        Token::Bool(b) => out.push(0xc2 | u8::from(b)),
        Token::Uint(v) => int(out, i128::from(v), rng),
        Token::Int(v) => int(out, i128::from(v), rng),
        Token::Float(v) => float(out, v, rng),
        Token::Str(b) if rng.below(6) == 0 => sized(out, 0xc4, 0xc4, b, rng),
        Token::Str(b) => sized(out, 0xa0, 0xd9, b, rng),
        Token::Bin(b) => sized(out, 0xc4, 0xc4, b, rng),
        Token::Array(_) | Token::Map(_) | Token::Ext(_) => out.push(0xc0),
    }
}

/// An integer in a random one of the forms that hold it (now and then as a float).
fn int(out: &mut Vec<u8>, v: i128, rng: &mut Rng) {
    if rng.below(16) == 0 {
        return float(out, v as f64, rng);
    }
    let mut forms: Vec<(u8, usize)> = Vec::new();
    if (0..128).contains(&v) || (-32..0).contains(&v) {
        forms.push((0, 0));
    }
    for (i, bytes) in [1usize, 2, 4, 8].into_iter().enumerate() {
        let bits = 8 * bytes as u32;
        if v >= 0 && v < (1i128 << bits) {
            forms.push((0xcc + i as u8, bytes));
        }
        if v >= -(1i128 << (bits - 1)) && v < (1i128 << (bits - 1)) {
            forms.push((0xd0 + i as u8, bytes));
        }
    }
    let (marker, bytes) = forms[rng.below(forms.len() as u64) as usize];
    if marker == 0 {
        out.push(v as u8);
    } else {
        out.push(marker);
        out.extend_from_slice(&(v as u64).to_be_bytes()[8 - bytes..]);
    }
}

/// A float as float 64, float 32 (rounded), or an integer when it is one.
fn float(out: &mut Vec<u8>, v: f64, rng: &mut Rng) {
    match rng.below(4) {
        0 if v.fract() == 0.0 && v.abs() < 1e18 => int(out, v as i128, rng),
        1 => {
            out.push(0xca);
            out.extend_from_slice(&(v as f32).to_bits().to_be_bytes());
        }
        _ => {
            out.push(0xcb);
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }
}

/// A str (`fix` = 0xa0, `first` = 0xd9) or bin (0xc4, 0xc4) of a random width that holds it.
fn sized(out: &mut Vec<u8>, fix: u8, first: u8, data: &[u8], rng: &mut Rng) {
    let fix_max = if fix == 0xa0 { 32 } else { 0 };
    if data.len() < fix_max && rng.below(2) == 0 {
        out.push(fix | data.len() as u8);
    } else {
        let least = [0xff, 0xffff].iter().filter(|m| data.len() > **m).count();
        let i = least + rng.below(3 - least as u64) as usize;
        out.push(first + i as u8);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes()[4 - (1 << i)..]);
    }
    out.extend_from_slice(data);
}

/// An array (0x90, 0xdc) or map (0x80, 0xde) header of a random width that holds `n`.
fn header(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, first16: u8, rng: &mut Rng) {
    match rng.below(3) {
        0 if n < fix_max => out.push(fix | n as u8),
        1 if n <= 0xffff => {
            out.push(first16);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ if n < fix_max && rng.below(2) == 0 => out.push(fix | n as u8),
        _ => {
            out.push(first16 + 1);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
}

/// `doc` spelled eight other valid ways, then its mutations: the inputs a hand reader is
/// compared with its reference on.
pub fn near(doc: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..8).map(|_| respell(doc, rng)).collect();
    out.extend(mutations(doc, rng));
    out
}

/// Byte strings near `bytes`: prefixes (every one of a short document), one byte changed,
/// inserted or deleted, a trailing byte.
pub fn mutations(bytes: &[u8], rng: &mut Rng) -> Vec<Vec<u8>> {
    const INTERESTING: [u8; 14] = [
        0x00, 0x01, 0x7f, 0x80, 0x90, 0xa0, 0xc0, 0xc1, 0xc3, 0xc4, 0xcc, 0xd0, 0xdd, 0xff,
    ];
    let cut = |rng: &mut Rng, n: usize| match bytes.len() {
        0..=128 => n,
        len => rng.below(len as u64) as usize,
    };
    let mut out: Vec<Vec<u8>> = (0..bytes.len().min(128))
        .map(|n| bytes[..cut(rng, n)].to_vec())
        .collect();
    for _ in 0..bytes.len().min(64) {
        let at = rng.below(bytes.len() as u64) as usize;
        let byte = match rng.below(2) {
            0 => INTERESTING[rng.below(INTERESTING.len() as u64) as usize],
            _ => rng.next_u64() as u8,
        };
        let mut b = bytes.to_vec();
        match rng.below(3) {
            0 => b[at] = byte,
            1 => b.insert(at, byte),
            _ => drop(b.remove(at)),
        }
        out.push(b);
    }
    let mut longer = bytes.to_vec();
    longer.push(0xc0);
    out.push(longer);
    out
}

/// An integer near the edges of the encoded widths, or a random one.
pub fn any_u64(rng: &mut Rng) -> u64 {
    const EDGES: [u64; 12] = [
        0,
        1,
        127,
        128,
        255,
        256,
        65_535,
        65_536,
        u32::MAX as u64,
        u32::MAX as u64 + 1,
        i64::MAX as u64,
        u64::MAX,
    ];
    match rng.below(3) {
        0 => EDGES[rng.below(EDGES.len() as u64) as usize],
        1 => rng.below(1000),
        _ => rng.next_u64() >> rng.below(64),
    }
}

/// A float: ordinary, integral, tiny, huge, signed zero, infinite or NaN.
pub fn any_f64(rng: &mut Rng) -> f64 {
    const EDGES: [f64; 9] = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::MAX,
    ];
    match rng.below(4) {
        0 => EDGES[rng.below(EDGES.len() as u64) as usize],
        1 => rng.below(100) as f64,
        _ => (rng.next_f64() - 0.2) * 10f64.powi(rng.below(12) as i32 - 3),
    }
}

/// A name of up to 300 bytes (around the str widths), sometimes not ASCII.
pub fn any_name(rng: &mut Rng) -> String {
    if rng.below(10) == 0 {
        return String::new();
    }
    let len = [0, 1, 5, 31, 32, 255, 256, 300][rng.below(8) as usize];
    let unit = if rng.below(4) == 0 { "é" } else { "a" };
    let mut s = unit.repeat(len / unit.len());
    s.push_str(&rng.below(1000).to_string());
    s
}

/// A length around the array widths: mostly small, sometimes 15, 16 or a few more.
pub fn any_len(rng: &mut Rng) -> usize {
    match rng.below(6) {
        0 => 15 + rng.below(3) as usize,
        _ => rng.below(5) as usize,
    }
}

/// Keys and strings of request bodies, and a few others.
const WORDS: [&str; 20] = [
    "model",
    "messages",
    "role",
    "content",
    "text",
    "type",
    "image_url",
    "prompt",
    "input",
    "tools",
    "functions",
    "response_format",
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "json_object",
    "x",
    "0",
    "1",
];

/// A random document shaped like a request body: maps keyed mostly by the words readers look
/// for (sometimes by other values, sometimes twice), arrays, every kind of scalar (bins,
/// extensions, NaN, invalid UTF-8 included), and now and then nesting around the depth limits.
pub fn any_doc(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.below(12) == 0 {
        let depth = 95 + rng.below(40) as usize;
        out.extend(std::iter::repeat_n(0x91, depth));
    }
    any_value(&mut out, rng, 0);
    out
}

fn any_value(out: &mut Vec<u8>, rng: &mut Rng, depth: u32) {
    let kinds = if depth > 5 { 10 } else { 16 };
    match rng.below(kinds) {
        0 => out.push(0xc0),
        1 => out.push(0xc2 | rng.below(2) as u8),
        2 => int(out, i128::from(any_u64(rng) as i64) >> rng.below(64), rng),
        3 => float(out, any_f64(rng), rng),
        4..=5 => sized(out, 0xa0, 0xd9, word(rng).as_bytes(), rng),
        6 => sized(out, 0xa0, 0xd9, b"caf\xe9 \xff", rng),
        7 => {
            let data: Vec<u8> = (0..rng.below(6)).map(|_| rng.next_u64() as u8).collect();
            sized(out, 0xc4, 0xc4, &data, rng);
        }
        8 => out.extend_from_slice(&[0xd4, rng.next_u64() as u8, 0x2a]),
        9 => sized(out, 0xa0, 0xd9, any_name(rng).as_bytes(), rng),
        10..=12 => {
            let n = rng.below(5) as usize;
            header(out, n, 0x80, 16, 0xde, rng);
            for _ in 0..n {
                match rng.below(8) {
                    0 => any_value(out, rng, depth + 1),
                    _ => sized(out, 0xa0, 0xd9, word(rng).as_bytes(), rng),
                }
                any_value(out, rng, depth + 1);
            }
        }
        _ => {
            let n = rng.below(5) as usize;
            header(out, n, 0x90, 16, 0xdc, rng);
            (0..n).for_each(|_| any_value(out, rng, depth + 1));
        }
    }
}

fn word(rng: &mut Rng) -> &'static str {
    WORDS[rng.below(WORDS.len() as u64) as usize]
}

/// A random map shaped like an OpenAI request: keys readers look for, `messages` mostly an
/// array of maps whose `content` is text or parts, other values anything [`any_doc`] makes.
pub fn any_request(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let n = rng.below(7) as usize;
    header(&mut out, n, 0x80, 16, 0xde, rng);
    for _ in 0..n {
        let key = word(rng);
        sized(&mut out, 0xa0, 0xd9, key.as_bytes(), rng);
        match (key, rng.below(4)) {
            ("messages", 0) => any_value(&mut out, rng, 1),
            ("messages", _) => list(&mut out, rng, |out, rng| {
                header(out, 2, 0x80, 16, 0xde, rng);
                sized(out, 0xa0, 0xd9, b"role", rng);
                any_value(out, rng, 3);
                sized(out, 0xa0, 0xd9, b"content", rng);
                match rng.below(3) {
                    0 => list(out, rng, |out, rng| any_value(out, rng, 4)),
                    _ => any_value(out, rng, 3),
                }
            }),
            _ => any_value(&mut out, rng, 1),
        }
    }
    out
}

/// An array of 0 to 3 items written by `item`.
fn list(out: &mut Vec<u8>, rng: &mut Rng, item: impl Fn(&mut Vec<u8>, &mut Rng)) {
    let n = rng.below(4) as usize;
    header(out, n, 0x90, 16, 0xdc, rng);
    (0..n).for_each(|_| item(out, rng));
}
