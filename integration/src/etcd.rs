//! A real etcd cluster for tests: `members` etcd processes (etcd 3.4, `make setup` installs
//! Debian's `etcd-server`) on free loopback ports, each with its own data dir and log file under
//! one temp dir. Members can be SIGKILLed and restarted on the same ports and data. Requests go
//! through etcd's JSON gateway (`/v3/kv/put`, `/v3/kv/range`, ...) with [`EtcdCluster::post`].
//!
//! The binary is `ETCD_BIN` or `etcd` on `PATH`; missing is a panic, never a skipped test.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How long a (re)started cluster or member may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Per-request timeout of [`EtcdCluster::post`] and the health probes.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response accepted (bounds memory if something goes wrong).
const MAX_RESPONSE_BYTES: u64 = 16 << 20;
const LOG_TAIL_LINES: usize = 40;

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    /// A Mutex so that kill/restart take `&self` (tests keep closures borrowing the cluster).
    child: Mutex<Option<Child>>,
}

impl Member {
    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn log_tail(&self) -> String {
        crate::scratch::log_tail(&self.log_path(), LOG_TAIL_LINES)
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(status)` if the process exited on its own.
    fn exited(&self) -> Option<String> {
        let mut guard = self.child();
        match guard.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }
}

/// A running etcd cluster. Dropping it kills every member and removes its temp dir; if the
/// thread is panicking (a failed test) the dir is kept and each member's log tail is printed.
pub struct EtcdCluster {
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
    /// `--auth-token` (JWT signed with a key in `dir`), when the cluster has one.
    auth_token: Option<String>,
}

fn etcd_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCD_BIN") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("etcd not found (set ETCD_BIN or run `make setup`)"))
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

impl EtcdCluster {
    /// Starts `members` members (`m0`, `m1`, ...) and waits until every one is healthy. Panics
    /// with every member's log tail if that takes longer than ~20 s.
    pub fn start(members: usize) -> EtcdCluster {
        EtcdCluster::start_opts(members, false)
    }

    /// Like [`EtcdCluster::start`], with JWT auth tokens (RS256, a key made with `openssl`):
    /// valid on every member, unlike etcd's default "simple" tokens, which only the member
    /// that issued them knows. See [`EtcdCluster::enable_auth`].
    pub fn start_with_jwt(members: usize) -> EtcdCluster {
        EtcdCluster::start_opts(members, true)
    }

    fn start_opts(members: usize, jwt: bool) -> EtcdCluster {
        assert!(members > 0, "EtcdCluster::start: need at least one member");
        match EtcdCluster::try_start(members, jwt) {
            Ok(c) => c,
            Err(first) => {
                // Most likely a port taken between free_ports() and etcd's bind: retry once.
                eprintln!("etcd cluster start failed, retrying once with new ports:\n{first}");
                EtcdCluster::try_start(members, jwt).unwrap_or_else(|e| panic!("{e}"))
            }
        }
    }

    /// Err only for a member that exited early (e.g. could not bind); a timeout panics.
    fn try_start(n: usize, jwt: bool) -> Result<EtcdCluster, String> {
        let dir = crate::scratch::temp_dir("etcd");
        // Unique per cluster: the members' initial cluster token.
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ports = crate::scratch::free_ports(2 * n);
        let members = (0..n)
            .map(|i| {
                let m = Member {
                    name: format!("m{i}"),
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    dir: dir.join(format!("m{i}")),
                    child: Mutex::new(None),
                };
                fs::create_dir_all(&m.dir)
                    .unwrap_or_else(|e| panic!("create {}: {e}", m.dir.display()));
                m
            })
            .collect();
        let auth_token = jwt.then(|| jwt_token_option(&dir));
        let cluster = EtcdCluster {
            dir,
            token: format!("inference-router-{id}"),
            members,
            auth_token,
        };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        // On Err, dropping `cluster` (not panicking yet) kills the members and removes the dir.
        cluster.wait_healthy(&(0..n).collect::<Vec<_>>(), "start")?;
        Ok(cluster)
    }

    fn spawn(&self, i: usize, state: &str) {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, url(m.peer_port)))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let mut slot = m.child();
        assert!(slot.is_none(), "etcd member m{i} is already running");
        // Append: the log of a restarted member keeps its previous life.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(m.log_path())
            .unwrap_or_else(|e| panic!("open {}: {e}", m.log_path().display()));
        let log2 = log.try_clone().expect("clone log file handle");
        let (client, peer) = (url(m.client_port), url(m.peer_port));
        let child = Command::new(etcd_binary())
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", m.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={initial_cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg(format!("--initial-cluster-token={}", self.token))
            .args(["--logger=zap", "--log-outputs=stderr"])
            // Faster leader election after a kill than the 100 ms / 1 s defaults.
            .args(["--heartbeat-interval=50", "--election-timeout=500"])
            // A restarted member must not depose a healthy leader (the default in etcd 3.5+).
            .arg("--pre-vote=true")
            .args(self.auth_token.iter().map(|t| format!("--auth-token={t}")))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn etcd member {i}: {e}"));
        *slot = Some(child);
    }

    fn is_healthy(&self, i: usize) -> bool {
        let port = self.members[i].client_port;
        let health = matches!(request(port, "GET", "/health", None),
            Ok((200, body)) if body.replace(' ', "").contains("\"health\":\"true\""));
        health
            && matches!(
                self.post(i, "/v3/kv/range", r#"{"key":"AA=="}"#),
                Ok((200, _))
            )
    }

    /// Waits until every member in `which` is healthy. Err if one exits; panics on timeout.
    fn wait_healthy(&self, which: &[usize], what: &str) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending: Vec<usize> = which.to_vec();
        while Instant::now() < deadline {
            for &i in which {
                if let Some(status) = self.members[i].exited() {
                    return Err(format!(
                        "etcd member m{i} ({}) exited during {what} ({status})\n{}",
                        etcd_binary().display(),
                        self.log_tails()
                    ));
                }
            }
            pending.retain(|&i| !self.is_healthy(i));
            if pending.is_empty() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd {what}: members {pending:?} not healthy within {START_TIMEOUT:?} \
             (dir {})\n{}",
            self.dir.display(),
            self.log_tails()
        );
    }

    fn log_tails(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- etcd {} ({}) ---\n{}",
                    m.name,
                    url(m.client_port),
                    m.log_tail()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every member's client URL, e.g. `http://127.0.0.1:41234`.
    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(|m| url(m.client_port)).collect()
    }

    pub fn client_url(&self, i: usize) -> String {
        url(self.members[i].client_port)
    }

    /// Member `i`'s client port.
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client_port
    }

    /// The members' client ports as template ports: `etcd-0`, `etcd-1`, ... (`envoy/fleet.yaml`).
    pub fn ports(&self) -> std::collections::BTreeMap<String, u16> {
        (0..self.members.len())
            .map(|i| (format!("etcd-{i}"), self.members[i].client_port))
            .collect()
    }

    /// The cluster's temp dir (`m{i}/data`, `m{i}/etcd.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Member `i`'s whole log (all its lives).
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.members[i].log_path()).unwrap_or_default()
    }

    /// SIGKILLs member `i`; its data dir and ports are kept for [`EtcdCluster::restart`].
    /// If a quorum is still running, waits until every running member serves linearizable
    /// reads again (killing the leader makes them answer 503 "leader changed" until a new one
    /// is elected, ~0.5-1 s), so a test can use the survivors right away.
    pub fn kill(&self, i: usize) {
        self.members[i].kill();
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&j| self.members[j].child().is_some())
            .collect();
        if 2 * running.len() > self.members.len() {
            if let Err(e) = self.wait_healthy(&running, &format!("re-election after killing m{i}"))
            {
                panic!("{e}");
            }
        }
    }

    /// Starts the killed member `i` again (same ports and data) and waits until it is healthy
    /// (which needs a quorum of members running).
    pub fn restart(&self, i: usize) {
        self.spawn(i, "existing");
        if let Err(e) = self.wait_healthy(&[i], &format!("restart of m{i}")) {
            panic!("{e}");
        }
    }

    /// Turns authentication on: a `root` user with this password and the root role. Only
    /// `/health` answers without a token afterwards (so [`EtcdCluster::kill`] and restarts,
    /// which read a key to tell health, are not for such a cluster).
    pub fn enable_auth(&self, root_password: &str) {
        let steps = [
            (
                "/v3/auth/user/add",
                format!(r#"{{"name":"root","password":"{root_password}"}}"#),
            ),
            ("/v3/auth/role/add", r#"{"name":"root"}"#.to_string()),
            (
                "/v3/auth/user/grant",
                r#"{"user":"root","role":"root"}"#.to_string(),
            ),
            ("/v3/auth/enable", "{}".to_string()),
        ];
        for (path, body) in steps {
            let (status, answer) = self
                .post(0, path, &body)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let exists = answer.contains("already exists");
            assert!(status == 200 || exists, "{path}: {status} {answer}");
        }
    }

    pub fn kill_all(&self) {
        self.members.iter().for_each(Member::kill);
    }

    /// Starts every stopped member again and waits until all members are healthy.
    pub fn restart_all(&self) {
        let stopped: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.members[i].child().is_none())
            .collect();
        for &i in &stopped {
            self.spawn(i, "existing");
        }
        let all: Vec<usize> = (0..self.members.len()).collect();
        if let Err(e) = self.wait_healthy(&all, "restart_all") {
            panic!("{e}");
        }
    }

    /// POSTs `json_body` to `path` on member `i` (HTTP/1.1, `Connection: close`, ~5 s
    /// timeout). Ok((status, body)) for any HTTP answer; Err for connection or protocol errors.
    pub fn post(&self, i: usize, path: &str, json_body: &str) -> Result<(u16, String), String> {
        request(self.members[i].client_port, "POST", path, Some(json_body))
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
        crate::scratch::remove_or_keep(&self.dir, "etcd logs", || self.log_tails());
    }
}

/// An RS256 key pair in `dir` (made with `openssl`), as etcd's `--auth-token` value.
fn jwt_token_option(dir: &Path) -> String {
    let (private, public) = (dir.join("jwt.key"), dir.join("jwt.pub"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("openssl (make setup installs it): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (k, p) = (private.to_string_lossy(), public.to_string_lossy());
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &k,
    ]);
    run(&["pkey", "-in", &k, "-pubout", "-out", &p]);
    format!("jwt,pub-key={p},priv-key={k},sign-method=RS256,ttl=10m")
}

/// A minimal HTTP/1.1 request to 127.0.0.1:`port`, reading the response until EOF.
fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let err = |e: std::io::Error| format!("{method} {path} to {addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(err)?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(err)?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .map_err(err)?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).map_err(err)?;
    stream.write_all(body.as_bytes()).map_err(err)?;
    let mut raw = Vec::new();
    let mut limited = (&mut stream).take(MAX_RESPONSE_BYTES);
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() > deadline {
            return Err(format!(
                "{method} {path} to {addr}: no complete answer in {REQUEST_TIMEOUT:?}"
            ));
        }
        match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => raw.extend_from_slice(&buf[..k]),
            Err(e) => return Err(err(e)),
        }
    }
    parse_response(&raw).map_err(|e| format!("{method} {path} to {addr}: {e}"))
}

fn parse_response(raw: &[u8]) -> Result<(u16, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {} bytes", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let body = if header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        dechunk(body)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad content-length {len:?}"))?;
        body.get(..len)
            .ok_or_else(|| format!("body truncated: {} of {len} bytes", body.len()))?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body: missing chunk size line")?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("chunked body: bad chunk size {size_hex:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or("chunked body: truncated chunk")?;
        out.extend_from_slice(chunk);
        data = data
            .get(size + 2..)
            .ok_or("chunked body: truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // base64("k") = "aw==", base64("v") = "dg==", base64("w") = "dw==".
    fn range_value(c: &EtcdCluster, i: usize) -> String {
        let (status, body) = c.post(i, "/v3/kv/range", r#"{"key":"aw=="}"#).unwrap();
        assert_eq!(status, 200, "range via m{i}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["kvs"][0]["value"].as_str().unwrap_or("").to_string()
    }

    fn put(c: &EtcdCluster, i: usize, value_b64: &str) {
        let body = format!(r#"{{"key":"aw==","value":"{value_b64}"}}"#);
        let (status, text) = c.post(i, "/v3/kv/put", &body).unwrap();
        assert_eq!(status, 200, "put via m{i}: {text}");
    }

    #[test]
    fn dechunks() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (200, "{}".to_string()));
    }

    #[test]
    fn etcd_cluster_survives_member_kill_and_restart() {
        let c = EtcdCluster::start(3);
        assert_eq!(c.client_urls().len(), 3);
        assert!(c.client_url(0).starts_with("http://127.0.0.1:"));
        put(&c, 0, "dg==");
        assert_eq!(range_value(&c, 2), "dg==");

        c.kill(0);
        assert!(c.post(0, "/v3/kv/range", r#"{"key":"aw=="}"#).is_err());
        assert_eq!(range_value(&c, 1), "dg==");
        put(&c, 1, "dw==");
        assert_eq!(range_value(&c, 1), "dw==");

        c.restart(0);
        assert_eq!(range_value(&c, 0), "dw==");

        c.kill_all();
        c.restart_all();
        assert_eq!(range_value(&c, 2), "dw==");
    }
}
