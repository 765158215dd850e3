//! The range and consistency checks [`Config::validate`] makes before anything is bound.

use super::{Config, ConfigError, MIN_ADMIN_API_KEY_CHARS};

impl Config {
    /// Checks ranges and the consistency between keys. The first failure names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let (s, c, l, r, a) = (
            &self.server,
            &self.cluster,
            &self.limits,
            &self.realtime,
            &self.auth,
        );
        ensure(
            !s.data_dir.as_os_str().is_empty(),
            "server.data_dir",
            "must not be empty",
        )?;
        if let Some(key) = &s.admin_api_key {
            ensure(
                key.chars().count() >= MIN_ADMIN_API_KEY_CHARS,
                "server.admin_api_key",
                format!("must be at least {MIN_ADMIN_API_KEY_CHARS} characters"),
            )?;
        }
        positive(s.drain_timeout_ms, "server.drain_timeout_ms")?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::Invalid {
                key: "log.level",
                reason: format!("is not a valid filter ({e})"),
            });
        }
        ensure(
            s.frontend_url.starts_with("http://") || s.frontend_url.starts_with("https://"),
            "server.frontend_url",
            "must be an http:// or https:// URL",
        )?;
        ensure(
            s.tls_cert_file.is_some() == s.tls_key_file.is_some(),
            "server.tls_cert_file",
            "and server.tls_key_file must be set together",
        )?;
        positive(s.tls_reload_interval_s, "server.tls_reload_interval_s")?;
        ensure(
            self.quic.cert_file.is_some() == self.quic.key_file.is_some(),
            "quic.cert_file",
            "and quic.key_file must be set together",
        )?;

        ensure(
            !(s.dev && c.join.is_some()),
            "server.dev",
            "(--dev) is for one node and cannot be combined with cluster.join",
        )?;
        match (&c.join, &c.join_token, &c.join_token_url) {
            (Some(_), None, None) => {
                return invalid(
                    "cluster.join_token",
                    "(or cluster.join_token_url) must be set when cluster.join is set",
                )
            }
            (None, Some(_), _) => {
                return invalid("cluster.join", "must be set when cluster.join_token is set")
            }
            (None, _, Some(_)) => {
                return invalid(
                    "cluster.join",
                    "must be set when cluster.join_token_url is set",
                )
            }
            _ => {}
        }
        if let Some(url) = &c.join_token_url {
            ensure(
                url.starts_with("http://") || url.starts_with("https://"),
                "cluster.join_token_url",
                "must be an http:// or https:// URL",
            )?;
            ensure(
                s.admin_api_key.is_some(),
                "cluster.join_token_url",
                "needs server.admin_api_key (the token is asked for with it)",
            )?;
        }
        if c.addr.ip().is_unspecified() {
            ensure(
                c.advertise.is_some(),
                "cluster.advertise",
                "must be set when cluster.addr is a wildcard address (other nodes need one to reach)",
            )?;
        }
        if let Some(a) = &c.advertise {
            ensure(
                !a.ip().is_unspecified() && a.port() != 0,
                "cluster.advertise",
                "must be a reachable address with a port",
            )?;
        }
        ensure(
            (1..=1024).contains(&c.shards),
            "cluster.shards",
            "must be between 1 and 1024",
        )?;
        ensure(
            (1..=7).contains(&c.replication),
            "cluster.replication",
            "must be between 1 and 7",
        )?;
        ensure(
            c.flush_linger_us <= 10_000,
            "cluster.flush_linger_us",
            "must be at most 10000 (10 ms)",
        )?;
        ensure(
            (0..=19).contains(&c.background_nice),
            "cluster.background_nice",
            "must be between 0 and 19",
        )?;
        ensure(
            (1..=1 << 20).contains(&c.cache_mib),
            "cluster.cache_mib",
            "must be between 1 and 1048576 (1 TiB)",
        )?;
        ensure(
            (60..=10 * 365 * 86_400).contains(&c.node_cert_lifetime_s),
            "cluster.node_cert_lifetime_s",
            "must be between 60 and 315360000 (ten years)",
        )?;
        ensure(
            (100..=600_000).contains(&c.snapshot_chunk_timeout_ms),
            "cluster.snapshot_chunk_timeout_ms",
            "must be between 100 and 600000 (10 minutes)",
        )?;
        ensure(
            (1_000..=3_600_000).contains(&c.snapshot_stall_timeout_ms),
            "cluster.snapshot_stall_timeout_ms",
            "must be between 1000 and 3600000 (an hour)",
        )?;
        ensure(
            (10..=10_000_000).contains(&c.snapshot_after_logs),
            "cluster.snapshot_after_logs",
            "must be between 10 and 10000000",
        )?;
        ensure(
            c.logs_kept_after_snapshot <= 10_000_000,
            "cluster.logs_kept_after_snapshot",
            "must be at most 10000000",
        )?;

        for (value, key) in [
            (l.body_bytes, "limits.body_bytes"),
            (l.ws_message_bytes, "limits.ws_message_bytes"),
            (l.ws_frame_bytes, "limits.ws_frame_bytes"),
            (l.max_connections, "limits.max_connections"),
            (l.max_subscriptions, "limits.max_subscriptions"),
            (l.commands_in_flight, "limits.commands_in_flight"),
            (l.outbound_queue_bytes, "limits.outbound_queue_bytes"),
        ] {
            positive(value as u64, key)?;
        }
        positive(l.header_read_timeout_ms, "limits.header_read_timeout_ms")?;
        positive(u64::from(l.listen_backlog), "limits.listen_backlog")?;
        positive(u64::from(l.commands_per_sec), "limits.commands_per_sec")?;
        positive(u64::from(l.command_burst), "limits.command_burst")?;
        positive(
            l.message_rate_per_minute.into(),
            "limits.message_rate_per_minute",
        )?;
        positive(l.message_burst.into(), "limits.message_burst")?;
        positive(
            l.reaction_rate_per_minute.into(),
            "limits.reaction_rate_per_minute",
        )?;
        positive(l.reaction_burst.into(), "limits.reaction_burst")?;
        positive(
            l.upload_rate_per_minute.into(),
            "limits.upload_rate_per_minute",
        )?;
        positive(
            l.search_rate_per_minute.into(),
            "limits.search_rate_per_minute",
        )?;
        positive(
            l.reactions_per_user_per_message.into(),
            "limits.reactions_per_user_per_message",
        )?;
        positive(l.pins_per_channel.into(), "limits.pins_per_channel")?;
        positive(l.invites_per_hour.into(), "limits.invites_per_hour")?;
        positive(l.api_keys_per_app.into(), "limits.api_keys_per_app")?;
        ensure(
            l.ws_frame_bytes <= l.ws_message_bytes,
            "limits.ws_frame_bytes",
            "must not exceed limits.ws_message_bytes",
        )?;
        ensure(
            (512..=l.ws_frame_bytes).contains(&l.ws_read_buffer_bytes),
            "limits.ws_read_buffer_bytes",
            "must be between 512 and limits.ws_frame_bytes",
        )?;
        ensure(
            l.outbound_queue_bytes >= l.ws_message_bytes,
            "limits.outbound_queue_bytes",
            "must be at least limits.ws_message_bytes",
        )?;

        positive(r.ping_interval_s, "realtime.ping_interval_s")?;
        positive(r.pong_timeout_s, "realtime.pong_timeout_s")?;
        ensure(
            r.pong_timeout_s < r.ping_interval_s,
            "realtime.pong_timeout_s",
            "must be less than realtime.ping_interval_s",
        )?;
        positive(r.history_size as u64, "realtime.history_size")?;

        let w = &self.webhooks;
        positive(w.timeout_ms, "webhooks.timeout_ms")?;
        positive(w.backoff_ms, "webhooks.backoff_ms")?;
        positive(w.disable_after.into(), "webhooks.disable_after")?;
        positive(w.log_keep.into(), "webhooks.log_keep")?;
        positive(w.poll_ms, "webhooks.poll_ms")?;
        positive(
            self.lifecycle.retention_interval_s,
            "lifecycle.retention_interval_s",
        )?;
        positive(
            self.lifecycle.session_sweep_interval_s,
            "lifecycle.session_sweep_interval_s",
        )?;
        let p = &self.previews;
        positive(p.timeout_ms, "previews.timeout_ms")?;
        positive(p.max_bytes, "previews.max_bytes")?;
        positive(p.poll_ms, "previews.poll_ms")?;
        ensure(
            p.max_bytes <= 16 << 20,
            "previews.max_bytes",
            "must be at most 16 MiB",
        )?;
        ensure(
            p.max_redirects <= 10,
            "previews.max_redirects",
            "must be at most 10",
        )?;
        if let Err(why) = chatsdk_actors::hooks::Guard::new(&p.preview_config().allowed_hosts) {
            ensure(false, "previews.allowed_hosts", why)?;
        }
        let m = &self.media;
        positive(m.max_image_bytes, "media.max_image_bytes")?;
        positive(m.max_video_bytes, "media.max_video_bytes")?;
        positive(m.max_file_bytes, "media.max_file_bytes")?;
        positive(m.sweep_interval_s, "media.sweep_interval_s")?;
        for (v, k) in [
            (m.max_image_bytes, "media.max_image_bytes"),
            (m.max_video_bytes, "media.max_video_bytes"),
            (m.max_file_bytes, "media.max_file_bytes"),
        ] {
            ensure(v <= 4 << 30, k, "must be at most 4 GiB")?;
        }
        ensure(w.retries <= 10, "webhooks.retries", "must be at most 10")?;
        if let Err(why) = chatsdk_actors::hooks::Guard::new(&w.hook_config().allowed_hosts) {
            ensure(false, "webhooks.allowed_hosts", why)?;
        }

        positive(a.access_ttl_s, "auth.access_ttl_s")?;
        ensure(
            a.access_ttl_s < a.refresh_ttl_s,
            "auth.access_ttl_s",
            "must be less than auth.refresh_ttl_s",
        )
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid {
        key,
        reason: reason.into(),
    })
}

fn ensure(ok: bool, key: &'static str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        invalid(key, reason)
    }
}

fn positive(value: u64, key: &'static str) -> Result<(), ConfigError> {
    ensure(value > 0, key, "must be greater than 0")
}
