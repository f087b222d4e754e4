//! Which build of the filter is which: the version and commit a build reports (state endpoint
//! `build`, gauge `inference_router.build.<version>.<commit>`), and the second build the upgrade
//! test switches to.
//!
//! The upgrade build (`scripts/upgrade-build.sh`, part of `make test-e2e`) is the same source
//! and features as `make build`, compiled into `target/upgrade` with `build.rs` reading a scratch
//! git repository: it reports another commit, so a test can tell from Envoy's answers which
//! build serves. Nothing in the checkout is touched to make it.

use std::path::PathBuf;
use std::process::Command;

use crate::envoy::repo_root;

/// The filter's version: `version` of `[package]` in the root `Cargo.toml`.
pub fn filter_version() -> String {
    let path = repo_root().join("Cargo.toml");
    let toml =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let package = toml.split("[package]").nth(1).expect("a [package] section");
    package
        .lines()
        .find(|l| l.starts_with("version"))
        .and_then(|l| l.split('"').nth(1))
        .expect("a version in [package]")
        .to_string()
}

/// The commit `build.rs` embeds in a build of this checkout: git's 12-digit short HEAD.
pub fn head_commit() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .output()
        .expect("run git rev-parse");
    assert!(out.status.success(), "git rev-parse --short=12 HEAD failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The gauge a build sets to 1: `inference_router.build.<version, dots as _>.<commit>`.
pub fn build_gauge(version: &str, commit: &str) -> String {
    format!(
        "inference_router.build.{}.{commit}",
        version.replace('.', "_")
    )
}

fn upgrade_dir() -> PathBuf {
    repo_root().join("target/upgrade")
}

/// The upgrade build, `target/upgrade/wasm32-wasip1/release/inference_router.wasm`. Panics,
/// naming the command that builds it, when it is missing.
pub fn upgrade_wasm_path() -> PathBuf {
    let p = upgrade_dir().join("wasm32-wasip1/release/inference_router.wasm");
    assert!(
        p.is_file(),
        "the upgrade build {} does not exist: run `scripts/upgrade-build.sh` (part of `make \
         test-e2e`)",
        p.display()
    );
    p
}

/// The commit the upgrade build reports (`target/upgrade/commit`, written by the script).
pub fn upgrade_build_commit() -> String {
    let path = upgrade_dir().join("commit");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "read {}: {e} (run `scripts/upgrade-build.sh`, part of `make test-e2e`)",
            path.display()
        )
    });
    text.trim().to_string()
}
