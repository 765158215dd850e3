use std::path::PathBuf;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// Writes `text` to a config file in a fresh temp dir and loads it with `env`.
fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatsdk.toml");
    std::fs::write(&path, text).unwrap();
    load(Some(&path), vars(env))
}

fn load_env(env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    load(None, vars(env))
}

#[track_caller]
fn assert_invalid_key(result: Result<impl std::fmt::Debug, ConfigError>, expected: &str) {
    match result {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, expected),
        other => panic!("expected {expected} to be rejected, got {other:?}"),
    }
}

#[test]
fn dev_mode_is_for_one_node() {
    let err = load_env(&[
        ("CHATSDK_SERVER__DEV", "true"),
        ("CHATSDK_CLUSTER__JOIN", "10.0.0.1:7400"),
        ("CHATSDK_CLUSTER__JOIN_TOKEN", "tok"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.contains("server.dev"), "{err}");
    assert!(
        load_env(&[("CHATSDK_SERVER__DEV", "true")])
            .unwrap()
            .server
            .dev
    );
}

#[test]
fn defaults_validate_and_are_what_load_gives_without_input() {
    Config::default().validate().unwrap();
    assert_eq!(load_env(&[]).unwrap(), Config::default());
    assert_eq!(load_text("", &[]).unwrap(), Config::default());
}

#[test]
fn file_sets_keys_and_keeps_defaults_for_the_rest() {
    let config = load_text(
        r#"
        [server]
        http = "0.0.0.0:9000"
        data_dir = "/var/lib/chatsdk"
        admin_api_key = ""

        [cluster]
        bootstrap = true
        join = "10.0.0.1:7400"
        join_token = "secret-token"
        shards = 64

        [limits]
        body_bytes = 2048
        bench_profile = true
        "#,
        &[],
    )
    .unwrap();
    assert_eq!(config.server.http, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(config.server.data_dir, PathBuf::from("/var/lib/chatsdk"));
    assert!(config.cluster.bootstrap);
    assert_eq!(config.server.admin_api_key, None);
    assert_eq!(config.cluster.join, Some("10.0.0.1:7400".parse().unwrap()));
    assert_eq!(config.cluster.join_token.as_deref(), Some("secret-token"));
    assert_eq!(config.cluster.shards, 64);
    assert_eq!(config.cluster.replication, 3);
    assert_eq!(config.limits.body_bytes, 2048);
    assert_eq!(config.limits.ws_message_bytes, 65536);
    assert_eq!(config.realtime, RealtimeConfig::default());
    assert_eq!(config.auth, AuthConfig::default());
}

#[test]
fn empty_optional_strings_in_the_file_mean_none() {
    let config = load_text(
        "[server]\nadmin_api_key = \"\"\n[cluster]\njoin = \"\"\njoin_token = \"\"\n",
        &[],
    )
    .unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn unknown_key_in_file_is_named() {
    let err = load_text("[server]\nhtttp = \"0.0.0.0:1\"\n", &[]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, .. } if key == "server.htttp"),
        "{err:?}"
    );
    assert!(err.to_string().contains("server.htttp"), "{err}");

    let err = load_text("[srever]\nhttp = \"0.0.0.0:1\"\n", &[]).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnknownKey { key, .. } if key == "srever"),
        "{err:?}"
    );
}

#[test]
fn bad_file_syntax_types_and_paths_are_errors() {
    let err = load_text("[server\n", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err:?}");

    let err = load_text("[limits]\nbody_bytes = \"lots\"\n", &[]).unwrap_err();
    match &err {
        ConfigError::File { reason, .. } => assert!(reason.contains("line 2"), "{reason}"),
        other => panic!("{other:?}"),
    }

    let err = load_text(
        "[cluster]\njoin = \"not an address\"\njoin_token = \"t\"\n",
        &[],
    );
    assert!(matches!(err, Err(ConfigError::File { .. })), "{err:?}");

    let err = load_text("server = 5\n", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err:?}");

    let missing = Path::new("/nonexistent/chatsdk.toml");
    let err = load(Some(missing), vars(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
}

#[test]
fn unknown_chatsdk_env_var_is_an_error() {
    for var in [
        "CHATSDK_SERVER__HTTTP",
        "CHATSDK_SERVER_HTTP",
        "CHATSDK_SERVER",
        "CHATSDK_NOPE__HTTP",
        "CHATSDK_SERVER__HTTP__X",
        "CHATSDK___HTTP",
        "chatsdk_server__htttp",
    ] {
        let err = load_env(&[(var, "1")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownEnvVar { var: v } if v == var),
            "{var}: {err:?}"
        );
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn other_env_vars_and_reserved_names_are_ignored() {
    let config = load_env(&[
        ("PATH", "/usr/bin"),
        ("SERVER__HTTP", "nonsense"),
        ("CHATSDK_CONFIG", "/etc/chatsdk.toml"),
        ("CHATSDK_LOG", "debug"),
        // Tools' own variables, not config keys.
        ("CHATSDK_TOKEN", "abc"),
        ("CHATSDK_URL", "http://127.0.0.1:8080"),
        ("CHATSDK_API_KEY", "sk_x"),
    ])
    .unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn env_overrides_int_bool_addr_and_string() {
    let config = load_env(&[
        ("CHATSDK_LIMITS__BODY_BYTES", "2048"),
        ("CHATSDK_CLUSTER__BOOTSTRAP", "true"),
        ("CHATSDK_SERVER__HTTP", "0.0.0.0:9000"),
        ("CHATSDK_SERVER__DATA_DIR", "/data"),
        // Looks like an integer, but the key is a string: taken verbatim.
        ("CHATSDK_SERVER__ADMIN_API_KEY", "1234567890123456"),
        ("CHATSDK_CLUSTER__JOIN", "10.0.0.1:7400"),
        ("CHATSDK_CLUSTER__JOIN_TOKEN", "tok"),
        ("chatsdk_realtime__history_size", "5"),
    ])
    .unwrap();
    assert_eq!(config.limits.body_bytes, 2048);
    assert!(config.cluster.bootstrap);
    assert_eq!(config.server.http, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(config.server.data_dir, PathBuf::from("/data"));
    assert_eq!(
        config.server.admin_api_key.as_deref(),
        Some("1234567890123456")
    );
    assert_eq!(config.cluster.join, Some("10.0.0.1:7400".parse().unwrap()));
    assert_eq!(config.cluster.join_token.as_deref(), Some("tok"));
    assert_eq!(config.realtime.history_size, 5);
}

#[test]
fn env_overrides_the_file_and_empty_clears_an_optional_key() {
    let config = load_text(
        "[cluster]\njoin = \"10.0.0.1:7400\"\njoin_token = \"tok\"\nshards = 8\n",
        &[
            ("CHATSDK_CLUSTER__JOIN", ""),
            ("CHATSDK_CLUSTER__JOIN_TOKEN", ""),
            ("CHATSDK_CLUSTER__SHARDS", "32"),
        ],
    )
    .unwrap();
    assert_eq!(config.cluster.join, None);
    assert_eq!(config.cluster.join_token, None);
    assert_eq!(config.cluster.shards, 32);
}

#[test]
fn env_type_error_names_the_variable() {
    for (var, value) in [
        ("CHATSDK_LIMITS__BODY_BYTES", "lots"),
        ("CHATSDK_LIMITS__BODY_BYTES", "-1"),
        ("CHATSDK_LIMITS__BODY_BYTES", "1.5"),
        ("CHATSDK_LIMITS__BODY_BYTES", ""),
        ("CHATSDK_SERVER__DEV", "yes"),
        ("CHATSDK_SERVER__HTTP", "localhost"),
        ("CHATSDK_CLUSTER__JOIN", "nowhere"),
    ] {
        let err = load_env(&[(var, value)]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::EnvValue { var: v, .. } if v == var),
            "{var}={value}: {err:?}"
        );
        assert!(err.to_string().contains(var), "{err}");
    }
}

#[test]
fn env_values_are_validated_too() {
    let err = load_env(&[("CHATSDK_CLUSTER__SHARDS", "0")]);
    assert_invalid_key(err, "cluster.shards");
}

#[test]
fn load_validates_the_file() {
    let err = load_text("[limits]\nws_frame_bytes = 131072\n", &[]);
    let message = err.as_ref().map_err(ToString::to_string).unwrap_err();
    assert_eq!(
        message,
        "limits.ws_frame_bytes must not exceed limits.ws_message_bytes"
    );
    assert_invalid_key(err, "limits.ws_frame_bytes");
}

#[test]
fn each_validation_rule_rejects_a_bad_value() {
    type Breaker = fn(&mut Config);
    let cases: &[(&str, Breaker)] = &[
        ("server.data_dir", |c| c.server.data_dir = PathBuf::new()),
        ("server.admin_api_key", |c| {
            c.server.admin_api_key = Some("short".into())
        }),
        ("server.drain_timeout_ms", |c| c.server.drain_timeout_ms = 0),
        ("cluster.join_token", |c| {
            c.cluster.join = Some("10.0.0.1:7400".parse().unwrap())
        }),
        ("cluster.join", |c| {
            c.cluster.join_token = Some("tok".into())
        }),
        ("server.tls_cert_file", |c| {
            c.server.tls_cert_file = Some("/etc/cert.pem".into())
        }),
        ("server.tls_reload_interval_s", |c| {
            c.server.tls_reload_interval_s = 0
        }),
        ("log.level", |c| c.log.level = "info,[".into()),
        ("cluster.join_token_url", |c| {
            c.cluster.join = Some("chatsdk-0.peers:7400".parse().unwrap());
            c.cluster.join_token_url = Some("http://chatsdk-0.peers:8080".into());
        }),
        ("cluster.join_token_url", |c| {
            c.server.admin_api_key = Some("a-long-enough-admin-key".into());
            c.cluster.join = Some("chatsdk-0.peers:7400".parse().unwrap());
            c.cluster.join_token_url = Some("ftp://x".into());
        }),
        ("cluster.advertise", |c| {
            c.cluster.addr = "0.0.0.0:7400".parse().unwrap()
        }),
        ("cluster.shards", |c| c.cluster.shards = 0),
        ("cluster.shards", |c| c.cluster.shards = 1025),
        ("cluster.replication", |c| c.cluster.replication = 0),
        ("cluster.replication", |c| c.cluster.replication = 8),
        ("cluster.flush_linger_us", |c| {
            c.cluster.flush_linger_us = 10_001
        }),
        ("cluster.background_nice", |c| {
            c.cluster.background_nice = -1
        }),
        ("cluster.cache_mib", |c| c.cluster.cache_mib = 0),
        ("cluster.node_cert_lifetime_s", |c| {
            c.cluster.node_cert_lifetime_s = 5
        }),
        ("cluster.snapshot_chunk_timeout_ms", |c| {
            c.cluster.snapshot_chunk_timeout_ms = 0
        }),
        ("cluster.snapshot_stall_timeout_ms", |c| {
            c.cluster.snapshot_stall_timeout_ms = 10
        }),
        ("cluster.snapshot_after_logs", |c| {
            c.cluster.snapshot_after_logs = 1
        }),
        ("cluster.background_nice", |c| {
            c.cluster.background_nice = 20
        }),
        ("limits.body_bytes", |c| c.limits.body_bytes = 0),
        ("limits.ws_message_bytes", |c| c.limits.ws_message_bytes = 0),
        ("limits.ws_frame_bytes", |c| c.limits.ws_frame_bytes = 0),
        ("limits.ws_frame_bytes", |c| {
            c.limits.ws_frame_bytes = c.limits.ws_message_bytes + 1
        }),
        ("limits.ws_read_buffer_bytes", |c| {
            c.limits.ws_read_buffer_bytes = 511
        }),
        ("limits.ws_read_buffer_bytes", |c| {
            c.limits.ws_read_buffer_bytes = c.limits.ws_frame_bytes + 1
        }),
        ("limits.header_read_timeout_ms", |c| {
            c.limits.header_read_timeout_ms = 0
        }),
        ("limits.max_connections", |c| c.limits.max_connections = 0),
        ("limits.max_subscriptions", |c| {
            c.limits.max_subscriptions = 0
        }),
        ("limits.commands_in_flight", |c| {
            c.limits.commands_in_flight = 0
        }),
        ("limits.listen_backlog", |c| c.limits.listen_backlog = 0),
        ("limits.commands_per_sec", |c| c.limits.commands_per_sec = 0),
        ("limits.command_burst", |c| c.limits.command_burst = 0),
        ("limits.outbound_queue_bytes", |c| {
            c.limits.outbound_queue_bytes = 0
        }),
        ("limits.outbound_queue_bytes", |c| {
            c.limits.outbound_queue_bytes = c.limits.ws_message_bytes - 1
        }),
        ("limits.message_rate_per_minute", |c| {
            c.limits.message_rate_per_minute = 0
        }),
        ("limits.message_burst", |c| c.limits.message_burst = 0),
        ("limits.reaction_burst", |c| c.limits.reaction_burst = 0),
        ("limits.reactions_per_user_per_message", |c| {
            c.limits.reactions_per_user_per_message = 0
        }),
        ("limits.pins_per_channel", |c| c.limits.pins_per_channel = 0),
        ("limits.invites_per_hour", |c| c.limits.invites_per_hour = 0),
        ("limits.api_keys_per_app", |c| c.limits.api_keys_per_app = 0),
        ("webhooks.timeout_ms", |c| c.webhooks.timeout_ms = 0),
        ("lifecycle.retention_interval_s", |c| {
            c.lifecycle.retention_interval_s = 0
        }),
        ("lifecycle.session_sweep_interval_s", |c| {
            c.lifecycle.session_sweep_interval_s = 0
        }),
        ("media.max_image_bytes", |c| c.media.max_image_bytes = 0),
        ("previews.timeout_ms", |c| c.previews.timeout_ms = 0),
        ("previews.max_redirects", |c| c.previews.max_redirects = 11),
        ("previews.allowed_hosts", |c| {
            c.previews.allowed_hosts = "10.0.0.0/99".into()
        }),
        ("media.max_video_bytes", |c| {
            c.media.max_video_bytes = 5 << 30
        }),
        ("media.sweep_interval_s", |c| c.media.sweep_interval_s = 0),
        ("webhooks.retries", |c| c.webhooks.retries = 11),
        ("webhooks.allowed_hosts", |c| {
            c.webhooks.allowed_hosts = "10.0.0.0/99".into()
        }),
        ("server.frontend_url", |c| {
            c.server.frontend_url = "localhost".into()
        }),
        ("realtime.ping_interval_s", |c| {
            c.realtime.ping_interval_s = 0
        }),
        ("realtime.pong_timeout_s", |c| c.realtime.pong_timeout_s = 0),
        ("realtime.pong_timeout_s", |c| {
            c.realtime.pong_timeout_s = c.realtime.ping_interval_s
        }),
        ("realtime.history_size", |c| c.realtime.history_size = 0),
        ("auth.access_ttl_s", |c| c.auth.access_ttl_s = 0),
        ("auth.access_ttl_s", |c| {
            c.auth.access_ttl_s = c.auth.refresh_ttl_s
        }),
    ];
    for (key, breaker) in cases {
        let mut config = Config::default();
        breaker(&mut config);
        assert_invalid_key(config.validate(), key);
    }
}

#[test]
fn boundary_values_are_accepted() {
    let mut config = Config::default();
    config.cluster.shards = 1024;
    config.cluster.replication = 7;
    config.limits.ws_read_buffer_bytes = 512;
    config.server.admin_api_key = Some("x".repeat(MIN_ADMIN_API_KEY_CHARS));
    config.cluster.join = Some("10.0.0.1:7400".parse().unwrap());
    config.cluster.join_token = Some("tok".into());
    config.validate().unwrap();
    config.limits.ws_read_buffer_bytes = config.limits.ws_frame_bytes;
    config.cluster.shards = 1;
    config.cluster.replication = 1;
    config.validate().unwrap();
}

#[test]
fn to_toml_round_trips_through_load() {
    let mut config = Config::default();
    config.server.http = "0.0.0.0:9000".parse().unwrap();
    config.server.admin_api_key = Some("an-admin-key-long-enough".into());
    config.server.data_dir = PathBuf::from("/var/lib/chatsdk");
    config.cluster.join = Some("[::1]:7400".parse().unwrap());
    config.cluster.join_token = Some("tok".into());
    config.limits.bench_profile = true;
    config.realtime.history_size = 7;

    for config in [Config::default(), config] {
        let text = config.to_toml().unwrap();
        assert_eq!(load_text(&text, &[]).unwrap(), config, "{text}");
    }

    let text = Config::default().to_toml().unwrap();
    assert!(text.contains("[server]"), "{text}");
    assert!(text.contains("join = \"\""), "{text}");
}

#[test]
fn redacted_hides_secrets_only() {
    let mut config = Config::default();
    config.server.admin_api_key = Some("an-admin-key-long-enough".into());
    config.cluster.join = Some("10.0.0.1:7400".parse().unwrap());
    config.cluster.join_token = Some("tok".into());
    let shown = config.redacted().to_toml().unwrap();
    assert!(!shown.contains("an-admin-key-long-enough"), "{shown}");
    assert!(!shown.contains("\"tok\""), "{shown}");
    assert!(shown.contains("10.0.0.1:7400"), "{shown}");
    assert_eq!(Config::default().redacted(), Config::default());
}

#[test]
fn bench_profile_multiplies_rate_limits() {
    let mut limits = LimitsConfig::default();
    assert_eq!(limits.effective_message_rate_per_minute(), 600);
    assert_eq!(limits.effective_message_burst(), 100);
    limits.bench_profile = true;
    assert_eq!(limits.effective_message_rate_per_minute(), 600_000);
    assert_eq!(limits.effective_message_burst(), 100_000);
    limits.message_burst = u32::MAX;
    assert_eq!(limits.effective_message_burst(), u32::MAX);
}
