//! Learning as one fleet through etcd's v3 JSON gateway, as written.

use super::default_true;
use crate::config::read::read_struct;

#[derive(Debug)]
pub struct FleetDto {
    pub cluster: String,
    pub prefix: String,
    pub sync_ms: u32,
    pub timeout_ms: Option<u32>,
    pub authority: Option<String>,
    pub replica: Option<String>,
    pub retire_after_seconds: u64,
    pub warm_start: bool,
    pub auth: Option<FleetAuthDto>,
}

read_struct!(FleetDto {
    cluster: req,
    prefix: or(default_fleet_prefix),
    sync_ms: or(default_sync_ms),
    timeout_ms: or_default,
    authority: or_default,
    replica: or_default,
    retire_after_seconds: or(default_retire_after),
    warm_start: or(default_true),
    auth: or_default,
});

#[derive(Debug)]
pub struct FleetAuthDto {
    pub username: String,
    pub password: String,
}

read_struct!(FleetAuthDto {
    username: req,
    password: req,
});

fn default_fleet_prefix() -> String {
    "/inference-router".into()
}
fn default_sync_ms() -> u32 {
    1000
}
fn default_retire_after() -> u64 {
    600
}
