//! Records the commit the binary is built from, for `--version`. Packagers without a git
//! checkout (Nix) set WEBSOCKIFY_BUILD_COMMIT themselves.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WEBSOCKIFY_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let commit = std::env::var("WEBSOCKIFY_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown commit".to_string());
    println!("cargo:rustc-env=WEBSOCKIFY_BUILD_COMMIT={commit}");
}
