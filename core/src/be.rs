//! A `u64` as its 8 big-endian bytes and back (MessagePack's integers and floats, the decision
//! token's MAC input, spent ids, the reward budget table), through one out-of-line copy each
//! way in the wasm module: wasm has no byte swap, so `to_be_bytes` / `from_be_bytes` inlined
//! are ~80 bytes of shifts and masks at every use.

/// `v.to_be_bytes()`. Out of line in the wasm module only: a native target has a byte swap
/// instruction, inlined it is smaller and faster than a call.
#[cfg_attr(target_arch = "wasm32", inline(never))]
pub fn to_be(v: u64) -> [u8; 8] {
    v.to_be_bytes()
}

/// `u64::from_be_bytes(bytes)`, out of line in the wasm module only (see [`to_be`]).
#[cfg_attr(target_arch = "wasm32", inline(never))]
pub fn from_be(bytes: [u8; 8]) -> u64 {
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::{from_be, to_be};

    #[test]
    fn same_bytes_as_std() {
        for v in [0, 1, 0x0102_0304_0506_0708, u64::MAX, 1 << 63] {
            assert_eq!(to_be(v), v.to_be_bytes());
            assert_eq!(from_be(v.to_be_bytes()), v);
            assert_eq!(
                from_be(v.to_le_bytes()),
                u64::from_be_bytes(v.to_le_bytes())
            );
        }
    }
}
