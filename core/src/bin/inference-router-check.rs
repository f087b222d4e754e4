//! Validates plugin configurations with the filter's own parser, before they reach Envoy.
//!
//! `inference-router-check FILE.json...` (or `-` for standard input): prints `ok` or
//! `<field>: <reason>` per file; exits 1 if any is invalid, 2 if a file cannot be read.

use std::io::Read;
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: inference-router-check FILE.json... (- for standard input)");
        return ExitCode::from(2);
    }
    let mut code = ExitCode::SUCCESS;
    for file in &files {
        let bytes = if file == "-" {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map(|_| buf)
        } else {
            std::fs::read(file)
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{file}: cannot read: {e}");
                return ExitCode::from(2);
            }
        };
        match inference_router_core::config::parse(&bytes) {
            Ok(cfg) => println!(
                "{file}: ok ({} model(s), {} rule(s))",
                cfg.models.len(),
                cfg.rules.len()
            ),
            Err(e) => {
                println!("{file}: invalid configuration: {e}");
                code = ExitCode::from(1);
            }
        }
    }
    code
}
