//! The proxy-wasm adapter: the only module that calls the host. It translates host callbacks
//! into calls of the pure core (`config`, `policy`, `payload`) and applies what the core decides.
//! Host calls go through `hostcalls` directly: the SDK's convenience methods unwrap host errors,
//! and a panic here would kill the VM.

mod http;
mod metrics;

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};

use crate::config::{self, Config};
use crate::policy::DecisionIds;
use crate::rng::Rng;

proxy_wasm::main! {{
    // Also installs a panic hook that logs at critical level before the VM aborts.
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const GIT_SHA: &str = env!("INFERENCE_ROUTER_GIT_SHA");

/// What every HTTP context of one plugin instance shares.
pub(crate) struct Plugin {
    pub cfg: Config,
    pub metrics: metrics::Metrics,
}

/// Per-VM state shared by the root and its HTTP contexts (one VM is one thread: Rc is enough).
#[derive(Clone)]
pub(crate) struct VmState {
    pub rng: Rc<RefCell<Rng>>,
    pub ids: Rc<RefCell<DecisionIds>>,
}

#[derive(Default)]
struct Root {
    plugin: Option<Rc<Plugin>>,
    vm: Option<VmState>,
}

/// `log` has no critical level; configuration refusals use the host's directly.
fn critical(message: &str) {
    let _ = hostcalls::log(LogLevel::Critical, message);
}

fn entropy_u64() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom::fill(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(e) => {
            // Still unique enough per VM to keep decision ids apart; logged because weighted
            // draws would then repeat across restarts.
            log::warn!("inference-router: getrandom failed ({e}); seeding from the clock");
            hostcalls::get_current_time()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed)
        }
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        log::info!("inference-router {VERSION} ({GIT_SHA}) starting");
        self.vm = Some(VmState {
            rng: Rc::new(RefCell::new(Rng::seed_from_u64(entropy_u64()))),
            ids: Rc::new(RefCell::new(DecisionIds::new(entropy_u64()))),
        });
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            Ok(None) => Vec::new(),
            Err(status) => {
                critical(&format!(
                    "inference-router: cannot read the plugin configuration: {status:?}"
                ));
                return false;
            }
        };
        let cfg = match config::parse(&bytes) {
            Ok(cfg) => cfg,
            Err(e) => {
                critical(&format!("inference-router: invalid configuration: {e}"));
                return false;
            }
        };
        let metrics = match metrics::Metrics::define(&cfg) {
            Ok(m) => m,
            Err(e) => {
                critical(&format!("inference-router: cannot define metrics: {e}"));
                return false;
            }
        };
        log::info!(
            "inference-router: configured {} model(s), {} rule(s), body source {:?}",
            cfg.models.len(),
            cfg.rules.len(),
            cfg.body.source
        );
        self.plugin = Some(Rc::new(Plugin { cfg, metrics }));
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let plugin = self.plugin.clone()?;
        let vm = self.vm.clone().unwrap_or_else(|| VmState {
            rng: Rc::new(RefCell::new(Rng::seed_from_u64(entropy_u64()))),
            ids: Rc::new(RefCell::new(DecisionIds::new(entropy_u64()))),
        });
        Some(Box::new(http::Http::new(context_id, plugin, vm)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
