#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Helpers shared by the native tests: a request made of a header list.

use inference_router_core::policy::RequestView;

#[derive(Default, Clone)]
pub struct Req(pub Vec<(String, String)>);

impl Req {
    pub fn new(method: &str, path: &str) -> Self {
        Req(vec![
            (":method".into(), method.into()),
            (":path".into(), path.into()),
        ])
    }
    pub fn h(mut self, name: &str, value: &str) -> Self {
        self.0.push((name.into(), value.into()));
        self
    }
}

impl RequestView for Req {
    fn header(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}
