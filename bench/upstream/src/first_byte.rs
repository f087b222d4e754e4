//! `first-byte`: how long an Envoy holds a request before its upstream sees the first byte of
//! it. One process is both ends, so one clock times both: it is the upstream of the latency
//! Envoys (HTTP/1.1, keep-alive, one thread per connection) and, on command, the client that
//! sends them requests one at a time.
//!
//! Per request the client takes the time, writes the request head, then the body in one
//! `write_all` (as an HTTP client library does: head, then body; the kernel splits it), and
//! reads the answer. The upstream notes the time at which the read that brought the request's
//! first bytes returned, and, once it has the head, hands (`x-probe-seq`, that time) to the
//! client; it reads the body to its end and answers `200 {"ok":true}` (with `x-reward: 1`, like
//! `bench-upstream`). A request's first-byte latency is the upstream's time minus the client's;
//! its response time is when the client had read the whole answer.
//!
//! Usage: `first-byte --port-file PATH --control-port-file PATH`: listens on two loopback
//! ports the kernel picks (the upstream's, the control port) and writes them to the PATHs.
//! Control: one line per connection,
//!   `measure <envoy port> <body file> <timed requests> <untimed requests first>`
//! answered with one line per timed request, `sample <first-byte ns> <response ns>`, then `end`;
//! or `error <why>` (an answer other than 200 {"ok":true}, a request that never reached the
//! upstream within 10 s, a socket error).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
content-length: 11\r\nx-reward: 1\r\n\r\n{\"ok\":true}";
const OK_BODY: &[u8] = br#"{"ok":true}"#;
const MARK_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/1.1 connection's read side: bytes received and not yet consumed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A message head: its first line and its header fields (names lowercased).
struct Head {
    first_line: String,
    fields: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// One read; Ok(false) at the end of the stream.
    fn fill(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// The next message head and when its first bytes arrived (None: the peer closed the
    /// connection between messages).
    fn read_head(&mut self) -> io::Result<Option<(Head, Instant)>> {
        let mut first = (!self.buf.is_empty()).then(Instant::now);
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !self.fill()? {
                return match self.buf.is_empty() {
                    true => Ok(None),
                    false => Err(bad("connection closed inside a message head")),
                };
            }
            first.get_or_insert_with(Instant::now);
        };
        let text = String::from_utf8_lossy(&self.buf[..end - 4]).into_owned();
        self.buf.drain(..end);
        let mut lines = text.split("\r\n");
        let first_line = lines.next().unwrap_or_default().to_string();
        let fields = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let head = Head { first_line, fields };
        Ok(Some((head, first.unwrap_or_else(Instant::now))))
    }

    fn need(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if !self.fill()? {
                return Err(bad("connection closed inside a message body"));
            }
        }
        Ok(())
    }

    /// The body that follows `head` (content-length or chunked; none otherwise).
    fn read_body(&mut self, head: &Head) -> io::Result<Vec<u8>> {
        if head
            .get("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            return self.read_chunked();
        }
        let len = match head.get("content-length") {
            Some(v) => v
                .parse()
                .map_err(|_| bad(format!("content-length {v:?}")))?,
            None => 0,
        };
        self.need(len)?;
        Ok(self.buf.drain(..len).collect())
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf, b"\r\n") {
                    break i;
                }
                if !self.fill()? {
                    return Err(bad("connection closed inside a chunk size"));
                }
            };
            let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_hex = size_text.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad(format!("chunk size {size_text:?}")))?;
            if size == 0 {
                // The last chunk, optional trailers, an empty line.
                loop {
                    if let Some(i) = find(&self.buf[line_end..], b"\r\n\r\n") {
                        self.buf.drain(..line_end + i + 4);
                        return Ok(body);
                    }
                    if !self.fill()? {
                        return Err(bad("connection closed inside the trailers"));
                    }
                }
            }
            let start = line_end + 2;
            self.need(start + size + 2)?;
            body.extend_from_slice(&self.buf[start..start + size]);
            self.buf.drain(..start + size + 2);
        }
    }
}

/// The upstream side of one connection from Envoy.
fn serve(stream: TcpStream, marks: Sender<(u64, Instant)>) -> io::Result<()> {
    let mut conn = Conn::new(stream);
    while let Some((head, first_byte)) = conn.read_head()? {
        if let Some(seq) = head.get("x-probe-seq").and_then(|v| v.parse().ok()) {
            let _ = marks.send((seq, first_byte));
        }
        conn.read_body(&head)?;
        conn.stream.write_all(ANSWER)?;
    }
    Ok(())
}

struct Client {
    marks: Receiver<(u64, Instant)>,
    seq: u64,
    bodies: HashMap<String, Vec<u8>>,
}

impl Client {
    /// `timed` + `untimed` requests, one at a time on one connection to `port` (the untimed
    /// ones first); (first-byte, response) times of the timed ones.
    fn measure(
        &mut self,
        port: u16,
        body_path: &str,
        timed: usize,
        untimed: usize,
    ) -> io::Result<Vec<(Duration, Duration)>> {
        if !self.bodies.contains_key(body_path) {
            let body = std::fs::read(body_path)?;
            self.bodies.insert(body_path.to_string(), body);
        }
        let body = &self.bodies[body_path];
        let mut conn = Conn::new(TcpStream::connect(("127.0.0.1", port))?);
        let mut out = Vec::with_capacity(timed);
        for i in 0..untimed + timed {
            self.seq += 1;
            let head = format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n\
                 content-type: application/json\r\ncontent-length: {}\r\n\
                 x-inference-cluster: chat\r\nx-probe-seq: {}\r\n\r\n",
                body.len(),
                self.seq
            );
            let start = Instant::now();
            conn.stream.write_all(head.as_bytes())?;
            conn.stream.write_all(body)?;
            let (answer, _) = conn
                .read_head()?
                .ok_or_else(|| bad("Envoy closed the connection without answering"))?;
            let answer_body = conn.read_body(&answer)?;
            let done = Instant::now();
            if !answer.first_line.starts_with("HTTP/1.1 200 ") || answer_body != OK_BODY {
                return Err(bad(format!(
                    "request {i}: answer {:?} {:?}",
                    answer.first_line,
                    String::from_utf8_lossy(&answer_body[..answer_body.len().min(200)])
                )));
            }
            let first_byte = loop {
                match self.marks.recv_timeout(MARK_TIMEOUT) {
                    Ok((seq, t)) if seq == self.seq => break t,
                    Ok(_) => continue, // an earlier request's mark, already accounted for
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                        return Err(bad(format!("request {i} never reached the upstream")))
                    }
                }
            };
            if i >= untimed {
                out.push((
                    first_byte.saturating_duration_since(start),
                    done.saturating_duration_since(start),
                ));
            }
        }
        Ok(out)
    }

    fn command(&mut self, line: &str) -> io::Result<Vec<(Duration, Duration)>> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [_measure, port, body, timed, untimed] = words[..] else {
            return Err(bad(format!("unknown command {line:?}")));
        };
        let num = |w: &str| {
            w.parse::<usize>()
                .map_err(|_| bad(format!("not a number: {w}")))
        };
        let port = port
            .parse()
            .map_err(|_| bad(format!("not a port: {port}")))?;
        self.measure(port, body, num(timed)?, num(untimed)?)
    }
}

fn control(listener: TcpListener, mut client: Client) -> io::Result<()> {
    for stream in listener.incoming() {
        let mut stream = stream?;
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        let answer = match client.command(line.trim()) {
            Ok(samples) => {
                let mut s = String::new();
                for (first, done) in samples {
                    s += &format!("sample {} {}\n", first.as_nanos(), done.as_nanos());
                }
                s + "end\n"
            }
            Err(e) => format!("error {e}\n"),
        };
        let _ = stream.write_all(answer.as_bytes());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut port_file, mut control_port_file) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port-file" => port_file = args.next(),
            "--control-port-file" => control_port_file = args.next(),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let (Some(port_file), Some(control_port_file)) = (port_file, control_port_file) else {
        return Err("usage: first-byte --port-file PATH --control-port-file PATH".into());
    };
    let upstream = TcpListener::bind("127.0.0.1:0")?;
    let control_listener = TcpListener::bind("127.0.0.1:0")?;
    let (tx, rx) = mpsc::channel();
    let port = upstream.local_addr()?.port();
    let control_port = control_listener.local_addr()?.port();
    thread::spawn(move || {
        for stream in upstream.incoming().flatten() {
            let marks = tx.clone();
            thread::spawn(move || serve(stream, marks));
        }
    });
    println!("upstream on 127.0.0.1:{port}, control on 127.0.0.1:{control_port}");
    // The port files last: bench.py reads a port as soon as its file exists.
    std::fs::write(control_port_file, format!("{control_port}\n"))?;
    std::fs::write(port_file, format!("{port}\n"))?;
    let client = Client {
        marks: rx,
        seq: 0,
        bodies: HashMap::new(),
    };
    control(control_listener, client)?;
    Ok(())
}
