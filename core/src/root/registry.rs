//! The root context's side of the model registry (`crate::registry`): its callouts go through
//! the root's `Pending` with `Then::Registry`, and a new snapshot replaces the root's plugin
//! (new streams use the new one; running streams keep theirs).

use std::rc::Rc;

use super::{prepare_state, Root, Then};
use crate::callout::Answer;
use crate::host::{Call, Host};
use crate::plugin::{now_ms, Plugin};
use crate::quote::quoted;

impl Root {
    /// On each tick: apply a newer snapshot, then start a poll when one is due and this VM
    /// claims it. The plugin to go on with.
    pub(super) fn registry_tick(&mut self, host: &dyn Host, plugin: Rc<Plugin>) -> Rc<Plugin> {
        let Some(poller) = self.registry.as_mut() else {
            return plugin;
        };
        poller.drain_retired(&plugin);
        let mut plugin = plugin;
        if let Some(next) = poller.refresh(host, &plugin) {
            plugin = self.replace_plugin(host, next);
        }
        let now = now_ms(host);
        let Some(poller) = self.registry.as_mut() else {
            return plugin;
        };
        let (requests, next) = poller.due(host, &plugin, now);
        if let Some(next) = next {
            plugin = self.replace_plugin(host, next);
        }
        for r in requests {
            let Some(poller) = self.registry.as_ref() else {
                break;
            };
            let s = poller.settings();
            let headers = [
                (":method", "GET"),
                (":path", r.path.as_str()),
                (":authority", s.authority.as_str()),
                ("accept", "application/json"),
            ];
            let call = Call {
                cluster: &s.cluster,
                headers: &headers,
                body: b"",
                timeout_ms: s.timeout_ms,
            };
            let then = Then::Registry {
                seq: r.seq,
                index: r.index,
            };
            if let Err(status) = self.pending.send(host, &call, then) {
                let why = format!(
                    "the callout to cluster {} was not started (host status {status})",
                    quoted(&s.cluster)
                );
                if let Some(poller) = self.registry.as_mut() {
                    poller.not_sent(host, &plugin, r.seq, why, now);
                }
                break;
            }
        }
        plugin
    }

    /// A registry callout answered (its body not yet read).
    pub(super) fn registry_answered(
        &mut self,
        host: &dyn Host,
        seq: u64,
        index: usize,
        body_size: usize,
    ) {
        let (Some(plugin), Some(poller)) = (self.plugin.clone(), self.registry.as_mut()) else {
            return;
        };
        let max = poller.max_answer_bytes();
        let answer = if body_size > max {
            Err(format!("its answer is larger than {max} bytes"))
        } else {
            Ok(Answer::read(host, body_size))
        };
        if let Some(next) = poller.answered(host, &plugin, seq, index, answer, now_ms(host)) {
            self.replace_plugin(host, next);
        }
    }

    /// Installs a plugin rebuilt from the registry: its shared state prepared as a configured
    /// plugin's is; the old one kept until its streams end.
    fn replace_plugin(&mut self, host: &dyn Host, next: Plugin) -> Rc<Plugin> {
        let next = Rc::new(next);
        prepare_state(host, &next);
        if let (Some(old), Some(poller)) = (
            self.plugin.replace(Rc::clone(&next)),
            self.registry.as_mut(),
        ) {
            poller.retire(old);
        }
        next
    }
}
