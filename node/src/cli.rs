//! The commands that talk to a running node over its HTTP API: `status`, `node drain`,
//! `node remove`, `backup` (the admin API, with the admin key) and `token` (a user token minted
//! with a server key); `restore` works on a data directory, offline. Each returns what it prints, so tests check the same text a terminal shows.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

use serde_json::Value;

/// Where the node is and which key to present.
#[derive(Clone, Debug)]
pub struct Remote {
    /// Base URL of the node, such as `http://127.0.0.1:8080`.
    pub url: String,
    /// The admin key (for `status` and `node`) or a server key (for `token`).
    pub key: Option<String>,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0} is required (flag or environment variable)")]
    MissingKey(&'static str),
    #[error("cannot reach {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the node: {0}")]
    Answer(String),
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Backup {
        path: String,
        #[source]
        source: chatsdk_cluster::backup::BackupError,
    },
}

fn file_error(path: &Path) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |source| CliError::File {
        path: path.display().to_string(),
        source,
    }
}

fn backup_error(path: &Path) -> impl Fn(chatsdk_cluster::backup::BackupError) -> CliError + '_ {
    move |source| CliError::Backup {
        path: path.display().to_string(),
        source,
    }
}

impl Remote {
    fn key(&self, what: &'static str) -> Result<&str, CliError> {
        self.key.as_deref().ok_or(CliError::MissingKey(what))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        header: (&str, String),
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.url.trim_end_matches('/'));
        let http_error = |source| CliError::Http {
            url: url.clone(),
            source,
        };
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(http_error)?;
        let mut req = client.request(method, &url).header(header.0, header.1);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(http_error)?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(http_error)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let field = |k: &str| {
                value
                    .pointer(&format!("/error/{k}"))
                    .or_else(|| value.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            return Err(CliError::Refused {
                status,
                code: field("code"),
                message: field("message"),
            });
        }
        Ok(value)
    }

    async fn admin(&self, method: reqwest::Method, path: &str) -> Result<Value, CliError> {
        let key = self.key("the admin key (--admin-key, CHATSDK_ADMIN_KEY)")?;
        self.call(
            method,
            path,
            ("authorization", format!("Bearer {key}")),
            None,
        )
        .await
    }
}

/// `chatsdk backup <file>`: downloads an online backup of the node at `remote` into `file`. The
/// bytes go to `<file>.partial` first and become `file` only once the whole backup has been
/// read back and checked, so `file` is never a backup cut short.
pub async fn backup(remote: &Remote, file: &Path) -> Result<String, CliError> {
    let key = remote.key("the admin key (--admin-key, CHATSDK_ADMIN_KEY)")?;
    let url = format!("{}/admin/backup", remote.url.trim_end_matches('/'));
    let http_error = |source| CliError::Http {
        url: url.clone(),
        source,
    };
    // No overall timeout: a large node takes as long as it takes; a stalled one is cut by the
    // read timeout.
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(http_error)?;
    let mut res = client
        .get(&url)
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .map_err(http_error)?;
    if !res.status().is_success() {
        let status = res.status().as_u16();
        let text = res.text().await.map_err(http_error)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let field = |k: &str| {
            value
                .pointer(&format!("/error/{k}"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        return Err(CliError::Refused {
            status,
            code: field("code"),
            message: field("message"),
        });
    }
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let download = async {
        // Readable by its owner only: it holds the node's keys and every message.
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)
            .await
            .map_err(file_error(&partial))?;
        let mut bytes = 0u64;
        while let Some(chunk) = res.chunk().await.map_err(http_error)? {
            out.write_all(&chunk).await.map_err(file_error(&partial))?;
            bytes += chunk.len() as u64;
        }
        out.sync_all().await.map_err(file_error(&partial))?;
        drop(out);
        let check = partial.clone();
        let summary = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&check).map_err(file_error(&check))?;
            chatsdk_cluster::backup::inspect(f).map_err(backup_error(&check))
        })
        .await
        .map_err(|e| CliError::Answer(e.to_string()))??;
        tokio::fs::rename(&partial, file)
            .await
            .map_err(file_error(file))?;
        Ok::<_, CliError>((bytes, summary))
    };
    let (bytes, summary) = match download.await {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    Ok(format!(
        "backup of node {} (cluster {}) in {}: {} bytes, {} raft groups, {} uploaded files\n",
        summary.node_id,
        summary.cluster_id,
        file.display(),
        bytes,
        summary.totals.groups,
        summary.totals.files
    ))
}

/// `chatsdk restore <file> --data-dir <dir>`: checks the whole backup, then writes it into
/// `data_dir` (new or empty); `chatsdk serve` on that directory starts the node that was backed up.
pub async fn restore(file: &Path, data_dir: &Path) -> Result<String, CliError> {
    let path = file.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path).map_err(file_error(&path))?;
        chatsdk_cluster::backup::inspect(f).map_err(backup_error(&path))
    })
    .await
    .map_err(|e| CliError::Answer(e.to_string()))??;
    let f = std::fs::File::open(file).map_err(file_error(file))?;
    let restored = chatsdk_cluster::backup::restore(f, data_dir, &[chatsdk_actors::MEDIA_DIR])
        .await
        .map_err(backup_error(file))?;
    Ok(format!(
        "restored node {} of cluster {} into {}: {} raft groups, {} uploaded files; start it with `chatsdk serve --data-dir {}`\n",
        restored.node_id,
        restored.cluster_id,
        data_dir.display(),
        restored.totals.groups,
        restored.totals.files,
        data_dir.display()
    ))
}

/// The cluster CA and where its rotation stands, one line.
fn ca_line(ca: &Value) -> String {
    let short = |v: &Value| {
        v.as_str()
            .map_or("-".to_string(), |s| s.chars().take(16).collect())
    };
    let waiting: Vec<String> = ca
        .get("waitingFor")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Value::to_string).collect())
        .unwrap_or_default();
    let step = match (
        ca.get("staged").filter(|v| !v.is_null()),
        ca.get("retiring")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty()),
    ) {
        (Some(staged), _) => format!(
            "; rotating to {}: waiting for nodes {} to trust it",
            short(staged),
            waiting.join(", ")
        ),
        (None, true) => format!(
            "; old CA retiring: waiting for nodes {} to renew",
            waiting.join(", ")
        ),
        (None, false) => String::new(),
    };
    format!(
        "cluster CA {}… ({} rotations{step})\n\n",
        ca.get("fingerprint").map_or("-".into(), short),
        ca.get("rotations").and_then(Value::as_u64).unwrap_or(0),
    )
}

/// `chatsdk status`: the cluster as the admin API sees it, as tables.
pub async fn status(remote: &Remote) -> Result<String, CliError> {
    let view = remote.admin(reqwest::Method::GET, "/admin/cluster").await?;
    render_status(&view).ok_or_else(|| CliError::Answer(view.to_string()))
}

/// The tables of `chatsdk status` from the `/admin/cluster` JSON.
pub fn render_status(view: &Value) -> Option<String> {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {} ({} shards, replication {}; answered by node {})\n",
        view.get("clusterId")?.as_str()?,
        view.get("shards")?,
        view.get("replication")?,
        view.get("answeredBy")?,
    );
    if let Some(ca) = view.get("ca") {
        out.push_str(&ca_line(ca));
    }
    let mut nodes = vec![row(&[
        "NODE",
        "STATE",
        "REACHABLE",
        "CLUSTER ADDR",
        "HTTP ADDR",
        "VERSION",
        "UPTIME",
        "WS",
        "QUIC",
        "SESSIONS",
        "REPLICAS",
        "LEADS",
        "DRAINING",
    ])];
    for n in view.get("nodes")?.as_array()? {
        let num = |k: &str| n.get(k).and_then(Value::as_u64).map(|v| v.to_string());
        let conns = |k: &str| {
            n.pointer(&format!("/connections/{k}"))
                .and_then(Value::as_u64)
                .map(|v| v.to_string())
        };
        // How long the answering node has found it unreachable, when it has.
        let reachable = match (n.get("reachable")?.as_bool()?, num("unreachableForS")) {
            (true, _) => "yes".to_string(),
            (false, Some(s)) => format!("NO ({s} s)"),
            (false, None) => "NO".to_string(),
        };
        nodes.push(row(&[
            &n.get("id")?.to_string(),
            n.get("state")?.as_str()?,
            &reachable,
            n.get("clusterAddr")?.as_str()?,
            n.get("httpAddr").and_then(Value::as_str).unwrap_or("-"),
            n.get("version").and_then(Value::as_str).unwrap_or("-"),
            &n.get("uptimeS")
                .and_then(Value::as_u64)
                .map_or("-".into(), uptime),
            &conns("websocket").unwrap_or("-".into()),
            &conns("quic").unwrap_or("-".into()),
            &num("sessions").unwrap_or("-".into()),
            &num("replicas").unwrap_or("-".into()),
            &num("leads").unwrap_or("-".into()),
            match n.get("draining").and_then(Value::as_bool) {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
        ]));
    }
    out.push_str(&table(&nodes));
    out.push('\n');
    let mut groups = vec![row(&[
        "GROUP",
        "KIND",
        "LEADER",
        "PREFERRED",
        "REPLICAS",
        "TERM",
        "LOG",
        "APPLIED",
        "SETTLED",
    ])];
    for g in view.get("groups")?.as_array()? {
        let opt = |k: &str| match g.get(k) {
            Some(Value::Null) | None => "-".to_string(),
            Some(v) => v.to_string(),
        };
        let replicas: Vec<String> = g
            .get("replicas")?
            .as_array()?
            .iter()
            .map(ToString::to_string)
            .collect();
        groups.push(row(&[
            &g.get("id")?.to_string(),
            g.get("kind")?.as_str()?,
            &opt("leader"),
            &opt("preferredLeader"),
            &replicas.join(","),
            &opt("term"),
            &opt("lastLogIndex"),
            &opt("appliedIndex"),
            if g.get("settled")?.as_bool()? {
                "yes"
            } else {
                "no"
            },
        ]));
    }
    out.push_str(&table(&groups));
    Some(out)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns two spaces apart.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn uptime(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `chatsdk node drain <id>`.
pub async fn drain_node(remote: &Remote, id: u64) -> Result<String, CliError> {
    remote
        .admin(
            reqwest::Method::POST,
            &format!("/admin/cluster/nodes/{id}/drain"),
        )
        .await?;
    Ok(format!(
        "node {id} is draining: readiness is off, its realtime clients were asked to reconnect elsewhere, and its shard leaders move to other replicas (watch `chatsdk status` until it leads none)\n"
    ))
}

/// `chatsdk cluster join-token`: mints a token for `serve --join-token` and prints it alone
/// on stdout (when it expires goes to stderr), so scripts can capture it.
pub async fn join_token(
    remote: &Remote,
    ttl_seconds: u64,
    single_use: bool,
) -> Result<(String, String), CliError> {
    let key = remote.key("the admin key (--admin-key, CHATSDK_ADMIN_KEY)")?;
    let minted = remote
        .call(
            reqwest::Method::POST,
            "/admin/cluster/join-tokens",
            ("authorization", format!("Bearer {key}")),
            Some(serde_json::json!({"ttlSeconds": ttl_seconds, "singleUse": single_use})),
        )
        .await?;
    let token = minted["token"]
        .as_str()
        .ok_or_else(|| CliError::Answer(minted.to_string()))?;
    let note = format!(
        "expires at {}{}\n",
        minted["expiresAt"].as_str().unwrap_or("?"),
        if single_use { "; admits one node" } else { "" }
    );
    Ok((format!("{token}\n"), note))
}

/// `chatsdk cluster rotate-ca`: starts replacing the cluster CA.
pub async fn rotate_ca(remote: &Remote) -> Result<String, CliError> {
    let started = remote
        .admin(reqwest::Method::POST, "/admin/cluster/ca/rotate")
        .await?;
    Ok(format!(
        "new cluster CA {} staged: every node trusts it, then renews under it, then the old CA is trusted no more (watch `chatsdk status`); join tokens minted before must be minted again\n",
        started["fingerprint"].as_str().unwrap_or("?")
    ))
}

/// `chatsdk cluster rotate-token-secret`: replaces the secret user tokens are signed with.
pub async fn rotate_token_secret(
    remote: &Remote,
    grace_seconds: Option<u64>,
) -> Result<String, CliError> {
    let key = remote.key("the admin key (--admin-key, CHATSDK_ADMIN_KEY)")?;
    let body = match grace_seconds {
        Some(g) => serde_json::json!({ "graceSeconds": g }),
        None => serde_json::json!({}),
    };
    let rotated = remote
        .call(
            reqwest::Method::POST,
            "/admin/cluster/token-secret/rotate",
            ("authorization", format!("Bearer {key}")),
            Some(body),
        )
        .await?;
    Ok(format!(
        "user tokens are signed with key {} from now on; those of key {} pass until {}\n",
        rotated["kid"].as_str().unwrap_or("?"),
        rotated["previousKid"].as_str().unwrap_or("-"),
        rotated["previousValidUntil"].as_str().unwrap_or("-"),
    ))
}

/// `chatsdk node remove <id>`.
pub async fn remove_node(remote: &Remote, id: u64) -> Result<String, CliError> {
    remote
        .admin(
            reqwest::Method::DELETE,
            &format!("/admin/cluster/nodes/{id}"),
        )
        .await?;
    Ok(format!(
        "node {id} is leaving: its replicas move to the other nodes, then it is removed (watch `chatsdk status`)\n"
    ))
}

/// `chatsdk token --user <id>`: mints tokens for a user with a server key (creating the user
/// if needed); prints the access token, then the realtime and refresh tokens.
pub async fn token(remote: &Remote, user: &str, name: Option<&str>) -> Result<String, CliError> {
    let key = remote.key("a server API key (--api-key, CHATSDK_API_KEY)")?;
    let mut body = serde_json::json!({ "userId": user });
    if let Some(n) = name {
        body["name"] = Value::String(n.to_string());
    }
    let minted = remote
        .call(
            reqwest::Method::POST,
            "/tokens",
            ("x-api-key", key.to_string()),
            Some(body),
        )
        .await?;
    let field = |k: &str| {
        minted
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| CliError::Answer(minted.to_string()))
    };
    Ok(format!(
        "{}\n# realtime (connection) token: {}\n# refresh token: {}\n# expires in {} s\n",
        field("token")?,
        field("wsToken")?,
        field("refreshToken")?,
        minted.get("expiresIn").and_then(Value::as_u64).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_renders_nodes_and_groups_as_aligned_tables() {
        let view = serde_json::json!({
            "clusterId": "c1", "answeredBy": 1, "shards": 2, "replication": 3,
            "nodes": [
                {"id": 1, "state": "active", "clusterAddr": "127.0.0.1:7400", "reachable": true,
                 "httpAddr": "127.0.0.1:8080", "version": "0.1.0", "uptimeS": 3725,
                 "connections": {"websocket": 3, "quic": 1}, "sessions": 4, "subscriptions": 9,
                 "channelActors": 2, "draining": false, "replicas": 3, "leads": 2},
                {"id": 2, "state": "active", "clusterAddr": "127.0.0.1:7401", "reachable": false,
                 "unreachableForS": 95, "httpAddr": null, "version": null, "uptimeS": null, "connections": null,
                 "sessions": null, "draining": null, "replicas": null, "leads": null}
            ],
            "groups": [
                {"id": 0, "kind": "directory", "replicas": [1], "preferredLeader": null,
                 "settled": true, "leader": 1, "term": 2, "lastLogIndex": 40, "appliedIndex": 40}
            ]
        });
        let text = render_status(&view).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("cluster c1 (2 shards"), "{text}");
        assert!(lines[2].starts_with("NODE  STATE   REACHABLE"), "{text}");
        assert!(lines[3].contains("1h2m"), "{text}");
        assert!(lines[4].contains(" NO (95 s) "), "{text}");
        assert!(text.contains("0      directory  1"), "{text}");
    }
}
