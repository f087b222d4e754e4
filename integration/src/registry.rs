//! A real OCI registry for tests: Debian's `docker-registry` (the CNCF distribution registry,
//! `make setup` installs it) on a free 127.0.0.1 port, plain HTTP, no auth, its storage and log
//! in a temp dir. Requests go through the distribution API (`/v2/...`) with [`Registry::get`],
//! the way Istio's agent pulls a `WasmPlugin` image; [`skopeo`] pushes and pulls.
//!
//! The binaries are `REGISTRY_BIN` (else `docker-registry` on `PATH`) and `SKOPEO_BIN` (else
//! `skopeo`); a missing one is a panic naming the install command, never a skipped test.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Request, Response};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const LOG_TAIL_LINES: usize = 40;

/// A binary from an environment variable or `PATH`; panics with the install command.
fn find_binary(env: &str, name: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: run `make setup` (as root: apt-get install {package}) or set {env}"
            )
        })
}

pub fn registry_binary() -> PathBuf {
    find_binary("REGISTRY_BIN", "docker-registry", "docker-registry")
}

pub fn skopeo_binary() -> PathBuf {
    find_binary("SKOPEO_BIN", "skopeo", "skopeo")
}

pub use crate::scratch::temp_dir;

/// A running registry. Dropping it kills the process; the temp dir is removed, or kept and the
/// log tail printed when the thread is panicking.
pub struct Registry {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers 200. Panics with its log otherwise.
    pub fn start() -> Registry {
        let dir = temp_dir("registry");
        let port = crate::scratch::free_port();
        let config = dir.join("config.yml");
        fs::write(&config, config_yaml(&dir.join("data"), port))
            .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let log = File::create(dir.join("registry.log")).expect("create registry.log");
        let child = Command::new(registry_binary())
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", registry_binary().display()));
        let mut registry = Registry {
            port,
            dir,
            child: Some(child),
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "docker-registry exited at start ({status})\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = client::send(self.port, &self.request("/v2/")) {
                if r.status == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry not ready within {START_TIMEOUT:?}\n{}",
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the registry keeps its blobs and its log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn request(&self, path: &str) -> Request {
        Request::get(path).header("host", &self.host())
    }

    /// `GET path` with these `Accept` media types (comma-separated), as a registry client does.
    pub fn get(&self, path: &str, accept: &str) -> Response {
        client::must_send(self.port, &self.request(path).header("accept", accept))
    }

    pub fn log_tail(&self) -> String {
        crate::scratch::log_tail(&self.dir.join("registry.log"), LOG_TAIL_LINES)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        crate::scratch::remove_or_keep(&self.dir, "registry log", || self.log_tail());
    }
}

/// Loopback only, filesystem storage in `data`, no auth (the Debian default config asks for an
/// htpasswd file), deletes allowed (a test can remove what it pushed).
fn config_yaml(data: &Path, port: u16) -> String {
    format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
         delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        crate::template::yaml_string(&data.to_string_lossy())
    )
}

/// Runs skopeo with a policy that accepts any image (the only registry is this test's own, on
/// loopback) and `args`; panics with its output unless it succeeds.
pub fn skopeo(scratch: &Path, args: &[&str]) -> Output {
    let policy = scratch.join("policy.json");
    if !policy.is_file() {
        fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", policy.display()));
    }
    let out = Command::new(skopeo_binary())
        .arg("--policy")
        .arg(&policy)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", skopeo_binary().display()));
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
