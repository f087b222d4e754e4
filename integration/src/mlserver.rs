//! Real gRPC model servers for the gRPC end-to-end tests: one MLServer process (PyPI
//! `mlserver`, Seldon's Open Inference Protocol server, KServe v2 over REST and gRPC) per
//! deployment, each serving one model version with the custom runtime
//! `integration/fixtures/grpc/deployment_runtime.py`, whose `ModelInfer` answers a BYTES output
//! `deployment` naming the deployment (and fails with INTERNAL when the request has an input
//! named `fail`). The gRPC client is `integration/fixtures/grpc/client.py` (tritonclient), run by
//! [`run_grpc_client`].
//!
//! Each server gets its own temp dir with a `settings.json` (host 127.0.0.1, free HTTP and gRPC
//! ports, metrics server off, `parallel_workers: 0`: one process, inference in it; `server_name`
//! = the deployment, so `ServerMetadata` tells which server answered) and a model folder whose
//! `model-settings.json` names the model and version (`platform` = the deployment, so
//! `ModelMetadata` tells too). All servers start at once; readiness is the model's REST
//! `/v2/models/<m>/versions/<v>/ready` answering 200 and the gRPC port accepting connections.
//! Drop kills them (SIGKILL); if the thread is panicking their log tails are printed and the dir
//! is kept.
//!
//! Python: `$E2E_ML_PYTHON`, else `<repo>/.venv/ml/bin/python` (`make setup` installs MLServer
//! and tritonclient there, apart from the `seldon-core` of `.venv`, whose protobuf and numpy pins
//! conflict). Missing is a panic naming the install command, never a skipped test.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::client::{self, Request};
use crate::envoy::{repo_root, Envoy, EnvoyConfig};

/// How long every server of a set may take to become ready (~3.5 s each when measured here,
/// started in parallel on 2 cores).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one run of the gRPC client may take.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
const LOG_TAIL_LINES: usize = 60;

/// The deployments of `envoy/grpc.yaml`: (cluster, model, version).
pub const GRPC_DEPLOYMENTS: [(&str, &str, &str); 3] = [
    ("iris-v1", "iris", "v1"),
    ("iris-v2", "iris", "v2"),
    ("wine-w1", "wine", "w1"),
];

/// The python of the ML virtualenv: `$E2E_ML_PYTHON`, else `<repo>/.venv/ml/bin/python`.
pub fn ml_python() -> PathBuf {
    let p = match std::env::var_os("E2E_ML_PYTHON").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv/ml/bin/python"),
    };
    assert!(
        p.is_file(),
        "{} does not exist: run `make setup` (installs mlserver==1.7.1 and \
         tritonclient[grpc]==2.73.0 into .venv/ml) or set E2E_ML_PYTHON",
        p.display()
    );
    p
}

/// `integration/fixtures/grpc`: the runtime and the client.
pub fn grpc_fixtures_dir() -> PathBuf {
    repo_root().join("integration/fixtures/grpc")
}

/// One model deployment: the Envoy cluster that names it, the model and the version it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub cluster: String,
    pub model: String,
    pub version: String,
}

struct Server {
    deployment: Deployment,
    http_port: u16,
    grpc_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Server {
    fn log_path(&self) -> PathBuf {
        self.dir.join("mlserver.log")
    }

    fn log_tail(&self) -> String {
        crate::scratch::log_tail(&self.log_path(), LOG_TAIL_LINES)
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    fn is_ready(&self) -> bool {
        let d = &self.deployment;
        let path = format!("/v2/models/{}/versions/{}/ready", d.model, d.version);
        let http =
            matches!(client::send(self.http_port, &Request::get(&path)), Ok(r) if r.status == 200);
        http && TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.grpc_port)),
            Duration::from_secs(1),
        )
        .is_ok()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A set of running MLServer processes, one per deployment. See the module docs.
pub struct MlServers {
    dir: PathBuf,
    servers: Vec<Server>,
    startup: Duration,
}

impl MlServers {
    /// The three deployments of `envoy/grpc.yaml` ([`GRPC_DEPLOYMENTS`]).
    pub fn start_grpc_demo() -> MlServers {
        MlServers::start(&GRPC_DEPLOYMENTS)
    }

    /// Starts one MLServer per (cluster, model, version) and waits until all are ready. A server
    /// that exits during startup (most likely a port taken between choosing it and binding it)
    /// makes the whole set start again once with new ports; a timeout panics with the logs.
    pub fn start(deployments: &[(&str, &str, &str)]) -> MlServers {
        let deployments: Vec<Deployment> = deployments
            .iter()
            .map(|(c, m, v)| Deployment {
                cluster: c.to_string(),
                model: m.to_string(),
                version: v.to_string(),
            })
            .collect();
        match MlServers::try_start(&deployments) {
            Ok(s) => s,
            Err(first) => {
                eprintln!("MLServer start failed, retrying once with new ports:\n{first}");
                MlServers::try_start(&deployments).unwrap_or_else(|e| panic!("{e}"))
            }
        }
    }

    fn try_start(deployments: &[Deployment]) -> Result<MlServers, String> {
        let python = ml_python();
        let dir = crate::scratch::temp_dir("mlserver");
        let ports = crate::scratch::free_ports(2 * deployments.len());
        let started = Instant::now();
        let mut set = MlServers {
            dir: dir.clone(),
            servers: Vec::new(),
            startup: Duration::ZERO,
        };
        for (i, d) in deployments.iter().enumerate() {
            let mut server = Server {
                deployment: d.clone(),
                http_port: ports[2 * i],
                grpc_port: ports[2 * i + 1],
                dir: dir.join(&d.cluster),
                child: None,
            };
            write_server_files(&server);
            server.child = Some(spawn(&python, &server));
            set.servers.push(server);
        }
        let deadline = started + START_TIMEOUT;
        let mut pending: Vec<usize> = (0..set.servers.len()).collect();
        while !pending.is_empty() {
            for i in 0..set.servers.len() {
                if let Some(status) = set.servers[i].exited() {
                    // Dropping `set` (not panicking) kills the others and removes the dir.
                    return Err(format!(
                        "MLServer {} exited during startup ({status})\n{}",
                        set.servers[i].deployment.cluster,
                        set.log_tails()
                    ));
                }
            }
            pending.retain(|&i| !set.servers[i].is_ready());
            if pending.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let names: Vec<&str> = pending
                    .iter()
                    .map(|&i| set.servers[i].deployment.cluster.as_str())
                    .collect();
                panic!(
                    "MLServer {names:?} not ready within {START_TIMEOUT:?} (dir {})\n{}",
                    dir.display(),
                    set.log_tails()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
        set.startup = started.elapsed();
        Ok(set)
    }

    /// How long the set took from the first spawn to every server ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    fn server(&self, cluster: &str) -> &Server {
        self.servers
            .iter()
            .find(|s| s.deployment.cluster == cluster)
            .unwrap_or_else(|| panic!("no MLServer for cluster {cluster:?}"))
    }

    /// The gRPC ports by cluster name: the ports `{{PORT:<cluster>}}` of `envoy/grpc.yaml`.
    pub fn grpc_ports(&self) -> BTreeMap<String, u16> {
        self.servers
            .iter()
            .map(|s| (s.deployment.cluster.clone(), s.grpc_port))
            .collect()
    }

    pub fn grpc_port(&self, cluster: &str) -> u16 {
        self.server(cluster).grpc_port
    }

    /// The REST (KServe v2 over HTTP/1.1) port of a deployment.
    pub fn http_port(&self, cluster: &str) -> u16 {
        self.server(cluster).http_port
    }

    pub fn deployments(&self) -> Vec<Deployment> {
        self.servers.iter().map(|s| s.deployment.clone()).collect()
    }

    /// SIGKILLs one deployment's server (its port then refuses connections: Envoy answers the
    /// calls routed there itself, UNAVAILABLE).
    pub fn kill(&mut self, cluster: &str) {
        self.servers
            .iter_mut()
            .find(|s| s.deployment.cluster == cluster)
            .unwrap_or_else(|| panic!("no MLServer for cluster {cluster:?}"))
            .kill();
    }

    /// A server's whole log.
    pub fn log(&self, cluster: &str) -> String {
        fs::read_to_string(self.server(cluster).log_path()).unwrap_or_default()
    }

    fn log_tails(&self) -> String {
        self.servers
            .iter()
            .map(|s| {
                format!(
                    "--- MLServer {} (http {}, grpc {}) ---\n{}",
                    s.deployment.cluster,
                    s.http_port,
                    s.grpc_port,
                    s.log_tail()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for MlServers {
    fn drop(&mut self) {
        self.servers.iter_mut().for_each(Server::kill);
        crate::scratch::remove_or_keep(&self.dir, "MLServer logs", || self.log_tails());
    }
}

fn write_server_files(s: &Server) {
    let d = &s.deployment;
    let model_dir = s.dir.join(&d.model);
    fs::create_dir_all(&model_dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", model_dir.display()));
    let settings = serde_json::json!({
        "host": "127.0.0.1",
        "http_port": s.http_port,
        "grpc_port": s.grpc_port,
        // No metrics server (it would need a third port) and no /metrics route.
        "metrics_endpoint": null,
        // One process: inference runs in the server process, no worker pool to start.
        "parallel_workers": 0,
        "server_name": d.cluster,
        "debug": false,
        "load_models_at_startup": true,
    });
    let model = serde_json::json!({
        "name": d.model,
        "implementation": "deployment_runtime.DeploymentRuntime",
        "platform": d.cluster,
        "parameters": { "version": d.version, "extra": { "deployment": d.cluster } },
    });
    for (path, value) in [
        (s.dir.join("settings.json"), settings),
        (model_dir.join("model-settings.json"), model),
    ] {
        fs::write(&path, value.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

fn spawn(python: &Path, s: &Server) -> Child {
    let log = File::create(s.log_path())
        .unwrap_or_else(|e| panic!("create {}: {e}", s.log_path().display()));
    let log2 = log.try_clone().expect("clone log file handle");
    Command::new(python)
        // The `mlserver` command, whatever the script's location.
        .arg("-c")
        .arg("import sys; from mlserver.cli.main import main; sys.argv[0] = 'mlserver'; main()")
        .arg("start")
        .arg(&s.dir)
        .current_dir(&s.dir)
        .env("PYTHONPATH", grpc_fixtures_dir())
        .env("PYTHONUNBUFFERED", "1")
        // No __pycache__ in the repository's fixtures directory.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn MLServer {}: {e}", s.deployment.cluster))
}

/// One call's outcome as `integration/fixtures/grpc/client.py` prints it.
#[derive(Debug, Clone, Deserialize)]
pub struct GrpcCall {
    /// Index of the call in the array sent (repeats share it).
    pub i: usize,
    pub op: String,
    pub ok: bool,
    /// gRPC status code name: `OK`, `NOT_FOUND`, `INVALID_ARGUMENT`, ...
    pub code: String,
    /// `grpc-message`.
    pub message: String,
    /// The deployment that answered, when the answer says (infer, model/server metadata).
    pub deployment: Option<String>,
    /// The answer: ready flag, metadata fields.
    pub value: serde_json::Value,
    pub initial_metadata: BTreeMap<String, String>,
    pub trailing_metadata: BTreeMap<String, String>,
    pub elapsed_ms: f64,
}

impl GrpcCall {
    /// A response metadata value: initial metadata, else trailing (a trailers-only response
    /// carries everything in its only header block, which gRPC clients read as trailers).
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.initial_metadata
            .get(name)
            .or_else(|| self.trailing_metadata.get(name))
            .map(String::as_str)
    }
}

/// Runs the gRPC client once against `127.0.0.1:<port>` with these calls (a JSON array, see
/// `integration/fixtures/grpc/client.py`) and returns one outcome per call run, in order. Panics
/// with the client's output if it fails or runs longer than [`CLIENT_TIMEOUT`].
pub fn run_grpc_client(port: u16, calls: &serde_json::Value) -> Vec<GrpcCall> {
    let python = ml_python();
    let dir = crate::scratch::temp_dir("grpc-client");
    let (out_path, err_path) = (dir.join("stdout.jsonl"), dir.join("stderr.log"));
    let mut child = Command::new(&python)
        .arg(grpc_fixtures_dir().join("client.py"))
        .arg(format!("127.0.0.1:{port}"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::piped())
        .stdout(File::create(&out_path).expect("create client stdout"))
        .stderr(File::create(&err_path).expect("create client stderr"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} client.py: {e}", python.display()));
    {
        let mut stdin = child.stdin.take().expect("client stdin");
        stdin
            .write_all(calls.to_string().as_bytes())
            .expect("write the calls to the client");
    }
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the client") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the gRPC client ran longer than {CLIENT_TIMEOUT:?}\nstdout:\n{}\nstderr:\n{}",
                fs::read_to_string(&out_path).unwrap_or_default(),
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let out = fs::read_to_string(&out_path).unwrap_or_default();
    let err = fs::read_to_string(&err_path).unwrap_or_default();
    let _ = fs::remove_dir_all(&dir);
    assert!(
        status.success(),
        "the gRPC client failed ({status})\nstdout:\n{out}\nstderr:\n{err}"
    );
    out.lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("client output line {l:?}: {e}\nstderr:\n{err}"))
        })
        .collect()
}

/// MLServer for every deployment of `envoy/grpc.yaml` plus one Envoy in front of them.
/// Fields drop in order: Envoy stops before the model servers.
pub struct GrpcHarness {
    pub envoy: Envoy,
    pub servers: MlServers,
}

impl GrpcHarness {
    /// Starts the servers of [`GRPC_DEPLOYMENTS`], then Envoy with `envoy/grpc.yaml` and this
    /// plugin configuration at `concurrency` workers.
    pub fn start(plugin_config: &serde_json::Value, concurrency: u32) -> GrpcHarness {
        let servers = MlServers::start_grpc_demo();
        let config =
            EnvoyConfig::new("grpc.yaml", plugin_config.to_string()).concurrency(concurrency);
        let envoy = Envoy::start_with_ports(&config, &servers.grpc_ports());
        GrpcHarness { envoy, servers }
    }

    /// Runs the gRPC client through Envoy's listener.
    pub fn calls(&self, calls: &serde_json::Value) -> Vec<GrpcCall> {
        run_grpc_client(self.envoy.port(), calls)
    }

    /// `cluster.<name>.upstream_rq_total` of every deployment.
    pub fn upstream_requests(&self) -> BTreeMap<String, u64> {
        self.servers
            .deployments()
            .into_iter()
            .map(|d| {
                let n = self
                    .envoy
                    .counter(&format!("cluster.{}.upstream_rq_total", d.cluster));
                (d.cluster, n)
            })
            .collect()
    }
}
