//! Writes `websockify.1` and shell completions (bash, zsh, fish) from the same clap definition
//! the binary parses with, so the man page and completions can never drift from `--help`.
//!
//! Usage: `cargo run -p websockify-gen-docs -- OUT_DIR`; packages install the results
//! (`OUT_DIR/man/websockify.1`, `OUT_DIR/completions/*`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: websockify-gen-docs OUT_DIR")?;
    for path in write_all(&out)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the man page and completions under `out`; returns the files written.
fn write_all(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man_dir = out.join("man");
    std::fs::create_dir_all(&man_dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(websockify::cli::Cli::command()).render(&mut page)?;
    let man = man_dir.join("websockify.1");
    std::fs::write(&man, page).with_context(|| format!("writing {}", man.display()))?;
    written.push(man);

    let completions = out.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = websockify::cli::Cli::command();
        written.push(clap_complete::generate_to(
            shell,
            &mut cmd,
            "websockify",
            &completions,
        )?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn man_page_and_completions_carry_every_option() {
        let out = std::env::temp_dir().join(format!("websockify-gen-docs-{}", std::process::id()));
        let files = super::write_all(&out).unwrap();
        assert_eq!(files.len(), 4);
        let man = std::fs::read_to_string(out.join("man/websockify.1")).unwrap();
        assert!(man.starts_with(".ie \\n(.g .ds Aq"), "not a roff page");
        for option in [
            "idle\\-timeout",
            "unix\\-listen\\-mode",
            "print\\-config",
            "prefer\\-ipv6",
        ] {
            assert!(man.contains(option), "man page lacks {option}");
        }
        let bash = std::fs::read_to_string(out.join("completions/websockify.bash")).unwrap();
        assert!(bash.contains("--run-once") && bash.contains("--heartbeat"));
        let zsh = std::fs::read_to_string(out.join("completions/_websockify")).unwrap();
        assert!(zsh.contains("--unix-target"));
        let fish = std::fs::read_to_string(out.join("completions/websockify.fish")).unwrap();
        assert!(fish.contains("inetd"));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
