use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use super::load::flag_name;
use super::settings::{DEFAULT_SHUTDOWN_GRACE, definition};
use super::validate::{AuthPlugin, TokenPlugin};
use super::*;
use crate::cli::Cli;
use crate::session::target::Target;

fn cli(args: &[&str]) -> clap::ArgMatches {
    let mut all = vec!["websockify"];
    all.extend_from_slice(args);
    Cli::command().try_get_matches_from(all).unwrap()
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn invalid(result: Result<Loaded, ConfigError>) -> String {
    match result {
        Err(ConfigError::Invalid(msg)) => msg,
        Err(ConfigError::Usage(e)) => panic!("expected an invalid-config error, got usage: {e}"),
        Ok(l) => panic!("expected an error, got {:?}", l.settings),
    }
}

fn toml_file(text: &str) -> tempfile_lite::TempFile {
    let file = tempfile_lite::TempFile::new("toml");
    std::fs::File::create(&file.path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    file
}

/// A temporary file removed on drop (the std library has none, and this is all we need).
mod tempfile_lite {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct TempFile {
        pub path: PathBuf,
    }

    impl TempFile {
        pub fn new(ext: &str) -> TempFile {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "websockify-config-test-{}-{n}.{ext}",
                std::process::id()
            ));
            TempFile { path }
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[test]
fn defaults_come_from_the_definition() {
    // Settings::default parses an empty command line through the clap definition; a setting
    // without a clap default that is no Option would make it panic here.
    let d = Settings::default();
    assert_eq!(d.unix_listen_mode, FileMode(0o600));
    assert_eq!(d.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(
        d.max_message_size,
        crate::config::limits::ByteSize(crate::config::limits::DEFAULT_MAX_MESSAGE_SIZE)
    );
    assert_eq!(
        (d.handshake_timeout, d.connect_timeout),
        (
            crate::config::limits::DEFAULT_HANDSHAKE_TIMEOUT,
            crate::config::limits::DEFAULT_CONNECT_TIMEOUT
        )
    );
    assert_eq!(
        (d.timeout, d.ssl_version, d.log_format),
        (0, SslVersion::Default, LogFormat::Text)
    );
    assert!(d.allow_target.is_empty() && d.trusted_proxies.is_empty());
    assert!(!d.verbose && d.listen.is_none() && d.wrap_command.is_none());
    // And they are what a run with nothing given merges to.
    assert_eq!(load(&cli(&[]), &[]).unwrap().settings, d);
}

#[test]
fn environment_alone_is_a_complete_start() {
    let loaded = load(
        &cli(&[]),
        &env(&[
            ("WEBSOCKIFY_LISTEN", "0.0.0.0:6080"),
            ("WEBSOCKIFY_TARGET", "vnc:5900"),
            ("WEBSOCKIFY_RUN_ONCE", "1"),
            ("WEBSOCKIFY_IDLE_TIMEOUT", "30"),
            ("HOME", "/root"),
        ]),
    )
    .unwrap();
    let config = loaded.validate().unwrap();
    assert_eq!(config.listen, Listen::Tcp("0.0.0.0:6080".parse().unwrap()));
    assert_eq!(
        config.route,
        Route::Static(Target::Tcp("vnc:5900".parse().unwrap()))
    );
    assert!(config.run_once);
    assert_eq!(config.idle_timeout, Some(Duration::from_secs(30)));
    assert_eq!(config.timeout, None);
}

#[test]
fn precedence_is_defaults_file_env_flags() {
    let file = toml_file("timeout = 10\nheartbeat = 5\nidle_timeout = 7\ntarget = \"file:1\"\n");
    let path = file.path.to_str().unwrap();
    let loaded = load(
        &cli(&["--config", path, "--timeout", "30", "6080"]),
        &env(&[("WEBSOCKIFY_TIMEOUT", "20"), ("WEBSOCKIFY_HEARTBEAT", "6")]),
    )
    .unwrap();
    let s = &loaded.settings;
    assert_eq!((s.timeout, s.heartbeat, s.idle_timeout), (30, 6, 7));
    assert_eq!(s.target, Some("file:1".parse().unwrap()));
    assert_eq!(s.unix_listen_mode, FileMode(0o600));
    assert_eq!(loaded.source_of("timeout"), "--timeout");
    assert_eq!(
        loaded.source_of("heartbeat"),
        "environment variable WEBSOCKIFY_HEARTBEAT"
    );
    assert_eq!(
        loaded.source_of("idle_timeout"),
        format!("`idle_timeout` in {path}")
    );
    assert_eq!(
        loaded.source_of("listen"),
        "the argument [source_addr:]source_port"
    );
}

#[test]
fn config_file_named_by_environment() {
    let file = toml_file("listen = 6080\ntarget = \"h:1\"\nunix_listen_mode = 0o640\n");
    let loaded = load(
        &cli(&[]),
        &env(&[("WEBSOCKIFY_CONFIG", file.path.to_str().unwrap())]),
    )
    .unwrap();
    assert_eq!(loaded.settings.listen, Some("6080".parse().unwrap()));
    assert_eq!(loaded.settings.unix_listen_mode, FileMode(0o640));
}

#[test]
fn limits_and_lists_from_a_file() {
    let file = toml_file(
        "listen = 6080\ntarget = \"h:1\"\nmax_message_size = \"2MiB\"\nmax_connections = 50\n\
         allow_target = [\"10.0.0.0/8:5900-5999\", \"vnc:*, unix:/run/vnc/\"]\n\
         trusted_proxies = \"10.0.0.0/8 fd00::/8\"\nproxy_protocol = true\n\
         target_proxy_protocol = \"v2\"\n",
    );
    let loaded = load(
        &cli(&[]),
        &env(&[("WEBSOCKIFY_CONFIG", file.path.to_str().unwrap())]),
    )
    .unwrap();
    let config = loaded.validate().unwrap();
    assert_eq!(config.limits.max_message_size, 2 << 20);
    assert_eq!(config.limits.max_connections, Some(50));
    let allow = config.limits.allow_target.unwrap();
    assert_eq!(allow.0.len(), 3);
    assert_eq!(
        allow.to_string(),
        "10.0.0.0/8:5900-5999,vnc:*,unix:/run/vnc/"
    );
    assert_eq!(config.trusted_proxies.unwrap().0.len(), 2);
    assert!(config.proxy_protocol);
    assert_eq!(
        config.target_proxy_protocol,
        Some(crate::edge::proxy_protocol::Version::V2)
    );
    let file = toml_file("listen = 6080\ntarget = \"h:1\"\nallow_target = [\"nowhere\"]\n");
    let msg = invalid(load(
        &cli(&[]),
        &env(&[("WEBSOCKIFY_CONFIG", file.path.to_str().unwrap())]),
    ));
    assert!(
        msg.contains("allow_target") && msg.contains("`nowhere`"),
        "{msg}"
    );
}

#[test]
fn unknown_names_are_refused_with_a_suggestion() {
    let msg = invalid(load(&cli(&[]), &env(&[("WEBSOCKIFY_IDLE_TIMOUT", "3")])));
    assert_eq!(
        msg,
        "environment variable WEBSOCKIFY_IDLE_TIMOUT is not a setting (did you mean WEBSOCKIFY_IDLE_TIMEOUT?)"
    );
    let file = toml_file("run_onse = true\n");
    let msg = invalid(load(&cli(&["--config", file.path.to_str().unwrap()]), &[]));
    assert!(msg.contains("unknown setting `run_onse`"), "{msg}");
    assert!(msg.contains("did you mean `run_once`?"), "{msg}");
    assert!(msg.contains(file.path.to_str().unwrap()), "{msg}");
}

#[test]
fn bad_values_name_their_source() {
    let msg = invalid(load(&cli(&[]), &env(&[("WEBSOCKIFY_TIMEOUT", "soon")])));
    assert!(
        msg.contains("environment variable WEBSOCKIFY_TIMEOUT"),
        "{msg}"
    );
    assert!(msg.contains("whole number of seconds"), "{msg}");
    let msg = invalid(load(&cli(&[]), &env(&[("WEBSOCKIFY_TARGET", "nocolon")])));
    assert!(
        msg.contains("WEBSOCKIFY_TARGET") && msg.contains("target_addr:target_port"),
        "{msg}"
    );
    let file = toml_file("heartbeat = \"often\"\n");
    let msg = invalid(load(&cli(&["--config", file.path.to_str().unwrap()]), &[]));
    assert!(msg.contains("`heartbeat` in"), "{msg}");
    let msg = invalid(load(
        &cli(&["--config", "/nonexistent/websockify.toml"]),
        &[],
    ));
    assert!(msg.contains("/nonexistent/websockify.toml"), "{msg}");
}

#[test]
fn positionals_follow_the_listen_mode() {
    let loaded = load(&cli(&["--inetd", "h:1"]), &[]).unwrap();
    let config = loaded.validate().unwrap();
    assert_eq!(config.listen, Listen::Inetd);
    assert_eq!(
        config.route,
        Route::Static(Target::Tcp("h:1".parse().unwrap()))
    );

    let loaded = load(&cli(&["--unix-listen", "/tmp/x.sock", "h:1"]), &[]).unwrap();
    assert_eq!(
        loaded.validate().unwrap().listen,
        Listen::Unix {
            path: PathBuf::from("/tmp/x.sock"),
            mode: FileMode(0o600)
        }
    );

    // The listen mode may come from the environment too.
    let loaded = load(&cli(&["h:1"]), &env(&[("WEBSOCKIFY_INETD", "true")])).unwrap();
    assert_eq!(loaded.validate().unwrap().listen, Listen::Inetd);

    match load(&cli(&["--inetd", "6080", "h:1"]), &[]) {
        Err(ConfigError::Usage(e)) => {
            assert!(
                e.to_string().contains("--inetd takes no listen address"),
                "{e}"
            );
            assert_eq!(e.exit_code(), 2);
        }
        _ => panic!("two positionals with --inetd must be refused"),
    }
    match load(&cli(&["6080", "nocolon"]), &[]) {
        Err(ConfigError::Usage(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("'nocolon'") && text.contains("target_addr:target_port"),
                "{text}"
            );
        }
        _ => panic!("a bad target must be refused"),
    }
}

#[test]
fn conflicts_name_both_sources() {
    let loaded = load(
        &cli(&["--unix-target", "/tmp/s", "6080"]),
        &env(&[("WEBSOCKIFY_TARGET", "h:1")]),
    )
    .unwrap();
    let Err(ConfigError::Invalid(msg)) = loaded.validate() else {
        panic!("two targets must be refused");
    };
    assert!(
        msg.contains("WEBSOCKIFY_TARGET") && msg.contains("--unix-target"),
        "{msg}"
    );

    let loaded = load(
        &cli(&["--inetd"]),
        &env(&[("WEBSOCKIFY_LISTEN", "6080"), ("WEBSOCKIFY_TARGET", "h:1")]),
    )
    .unwrap();
    let Err(ConfigError::Invalid(msg)) = loaded.validate() else {
        panic!("two listen modes must be refused");
    };
    assert!(
        msg.contains("WEBSOCKIFY_LISTEN") && msg.contains("--inetd"),
        "{msg}"
    );

    let loaded = load(&cli(&["6080"]), &[]).unwrap();
    let Err(ConfigError::Invalid(msg)) = loaded.validate() else {
        panic!("no target must be refused");
    };
    assert!(msg.contains("no target"), "{msg}");
}

#[test]
fn print_config_lists_every_setting() {
    let loaded = load(
        &cli(&["-v", "6080", "h:1"]),
        &env(&[("WEBSOCKIFY_HEARTBEAT", "15")]),
    )
    .unwrap();
    let text = loaded.to_toml();
    assert!(
        text.contains("listen = \":6080\"  # the argument"),
        "{text}"
    );
    assert!(
        text.contains("heartbeat = 15  # environment variable WEBSOCKIFY_HEARTBEAT"),
        "{text}"
    );
    assert!(text.contains("verbose = true  # --verbose"), "{text}");
    assert!(text.contains("unix_listen_mode = \"0600\""), "{text}");
    assert!(text.contains("# unix_target is unset"), "{text}");
    for name in setting_names() {
        assert!(text.contains(name), "{name} missing from {text}");
    }
    // What it prints reads back as the same settings.
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let reread: Settings = toml::from_str(&body).unwrap();
    assert_eq!(reread, loaded.settings);
}

#[test]
fn setting_names_match_the_struct() {
    let table = toml::Table::try_from(Settings {
        listen: Some("1".parse().unwrap()),
        target: Some("h:1".parse().unwrap()),
        unix_target: Some("/a".into()),
        unix_listen: Some("/b".into()),
        log_file: Some("/c".into()),
        web: Some("/d".into()),
        cert: Some("/e".into()),
        key: Some("/f".into()),
        key_password: Some(Secret::new("hunter2".into())),
        ssl_target_ca: Some("/g".into()),
        cafile: Some("/h".into()),
        ssl_ciphers: Some("x".into()),
        target_config: Some("/i".into()),
        token_plugin: Some("p".into()),
        token_source: Some("s".into()),
        auth_plugin: Some("a".into()),
        auth_source: Some("b".into()),
        metrics_listen: Some("9100".parse().unwrap()),
        admin_token: Some(Secret::new("0123456789abcdef".into())),
        admin_token_file: Some("/t".into()),
        wrap_command: Some(vec!["x".into()]),
        wrap_mode: Some(WrapMode::Respawn),
        rebind_lib: Some("/r.so".into()),
        record: Some("/rec".into()),
        syslog: Some("/dev/log".into()),
        allow_target: "10.0.0.0/8".parse().unwrap(),
        proxy_protocol: true,
        target_proxy_protocol: Some(crate::edge::proxy_protocol::Version::V1),
        trusted_proxies: "10.0.0.0/8".parse().unwrap(),
        ..Settings::default()
    })
    .unwrap();
    let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut names = setting_names().to_vec();
    names.sort_unstable();
    assert_eq!(keys, names);
}

#[test]
fn secrets_are_redacted() {
    let loaded = load(
        &cli(&[
            "--key-password",
            "hunter2",
            "--admin-token",
            "admin-hunter3-0123456",
            "--metrics-listen",
            "9100",
            "--ssl-version",
            "tlsv1_3",
            "6080",
            "h:1",
        ]),
        &[],
    )
    .unwrap();
    let text = loaded.to_toml();
    assert!(
        !text.contains("hunter2") && !text.contains("hunter3"),
        "{text}"
    );
    assert!(text.contains("key_password = \"<redacted>\""), "{text}");
    assert!(text.contains("admin_token = \"<redacted>\""), "{text}");
    assert!(text.contains("ssl_version = \"tlsv1_3\""), "{text}");
    assert!(!format!("{:?}", loaded.settings).contains("hunter2"));
    assert!(!format!("{:?}", loaded.settings).contains("hunter3"));
    let config = loaded.validate().unwrap();
    assert!(!format!("{config:?}").contains("hunter3"));
    assert_eq!(
        config.tls.key_password.as_ref().map(Secret::expose),
        Some("hunter2")
    );
    assert_eq!(config.tls.min_version, SslVersion::Tlsv1_3);
    assert!(config.tls.cert_is_default);
}

#[test]
fn busy_poll_is_microseconds_up_to_a_millisecond() {
    let loaded = load(&cli(&["--busy-poll", "50", "6080", "h:1"]), &env(&[])).unwrap();
    assert_eq!(
        loaded.validate().unwrap().busy_poll,
        Some(Duration::from_micros(50))
    );
    let off = load(&cli(&["6080", "h:1"]), &env(&[])).unwrap();
    assert_eq!(off.validate().unwrap().busy_poll, None);
    let loaded = load(
        &cli(&["6080", "h:1"]),
        &env(&[("WEBSOCKIFY_BUSY_POLL", "5000")]),
    )
    .unwrap();
    let Err(ConfigError::Invalid(msg)) = loaded.validate() else {
        panic!("5000 µs accepted");
    };
    assert!(
        msg.contains("WEBSOCKIFY_BUSY_POLL") && msg.contains("at most 1000"),
        "{msg}"
    );
    let err = Cli::try_parse_from(["websockify", "--busy-poll", "50us"]).unwrap_err();
    assert!(err.to_string().contains("microseconds, e.g. 50"), "{err}");
}

#[test]
fn ssl_version_from_the_environment_is_checked() {
    let msg = invalid(load(
        &cli(&[]),
        &env(&[("WEBSOCKIFY_SSL_VERSION", "sslv3")]),
    ));
    assert!(msg.contains("WEBSOCKIFY_SSL_VERSION"), "{msg}");
    let err = Cli::try_parse_from(["websockify", "--ssl-version", "sslv3"]).unwrap_err();
    assert!(err.to_string().contains("tlsv1_2"), "{err}");
}

/// A valid value for `key`, unlike its default, derived from its definition: a positional by
/// its form, a flag by its action, any other by its value name. A setting of a kind not known
/// here fails the test: give its value name a sample below.
fn sample(key: &str) -> &'static str {
    if let Some(positional) = POSITIONALS.iter().find(|p| p.key == key) {
        return match positional.form {
            "[source_addr:]source_port" => "6080",
            "target_addr:target_port" => "h:1",
            form => panic!("no sample value for the positional `{key}` ({form})"),
        };
    }
    let Some(arg) = definition().get_arguments().find(|a| a.get_id() == key) else {
        panic!("setting `{key}` is neither a flag nor a positional");
    };
    if matches!(arg.get_action(), clap::ArgAction::SetTrue) {
        return "true";
    }
    let value_name = arg
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| name.as_str())
        .unwrap_or_default();
    match value_name {
        "TIMEOUT" | "IDLE_TIMEOUT" | "INTERVAL" | "SECONDS" | "N" | "1-9" | "MICROSECONDS" => "5",
        "FILE" | "DIR" | "CERT" | "KEY" => "/some/path",
        "CLASS" | "ARG" | "KEY_PASSWORD" | "SSL_CIPHERS" | "SERVER" | "TOKEN" => "x",
        "SSL_VERSION" => "tlsv1_3",
        "UNIX_LISTEN_MODE" => "0640",
        "MODE" => "respawn",
        "FORMAT" => "json",
        "ADDR:PORT" => "127.0.0.1:9100",
        "SIZE" => "1MiB",
        "RULE,..." | "CIDR,..." => "10.0.0.0/8",
        "VERSION" => "v2",
        "HEADER" => "forwarded",
        "on|off" => "off",
        "WRAP_COMMAND_LINE" => "prog",
        other => panic!("no sample value for setting `{key}` (value name `{other}`): add one"),
    }
}

/// `key`'s value in `settings`, as `--print-config` and the file write it.
fn value_of(settings: &Settings, key: &str) -> Option<toml::Value> {
    toml::Table::try_from(settings).unwrap().get(key).cloned()
}

#[test]
fn every_setting_reaches_the_cli_the_environment_the_file_and_print_config() {
    // Every flag of the definition is a setting (a file key and a variable) too.
    for arg in definition().get_arguments() {
        let id = arg.get_id().as_str();
        assert!(setting_names().contains(&id), "flag {id} is no setting");
    }
    let default = Settings::default();
    for &key in setting_names() {
        let value = sample(key);
        let differs = |loaded: &Loaded, layer: &str| {
            let got = value_of(&loaded.settings, key);
            assert!(got.is_some(), "{key} from {layer} is unset");
            assert_ne!(got, value_of(&default, key), "{key}={value} from {layer}");
        };

        // The command line alone.
        let args: Vec<String> = if let Some(p) = POSITIONALS.iter().position(|p| p.key == key) {
            // The target is the second positional, after a listen address.
            let mut args = vec!["6080".to_string(); p];
            args.push(value.to_string());
            args
        } else {
            let arg = definition()
                .get_arguments()
                .find(|a| a.get_id() == key)
                .unwrap();
            let long = arg.get_long().map(|long| format!("--{long}"));
            match (arg.is_last_set(), long) {
                (true, _) => vec!["--".to_string(), value.to_string()],
                (false, Some(long)) if value == "true" => vec![long],
                (false, Some(long)) => vec![long, value.to_string()],
                (false, None) => panic!("setting `{key}` has no flag"),
            }
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let loaded = load(&cli(&args), &[]).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(loaded.source_of(key), flag_name(key), "{key}");
        differs(&loaded, "the command line");
        let printed = loaded.to_toml();
        assert!(
            printed
                .lines()
                .any(|l| l.starts_with(&format!("{key} = ")) && l.ends_with(&flag_name(key))),
            "--print-config lacks {key}:\n{printed}"
        );

        // The environment alone.
        let var = env_name(key);
        let loaded = load(&cli(&[]), &env(&[(&var, value)]))
            .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
        assert_eq!(
            loaded.source_of(key),
            format!("environment variable {var}"),
            "{key}"
        );
        differs(&loaded, "the environment");

        // The file alone: flags as booleans, numbers as integers, the rest as strings.
        let in_file = match value {
            "true" => toml::Value::Boolean(true),
            v if !v.starts_with('0') && v.parse::<i64>().is_ok() => {
                toml::Value::Integer(v.parse().unwrap())
            }
            v => toml::Value::String(v.to_string()),
        };
        let file = toml_file(&format!("{key} = {in_file}\n"));
        let path = file.path.to_str().unwrap();
        let loaded = load(&cli(&["--config", path]), &[])
            .unwrap_or_else(|e| panic!("{key} = {in_file}: {e}"));
        assert_eq!(loaded.source_of(key), format!("`{key}` in {path}"));
        differs(&loaded, "the file");
    }
}

#[test]
fn token_plugins_choose_the_target() {
    let loaded = load(
        &cli(&[
            "--token-plugin",
            "TokenFile",
            "--token-source",
            "/t",
            "6080",
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.validate().unwrap().route,
        Route::Token(TokenPlugin {
            plugin: "TokenFile".into(),
            source: "/t".into(),
            host_token: false
        })
    );
    // websockify 0.6's --target-config is TokenFile.
    let loaded = load(
        &cli(&["--target-config", "/t", "--host-token", "6080"]),
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.validate().unwrap().route,
        Route::Token(TokenPlugin {
            plugin: "TokenFile".into(),
            source: "/t".into(),
            host_token: true
        })
    );
    for (args, needle) in [
        (
            &["--token-plugin", "TokenFile", "6080", "h:1"][..],
            "choose one target",
        ),
        (
            &["--token-source", "/t", "6080", "h:1"][..],
            "--token-source needs --token-plugin",
        ),
        (
            &["--host-token", "6080", "h:1"][..],
            "--host-token needs --token-plugin",
        ),
        (
            &["--target-config", "/t", "--token-plugin", "X", "6080"][..],
            "replaces",
        ),
    ] {
        let loaded = load(&cli(args), &[]).unwrap();
        let Err(ConfigError::Invalid(msg)) = loaded.validate() else {
            panic!("{args:?} must be refused");
        };
        assert!(msg.contains(needle), "{args:?}: {msg}");
    }
}

#[test]
fn auth_plugin_rules() {
    let loaded = load(
        &cli(&[
            "--auth-plugin",
            "ExpectOrigin",
            "--auth-source",
            "https://a",
            "6080",
            "h:1",
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(
        loaded.validate().unwrap().auth,
        Some(AuthPlugin {
            plugin: "ExpectOrigin".into(),
            source: "https://a".into(),
            web: false
        })
    );
    for (args, needle) in [
        (
            &["--auth-source", "x", "6080", "h:1"][..],
            "--auth-source needs --auth-plugin",
        ),
        (
            &["--web-auth", "--web", "/w", "6080", "h:1"][..],
            "--web-auth needs --auth-plugin",
        ),
        (
            &["--auth-plugin", "X", "--web-auth", "6080", "h:1"][..],
            "--web-auth needs --web",
        ),
    ] {
        let loaded = load(&cli(args), &[]).unwrap();
        let Err(ConfigError::Invalid(msg)) = loaded.validate() else {
            panic!("{args:?} must be refused");
        };
        assert!(msg.contains(needle), "{args:?}: {msg}");
    }
}

#[test]
fn wrap_commands_from_every_layer() {
    let loaded = load(
        &cli(&["6080", "--", "vncserver", "-geometry", "1024x768"]),
        &[],
    )
    .unwrap();
    let Route::Wrap(wrap) = loaded.validate().unwrap().route else {
        panic!("a wrap route");
    };
    assert_eq!(wrap.command, ["vncserver", "-geometry", "1024x768"]);
    assert_eq!(wrap.mode, WrapMode::Exit);
    // The environment carries one string, split as a shell would.
    let loaded = load(
        &cli(&[]),
        &env(&[
            ("WEBSOCKIFY_LISTEN", "6080"),
            ("WEBSOCKIFY_WRAP_COMMAND", "prog 'two words' \"q\""),
            ("WEBSOCKIFY_WRAP_MODE", "respawn"),
        ]),
    )
    .unwrap();
    let Route::Wrap(wrap) = loaded.validate().unwrap().route else {
        panic!("a wrap route");
    };
    assert_eq!(wrap.command, ["prog", "two words", "q"]);
    assert_eq!(wrap.mode, WrapMode::Respawn);
    let err = load(
        &cli(&["6080"]),
        &env(&[("WEBSOCKIFY_WRAP_COMMAND", "prog 'unterminated")]),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("WEBSOCKIFY_WRAP_COMMAND"), "{err}");
}

/// `-D` changes to `/`: a plugin source naming a file relative to the working directory is
/// made absolute first, whichever plugin reads it; literals and literal-only plugins are not.
/// (Unit tests run in the crate's directory, where `Cargo.toml` and `plugins/` exist.)
#[test]
fn daemon_makes_every_plugin_source_that_names_a_file_absolute() {
    let here = std::env::current_dir().unwrap();
    let auth_source = |plugin: &str, source: &str| {
        let loaded = load(
            &cli(&[
                "--auth-plugin",
                plugin,
                "--auth-source",
                source,
                "6080",
                "h:1",
            ]),
            &[],
        )
        .unwrap();
        let mut config = loaded.validate().unwrap();
        config.make_paths_absolute();
        config.auth.unwrap().source
    };
    let cargo = here.join("Cargo.toml").to_string_lossy().into_owned();
    assert_eq!(auth_source("BasicHTTPAuth", "Cargo.toml"), cargo);
    assert_eq!(
        auth_source("websockify.auth_plugins.BasicHTTPAuth", "Cargo.toml"),
        cargo
    );
    assert_eq!(auth_source("./libmine.so", "Cargo.toml"), cargo);
    assert_eq!(
        auth_source("BasicHTTPAuth", "user:password"),
        "user:password"
    );
    assert_eq!(auth_source("BasicHTTPAuth", &cargo), cargo);
    // These never read a file: a name that happens to exist stays what it is.
    assert_eq!(auth_source("ClientCertCNAuth", "Cargo.toml"), "Cargo.toml");
    assert_eq!(auth_source("ExpectOrigin", "Cargo.toml"), "Cargo.toml");

    let token_source = |plugin: &str, source: &str| {
        let loaded = load(
            &cli(&["--token-plugin", plugin, "--token-source", source, "6080"]),
            &[],
        )
        .unwrap();
        let mut config = loaded.validate().unwrap();
        config.make_paths_absolute();
        let Route::Token(t) = config.route else {
            panic!("a token route");
        };
        t.source
    };
    let plugins = here.join("plugins").to_string_lossy().into_owned();
    assert_eq!(token_source("TokenFile", "plugins"), plugins);
    assert_eq!(token_source("./libtokens.so", "plugins"), plugins);
    assert_eq!(token_source("TokenRedis", "plugins"), "plugins");
    assert_eq!(
        token_source("./libtokens.so", "http://plugins"),
        "http://plugins"
    );
}
