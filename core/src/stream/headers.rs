//! The request's headers as a stream reads them. A decision often reads several (method, type,
//! length, encoding, the model header, ...), each a host call: the first read asks for that one
//! header; from the second on, the whole map is read in one call and later reads are lookups,
//! until the filter writes a request header (then the host is asked again). A request that reads
//! one header pays one call, as before.

use std::cell::RefCell;
use std::ops::Range;

use crate::host::{Host, Map};
use crate::payload::pair_ranges;

#[derive(Default)]
pub(super) struct HeaderCache(RefCell<State>);

#[derive(Default)]
enum State {
    /// Nothing kept; `true` once a header was read one by one.
    #[default]
    Fresh,
    ReadOnce,
    /// Every header, in order, as the host sent them: the host's buffer and where each name
    /// and value lies in it. Only a value looked up is
    /// copied, instead of two allocations per header of the request.
    Loaded(Vec<u8>, Vec<(Range<usize>, Range<usize>)>),
    /// The map could not be read whole: one call per header.
    Unavailable,
}

impl HeaderCache {
    /// One request header (the first value of a repeated one; `None` when absent or not
    /// UTF-8, as the single-header call answers).
    pub(super) fn get(&self, host: &dyn Host, name: &str) -> Option<String> {
        let Ok(mut state) = self.0.try_borrow_mut() else {
            return host.request_header(name);
        };
        match &*state {
            State::Fresh => {
                *state = State::ReadOnce;
                return host.request_header(name);
            }
            State::Unavailable => return host.request_header(name),
            State::ReadOnce => {
                *state = match host.header_map(Map::RequestHeaders) {
                    // A name that is not UTF-8 (HTTP codecs let none through) can never
                    // equal the UTF-8 `name` looked up, so it needs no check here.
                    Ok(bytes) => {
                        let bytes = bytes.unwrap_or_default();
                        pair_ranges(&bytes)
                            .map_or(State::Unavailable, |pairs| State::Loaded(bytes, pairs))
                    }
                    Err(_) => State::Unavailable,
                };
            }
            State::Loaded(..) => {}
        }
        match &*state {
            State::Loaded(bytes, pairs) => pairs
                .iter()
                .find(|(n, _)| {
                    bytes
                        .get(n.clone())
                        .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
                })
                .and_then(|(_, v)| bytes.get(v.clone()))
                .and_then(|v| String::from_utf8(v.to_vec()).ok()),
            _ => host.request_header(name),
        }
    }

    /// The filter changed the request's headers: what is kept is stale.
    pub(super) fn forget(&self) {
        if let Ok(mut state) = self.0.try_borrow_mut() {
            *state = State::Fresh;
        }
    }
}
