//! The filter's OCI image as `make image` builds it (`scripts/oci-image.sh`: an OCI image layout
//! holding a Wasm OCI artifact), read back for tests: the manifest, its digest, its layers.
//!
//! What Istio's agent requires of such an image (istio/istio `pkg/wasm/imagefetcher.go`, the
//! "oci" variant): an image manifest with exactly two layers, one of them of media type
//! [`WASM_LAYER`] holding the module as is; the manifest digest is what a `WasmPlugin`'s
//! `sha256` is compared with.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::envoy::repo_root;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256:<hex>` of `bytes`, an OCI content digest.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// An OCI image layout directory with one tagged image manifest.
#[derive(Debug, Clone)]
pub struct ImageLayout {
    pub dir: PathBuf,
    pub tag: String,
    /// `sha256:<hex>` of the manifest bytes.
    pub digest: String,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Value,
}

impl ImageLayout {
    /// Runs `scripts/oci-image.sh` (what `make image` runs) for `wasm` into `out`.
    pub fn build(wasm: &Path, out: &Path, version: &str, commit: &str) -> ImageLayout {
        let script = repo_root().join("scripts/oci-image.sh");
        let run = Command::new(&script)
            .arg("--wasm")
            .arg(wasm)
            .arg("--out")
            .arg(out)
            .args(["--version", version, "--commit", commit])
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            run.status.success(),
            "{}: {}\n{}",
            script.display(),
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
        ImageLayout::open(out)
    }

    /// Reads a layout: `index.json` names one manifest, tagged with `org.opencontainers.image.ref.name`.
    pub fn open(dir: &Path) -> ImageLayout {
        let index: Value = read_json(&dir.join("index.json"));
        let entry = &index["manifests"][0];
        let digest = entry["digest"]
            .as_str()
            .expect("a manifest digest")
            .to_string();
        let tag = entry["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let manifest_bytes = read_blob(dir, &digest);
        let manifest = serde_json::from_slice(&manifest_bytes).expect("the manifest is JSON");
        ImageLayout {
            dir: dir.to_path_buf(),
            tag,
            digest,
            manifest_bytes,
            manifest,
        }
    }

    /// The blob with this digest; panics if it is missing or its content does not match.
    pub fn blob(&self, digest: &str) -> Vec<u8> {
        read_blob(&self.dir, digest)
    }

    /// The descriptor of the (single) layer of this media type.
    pub fn layer(&self, media_type: &str) -> Value {
        let layers = self.layers();
        let found: Vec<&Value> = layers
            .iter()
            .filter(|l| l["mediaType"] == media_type)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {media_type} layer in {}",
            self.manifest
        );
        found[0].clone()
    }

    pub fn layers(&self) -> Vec<Value> {
        self.manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A manifest annotation, "" when absent.
    pub fn annotation(&self, name: &str) -> String {
        self.manifest["annotations"][name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// skopeo's name for it: `oci:<dir>:<tag>`.
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }
}

fn read_json(path: &Path) -> Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn read_blob(dir: &Path, digest: &str) -> Vec<u8> {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    let path = dir.join("blobs/sha256").join(hex);
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_eq!(
        sha256_hex(&bytes),
        hex,
        "{} does not match its digest",
        path.display()
    );
    bytes
}
