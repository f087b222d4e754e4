//! A small static HTTP/1.1 file server on 127.0.0.1 for Envoy's remote Wasm fetch
//! (`vm_config.code.remote.http_uri`): files are held in memory by path, every GET is counted,
//! and a file can be replaced while the server runs (a new build published under the same URL).
//! One thread accepts; each connection gets a thread, reads one request (bounded in size and
//! time) and is closed after the answer.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Longest request head accepted; Envoy's fetch sends a few hundred bytes.
const MAX_HEAD_BYTES: usize = 16 << 10;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Shared {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    /// GET requests per path, served or not.
    hits: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

impl Shared {
    fn files(&self) -> MutexGuard<'_, BTreeMap<String, Vec<u8>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hits(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.hits.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running file server; stops when dropped.
pub struct FileServer {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FileServer {
    /// Serves `files` (path such as `/inference_router.wasm` → content) on a free port.
    pub fn start(files: BTreeMap<String, Vec<u8>>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        FileServer::serve(listener, files)
    }

    /// Serves `files` on this port, e.g. the port of a [`RefusedPort`](crate::RefusedPort) just
    /// dropped: the server Envoy could not reach comes up where it was expected.
    pub fn start_on(port: u16, files: BTreeMap<String, Vec<u8>>) -> FileServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port} for the file server: {e}"));
        FileServer::serve(listener, files)
    }

    fn serve(listener: TcpListener, files: BTreeMap<String, Vec<u8>>) -> FileServer {
        let port = listener.local_addr().expect("file server address").port();
        let shared = Arc::new(Shared::default());
        *shared.files() = files;
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name("file-server".into())
            .spawn(move || accept_loop(listener, s))
            .expect("spawn the file server thread");
        FileServer {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET requests for `path` so far (answered 200 or 404).
    pub fn hits(&self, path: &str) -> u64 {
        self.shared.hits().get(path).copied().unwrap_or(0)
    }

    /// Serves `content` at `path` from the next request on.
    pub fn set(&self, path: &str, content: Vec<u8>) {
        self.shared.files().insert(path.to_string(), content);
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let shared = shared.clone();
        let _ = thread::Builder::new()
            .name("file-server-conn".into())
            .spawn(move || {
                let _ = answer(stream, &shared);
            });
    }
}

fn answer(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let body = if method == "GET" {
        *shared.hits().entry(path.to_string()).or_insert(0) += 1;
        shared.files().get(path).cloned()
    } else {
        None
    };
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", b"not found\n".to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body)?;
    stream.flush()?;
    stream.shutdown(Shutdown::Write)
}

/// The request head (up to the blank line); the request has no body worth reading.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad request head",
            ));
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_counts_and_replaces_files() {
        let server = FileServer::start(BTreeMap::from([("/a".to_string(), b"one".to_vec())]));
        let get = |path: &str| crate::client::must_send(server.port(), &crate::Request::get(path));
        let r = get("/a");
        assert_eq!((r.status, r.body.as_slice()), (200, b"one".as_slice()));
        assert_eq!(get("/b").status, 404);
        server.set("/a", b"two".to_vec());
        assert_eq!(get("/a").body, b"two");
        assert_eq!((server.hits("/a"), server.hits("/b")), (2, 1));
    }
}
