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

use common::{ensure_installed, python_venv};

const PYTHON_TOOLS: &[&str] = &["helm-python-sdk==0.2.2", "kubernetes-validate==1.37.0"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, with the tools installed once per target directory.
fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| python_venv("packaging-venv", PYTHON_TOOLS).join("bin/python"))
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

/// Every `.nix` file in the repository.
fn nix_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("flake.nix")];
    for dir in ["nix", "tests/packaging"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "nix") {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn every_nix_file_parses() {
    ensure_installed(&["nix-instantiate"], "nix-bin");
    for file in nix_files() {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(&file)
            .output()
            .expect("run nix-instantiate");
        assert!(
            out.status.success(),
            "{} does not parse:\n{}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_flake_evaluates_against_a_stand_in_for_nixpkgs() {
    ensure_installed(&["nix-instantiate"], "nix-bin");
    let out = Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--json"])
        .arg(root().join("tests/packaging/eval-flake.nix"))
        .output()
        .expect("run nix-instantiate");
    assert!(
        out.status.success(),
        "the flake does not evaluate:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cargo: toml::Table = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let version = cargo["workspace"]["package"]["version"].as_str().unwrap();
    assert_eq!(v["version"], version);
    assert_eq!(
        v["lockFileExists"], true,
        "cargoLock.lockFile points nowhere"
    );
    assert_eq!(v["srcHasCargoToml"], true, "src is not the workspace");
    assert_eq!(
        v["commit"], "abc1234",
        "the flake's revision reaches --version"
    );
    assert_eq!(v["mainProgram"], "websockify");
    let bin = format!("-websockify-rs-{version}/bin/websockify");
    for key in ["app", "execStart"] {
        assert!(
            v[key].as_str().unwrap().ends_with(&bin),
            "{key}: {}",
            v[key]
        );
    }
    assert!(v["imageEntrypoint"][0].as_str().unwrap().ends_with(&bin));
    assert_eq!(v["imageUser"], "65532:65532");
    assert_eq!(v["checks"], serde_json::json!(["image", "package", "vm"]));
    // The module turns an instance into its service: settings as variables, TLS through
    // credentials, the privileged port's capability, the drain in the stop timeout.
    let env: Vec<&str> = v["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for want in [
        "WEBSOCKIFY_LISTEN=0.0.0.0:443",
        "WEBSOCKIFY_TARGET=127.0.0.1:5900",
        "WEBSOCKIFY_CERT=%d/cert",
        "WEBSOCKIFY_HEARTBEAT=30",
        "WEBSOCKIFY_FILE_ONLY=true",
        "WEBSOCKIFY_METRICS_LISTEN=127.0.0.1:9187",
    ] {
        assert!(env.contains(&want), "{want} missing from {env:?}");
    }
    // Every variable the module sets is a setting the binary knows.
    for var in &env {
        let key = var
            .split('=')
            .next()
            .unwrap()
            .trim_start_matches("WEBSOCKIFY_");
        assert!(
            websockify::config::setting_names().contains(&key.to_ascii_lowercase().as_str()),
            "the module sets {var}, which is no setting"
        );
    }
    assert_eq!(
        v["credentials"],
        serde_json::json!(["cert:/run/keys/cert.pem", "key:/run/keys/key.pem"])
    );
    assert_eq!(
        v["capabilities"],
        serde_json::json!(["CAP_NET_BIND_SERVICE"])
    );
    assert_eq!(v["stopTimeout"], 40);
    assert_eq!(v["firewall"], serde_json::json!([443]));
    assert_eq!(v["vmInstance"], "127.0.0.1:7000");
    // What postInstall moves and runs is what the workspace builds.
    let post = v["postInstall"].as_str().unwrap();
    for (file, crate_dir, name) in [
        ("librebind.so", "plugins/rebind", "rebind"),
        ("libbrokenplugin.so", "plugins/so/broken", "brokenplugin"),
    ] {
        assert!(post.contains(file), "postInstall does not handle {file}");
        let manifest = std::fs::read_to_string(root().join(crate_dir).join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{crate_dir} no longer builds {file}"
        );
    }
    let gen_docs = std::fs::read_to_string(root().join("tools/gen-docs/Cargo.toml")).unwrap();
    assert!(
        gen_docs.contains("name = \"websockify-gen-docs\"") && post.contains("websockify-gen-docs")
    );
    // The man page and completions postInstall installs are the files gen-docs writes (its
    // own test reads each of them back).
    let gen_docs_src = std::fs::read_to_string(root().join("tools/gen-docs/src/main.rs")).unwrap();
    for file in [
        "man/websockify.1",
        "man/websockify-sessions.1",
        "completions/websockify.bash",
        "completions/_websockify",
        "completions/websockify.fish",
    ] {
        assert!(
            post.contains(&format!("docs-out/{file}")),
            "postInstall lacks {file}"
        );
        let name = file.rsplit('/').next().unwrap();
        assert!(
            gen_docs_src.contains(name),
            "gen-docs does not write {file}"
        );
    }
}

#[test]
fn the_containerfile_puts_each_file_where_the_binary_looks() {
    // No container engine runs here: check the layout the image relies on instead.
    let file = std::fs::read_to_string(root().join("Containerfile")).unwrap();
    assert!(file.contains("cargo build --release --locked --workspace"));
    assert!(file.contains("cp target/release/websockify /out/bin/"));
    // The shim goes to ../lib/websockify from the binary, one of the places wrap mode looks.
    assert!(file.contains("cp target/release/librebind.so /out/lib/websockify/"));
    assert!(file.contains("COPY --from=build /out/ /usr/local/"));
    assert!(file.contains(r#"ENTRYPOINT ["/usr/local/bin/websockify"]"#));
    assert!(
        file.contains("*/libbrokenplugin.so"),
        "the test plugin must stay out"
    );
    assert!(file.contains("USER 65532:65532"));
    let candidates = ["../lib/websockify"];
    let wrap = std::fs::read_to_string(root().join("src/process/wrap.rs")).unwrap();
    for c in candidates {
        assert!(
            wrap.contains(&format!("\"{c}\"")),
            "wrap mode no longer looks in {c}"
        );
    }
    let settings = ["WEBSOCKIFY_LISTEN", "WEBSOCKIFY_METRICS_LISTEN"];
    for var in settings {
        let key = var.trim_start_matches("WEBSOCKIFY_").to_ascii_lowercase();
        assert!(file.contains(var) && websockify::config::setting_names().contains(&key.as_str()));
    }
}
