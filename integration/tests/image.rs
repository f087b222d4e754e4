//! The filter shipped as an OCI image (docs/release.md): `make image` (scripts/oci-image.sh)
//! packages the release module as a Wasm OCI artifact; it goes through a real registry (Debian's
//! docker-registry on loopback, started by the harness) and back, byte for byte; the module
//! pulled from the registry runs in the real Envoy and reports the build the image names; the
//! Istio manifests get pinned to the digest the registry serves.

use std::collections::BTreeSet;
use std::fs;

use integration::oci::{digest_of, sha256_hex, OCI_MANIFEST, WASM_CONFIG, WASM_LAYER};
use integration::registry::temp_dir;
use integration::{
    filter_version, head_commit, repo_root, skopeo, wasm_path, EnvoyConfig, Harness, ImageLayout,
    Registry, Request,
};
use serde_json::{json, Value};

const REPOSITORY: &str = "inference-router";

fn build_image(dir_name: &str, commit: &str) -> ImageLayout {
    let out = temp_dir(dir_name).join("image");
    ImageLayout::build(&wasm_path(), &out, &filter_version(), commit)
}

/// What Istio's agent checks before it hands the module to Envoy (istio/istio
/// pkg/wasm/imagefetcher.go, "oci" variant; cache.go): an OCI image manifest with exactly two
/// layers, one of them the wasm layer; the module starts with the wasm magic number.
#[track_caller]
fn assert_istio_can_read(image: &ImageLayout, wasm: &[u8]) {
    let m = &image.manifest;
    assert_eq!(m["schemaVersion"], 2, "{m}");
    assert_eq!(m["mediaType"], OCI_MANIFEST, "{m}");
    assert_eq!(m["config"]["mediaType"], WASM_CONFIG, "{m}");
    assert_eq!(
        image.layers().len(),
        2,
        "Istio wants exactly two layers: {m}"
    );
    let layer = image.layer(WASM_LAYER);
    let module = image.blob(layer["digest"].as_str().unwrap());
    assert!(
        module == wasm,
        "the wasm layer is not the module byte for byte"
    );
    assert_eq!(layer["size"], wasm.len(), "{layer}");
    assert_eq!(&module[..4], b"\0asm");
    let config: Value =
        serde_json::from_slice(&image.blob(m["config"]["digest"].as_str().unwrap()))
            .expect("the runtime config is JSON");
    // The root id every Envoy and Istio configuration of this project uses.
    assert_eq!(
        config,
        json!({ "type": "envoy_proxy", "abiVersions": ["proxy_abi_version_0_2_1"],
                "config": { "rootIds": ["inference-router"] } })
    );
    assert_eq!(image.layer(WASM_CONFIG)["digest"], m["config"]["digest"]);
}

#[test]
fn the_image_is_the_wasm_artifact_istio_reads_and_its_digest_is_reproducible() {
    let wasm = fs::read(wasm_path()).unwrap();
    let commit = head_commit();
    let image = build_image("image-a", &commit);
    assert_istio_can_read(&image, &wasm);
    assert_eq!(image.tag, filter_version());
    assert_eq!(
        image.annotation("org.opencontainers.image.version"),
        filter_version()
    );
    assert_eq!(
        image.annotation("org.opencontainers.image.revision"),
        commit
    );
    assert_eq!(image.digest, digest_of(&image.manifest_bytes));
    let written = fs::read_to_string(image.dir.with_extension("digest")).unwrap();
    assert_eq!(
        written.trim(),
        image.digest,
        "the .digest file next to the layout"
    );

    // No timestamps: the same module, version and commit give the same digest, so a digest
    // pinned in a manifest can be rebuilt and checked.
    let again = build_image("image-b", &commit);
    assert_eq!(again.digest, image.digest);
    assert_eq!(again.manifest_bytes, image.manifest_bytes);
    // Another commit is another image, even for the same bytes.
    let other = build_image("image-c", "0123456789ab");
    assert_ne!(other.digest, image.digest);
    for i in [image, again, other] {
        let _ = fs::remove_dir_all(i.dir.parent().unwrap());
    }
}

/// The registry's answer to a manifest GET: its digest header and bytes.
fn pull_manifest(registry: &Registry, reference: &str) -> (String, Vec<u8>) {
    let r = registry.get(
        &format!("/v2/{REPOSITORY}/manifests/{reference}"),
        OCI_MANIFEST,
    );
    assert_eq!(r.status, 200, "manifest {reference}: {}", r.text());
    assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
    let digest = r
        .header("docker-content-digest")
        .unwrap_or_default()
        .to_string();
    (digest, r.body)
}

#[test]
fn the_image_goes_through_a_real_registry_and_back_and_runs_in_envoy() {
    let registry = Registry::start();
    let wasm = fs::read(wasm_path()).unwrap();
    let image = build_image("image-push", &head_commit());
    let scratch = image.dir.parent().unwrap().to_path_buf();
    let tagged = format!("docker://{}/{REPOSITORY}:{}", registry.host(), image.tag);
    skopeo(
        &scratch,
        &[
            "copy",
            "--dest-tls-verify=false",
            &image.reference(),
            &tagged,
        ],
    );

    // Pulled as Istio's agent pulls (distribution API): by tag, then by digest.
    let (digest, manifest) = pull_manifest(&registry, &image.tag);
    assert_eq!(
        digest, image.digest,
        "the registry's digest is the one built"
    );
    assert_eq!(
        manifest, image.manifest_bytes,
        "the manifest changed on the way"
    );
    assert_eq!(pull_manifest(&registry, &digest).1, image.manifest_bytes);
    let mut sizes = Vec::new();
    for layer in image.layers() {
        let d = layer["digest"].as_str().unwrap();
        let r = registry.get(&format!("/v2/{REPOSITORY}/blobs/{d}"), "*/*");
        assert_eq!(r.status, 200, "blob {d}");
        assert_eq!(digest_of(&r.body), d);
        if layer["mediaType"] == WASM_LAYER {
            assert!(
                r.body == wasm,
                "the wasm layer pulled back differs from the build"
            );
        }
        sizes.push(format!("{} {} bytes", layer["mediaType"], r.body.len()));
    }

    // And with skopeo, by digest, into a fresh layout.
    let by_digest = format!("docker://{}/{REPOSITORY}@{digest}", registry.host());
    let pulled_dir = scratch.join("pulled");
    let pulled_ref = format!("oci:{}:pulled", pulled_dir.display());
    skopeo(
        &scratch,
        &["copy", "--src-tls-verify=false", &by_digest, &pulled_ref],
    );
    let pulled = ImageLayout::open(&pulled_dir);
    assert_eq!(pulled.digest, image.digest);
    assert_istio_can_read(&pulled, &wasm);
    let raw = skopeo(
        &scratch,
        &["inspect", "--tls-verify=false", "--raw", &by_digest],
    );
    assert_eq!(
        sha256_hex(&raw.stdout),
        digest.trim_start_matches("sha256:")
    );
    eprintln!("image {digest}: {}", sizes.join(", "));

    // The module that came back runs, and says it is the build the image names.
    let module = scratch.join("pulled.wasm");
    fs::write(
        &module,
        pulled.blob(pulled.layer(WASM_LAYER)["digest"].as_str().unwrap()),
    )
    .unwrap();
    let cfg = json!({
        "models": [{ "name": "sentiment",
                     "targets": [{ "name": "v1", "cluster": "sentiment-v1", "weight": 1 }] }],
        "state_endpoint": { "path": "/state", "token": "state-token-0123456789" },
    });
    let h = Harness::start(&EnvoyConfig::demo(&cfg).with_wasm(&module));
    let r = h.send(&Request::get("/v2/models/sentiment/ready"));
    assert_eq!((r.status, r.echo().cluster.as_str()), (200, "sentiment-v1"));
    let state = h
        .send(&Request::get("/state").header("authorization", "Bearer state-token-0123456789"))
        .json();
    assert_eq!(
        state["build"],
        json!({ "version": image.annotation("org.opencontainers.image.version"),
                "commit": image.annotation("org.opencontainers.image.revision") }),
        "the module in the image is not the build the image names (stale `make build`?)"
    );
    drop(h);

    assert_istio_manifests_pinned(&registry, &digest, &scratch);
    let _ = fs::remove_dir_all(&scratch);
}

/// `scripts/istio-manifests.sh` (make istio-manifests) for this registry's image: every
/// WasmPlugin's `url` and `sha256` name the digest the registry serves; nothing else changed.
fn assert_istio_manifests_pinned(registry: &Registry, digest: &str, scratch: &std::path::Path) {
    let image = format!("{}/{REPOSITORY}", registry.host());
    let out = scratch.join("istio");
    let script = repo_root().join("scripts/istio-manifests.sh");
    let run = std::process::Command::new(&script)
        .args(["--image", &image, "--digest", digest, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let hex = digest.trim_start_matches("sha256:");
    let pinned_url = format!("  url: oci://{image}@{digest}");
    let pinned_sha = format!("  sha256: {hex}");
    let mut plugins = 0;
    for entry in fs::read_dir(repo_root().join("istio")).unwrap() {
        let src = entry.unwrap().path();
        if src.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let before = fs::read_to_string(&src).unwrap();
        let after = fs::read_to_string(out.join(src.file_name().unwrap())).unwrap();
        let n = before.lines().filter(|l| *l == "kind: WasmPlugin").count();
        plugins += n;
        let (old, new) = changed_lines(&before, &after);
        if n == 0 {
            assert!(
                old.is_empty() && new.is_empty(),
                "{} changed",
                src.display()
            );
            continue;
        }
        assert!(old
            .iter()
            .all(|l| l.starts_with("  url: oci://") || l.contains("sha256:")));
        let expected: BTreeSet<String> = [
            format!("# Pinned by scripts/istio-manifests.sh to oci://{image}@{digest} (make istio-manifests)."),
            pinned_url.clone(),
            pinned_sha.clone(),
        ]
        .into();
        assert_eq!(new, expected, "{}", src.display());
        assert_eq!(after.matches(&pinned_url).count(), n);
        assert_eq!(after.matches(&pinned_sha).count(), n);
    }
    assert!(plugins >= 3, "the WasmPlugin manifests were not found");
}

/// Lines only in `a`, lines only in `b` (as sets: the pinning replaces lines in place).
fn changed_lines(a: &str, b: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let a: BTreeSet<String> = a.lines().map(str::to_string).collect();
    let b: BTreeSet<String> = b.lines().map(str::to_string).collect();
    (&a - &b, &b - &a)
}
