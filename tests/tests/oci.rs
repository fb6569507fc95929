//! `make oci`'s image: the Wasm OCI form Istio's WasmPlugin pulls (one layer
//! holding `plugin.wasm`), read back with skopeo from the image layout and
//! from the tarball; the module taken out of the layer is the build's, and
//! Envoy runs it as the filter.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use portero_integration::{workspace_root, Stack, StackOptions};
use serde_json::Value;
use sha2::{Digest, Sha256};

const TAG: &str = "0.1.0";
/// The module the next stack runs (the config patch is a plain `fn`).
static MODULE: Mutex<Option<PathBuf>> = Mutex::new(None);

fn skopeo_inspect(args: &[&str]) -> Value {
    let out = Command::new("skopeo")
        .arg("inspect")
        .args(args)
        .output()
        .expect("skopeo (make setup installs it)");
    assert!(
        out.status.success(),
        "skopeo inspect {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("skopeo's JSON")
}

fn with_module(yaml: String, _dir: &Path, _config: &Value) -> String {
    let built = workspace_root().join("target/wasm32-wasip1/release/portero.wasm");
    let module = MODULE.lock().unwrap().clone().expect("a module");
    let local = format!("filename: \"{}\"", built.display());
    assert!(yaml.contains(&local));
    yaml.replacen(&local, &format!("filename: \"{}\"", module.display()), 1)
}

#[test]
fn the_oci_image_holds_the_module_and_envoy_runs_it() {
    if portero_integration::skip_unless_wasm("the OCI image") {
        return;
    }
    let root = workspace_root();
    let wasm = root.join("target/wasm32-wasip1/release/portero.wasm");
    let out = std::env::temp_dir().join(format!("portero-oci-{}", std::process::id()));
    // The recipe `make oci` runs (without its build step: cargo holds the
    // build directory while tests run).
    let status = Command::new(root.join("scripts/oci.sh"))
        .arg(&wasm)
        .arg(&out)
        .arg(TAG)
        .status()
        .expect("scripts/oci.sh");
    assert!(status.success());

    // One layer, as Istio's "compat" Wasm image format wants; the tarball
    // holds the same image.
    let layout = format!("oci:{}:{TAG}", out.join("layout").display());
    let manifest = skopeo_inspect(&["--raw", &layout]);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = layers[0]["digest"].as_str().unwrap();
    let archive = format!("oci-archive:{}:{TAG}", out.join("portero.tar").display());
    let from_archive = skopeo_inspect(&[&archive]);
    assert_eq!(from_archive["Layers"][0], layer);

    // The layer holds plugin.wasm, byte for byte the build's module.
    let blob = out
        .join("layout/blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let unpacked = out.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&blob)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(status.success());
    let module = unpacked.join("plugin.wasm");
    assert_eq!(
        Sha256::digest(std::fs::read(&module).unwrap()),
        Sha256::digest(std::fs::read(&wasm).unwrap())
    );

    // Envoy runs the module from the image as the filter.
    *MODULE.lock().unwrap() = Some(module);
    let stack = Stack::start_with(StackOptions {
        envoy_yaml_patch: Some(with_module),
        ..StackOptions::default()
    });
    let cookie = stack.login_web("ada", "lovelace");
    assert_eq!(stack.me_with_cookie(&cookie).json()["user_id"], "user-ada");
    assert_eq!(stack.me_with_cookie("AQHBgarbage").status, 401);
    drop(stack);
    let _ = std::fs::remove_dir_all(&out);
}
