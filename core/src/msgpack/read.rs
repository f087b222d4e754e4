//! The MessagePack wire format, one item at a time: [`Reader::token`] reads a scalar with its
//! payload, or the header of an array / map whose items follow. Every length is checked against
//! the bytes left before anything is borrowed; nothing here allocates.

use std::fmt;
use std::str::Utf8Error;

/// One MessagePack item. Containers are headers: their `n` items (maps: `n` key/value pairs)
/// are the next tokens of the reader.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token<'a> {
    Nil,
    Bool(bool),
    /// Positive fixint and uint 8–64.
    Uint(u64),
    /// Negative fixint and int 8–64 (which may hold a positive number).
    Int(i64),
    /// float 32 (widened, as rmp-serde's visitors see it) and float 64.
    Float(f64),
    /// A str's bytes, not yet checked for UTF-8 (rmp-serde falls back to bytes when invalid).
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Array(u32),
    Map(u32),
    /// An extension's payload length; [`Reader::ext`] reads its type and payload. Kept apart
    /// so the nesting check comes first, as in rmp-serde.
    Ext(u32),
}

/// Why bytes could not be read. The texts are rmp-serde's: a body error reaches the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// The input ended where an item should start.
    Marker,
    /// The input ended inside a number or a length.
    Data,
    /// The input ended inside a str, bin or ext payload.
    Payload,
    /// 0xc1, the one byte MessagePack never uses.
    Reserved,
    /// Nested deeper than the reader's limit.
    Depth,
    /// A container with items its reader did not take (the count it took).
    Length(u32),
    Utf8(Utf8Error),
    /// Anything else: what the value was not.
    Syntax(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let eof = "failed to fill whole buffer";
        match self {
            Error::Marker => write!(f, "IO error while reading marker: {eof}"),
            Error::Data => write!(f, "IO error while reading data: {eof}"),
            Error::Payload => f.write_str("IO error while reading data: unexpected end of file"),
            Error::Reserved => f.write_str("wrong msgpack marker Reserved"),
            Error::Depth => f.write_str("depth limit exceeded"),
            Error::Length(n) => write!(f, "array had incorrect length, expected {n}"),
            Error::Utf8(e) => write!(f, "string found to be invalid utf8: {e}"),
            Error::Syntax(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

/// A cursor over MessagePack bytes, with a nesting budget.
#[derive(Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
    /// Containers that may still be opened, plus one (rmp-serde's counter: it fails when the
    /// count reaches 0).
    depth: u16,
}

impl<'a> Reader<'a> {
    /// A reader that refuses nesting of `max_depth` containers or more (rmp-serde's
    /// `set_max_depth`, capped the same way; its default is 1024).
    pub fn new(bytes: &'a [u8], max_depth: usize) -> Self {
        Reader {
            rest: bytes,
            depth: u16::try_from(max_depth).unwrap_or(u16::MAX),
        }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// The next byte, not consumed.
    pub fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn take(&mut self, n: usize, short: Error) -> Result<&'a [u8], Error> {
        let (head, tail) = self.rest.split_at_checked(n).ok_or(short)?;
        self.rest = tail;
        Ok(head)
    }

    /// A big-endian unsigned number of `n` (at most 8) bytes.
    fn be(&mut self, n: usize) -> Result<u64, Error> {
        let bytes = self.take(n, Error::Data)?;
        Ok(bytes.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A length of `n` bytes, then that many payload bytes.
    fn sized(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let len = self.be(n)?;
        self.payload(len)
    }

    fn payload(&mut self, len: u64) -> Result<&'a [u8], Error> {
        let len = usize::try_from(len).map_err(|_| Error::Payload)?;
        self.take(len, Error::Payload)
    }

    /// The next item.
    pub fn token(&mut self) -> Result<Token<'a>, Error> {
        let (&m, tail) = self.rest.split_first().ok_or(Error::Marker)?;
        self.rest = tail;
        // Sizes of the variable-width forms: 1, 2, 4 (8, 16) bytes, in marker order.
        let width = |first: u8| 1usize << (m - first);
        Ok(match m {
            0x00..=0x7f => Token::Uint(u64::from(m)),
            0x80..=0x8f => Token::Map(u32::from(m & 0x0f)),
            0x90..=0x9f => Token::Array(u32::from(m & 0x0f)),
            0xa0..=0xbf => Token::Str(self.payload(u64::from(m & 0x1f))?),
            0xc0 => Token::Nil,
            0xc1 => return Err(Error::Reserved),
            0xc2 => Token::Bool(false),
            0xc3 => Token::Bool(true),
            0xc4..=0xc6 => Token::Bin(self.sized(width(0xc4))?),
            0xc7..=0xc9 => Token::Ext(self.length(width(0xc7))?),
            0xca => Token::Float(f64::from(f32::from_bits(self.length(4)?))),
            0xcb => Token::Float(f64::from_bits(self.be(8)?)),
            0xcc..=0xcf => Token::Uint(self.be(width(0xcc))?),
            0xd0..=0xd3 => Token::Int(signed(self.be(width(0xd0))?, width(0xd0))),
            0xd4..=0xd8 => Token::Ext(1 << (m - 0xd4)),
            0xd9..=0xdb => Token::Str(self.sized(width(0xd9))?),
            0xdc => Token::Array(self.length(2)?),
            0xdd => Token::Array(self.length(4)?),
            0xde => Token::Map(self.length(2)?),
            0xdf => Token::Map(self.length(4)?),
            0xe0..=0xff => Token::Int(i64::from(m as i8)),
        })
    }

    /// A length (or float 32) field of `n` (1, 2 or 4) bytes.
    fn length(&mut self, n: usize) -> Result<u32, Error> {
        u32::try_from(self.be(n)?).map_err(|_| Error::Data)
    }

    /// The type and payload of an extension whose header gave `len`.
    pub fn ext(&mut self, len: u32) -> Result<(i8, &'a [u8]), Error> {
        Ok((self.ext_type()?, self.ext_data(len)?))
    }

    /// An extension's type, the byte after its header.
    pub fn ext_type(&mut self) -> Result<i8, Error> {
        let (&tag, tail) = self.rest.split_first().ok_or(Error::Data)?;
        self.rest = tail;
        Ok(tag as i8)
    }

    /// An extension's payload, after its type.
    pub fn ext_data(&mut self, len: u32) -> Result<&'a [u8], Error> {
        self.payload(u64::from(len))
    }

    /// Runs `read` one nesting level down: an array, map or extension is being read.
    pub fn nested<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        self.enter()?;
        let out = read(self)?;
        self.depth += 1;
        Ok(out)
    }

    fn enter(&mut self) -> Result<(), Error> {
        self.depth = self.depth.saturating_sub(1);
        match self.depth {
            0 => Err(Error::Depth),
            _ => Ok(()),
        }
    }

    /// Reads past one value (serde's `IgnoredAny`). A loop, not recursion: the stack stays flat
    /// however deep the value is nested.
    pub fn skip(&mut self) -> Result<(), Error> {
        // Items left to read in each open container, the innermost last.
        let mut open: Vec<u64> = Vec::new();
        let mut token = self.token()?;
        loop {
            match token {
                Token::Array(n) => {
                    self.enter()?;
                    open.push(u64::from(n));
                }
                Token::Map(n) => {
                    self.enter()?;
                    open.push(2 * u64::from(n));
                }
                Token::Ext(len) => self.nested(|r| r.ext(len).map(drop))?,
                _ => {}
            }
            // Close the containers read to their end.
            loop {
                match open.last_mut() {
                    None => return Ok(()),
                    Some(0) => {
                        open.pop();
                        self.depth += 1;
                    }
                    Some(left) => {
                        *left -= 1;
                        break;
                    }
                }
            }
            token = self.token()?;
        }
    }
}

/// The two's-complement number in the low `bytes` bytes of `v`.
fn signed(v: u64, bytes: usize) -> i64 {
    let shift = 64 - 8 * bytes as u32;
    ((v << shift) as i64) >> shift
}
