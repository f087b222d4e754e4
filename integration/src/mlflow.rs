//! A real MLflow Model Registry for tests: `mlflow server` (PyPI `mlflow`, `make setup` installs
//! it into `<repo>/.venv/mlflow`) on a free 127.0.0.1 port, its SQLite database, artifact root
//! and log in a temp dir. The filter polls its REST API for registered-model aliases
//! (`champion`, `challenger`) and version tags; the helpers here ([`MlflowServer::create_model`],
//! [`MlflowServer::set_alias`], ...) are how a test changes what it will find.
//!
//! `mlflow server` runs uvicorn as a child process; both are put in a process group of their own
//! and killed together (SIGKILL to the group), so [`MlflowServer::stop`] really takes the
//! registry down and Drop leaves nothing behind. The job runner (eight more processes and
//! ~7 s of startup, for MLflow's GenAI jobs) is turned off with
//! `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`. Startup is ~7 s on 2 idle cores, most of it
//! imports and the database migrations; [`MlflowServer::start_again`] reuses the port and the
//! database.
//!
//! MLflow rejects a `Host` header outside localhost, 127.0.0.1 and private IPs (403 "Invalid
//! Host header", DNS-rebinding protection); [`MlflowServer::start_allowing_hosts`] adds names.
//!
//! The binary is `MLFLOW_BIN`, else `<repo>/.venv/mlflow/bin/mlflow`; missing is a panic naming
//! `make setup`, never a skipped test.

use std::fs::{self, OpenOptions};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{self, Request};
use crate::envoy::repo_root;

/// How long a (re)start may take to answer `/health` (~7 s measured alone on 2 cores; parallel
/// tests and Envoy builds can slow Python imports several times over).
pub const START_TIMEOUT: Duration = Duration::from_secs(90);
const LOG_TAIL_LINES: usize = 40;
/// The API prefix of every registry call.
pub const API: &str = "/api/2.0/mlflow";

/// `$MLFLOW_BIN`, else `<repo>/.venv/mlflow/bin/mlflow`; panics naming `make setup`.
pub fn mlflow_binary() -> PathBuf {
    let p = match std::env::var_os("MLFLOW_BIN").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/mlflow/bin/mlflow"),
    };
    assert!(
        p.is_file(),
        "{} does not exist: run `make setup` (installs mlflow into .venv/mlflow) or set MLFLOW_BIN",
        p.display()
    );
    p
}

/// A running (or stopped) MLflow server. See the module docs.
pub struct MlflowServer {
    port: u16,
    dir: PathBuf,
    /// `--allowed-hosts`, when the defaults are not enough.
    allowed_hosts: Option<String>,
    /// A Mutex so that stop/start_again take `&self` (tests keep closures borrowing the server).
    child: Mutex<Option<Child>>,
    startup: Mutex<Duration>,
}

impl MlflowServer {
    /// Starts a server with an empty registry and waits until it answers. Panics with its log.
    pub fn start() -> MlflowServer {
        MlflowServer::start_opts(None)
    }

    /// Like [`MlflowServer::start`], also accepting these `Host` header values (fnmatch patterns,
    /// e.g. `mlflow` or `mlflow:*`) besides localhost and 127.0.0.1, so Envoy can call it by a
    /// cluster name.
    pub fn start_allowing_hosts(hosts: &[&str]) -> MlflowServer {
        let mut all = vec!["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*"];
        all.extend_from_slice(hosts);
        MlflowServer::start_opts(Some(all.join(",")))
    }

    fn start_opts(allowed_hosts: Option<String>) -> MlflowServer {
        match MlflowServer::try_start(allowed_hosts.clone()) {
            Ok(s) => s,
            Err(first) => {
                // Most likely the port was taken between choosing it and binding it.
                eprintln!("MLflow start failed, retrying once with a new port:\n{first}");
                MlflowServer::try_start(allowed_hosts).unwrap_or_else(|e| panic!("{e}"))
            }
        }
    }

    /// Err only when the server exits during startup; a timeout panics.
    fn try_start(allowed_hosts: Option<String>) -> Result<MlflowServer, String> {
        let binary = mlflow_binary();
        let port = crate::scratch::free_port();
        let server = MlflowServer {
            port,
            dir: crate::scratch::temp_dir("mlflow"),
            allowed_hosts,
            child: Mutex::new(None),
            startup: Mutex::new(Duration::ZERO),
        };
        // On Err, dropping `server` (not panicking) kills it and removes the dir.
        server.spawn(&binary)?;
        Ok(server)
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `mlflow server` in a new process group and waits until `/health` answers 200.
    fn spawn(&self, binary: &Path) -> Result<(), String> {
        let started = Instant::now();
        {
            let mut slot = self.child();
            assert!(slot.is_none(), "the MLflow server is already running");
            *slot = Some(self.command(binary).spawn().unwrap_or_else(|e| {
                panic!("spawn {}: {e}", binary.display());
            }));
        }
        self.wait_ready()?;
        *self.startup.lock().unwrap_or_else(|e| e.into_inner()) = started.elapsed();
        Ok(())
    }

    fn command(&self, binary: &Path) -> Command {
        // Append: the log of a restarted server keeps its previous life.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log_path().display()));
        let log2 = log.try_clone().expect("clone log file handle");
        let mut cmd = Command::new(binary);
        cmd.arg("server")
            .arg(format!(
                "--backend-store-uri=sqlite:///{}",
                self.dir.join("mlflow.db").display()
            ))
            .arg(format!(
                "--default-artifact-root={}",
                self.dir.join("artifacts").display()
            ))
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            // One uvicorn process, no worker supervisor.
            .args(["--workers", "1"])
            .args(
                self.allowed_hosts
                    .iter()
                    .flat_map(|h| ["--allowed-hosts", h]),
            )
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .env_remove("MLFLOW_SERVER_ALLOWED_HOSTS")
            .current_dir(&self.dir)
            // Its own group: stop() kills uvicorn (a child of `mlflow server`) too.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2));
        cmd
    }

    /// `/health` (exempt from the Host check) answering 200, or Err if the process exited.
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child().as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "mlflow server exited at start ({status}), port {}\n{}",
                    self.port,
                    self.log_tail()
                ));
            }
            if matches!(client::send(self.port, &self.request("GET", "/health")), Ok(r) if r.status == 200)
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "mlflow server not ready within {START_TIMEOUT:?} (dir {})\n{}",
                self.dir.display(),
                self.log_tail()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temp dir: `mlflow.db`, `artifacts/`, `mlflow.log`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How long the last (re)start took, spawn to `/health` answering.
    pub fn startup_time(&self) -> Duration {
        *self.startup.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("mlflow.log")
    }

    /// The whole log (all lives of the server).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        crate::scratch::log_tail(&self.log_path(), LOG_TAIL_LINES)
    }

    /// SIGKILLs the server's process group and waits until its port refuses connections: the
    /// registry is down. The database stays for [`MlflowServer::start_again`]. No-op if stopped.
    pub fn stop(&self) {
        if !self.kill_group() {
            return;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {} still accepts connections after killing MLflow",
                self.port
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the whole process group (uvicorn is a child of `mlflow server`); false if the
    /// server was not running.
    fn kill_group(&self) -> bool {
        let Some(mut child) = self.child().take() else {
            return false;
        };
        // The group id is the leader's pid (process_group(0)); `kill -- -<pgid>` signals it all.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = child.kill();
        let _ = child.wait();
        true
    }

    /// Starts the stopped server again on the same port and database (~6 s).
    pub fn start_again(&self) {
        if let Err(e) = self.spawn(&mlflow_binary()) {
            panic!("{e}");
        }
    }

    /// A request with a `Host` header the server accepts (the client's default,
    /// `inference.local`, gets 403).
    fn request(&self, method: &str, path: &str) -> Request {
        Request::new(method, path).header("host", &format!("127.0.0.1:{}", self.port))
    }

    /// One call to `API + path` (query included) with an optional JSON body: (status, body as
    /// JSON). For the error cases; the helpers below assert success.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self.request(method, &format!("{API}{path}"));
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = client::must_send(self.port, &req);
        let v = serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text()));
        (r.status, v)
    }

    /// [`MlflowServer::call`] that must answer 200; panics with the answer and the log.
    fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, v) = self.call(method, path, Some(&body));
        assert_eq!(
            status,
            200,
            "MLflow {method} {path} {body}: {v}\n{}",
            self.log_tail()
        );
        v
    }

    /// POST registered-models/create.
    pub fn create_model(&self, name: &str) {
        self.ok("POST", "/registered-models/create", json!({ "name": name }));
    }

    /// POST model-versions/create; returns the new version ("1", "2", ... per model: a JSON
    /// string). `source` needs no artifacts if it is a remote URI such as `s3://bucket/m/v1`;
    /// local paths and `models:/` URIs are refused without a run.
    pub fn create_version(&self, name: &str, source: &str) -> String {
        let v = self.ok(
            "POST",
            "/model-versions/create",
            json!({ "name": name, "source": source }),
        );
        v["model_version"]["version"]
            .as_str()
            .unwrap_or_else(|| panic!("model-versions/create answered {v}"))
            .to_string()
    }

    /// POST registered-models/alias (moves the alias if it points elsewhere). `v<N>` and
    /// `latest` are reserved alias names (400).
    pub fn set_alias(&self, name: &str, alias: &str, version: &str) {
        self.ok(
            "POST",
            "/registered-models/alias",
            json!({ "name": name, "alias": alias, "version": version }),
        );
    }

    /// DELETE registered-models/alias (JSON body; 200 even if the alias did not exist).
    pub fn delete_alias(&self, name: &str, alias: &str) {
        self.ok(
            "DELETE",
            "/registered-models/alias",
            json!({ "name": name, "alias": alias }),
        );
    }

    /// POST model-versions/set-tag (overwrites the key).
    pub fn set_version_tag(&self, name: &str, version: &str, key: &str, value: &str) {
        self.ok(
            "POST",
            "/model-versions/set-tag",
            json!({ "name": name, "version": version, "key": key, "value": value }),
        );
    }

    /// GET registered-models/alias, the request the filter polls with: the body whatever the
    /// status (200 `{"model_version": {..., "version": "2", "tags": [...], "aliases": [...]}}`;
    /// missing alias 400 `INVALID_PARAMETER_VALUE`; missing model 404 `RESOURCE_DOES_NOT_EXIST`).
    pub fn get_alias(&self, name: &str, alias: &str) -> Value {
        let path = format!(
            "/registered-models/alias?name={}&alias={}",
            query_escape(name),
            query_escape(alias)
        );
        self.call("GET", &path, None).1
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        // Not stop(): no panic in a Drop (a second panic while unwinding aborts).
        self.kill_group();
        crate::scratch::remove_or_keep(&self.dir, "MLflow log", || self.log_tail());
    }
}

/// Percent-encodes a query value (all but RFC 3986 unreserved bytes).
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
