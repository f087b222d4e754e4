//! The contexts Envoy created in this VM, by id, and which context sent each HTTP callout.
//!
//! A root context (`root_context_id == 0` at creation; one per plugin configuration sharing the
//! VM) is the core's `Root`; an HTTP context is the core's `Stream`, made by its root. A stream
//! of a root without a configuration is not kept: it passes through, as an unknown id does
//! (every callback answers Continue, `on_done` true).
//!
//! Envoy sends every HTTP callout from the root context and delivers its answer there
//! (proxy-wasm-cpp-host's `http_call`), so, as the SDK's dispatcher did, the shell keeps the
//! context each token was sent from and hands the answer to that one, made the effective
//! context for the host calls that follow.
//!
//! Both tables are Vecs sorted by key: Envoy's context ids and callout tokens only grow, so a
//! new entry is a push, a lookup a binary search, and a removal moves pointer-sized entries
//! (streams are boxed). The state is per VM; a wasm VM runs one thread.

use std::cell::RefCell;

use inference_router_core::plugin::{Build, VmState};
use inference_router_core::root::Root;
use inference_router_core::say;
use inference_router_core::stream::Stream;

use super::abi;

const VERSION: &str = env!("CARGO_PKG_VERSION");
const GIT_SHA: &str = env!("INFERENCE_ROUTER_GIT_SHA");

/// Every context of this VM.
pub(crate) struct Contexts {
    roots: Vec<(u32, Root)>,
    /// HTTP contexts, sorted by id.
    streams: Vec<(u32, Box<Stream>)>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = const {
        RefCell::new(Contexts { roots: Vec::new(), streams: Vec::new() })
    };
    /// Callouts in flight: (token, id of the context that sent it), sorted by token.
    static CALLOUTS: RefCell<Vec<(u32, u32)>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on the contexts; `otherwise` if they are already in use (a callback re-entered
/// from a host call, which Envoy does not do: it defers what a host call triggers).
pub(crate) fn with<R>(otherwise: R, f: impl FnOnce(&mut Contexts) -> R) -> R {
    CONTEXTS.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => f(&mut c),
        Err(_) => otherwise,
    })
}

impl Contexts {
    pub fn root(&mut self, id: u32) -> Option<&mut Root> {
        self.roots
            .iter_mut()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r)
    }

    pub fn stream(&mut self, id: u32) -> Option<&mut Stream> {
        let at = self.streams.binary_search_by_key(&id, |(i, _)| *i).ok()?;
        self.streams.get_mut(at).map(|(_, s)| &mut **s)
    }

    pub fn add_root(&mut self, id: u32, root: Root) {
        match self.root(id) {
            Some(r) => *r = root,
            None => self.roots.push((id, root)),
        }
    }

    /// The HTTP context `id` of root `root_id`; none (it passes through) when that root has no
    /// configuration.
    pub fn add_stream(&mut self, id: u32, root_id: u32) {
        let Some(stream) = self.root(root_id).and_then(|r| r.stream(id)) else {
            return;
        };
        let stream = Box::new(stream);
        match self.streams.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(at) => {
                if let Some(slot) = self.streams.get_mut(at) {
                    slot.1 = stream;
                }
            }
            Err(at) => self.streams.insert(at, (id, stream)),
        }
    }

    /// Removes (drops) context `id`.
    pub fn remove(&mut self, id: u32) {
        if let Ok(at) = self.streams.binary_search_by_key(&id, |(i, _)| *i) {
            self.streams.remove(at);
        } else if let Some(at) = self.roots.iter().position(|(i, _)| *i == id) {
            self.roots.swap_remove(at);
        }
    }
}

/// A new root context's state: its own seeds (distinct per VM start, so decision ids and draws
/// do not repeat across restarts) and this build's version.
pub(crate) fn new_root() -> Root {
    let build = Build {
        version: VERSION,
        commit: GIT_SHA,
    };
    inference_router_core::inspect::seen::seed_key_hash(entropy_u64());
    Root::new(VmState::new(entropy_u64(), entropy_u64()).with_build(build))
}

pub(crate) fn log_start() {
    say::info(
        say::NONE,
        format_args!("inference-router {VERSION} ({GIT_SHA}) starting"),
    );
}

fn entropy_u64() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom::fill(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(e) => {
            say::warn(
                say::ROOT,
                format_args!("getrandom failed ({e}); seeding from the clock"),
            );
            abi::now_nanos().unwrap_or(0x5eed)
        }
    }
}

/// Records that `context` sent the callout `token`.
pub(crate) fn callout_sent(token: u32, context: u32) {
    CALLOUTS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            match c.binary_search_by_key(&token, |(t, _)| *t) {
                Ok(at) => {
                    if let Some(slot) = c.get_mut(at) {
                        slot.1 = context;
                    }
                }
                Err(at) => c.insert(at, (token, context)),
            }
        }
    });
}

/// The context that sent callout `token`, forgotten as its answer arrives.
pub(crate) fn callout_answered(token: u32) -> Option<u32> {
    CALLOUTS.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        let at = c.binary_search_by_key(&token, |(t, _)| *t).ok()?;
        Some(c.remove(at).1)
    })
}

/// Forgets the callouts of a deleted context: Envoy cancels those it still had, and an answer
/// to one would find no context anyway.
pub(crate) fn forget_callouts(context: u32) {
    CALLOUTS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.retain(|(_, ctx)| *ctx != context);
        }
    });
}
