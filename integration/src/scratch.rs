//! Working directories of the real servers the harness starts (registry, etcd, MLServer,
//! MLflow): made fresh, removed when the test passes, kept with the end of each log printed when
//! it fails; and the free loopback ports they listen on.

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh temp dir, unique in this process (its name doubles as a unique token).
pub fn temp_dir(what: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "inference-router-{what}-{}-{n}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// The last `lines` lines of a log file (empty when it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// For a `Drop`: removes `dir`, or, while a test is failing, keeps it and prints `logs()`.
pub fn remove_or_keep(dir: &Path, what: &str, logs: impl FnOnce() -> String) {
    if thread::panicking() {
        eprintln!(
            "===== {what} (dir kept: {}) =====\n{}\n===== end of {what} =====",
            dir.display(),
            logs()
        );
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Ports this process handed out already. Parallel tests each release their ports before
/// their servers bind them: without this, the kernel may give the same free port to two tests,
/// and one test's client then reaches the other test's server.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `n` distinct free loopback ports, never one this process handed out before: all bound at
/// once (so they differ), then released for the server to bind right after.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut given = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        if given.insert(port) {
            ports.push(port);
        }
        // Held until all are chosen, so the kernel hands out different ones.
        held.push(l);
    }
    ports
}

/// One free loopback port ([`free_ports`]).
pub fn free_port() -> u16 {
    free_ports(1).first().copied().expect("one port")
}
