//! Checks every Envoy configuration shipped in `envoy/` with `envoy --mode validate`.
//!
//! - Templates (files with `{{...}}` placeholders) are rendered with harmless values: the built
//!   filter's path (it must exist: `make build`), a small valid plugin configuration for the
//!   template's body mode, and placeholder ports for every `{{PORT:<cluster>}}`.
//! - Concrete files (`envoy/minimal.yaml`) are validated as they are, from the repository root,
//!   so their relative wasm path resolves as documented.
//!
//! Exits non-zero if any file fails. Usage: `cargo run -p integration --bin validate-envoy`
//! (`make validate`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use integration::template::{self, Vars};
use integration::{envoy_binary, envoy_dir, repo_root, wasm_path};

/// A small valid plugin configuration for a template (metadata mode when the template runs
/// `json_to_metadata` before the filter).
fn plugin_config_for(template_text: &str, clusters: &[String]) -> String {
    let cluster = clusters
        .first()
        .cloned()
        .unwrap_or_else(|| "iris-v1".to_string());
    let mut cfg = serde_json::json!({
        "models": [{ "name": "validate", "targets": [{ "name": "t", "cluster": cluster, "weight": 1 }] }]
    });
    if template_text.contains("envoy.filters.http.json_to_metadata") {
        cfg["body"] = serde_json::json!({ "source": "metadata" });
    }
    cfg.to_string()
}

fn validate(envoy: &Path, config: &Path) -> Result<(), String> {
    let out = Command::new(envoy)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(config)
        .arg("--disable-hot-restart")
        .arg("--log-level")
        .arg("warning")
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", envoy.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn main() -> ExitCode {
    let envoy = envoy_binary();
    let root = repo_root();
    let mut files: Vec<PathBuf> = match fs::read_dir(envoy_dir()) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) => {
            eprintln!("cannot list {}: {e}", envoy_dir().display());
            return ExitCode::FAILURE;
        }
    };
    files.sort();
    if files.is_empty() {
        eprintln!("no Envoy configurations in {}", envoy_dir().display());
        return ExitCode::FAILURE;
    }
    let out_dir =
        std::env::temp_dir().join(format!("inference-router-validate-{}", std::process::id()));
    if let Err(e) = fs::create_dir_all(&out_dir) {
        eprintln!("cannot create {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    let mut failed = 0;
    for file in &files {
        let rel = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let text = match fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("FAIL {rel}: {e}");
                failed += 1;
                continue;
            }
        };
        let (config, kind) = if text.contains("{{") {
            let clusters = template::port_placeholders(&text);
            let ports: BTreeMap<String, u16> = clusters
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), 20001 + i as u16))
                .collect();
            let vars = Vars {
                wasm_path: wasm_path(),
                plugin_config: plugin_config_for(&text, &clusters),
                ports,
                extra: BTreeMap::new(),
            };
            let rendered = match template::render(&text, &vars) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("FAIL {rel}: cannot render: {e}");
                    failed += 1;
                    continue;
                }
            };
            let name = file
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            let path = out_dir.join(name);
            if let Err(e) = fs::write(&path, rendered) {
                eprintln!("FAIL {rel}: cannot write {}: {e}", path.display());
                failed += 1;
                continue;
            }
            (path, "template, rendered")
        } else {
            (PathBuf::from(&rel), "as is, from the repository root")
        };
        match validate(&envoy, &config) {
            Ok(()) => println!("ok   {rel} ({kind})"),
            Err(e) => {
                eprintln!("FAIL {rel} ({kind}): {e}");
                failed += 1;
            }
        }
    }
    let _ = fs::remove_dir_all(&out_dir);
    println!("{} passed, {} failed", files.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
