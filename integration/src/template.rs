//! Bootstrap templates: `envoy/*.yaml` with `{{...}}` placeholders.
//!
//! | placeholder | rendered as |
//! |---|---|
//! | `{{WASM_PATH}}` | the filter's path, as a JSON string literal (a valid YAML double-quoted scalar) |
//! | `{{PLUGIN_CONFIG}}` | the plugin configuration document, as a JSON string literal |
//! | `{{PORT:<cluster>}}` | the port of that cluster's upstream |
//! | `{{<NAME>}}` | an extra value, verbatim |
//!
//! Comment lines (first non-blank character `#`) are copied verbatim, so a template can document
//! its placeholders. An unknown placeholder, or a port for a cluster nobody serves, is an error:
//! a template and its callers cannot drift apart silently.

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct Vars {
    pub wasm_path: PathBuf,
    pub plugin_config: String,
    pub ports: BTreeMap<String, u16>,
    pub extra: BTreeMap<String, String>,
}

/// A JSON string literal, which YAML reads as a double-quoted scalar with the same value.
pub fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Replaces every `{{...}}` placeholder of `text` outside comment lines.
pub fn render(text: &str, vars: &Vars) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + vars.plugin_config.len());
    for line in text.split_inclusive('\n') {
        if is_comment(line) {
            out.push_str(line);
        } else {
            render_line(line, vars, &mut out)?;
        }
    }
    Ok(out)
}

fn render_line(text: &str, vars: &Vars, out: &mut String) -> Result<(), String> {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unterminated placeholder near {:?}", &rest[start..]))?;
        let name = after[..end].trim();
        let value = if name == "WASM_PATH" {
            yaml_string(&vars.wasm_path.to_string_lossy())
        } else if name == "PLUGIN_CONFIG" {
            yaml_string(&vars.plugin_config)
        } else if let Some(cluster) = name.strip_prefix("PORT:") {
            vars.ports
                .get(cluster.trim())
                .map(|p| p.to_string())
                .ok_or_else(|| {
                    format!("no upstream port for cluster {cluster:?} ({{{{{name}}}}})")
                })?
        } else if let Some(v) = vars.extra.get(name) {
            v.clone()
        } else {
            return Err(format!("unknown placeholder {{{{{name}}}}}"));
        };
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(())
}

/// The clusters a template needs ports for (`{{PORT:<cluster>}}`), in order of appearance.
pub fn port_placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !is_comment(l)) {
        let mut rest = line;
        while let Some(start) = rest.find("{{PORT:") {
            let after = &rest[start + 7..];
            let Some(end) = after.find("}}") else { break };
            let c = after[..end].trim().to_string();
            if !out.contains(&c) {
                out.push(c);
            }
            rest = &after[end + 2..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_all_placeholders() {
        let mut vars = Vars {
            wasm_path: PathBuf::from("/a b/f.wasm"),
            plugin_config: r#"{"a": "q\"x", "b": [1]}"#.to_string(),
            ..Vars::default()
        };
        vars.ports.insert("c-1".into(), 1234);
        let t =
            "# {{PORT:in-a-comment}}\np: {{WASM_PATH}}\nc: {{PLUGIN_CONFIG}}\nport: {{PORT:c-1}}\n";
        let r = render(t, &vars).unwrap();
        assert_eq!(
            r,
            "# {{PORT:in-a-comment}}\np: \"/a b/f.wasm\"\nc: \"{\\\"a\\\": \\\"q\\\\\\\"x\\\", \\\"b\\\": [1]}\"\nport: 1234\n"
        );
        assert!(render("{{PORT:zz}}", &vars).is_err());
        assert!(render("{{NOPE}}", &vars).is_err());
        assert_eq!(port_placeholders(t), vec!["c-1".to_string()]);
    }
}
