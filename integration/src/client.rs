//! A small blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Written by hand rather than with hyper's client so a test controls the exact bytes on the
//! wire: `content-length` versus `transfer-encoding: chunked`, repeated or spoofed headers, a new
//! connection per request or keep-alive. Every read and write has a timeout, so a request that
//! Envoy never answers fails the test instead of hanging it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use serde::Serialize;

use crate::upstream::Echo;

/// How long one request may take before the client gives up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// Largest response the client accepts (bounds memory if something goes wrong).
const MAX_RESPONSE_BYTES: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, e.g. `/v2/models/iris/infer`.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Send the body with `transfer-encoding: chunked` instead of `content-length`.
    pub chunked: bool,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
            chunked: false,
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    /// Adds a header (repeatable: two calls send the header twice).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Raw body bytes, with no content-type.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = Some(body.into());
        self
    }

    /// Serializes `value` as JSON, with `content-type: application/json`.
    pub fn json<T: Serialize>(self, value: &T) -> Request {
        let bytes = serde_json::to_vec(value).expect("serialize JSON body");
        self.header("content-type", "application/json").body(bytes)
    }

    /// A raw JSON text (possibly malformed), with `content-type: application/json`.
    pub fn json_text(self, text: &str) -> Request {
        self.header("content-type", "application/json")
            .body(text.as_bytes().to_vec())
    }

    /// Serializes `value` as MessagePack (maps with string keys), with
    /// `content-type: application/msgpack`.
    pub fn msgpack<T: Serialize>(self, value: &T) -> Request {
        let bytes = rmp_serde::to_vec_named(value).expect("serialize MessagePack body");
        self.header("content-type", "application/msgpack")
            .body(bytes)
    }

    /// Send the body with chunked transfer encoding (no `content-length`).
    pub fn chunked(mut self) -> Request {
        self.chunked = true;
        self
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The exact bytes this request is sent as (to send them altered, with
    /// [`Connection::send_raw`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", self.method, self.path).as_bytes());
        if !self.has_header("host") {
            out.extend_from_slice(b"host: inference.local\r\n");
        }
        for (n, v) in &self.headers {
            out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        match (&self.body, self.chunked) {
            (Some(_), true) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            (Some(b), false) if !self.has_header("content-length") => {
                out.extend_from_slice(format!("content-length: {}\r\n", b.len()).as_bytes())
            }
            _ => {}
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            if self.chunked {
                for chunk in body.chunks(8192) {
                    out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            } else {
                out.extend_from_slice(body);
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `x-inference-*` response headers, for printing.
    pub fn inference_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-inference-"))
            .cloned()
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.text()
            )
        })
    }

    /// The fake upstream's description of the request; panics if the response did not come
    /// from a fake upstream.
    pub fn echo(&self) -> Echo {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not from a fake upstream ({e}): status {} headers {:?} body {:?}",
                self.status,
                self.headers,
                self.text()
            )
        })
    }

    /// The cluster that served this response, if it came from a fake upstream.
    pub fn upstream_cluster(&self) -> Option<String> {
        serde_json::from_slice::<Echo>(&self.body)
            .ok()
            .map(|e| e.cluster)
    }
}

/// One client connection (keep-alive: several requests may be sent on it).
pub struct Connection {
    reader: BufReader<TcpStream>,
}

impl Connection {
    pub fn open(port: u16) -> io::Result<Connection> {
        Connection::open_with_timeout(port, DEFAULT_TIMEOUT)
    }

    pub fn open_with_timeout(port: u16, timeout: Duration) -> io::Result<Connection> {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream),
        })
    }

    /// Sends one request and reads its response.
    pub fn send(&mut self, req: &Request) -> io::Result<Response> {
        self.reader.get_mut().write_all(&req.encode())?;
        self.reader.get_mut().flush()?;
        loop {
            let resp = read_response(&mut self.reader, req.method == "HEAD")?;
            // Interim 1xx responses (100 Continue) precede the real one.
            if !(100..200).contains(&resp.status) || resp.status == 101 {
                return Ok(resp);
            }
        }
    }

    /// Writes raw bytes (a hand-made request, possibly malformed: a wrong `content-length`, a
    /// truncated body) without reading anything back.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.get_mut().write_all(bytes)?;
        self.reader.get_mut().flush()
    }

    /// Sends one request while reading its response, for a server that may answer (and close)
    /// before the whole body is sent — e.g. Envoy's 413 on a body over its buffer limit. The
    /// bytes are written from another thread, so an early answer is read rather than lost to a
    /// reset while still writing. Returns the response and the outcome of writing the request.
    pub fn send_streaming(&mut self, req: &Request) -> (io::Result<Response>, io::Result<()>) {
        let bytes = req.encode();
        let mut writer = match self.reader.get_ref().try_clone() {
            Ok(w) => w,
            Err(e) => return (Err(e), Ok(())),
        };
        std::thread::scope(|s| {
            let written = s.spawn(move || writer.write_all(&bytes).and_then(|()| writer.flush()));
            let resp = self.read_response();
            if resp.is_err() {
                // Unblock the writer if the server stopped reading.
                let _ = self.reader.get_ref().shutdown(Shutdown::Both);
            }
            let written = written
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")));
            (resp, written)
        })
    }

    /// Reads the next response on this connection (after [`Connection::send_raw`]), skipping
    /// interim 1xx responses. An error when the connection closes (or the read times out) first.
    pub fn read_response(&mut self) -> io::Result<Response> {
        loop {
            let resp = read_response(&mut self.reader, false)?;
            if !(100..200).contains(&resp.status) || resp.status == 101 {
                return Ok(resp);
            }
        }
    }

    /// A second handle on this connection's socket, to write from another thread (e.g. a body
    /// paced in pieces) while this one reads the response.
    pub fn writer(&self) -> io::Result<TcpStream> {
        self.reader.get_ref().try_clone()
    }

    /// Closes the sending half: the server reads end-of-stream, and may still answer.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.reader.get_ref().shutdown(Shutdown::Write)
    }

    /// Changes the read timeout of this connection (e.g. shorter, to wait for an answer that
    /// may never come).
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.reader.get_ref().set_read_timeout(Some(timeout))
    }

    pub fn close(self) {
        let _ = self.reader.get_ref().shutdown(Shutdown::Both);
    }
}

/// Sends one request on a new connection, then closes it.
pub fn send(port: u16, req: &Request) -> io::Result<Response> {
    let mut conn = Connection::open(port)?;
    let resp = conn.send(req);
    conn.close();
    resp
}

/// [`send`], panicking with context on an I/O error (timeouts included).
pub fn must_send(port: u16, req: &Request) -> Response {
    send(port, req)
        .unwrap_or_else(|e| panic!("{} {} on port {port} failed: {e}", req.method, req.path))
}

fn read_line(r: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.by_ref().take(64 * 1024).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn read_response(r: &mut BufReader<TcpStream>, head: bool) -> io::Result<Response> {
    let status_line = read_line(r)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("bad status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for _ in 0..1000 {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    let no_body = head || (100..200).contains(&status) || status == 204 || status == 304;
    if no_body {
    } else if find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let size_line = read_line(r)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                for _ in 0..1000 {
                    if read_line(r)?.is_empty() {
                        break;
                    }
                }
                break;
            }
            if body.len() + size > MAX_RESPONSE_BYTES {
                return Err(bad("response too large".into()));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?;
        }
    } else if let Some(cl) = find("content-length") {
        let len: usize = cl
            .parse()
            .map_err(|_| bad(format!("bad content-length {cl:?}")))?;
        if len > MAX_RESPONSE_BYTES {
            return Err(bad("response too large".into()));
        }
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else {
        r.by_ref()
            .take(MAX_RESPONSE_BYTES as u64)
            .read_to_end(&mut body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}
