//! Packaging, checked offline: the Helm chart lints, renders with every values file in
//! `charts/websockify/ci/`, and every object it makes (and every `k8s/` overlay) validates
//! against the Kubernetes 1.30 schemas, with assertions on what lands where
//! (`tests/packaging/check_chart.py`); the Nix files parse and the flake's outputs evaluate
//! against a stand-in for nixpkgs (`tests/packaging/fake-nixpkgs.nix`).
//!
//! The tools come from the registries on first use: helm-python-sdk and kubernetes-validate
//! from PyPI into a venv under the target directory, kubectl and nix-bin from Debian.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::ensure_installed;

const PYTHON_TOOLS: &[&str] = &["helm-python-sdk==0.2.2", "kubernetes-validate==1.37.0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, with the tools installed once per target directory.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("packaging-venv");
            let python = venv.join("bin/python");
            let marker = venv.join(format!("installed-{}", PYTHON_TOOLS.join("-")));
            if marker.exists() && python.exists() {
                return python;
            }
            let _ = std::fs::remove_dir_all(&venv);
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 is required for the packaging checks");
            assert!(
                status.success(),
                "python3 -m venv failed: install python3-venv"
            );
            let status = Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .args(PYTHON_TOOLS)
                .status()
                .expect("running pip");
            assert!(
                status.success(),
                "pip install {PYTHON_TOOLS:?} failed (is PyPI reachable?)"
            );
            std::fs::write(&marker, "").unwrap();
            python
        })
        .clone()
}

#[test]
fn helm_chart_and_kustomize_manifests_render_and_validate() {
    ensure_installed(&["kubectl"], "kubectl");
    let out = Command::new(python())
        .arg(root().join("tests/packaging/check_chart.py"))
        .arg(root())
        .output()
        .expect("run check_chart.py");
    assert!(
        out.status.success(),
        "chart or manifests are broken:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
