//! MessagePack primitives in the forms rmp-serde writes: the shortest integer, length and
//! string headers, every float as float 64.

/// A length as the format stores it; a `Vec` in a 32-bit wasm cannot exceed it.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

pub fn nil(out: &mut Vec<u8>) {
    out.push(0xc0);
}

/// An unsigned integer: positive fixint, or uint 8 / 16 / 32 / 64.
pub fn uint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
    } else if v <= 0xff {
        out.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= 0xffff {
        out.push(0xcd);
        out.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= 0xffff_ffff {
        out.push(0xce);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&crate::be::to_be(v));
    }
}

pub fn float(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&crate::be::to_be(v.to_bits()));
}

pub fn str(out: &mut Vec<u8>, s: &str) {
    let n = len32(s.len());
    match n {
        0..=31 => out.push(0xa0 | n as u8),
        32..=0xff => out.extend_from_slice(&[0xd9, n as u8]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(s.as_bytes());
}

/// The header of an array of `len` items (the items follow).
pub fn array(out: &mut Vec<u8>, len: usize) {
    header(out, len, [0x90, 0xdc, 0xdd]);
}

/// The header of a map of `len` pairs (the keys and values follow).
pub fn map(out: &mut Vec<u8>, len: usize) {
    header(out, len, [0x80, 0xde, 0xdf]);
}

/// A container header in its smallest form: `fix | len`, then the 16- and 32-bit markers.
fn header(out: &mut Vec<u8>, len: usize, [fix, m16, m32]: [u8; 3]) {
    let n = len32(len);
    match n {
        0..=15 => out.push(fix | n as u8),
        16..=0xffff => {
            out.push(m16);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => {
            out.push(m32);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// An array of unsigned integers.
pub fn uints(out: &mut Vec<u8>, items: &[u64]) {
    array(out, items.len());
    items.iter().for_each(|v| uint(out, *v));
}

/// An array of floats.
pub fn floats(out: &mut Vec<u8>, items: &[f64]) {
    array(out, items.len());
    items.iter().for_each(|v| float(out, *v));
}
