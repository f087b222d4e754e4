//! End-to-end harness for inference-router: the real Envoy binary with the built filter, fake
//! upstream model servers (each with a configurable [`Behaviour`]: injected failures, delays,
//! reward headers, OpenAI JSON / SSE answers with `usage`, fake evaluators), a small HTTP/1.1
//! client, admin/stats helpers, and listener reloads through LDS.
//!
//! ```no_run
//! use integration::{Harness, Request};
//! let h = Harness::demo(&serde_json::json!({
//!     "models": [{"name": "iris", "targets": [{"name": "v1", "cluster": "iris-v1", "weight": 1}]}]
//! }));
//! let r = h.send(&Request::get("/v2/models/iris/ready"));
//! assert_eq!(r.echo().cluster, "iris-v1");
//! ```
//!
//! Envoy is found through `ENVOY_BIN`, `<repo>/.venv/bin/envoy` (`make setup`) or `func-e which`;
//! the filter through `INFERENCE_ROUTER_WASM` or the release build (`make build`). Either
//! missing is a panic, never a skipped test.

pub mod builds;
pub mod client;
pub mod envoy;
pub mod etcd;
pub mod file_server;
pub mod fleet;
pub mod lds_switch;
pub mod loaded;
pub mod mlflow;
pub mod mlserver;
pub mod oci;
pub mod registry;
pub mod scratch;
pub mod template;
pub mod upstream;

pub use builds::{
    build_gauge, filter_version, head_commit, upgrade_build_commit, upgrade_wasm_path,
};
pub use client::{Connection, Request, Response};
pub use envoy::{
    envoy_binary, envoy_dir, repo_root, test_trap_wasm_path, wasm_path, Envoy, EnvoyConfig,
    Harness, LdsCounters, StartFailure, LDS_LISTENER_TEMPLATE,
};
pub use etcd::EtcdCluster;
pub use file_server::FileServer;
pub use fleet::Fleet;
pub use lds_switch::switch_listener;
pub use loaded::{LoadBehaviour, LoadMode, LoadedServers};
pub use mlflow::MlflowServer;
pub use mlserver::{
    ml_python, run_grpc_client, GrpcCall, GrpcHarness, MlServers, GRPC_DEPLOYMENTS,
};
pub use oci::ImageLayout;
pub use registry::{skopeo, Registry};
pub use upstream::{
    closed_port, fnv64_hex, Answer, Behaviour, Echo, Received, RefusedPort, Upstreams, CLUSTERS,
};
