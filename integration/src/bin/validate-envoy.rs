//! Checks every Envoy configuration shipped in `envoy/` with `envoy --mode validate`.
//!
//! - Templates (files with `{{...}}` placeholders) are rendered with harmless values: the built
//!   filter's path (it must exist: `make build`), a small valid plugin configuration for the
//!   template's body mode, and placeholder ports for every `{{PORT:<cluster>}}`. A bootstrap
//!   whose listener comes from LDS (`{{LDS_PATH}}`, `envoy/lds.yaml`) gets its listener template
//!   rendered into the watched directory first: `envoy/lds/<same name>.yaml` if there is one
//!   (`envoy/remote-fetch.yaml` → `envoy/lds/remote-fetch.yaml`), else `envoy/lds/listener.yaml`.
//!   A listener that fetches the module (`{{WASM_SHA256}}`) gets the built filter's sha256, and
//!   `{{NACK_ON_CODE_CACHE_MISS}}` is false: the value of a first load, the only one validation
//!   can check (it has no code cache, so `true` is always refused).
//! - Concrete files (`envoy/minimal.yaml`) are validated as they are, from the repository root,
//!   so their relative wasm path resolves as documented.
//!
//! Exits non-zero if any file fails. Usage: `cargo run -p integration --bin validate-envoy`
//! (`make validate`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use integration::oci::sha256_hex;
use integration::template;
use integration::{
    envoy_binary, envoy_dir, repo_root, wasm_path, EnvoyConfig, LDS_LISTENER_TEMPLATE,
};

/// A small valid plugin configuration for a template (metadata mode when the template runs
/// `json_to_metadata` before the filter; a fleet when it has an `etcd` cluster).
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
    // A template with the etcd cluster: a model that learns, as one fleet through it.
    if template_text.contains("- name: etcd\n") {
        cfg["models"][0]["strategy"] = serde_json::json!({ "type": "thompson" });
        cfg["models"][0]["targets"][0]
            .as_object_mut()
            .map(|t| t.remove("weight"));
        cfg["fleet"] = serde_json::json!({ "cluster": "etcd" });
    }
    // A template with a model registry cluster: targets polled from it.
    if template_text.contains("- name: model-registry\n") {
        cfg["registry"] = serde_json::json!({ "source": "json", "cluster": "model-registry", "path": "/registry.json" });
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

/// Writes `static.yaml` beside `bootstrap`: the bootstrap without `dynamic_resources`, with the
/// LDS file's listeners (`resources: [{"@type": ...Listener, ...}]`) as static listeners.
fn inline_listener(bootstrap: &Path, lds_file: &Path) -> Result<PathBuf, String> {
    let boot = fs::read_to_string(bootstrap).map_err(|e| e.to_string())?;
    let lds = fs::read_to_string(lds_file).map_err(|e| e.to_string())?;
    let (before, rest) = boot
        .split_once("\ndynamic_resources:\n")
        .ok_or("no dynamic_resources block")?;
    let (_, after) = rest
        .split_once("\nstatic_resources:\n")
        .ok_or("no static_resources after dynamic_resources")?;
    let mut listeners = String::from("  listeners:\n");
    let mut started = false;
    for line in lds.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line == "resources:" {
            started = true;
            continue;
        }
        if !started {
            return Err(format!(
                "unexpected line before `resources:` in the LDS file: {line:?}"
            ));
        }
        // The `@type` of each resource opens a list item; a static listener has none.
        if let Some(rest) = line.strip_prefix("- \"@type\": ") {
            if rest != "type.googleapis.com/envoy.config.listener.v3.Listener" {
                return Err(format!("not a listener: {rest}"));
            }
            listeners.push_str("  - ");
            continue;
        }
        if listeners.ends_with("- ") {
            listeners.push_str(line.trim_start());
        } else {
            listeners.push_str("  ");
            listeners.push_str(line);
        }
        listeners.push('\n');
    }
    let text = format!("{before}\nstatic_resources:\n{listeners}{after}");
    let out = bootstrap.with_file_name("static.yaml");
    fs::write(&out, text).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The listener template of an LDS bootstrap `envoy/<stem>.yaml`, relative to `envoy/`.
fn listener_template_for(stem: &str) -> PathBuf {
    let own = PathBuf::from(format!("lds/{stem}.yaml"));
    if envoy_dir().join(&own).is_file() {
        own
    } else {
        PathBuf::from(LDS_LISTENER_TEMPLATE)
    }
}

/// Values for the placeholders of remote-fetch listeners, when the text has them.
fn remote_fetch_vars(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    if text.contains("{{WASM_SHA256}}") {
        let wasm = wasm_path();
        let bytes = fs::read(&wasm).unwrap_or_default();
        vars.insert("WASM_SHA256".to_string(), sha256_hex(&bytes));
    }
    if text.contains("{{NACK_ON_CODE_CACHE_MISS}}") {
        vars.insert("NACK_ON_CODE_CACHE_MISS".to_string(), "false".to_string());
    }
    vars
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
            let lds = text
                .lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("{{LDS_PATH}}"));
            // A bootstrap that takes its listener from LDS: the listener template holds the
            // filter (and decides the body mode), and is rendered into the watched directory.
            let name = file
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let listener_template = listener_template_for(&name);
            let listener_text = if lds {
                match fs::read_to_string(envoy_dir().join(&listener_template)) {
                    Ok(t) => t,
                    Err(e) => {
                        let t = listener_template.display();
                        eprintln!("FAIL {rel}: cannot read {t}: {e}");
                        failed += 1;
                        continue;
                    }
                }
            } else {
                String::new()
            };
            let clusters = template::port_placeholders(&text);
            let ports: BTreeMap<String, u16> = clusters
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), 20001 + i as u16))
                .collect();
            let dir = out_dir.join(&name);
            if let Err(e) = fs::create_dir_all(&dir) {
                eprintln!("FAIL {rel}: cannot create {}: {e}", dir.display());
                failed += 1;
                continue;
            }
            let mut config = EnvoyConfig::new(
                file.clone(),
                plugin_config_for(&format!("{text}{listener_text}"), &clusters),
            );
            let kind = if lds {
                format!(
                    "template, rendered, with its LDS listener file from {}",
                    listener_template.display()
                )
            } else {
                "template, rendered".to_string()
            };
            if lds {
                config.listener_template = Some(listener_template);
            }
            config.extra_vars = remote_fetch_vars(&format!("{text}{listener_text}"));
            // Rendering panics on an unknown placeholder or a missing port: report, go on.
            let written = std::panic::catch_unwind(|| config.write_files(&dir, &ports));
            match written {
                Ok(path) => (path, kind),
                Err(_) => {
                    eprintln!("FAIL {rel}: cannot render (see the message above)");
                    failed += 1;
                    continue;
                }
            }
        } else {
            (
                PathBuf::from(&rel),
                "as is, from the repository root".to_string(),
            )
        };
        let mut result = validate(&envoy, &config);
        // `envoy --mode validate` does not read LDS files: validate the listener too, inlined
        // into the same bootstrap as a static listener.
        let lds_dir = config.parent().map(|d| d.join("lds"));
        if let Some(listener) = lds_dir
            .map(|d| d.join("listeners.yaml"))
            .filter(|p| result.is_ok() && p.is_file())
        {
            result = inline_listener(&config, &listener).and_then(|p| validate(&envoy, &p));
        }
        match result {
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
