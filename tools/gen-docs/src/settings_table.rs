//! The README's tables of settings, generated from the settings' one definition
//! ([`websockify::config::Settings`] as the command line flattens it): flag, environment
//! variable, file key, default and meaning, one row per setting. The table of all settings
//! sits between `<!-- settings-table:begin -->` and `<!-- settings-table:end -->`; a section
//! that shows a few of them names them in its marker,
//! `<!-- settings-table:begin token_plugin,token_source -->`.
//!
//! A setting's doc comment is its help: the first paragraph is the `--help` line (plain text),
//! the further paragraphs its long help (markdown, for this table and the man page). A long-help
//! paragraph `Default: TEXT.` describes a default that clap has no value for (an unset
//! option, `self.pem` used if present): it fills the Default column rather than the Meaning.

use std::path::Path;

use anyhow::{Context, bail};
use clap::{Arg, ArgAction, Command};
use websockify::cli::Cli;
use websockify::config::{ENV_CONFIG, POSITIONALS, env_name, setting_names};

/// The markers around a generated table in README.md (the first, with the keys it shows
/// before its ` -->` when not all).
pub const BEGIN: &str = "<!-- settings-table:begin";
pub const END: &str = "<!-- settings-table:end -->";

/// The long help's paragraph that describes a default clap does not show.
const DEFAULT_PARAGRAPH: &str = "Default: ";

/// The table of every setting, as markdown, ending with a newline.
pub fn table() -> anyhow::Result<String> {
    table_of(None)
}

/// The table of the settings `keys` (all, with `--config` and `--print-config`, if `None`).
pub fn table_of(keys: Option<&[&str]>) -> anyhow::Result<String> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = String::from(
        "| Flag | Environment | File key | Default | Meaning |\n| --- | --- | --- | --- | --- |\n",
    );
    let mut row = |cells: [String; 5]| {
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    };
    if let Some(keys) = keys
        && let Some(unknown) = keys.iter().find(|k| !setting_names().contains(k))
    {
        bail!("`{unknown}` in a table's marker is not a setting");
    }
    let shown = |key: &str| keys.is_none_or(|keys| keys.contains(&key));
    for key in setting_names().iter().filter(|k| shown(k)) {
        if let Some(positional) = POSITIONALS.iter().find(|p| p.key == *key) {
            row([
                format!("`{}`", positional.form),
                format!("`{}`", env_name(key)),
                format!("`{key}`"),
                "—".to_string(),
                positional.help.to_string(),
            ]);
            continue;
        }
        let arg = find(&cmd, key)?;
        let help = Help::of(arg);
        row([
            flag(arg),
            format!("`{}`", env_name(key)),
            format!("`{key}`"),
            default(arg, &help),
            help.meaning(),
        ]);
    }
    if keys.is_some() {
        return Ok(out);
    }
    for (key, env) in [
        ("config", format!("`{ENV_CONFIG}`")),
        ("print_config", "—".into()),
    ] {
        let arg = find(&cmd, key)?;
        row([
            flag(arg),
            env,
            "—".into(),
            "—".into(),
            Help::of(arg).meaning(),
        ]);
    }
    Ok(out)
}

/// `readme` with every table between markers generated anew.
pub fn splice(readme: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = readme;
    let mut found = false;
    while let Some(begin) = rest.find(BEGIN) {
        let marker_end = rest[begin..]
            .find("-->")
            .map(|i| begin + i + 3)
            .with_context(|| format!("an unclosed `{BEGIN}` marker"))?;
        let keys: Vec<&str> = rest[begin + BEGIN.len()..marker_end - 3]
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .collect();
        let end = rest[marker_end..]
            .find(END)
            .map(|i| marker_end + i)
            .with_context(|| format!("a `{BEGIN}` marker without its `{END}`"))?;
        let table = table_of((!keys.is_empty()).then_some(&keys[..]))?;
        out.push_str(&rest[..marker_end]);
        out.push('\n');
        out.push_str(&table);
        out.push_str(END);
        rest = &rest[end + END.len()..];
        found = true;
    }
    if !found {
        bail!("the README has no `{BEGIN} -->` ... `{END}` markers");
    }
    out.push_str(rest);
    Ok(out)
}

/// Rewrites the table in the README at `path`; returns whether it changed.
pub fn rewrite_readme(path: &Path) -> anyhow::Result<bool> {
    let readme =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let updated = splice(&readme)?;
    if updated == readme {
        return Ok(false);
    }
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

fn find<'c>(cmd: &'c Command, key: &str) -> anyhow::Result<&'c Arg> {
    cmd.get_arguments()
        .find(|a| a.get_id() == key)
        .with_context(|| format!("setting `{key}` is neither a flag nor a positional"))
}

/// `-v`, `--verbose`; `--timeout TIMEOUT`; `-- WRAP_COMMAND_LINE` for the command after `--`.
fn flag(arg: &Arg) -> String {
    let value = arg.get_action().takes_values().then(|| {
        arg.get_value_names()
            .and_then(|names| names.first())
            .map(|name| name.to_string())
            .unwrap_or_else(|| arg.get_id().as_str().to_ascii_uppercase())
    });
    if arg.is_last_set() {
        return format!("`-- {}`", value.unwrap_or_default());
    }
    let mut names = Vec::new();
    if let Some(short) = arg.get_short() {
        names.push(format!("`-{short}`"));
    }
    if let Some(long) = arg.get_long() {
        match &value {
            Some(value) => names.push(format!("`--{long} {value}`")),
            None => names.push(format!("`--{long}`")),
        }
    }
    names.join(", ")
}

/// clap's default (`false` for a flag), else the long help's `Default:` note, else "—".
fn default(arg: &Arg, help: &Help) -> String {
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .filter(|v| !v.is_empty())
        .collect();
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return "`false`".to_string();
    }
    if !values.is_empty() && !arg.is_hide_default_value_set() {
        return format!("`{}`", values.join(","));
    }
    match &help.default {
        Some(note) => note.clone(),
        None => "—".to_string(),
    }
}

/// A setting's help split the way the table uses it.
struct Help {
    /// The `--help` line, plain text.
    line: String,
    /// The further paragraphs, markdown.
    more: Vec<String>,
    /// The `Default:` paragraph's text, without its final period.
    default: Option<String>,
}

impl Help {
    fn of(arg: &Arg) -> Help {
        let long = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut paragraphs = long.split("\n\n").map(|p| p.replace('\n', " "));
        let line = paragraphs.next().unwrap_or_default();
        let mut more = Vec::new();
        let mut default = None;
        for paragraph in paragraphs {
            match paragraph.strip_prefix(DEFAULT_PARAGRAPH) {
                Some(note) => default = Some(note.trim_end_matches('.').to_string()),
                None => more.push(paragraph),
            }
        }
        Help {
            line,
            more,
            default,
        }
    }

    /// One markdown cell: the help line (made markdown, with a final period) and the rest.
    fn meaning(&self) -> String {
        let mut line = escape_plain(self.line.trim());
        if !line.ends_with(['.', '!', '?']) {
            line.push('.');
        }
        std::iter::once(line)
            .chain(self.more.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Plain text (a `--help` line) as markdown: outside its `code` spans, the characters
/// markdown would take for markup are escaped (`FILE.<session number>` is no HTML tag).
fn escape_plain(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        if i % 2 == 1 {
            out.push_str(part);
            continue;
        }
        for c in part.chars() {
            match c {
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '*' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
    }
    out
}

/// Markdown long help as the plain text of a man page: code spans lose their backticks and a
/// link to a README section names the section.
pub fn to_plain(markdown: &str) -> String {
    let mut out = String::new();
    let mut rest = markdown;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let link = after.find("](").and_then(|close| {
            let target_end = after[close + 2..].find(')')?;
            Some((
                &after[..close],
                &after[close + 2..close + 2 + target_end],
                close + 2 + target_end + 1,
            ))
        });
        match link {
            Some((text, target, len)) if !text.contains('[') => {
                out.push_str(text);
                if target.starts_with('#') {
                    out.push_str(" in the README");
                } else {
                    out.push_str(&format!(" ({target})"));
                }
                rest = &after[len..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out.replace('`', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_table_is_the_generated_one() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let generated = splice(&readme).unwrap();
        assert!(
            generated == readme,
            "README.md's settings table is not the one the definition (src/config/settings.rs) \
             gives; regenerate it with `cargo run -p websockify-gen-docs -- --readme README.md`"
        );
    }

    #[test]
    fn every_setting_has_one_row() {
        let table = table().unwrap();
        for key in setting_names() {
            let cell = format!("| `{key}` |");
            assert_eq!(table.matches(&cell).count(), 1, "{key} in\n{table}");
        }
        assert!(
            table.contains("| `-v`, `--verbose` | `WEBSOCKIFY_VERBOSE` | `verbose` | `false` |")
        );
        assert!(table.contains(
            "| `--idle-timeout IDLE_TIMEOUT` | `WEBSOCKIFY_IDLE_TIMEOUT` | `idle_timeout` | `0` |"
        ));
        assert!(table.contains(
            "| `--log-file FILE` | `WEBSOCKIFY_LOG_FILE` | `log_file` | standard error |"
        ));
        assert!(table.contains("| `-- WRAP_COMMAND_LINE` | `WEBSOCKIFY_WRAP_COMMAND` |"));
        assert!(table.contains("| `[source_addr:]source_port` | `WEBSOCKIFY_LISTEN` | `listen` |"));
        assert!(table.contains("| `--config FILE` | `WEBSOCKIFY_CONFIG` | — | — |"));
        // The Default: note is no part of the meaning; the help line is escaped as markdown.
        assert!(!table.contains("Default: "), "{table}");
        assert!(table.contains("FILE.&lt;session number&gt;"), "{table}");
    }

    #[test]
    fn splice_keeps_the_rest_and_fills_every_table() {
        let all = table().unwrap();
        let some = table_of(Some(&["host_token", "verbose"])).unwrap();
        let readme = format!(
            "a\n{BEGIN} -->\nold\n{END}\nb\n{BEGIN} verbose, host_token -->\nold\n{END}\nc\n"
        );
        assert_eq!(
            splice(&readme).unwrap(),
            format!(
                "a\n{BEGIN} -->\n{all}{END}\nb\n{BEGIN} verbose, host_token -->\n{some}{END}\nc\n"
            )
        );
        // A subset in the definition's order, without --config's rows.
        assert_eq!(some.lines().count(), 4, "{some}");
        assert!(some.lines().nth(2).unwrap().contains("`verbose`"));
        assert!(!some.contains("--config"));
        assert!(splice("no markers").is_err());
        let unknown = format!("{BEGIN} no_such -->\n{END}\n");
        assert!(splice(&unknown).is_err());
    }

    #[test]
    fn markdown_to_plain() {
        assert_eq!(
            to_plain("See [Wrap mode](#wrap-mode); `0`: never, [x] stays."),
            "See Wrap mode in the README; 0: never, [x] stays."
        );
    }
}
