//! Writes `websockify.1` and shell completions (bash, zsh, fish) from the same clap definition
//! the binary parses with, so the man page and completions can never drift from `--help`; and
//! the README's table of settings from the same definition.
//!
//! Usage:
//! - `cargo run -p websockify-gen-docs -- OUT_DIR`: the man page and completions; packages
//!   install the results (`OUT_DIR/man/websockify.1`, `OUT_DIR/completions/*`).
//! - `cargo run -p websockify-gen-docs -- --readme README.md`: rewrites the settings tables
//!   between README.md's `<!-- settings-table:begin [KEYS] -->` and
//!   `<!-- settings-table:end -->` markers (all settings, or the keys named).
//! - `cargo run -p websockify-gen-docs -- --settings-table`: prints that table.

mod settings_table;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap_complete::Shell;

const USAGE: &str = "usage: websockify-gen-docs OUT_DIR | --readme README.md | --settings-table";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(first) = args.next() else {
        bail!(USAGE);
    };
    if first == "--settings-table" {
        print!("{}", settings_table::table()?);
    } else if first == "--readme" {
        let readme = PathBuf::from(args.next().context(USAGE)?);
        let changed = settings_table::rewrite_readme(&readme)?;
        let what = if changed { "updated" } else { "unchanged" };
        println!("{}: settings table {what}", readme.display());
    } else if first.to_string_lossy().starts_with("--") {
        bail!(USAGE);
    } else {
        for path in write_all(Path::new(&first))? {
            println!("{}", path.display());
        }
    }
    Ok(())
}

/// The command for the man page: the settings' long help is markdown (for the README), made
/// plain text here.
fn man_command() -> clap::Command {
    websockify::cli::Cli::command().mut_args(|arg| match arg.get_long_help() {
        Some(long) => {
            let plain = settings_table::to_plain(&long.to_string());
            arg.long_help(plain)
        }
        None => arg,
    })
}

/// Writes the man page and completions under `out`; returns the files written.
fn write_all(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man_dir = out.join("man");
    std::fs::create_dir_all(&man_dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(man_command()).render(&mut page)?;
    let man = man_dir.join("websockify.1");
    std::fs::write(&man, page).with_context(|| format!("writing {}", man.display()))?;
    written.push(man);
    // Each subcommand (`websockify sessions`) has a page of its own, as git's do.
    let top = man_command();
    for sub in top.get_subcommands() {
        let name = format!("websockify-{}", sub.get_name());
        let sub = sub
            .clone()
            .bin_name(format!("websockify {}", sub.get_name()))
            // Set on the top level, which a subcommand taken alone no longer inherits; each
            // subcommand defines its own `--help`.
            .disable_help_flag(true);
        let mut page = Vec::new();
        clap_mangen::Man::new(sub)
            .title(name.clone())
            .render(&mut page)?;
        let man = man_dir.join(format!("{name}.1"));
        std::fs::write(&man, page).with_context(|| format!("writing {}", man.display()))?;
        written.push(man);
    }

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
        assert_eq!(files.len(), 5);
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
        // The long help is there, as plain text.
        assert!(
            man.contains("Wrap mode in the README"),
            "no long help in the man page"
        );
        assert!(!man.contains("`0`"), "markdown left in the man page");
        assert!(
            man.contains("sessions"),
            "man page lacks the sessions command"
        );
        let sessions = std::fs::read_to_string(out.join("man/websockify-sessions.1")).unwrap();
        assert!(sessions.contains("admin\\-token") && sessions.contains("close"));
        let bash = std::fs::read_to_string(out.join("completions/websockify.bash")).unwrap();
        assert!(bash.contains("--run-once") && bash.contains("--heartbeat"));
        assert!(bash.contains("sessions") && bash.contains("--admin-token-file"));
        let zsh = std::fs::read_to_string(out.join("completions/_websockify")).unwrap();
        assert!(zsh.contains("--unix-target"));
        let fish = std::fs::read_to_string(out.join("completions/websockify.fish")).unwrap();
        assert!(fish.contains("inetd"));
        std::fs::remove_dir_all(&out).unwrap();
    }
}
