//! Proxy-wasm shared data as the core's `SharedStore`.

use super::abi;
use crate::bandit::{SharedStore, StoreError};

pub(crate) struct HostStore;

impl SharedStore for HostStore {
    fn get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), StoreError> {
        abi::get_shared_data(key)
            .map_err(|s| StoreError::Host(format!("get_shared_data status {s}")))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        abi::set_shared_data(key, value, cas).map_err(|s| {
            if s == abi::CAS_MISMATCH {
                StoreError::CasMismatch
            } else {
                StoreError::Host(format!("set_shared_data status {s}"))
            }
        })
    }
}
