//! The `chatsdk` binary as a user runs it: `serve --dev` prints working credentials, serves,
//! drains on SIGTERM and restarts from its data directory; bad configuration is refused before
//! any port is bound.

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

use support::{Node, BIN, WAIT};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn serve_dev_works_as_the_readme_says_and_drains_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // A data directory made under a permissive umask: the node makes it owner-only.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = &data;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut server = Node::start_at(dir, &["--dev"], &[]);
    let base = server.base();
    server.until("join token");
    assert_eq!(mode(dir), 0o700, "the data directory");
    assert_eq!(mode(&dir.join("tls")), 0o700, "the TLS directory");
    assert_eq!(mode(&dir.join("tls/quic-key.pem")), 0o600, "the QUIC key");
    let token = server.value_after("token for user-1:");
    let key = server.value_after("server API key (shown once):");
    assert_eq!(
        server
            .seen
            .iter()
            .filter(|l| l.contains("server API key"))
            .count(),
        1,
        "dev mode prints one key: {:#?}",
        server.seen
    );
    let demo = "00000000-0000-0000-0000-000000000002";
    let health = http().get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let sent = send_readme_message(&base, demo, &token).await;
    assert_eq!(sent.status(), 201);
    let sent: serde_json::Value = sent.json().await.unwrap();
    let users = http()
        .get(format!("{base}/api/users/user-2"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let users: serde_json::Value = users.json().await.unwrap();
    assert_eq!(users["name"], "Bob");
    let out = server.terminate_output();
    assert!(out.iter().any(|l| l.contains("draining")), "{out:#?}");

    // A restart keeps everything and creates no second default app.
    let mut again = Node::start_at(dir, &[], &[]);
    let base = again.base();
    again.until("join token");
    assert!(
        !again.seen.iter().any(|l| l.contains("shown once")),
        "{:#?}",
        again.seen
    );
    let listed = http()
        .get(format!(
            "{base}/api/channels/{demo}/messages?user_id=user-1"
        ))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    let listed: serde_json::Value = listed.json().await.unwrap();
    assert_eq!(
        listed["messages"][0]["text"], "hello from the readme",
        "{listed}"
    );
    // A client's retry after the restart still finds the first send (through the stream's
    // stored id index, not a cache of the previous process).
    let retry = send_readme_message(&base, demo, &token).await;
    assert_eq!(retry.status(), 200);
    let retry: serde_json::Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], sent["id"], "{retry}");
    assert_eq!(retry["duplicate"], true, "{retry}");
    again.terminate_output();
}

/// The README's example message, with a client message id (so a second send is a retry).
async fn send_readme_message(base: &str, channel: &str, token: &str) -> reqwest::Response {
    http()
        .post(format!("{base}/api/channels/{channel}/messages"))
        .bearer_auth(token)
        .json(&serde_json::json!({"text": "hello from the readme", "clientMsgId": "readme-1"}))
        .send()
        .await
        .unwrap()
}

#[test]
fn bad_configuration_is_refused_before_any_port_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chatsdk.toml");
    std::fs::write(&file, "[server]\nhtttp = \"127.0.0.1:1\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("htttp"), "{err}");
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("CHATSDK_LIMITS__BODY_BYTES", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHATSDK_LIMITS__BODY_BYTES"));
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("CHATSDK_LIMITS__WS_FRAME_BYTES", "999999")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ws_frame_bytes"));
    let out = Command::new(BIN)
        .args([
            "serve",
            "--dev",
            "--join",
            "127.0.0.1:7400",
            "--join-token",
            "t",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.dev"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !dir.path().join("db").exists() && std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "nothing was started"
    );
    let printed = Command::new(BIN)
        .args(["config", "print"])
        .env("CHATSDK_SERVER__HTTP", "127.0.0.1:9999")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(
        text.contains("[server]") && text.contains("127.0.0.1:9999") && text.contains("[limits]"),
        "{text}"
    );
    let version = Command::new(BIN).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("chatsdk "));
}

/// A data directory written by the first builds (JSON records, no format marker) is refused
/// at start with a message that names the formats and what to do; it is not opened as empty.
#[test]
fn a_data_directory_of_an_older_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("g0.sm")
            .unwrap()
            .insert(b"d\0app\0x", &br#"{"id":"x"}"#[..])
            .unwrap();
        db.flush().unwrap();
    }
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(["--http", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("format 1") && err.contains("format 9") && err.contains("older chatsdk"),
        "{err}"
    );
}

/// Searches the demo channel as user-1 until `q` counts `want` hits.
async fn search_until(base: &str, token: &str, q: &str, want: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = http()
            .get(format!("{base}/api/search?q={q}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        if body["totalHits"].as_u64() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{q}: wanted {want} hits, last answer {body}"
        );
        // Slowly enough to stay inside the default search rate (90 per minute, burst 90).
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_restarted_node_keeps_its_search_index_and_rebuilds_a_lost_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Node::start_at(dir.path(), &["--dev"], &[]);
    let base = server.base();
    server.until("join token");
    let token = server.value_after("token for user-1:");
    let demo = "00000000-0000-0000-0000-000000000002";
    let post = |base: String, text: String| {
        let token = token.clone();
        async move {
            let r = http()
                .post(format!("{base}/api/channels/{demo}/messages"))
                .bearer_auth(&token)
                .json(&serde_json::json!({"text": text}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    };
    for i in 0..20 {
        post(base.clone(), format!("note {i} about zebras")).await;
    }
    search_until(&base, &token, "zebras", 20).await;
    server.terminate_output();

    // Restarted with its index: it goes on from the position its last commit recorded.
    let mut again = Node::start_at(dir.path(), &[], &[]);
    let base = again.base();
    again.until("join token");
    search_until(&base, &token, "zebras", 20).await;
    post(base.clone(), "one more note about zebras".into()).await;
    search_until(&base, &token, "zebras", 21).await;
    again.terminate_output();

    // Restarted without it: rebuilt from the shards' messages.
    std::fs::remove_dir_all(dir.path().join("search")).unwrap();
    let mut third = Node::start_at(dir.path(), &[], &[]);
    let base = third.base();
    third.until("join token");
    search_until(&base, &token, "zebras", 21).await;
    search_until(&base, &token, "note%2017", 1).await;
    third.terminate_output();
}

/// Runs the binary with `args` (and `env`), returning its exit success and stdout + stderr.
fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The operator's commands against a running node: `status` shows the node and its groups,
/// `token` mints a token that works, `node drain` turns readiness off; `config print` hides
/// secrets and `config check` refuses what `serve` would refuse.
#[tokio::test]
async fn the_cli_shows_the_cluster_mints_tokens_and_drains_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "admin-key-for-the-cli-test";
    let mut server = Node::start_at(
        dir.path(),
        &["--dev"],
        &[("CHATSDK_SERVER__ADMIN_API_KEY", admin)],
    );
    let base = server.base();
    server.until("join token");
    let key = server.value_after("server API key (shown once):");
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.contains(&format!("{base}/metrics"))),
        "{:#?}",
        server.seen
    );

    let status = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            run_cli(&["status", "--url", &base], &[("CHATSDK_ADMIN_KEY", admin)])
        })
        .await
        .unwrap()
    };
    assert!(status.0, "{}", status.1);
    let table = status.1;
    assert!(table.starts_with("cluster "), "{table}");
    assert!(
        table.contains("cluster CA ") && table.contains("(0 rotations)"),
        "{table}"
    );
    let node_row = table
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        node_row.contains("active") && node_row.contains("yes"),
        "{table}"
    );
    assert!(
        node_row.contains(base.trim_start_matches("http://")),
        "{table}"
    );
    assert!(
        table.contains("directory") && table.contains("shard"),
        "{table}"
    );
    let rotated = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            run_cli(
                &["cluster", "rotate-ca", "--url", &base],
                &[("CHATSDK_ADMIN_KEY", admin)],
            )
        })
        .await
        .unwrap()
    };
    assert!(rotated.0 && rotated.1.contains("staged"), "{}", rotated.1);
    let refused = run_cli(
        &["status", "--url", &base, "--admin-key", "wrong-key-0000000"],
        &[],
    );
    assert!(!refused.0 && refused.1.contains("401"), "{}", refused.1);

    let minted = {
        let (base, key) = (base.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            run_cli(
                &[
                    "token", "--user", "cli-user", "--name", "Cli", "--url", &base,
                ],
                &[("CHATSDK_API_KEY", &key)],
            )
        })
        .await
        .unwrap()
    };
    assert!(minted.0, "{}", minted.1);
    let token = minted.1.lines().next().unwrap().trim().to_string();
    let me = http()
        .get(format!("{base}/api/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: serde_json::Value = me.json().await.unwrap();
    assert_eq!(me["name"], "Cli", "{me}");

    let ready = http().get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let drained = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            run_cli(
                &["node", "drain", "1", "--url", &base, "--admin-key", admin],
                &[],
            )
        })
        .await
        .unwrap()
    };
    assert!(drained.0, "{}", drained.1);
    let ready = http().get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let unknown = run_cli(
        &["node", "remove", "42", "--url", &base, "--admin-key", admin],
        &[],
    );
    assert!(!unknown.0 && unknown.1.contains("404"), "{}", unknown.1);
    server.terminate_output();

    let printed = run_cli(
        &["config", "print", "--dev"],
        &[("CHATSDK_SERVER__ADMIN_API_KEY", admin)],
    );
    assert!(printed.0, "{}", printed.1);
    assert!(!printed.1.contains(admin), "{}", printed.1);
    assert!(
        printed.1.contains("<redacted>") && printed.1.contains("dev = true"),
        "{}",
        printed.1
    );
    let shown = run_cli(
        &["config", "print", "--show-secrets"],
        &[("CHATSDK_SERVER__ADMIN_API_KEY", admin)],
    );
    assert!(shown.1.contains(admin), "{}", shown.1);
    let ok = run_cli(&["config", "check", "--http", "0.0.0.0:9000"], &[]);
    assert!(ok.0 && ok.1.contains("configuration ok"), "{}", ok.1);
    let bad = run_cli(
        &["config", "check"],
        &[("CHATSDK_SERVER_HTTP", "0.0.0.0:9000")],
    );
    assert!(!bad.0 && bad.1.contains("CHATSDK_SERVER_HTTP"), "{}", bad.1);
}

/// Uploads `bytes` as a text file into `channel` (presigned flow) and returns its download URL.
async fn upload_text(base: &str, token: &str, channel: &str, bytes: &'static [u8]) -> String {
    let declared: serde_json::Value = http()
        .post(format!("{base}/api/uploads/presigned"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "channelId": channel, "filename": "notes.txt",
            "contentType": "text/plain", "size": bytes.len()
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut put = http().put(declared["uploadUrl"].as_str().unwrap().to_string());
    for (name, value) in declared["headers"].as_object().unwrap() {
        put = put.header(name.as_str(), value.as_str().unwrap());
    }
    let put = put.body(bytes).send().await.unwrap();
    assert!(put.status().is_success(), "{put:?}");
    let key = declared["key"].as_str().unwrap();
    let confirmed: serde_json::Value = http()
        .post(format!(
            "{base}/api/uploads/{}/confirm",
            key.replace('/', "%2F")
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    confirmed["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{confirmed}"))
        .to_string()
}

async fn message_texts(base: &str, channel: &str, token: &str) -> Vec<String> {
    let listed: serde_json::Value = http()
        .get(format!("{base}/api/channels/{channel}/messages?limit=50"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut texts: Vec<String> = listed["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect();
    texts.sort();
    texts
}

/// `chatsdk backup` takes a backup of a serving node; `chatsdk restore` writes it into a new
/// data directory, where the node starts with what it held at the backup (messages, users,
/// tokens, uploaded files) and nothing written after it. A cut-short file, a file that is not a
/// backup and a non-empty target directory are refused with the reason.
#[tokio::test]
async fn backup_of_a_running_node_restores_into_a_node_that_starts_with_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "admin-key-for-the-backup-test";
    let env = [("CHATSDK_SERVER__ADMIN_API_KEY", admin)];
    let mut server = Node::start_at(dir.path(), &["--dev"], &env);
    let base = server.base();
    server.until("join token");
    let token = server.value_after("token for user-1:");
    let demo = "00000000-0000-0000-0000-000000000002";
    for text in ["before-1", "before-2", "before-3"] {
        let sent = http()
            .post(format!("{base}/api/channels/{demo}/messages"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "text": text }))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 201);
    }
    let file_url = upload_text(&base, &token, demo, b"kept across a restore\n").await;

    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("node.backup");
    let taken = {
        let (base, backup) = (base.clone(), backup.clone());
        tokio::task::spawn_blocking(move || {
            run_cli(
                &["backup", backup.to_str().unwrap(), "--url", &base],
                &[("CHATSDK_ADMIN_KEY", admin)],
            )
        })
        .await
        .unwrap()
    };
    assert!(taken.0, "{}", taken.1);
    assert!(
        taken.1.contains("backup of node 1") && taken.1.contains("1 uploaded files"),
        "{}",
        taken.1
    );
    assert!(!work.path().join("node.backup.partial").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "a backup is readable by its owner only: {mode:o}"
    );
    let after = http()
        .post(format!("{base}/api/channels/{demo}/messages"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "text": "after-backup" }))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 201);
    let refused = run_cli(
        &[
            "backup",
            "x",
            "--url",
            &base,
            "--admin-key",
            "wrong-key-0000000",
        ],
        &[],
    );
    assert!(!refused.0 && refused.1.contains("401"), "{}", refused.1);
    server.terminate_output();

    // Damaged inputs and a used directory are refused, and leave nothing behind.
    let whole = std::fs::read(&backup).unwrap();
    let cut = work.path().join("cut.backup");
    std::fs::write(&cut, &whole[..whole.len() - 10]).unwrap();
    let target = work.path().join("restored");
    let t = target.to_str().unwrap();
    let (ok, out) = run_cli(&["restore", cut.to_str().unwrap(), "--data-dir", t], &[]);
    assert!(!ok && out.contains("ends"), "{out}");
    assert!(!target.exists(), "a refused backup writes nothing");
    let (ok, out) = run_cli(&["restore", "Cargo.toml", "--data-dir", t], &[]);
    assert!(
        !ok && out.contains("does not start like a chatsdk backup"),
        "{out}"
    );
    let used = dir.path().to_str().unwrap();
    let (ok, out) = run_cli(
        &["restore", backup.to_str().unwrap(), "--data-dir", used],
        &[],
    );
    assert!(!ok && out.contains("not empty"), "{out}");

    let (ok, out) = run_cli(&["restore", backup.to_str().unwrap(), "--data-dir", t], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("restored node 1"), "{out}");
    assert!(!target.join("RESTORE-INCOMPLETE").exists());

    // A restore that did not finish leaves its marker, and the directory is refused.
    let cut_short = work.path().join("cut-short");
    std::fs::create_dir(&cut_short).unwrap();
    std::fs::write(cut_short.join("RESTORE-INCOMPLETE"), b"").unwrap();
    let (ok, out) = run_cli(
        &[
            "serve",
            "--data-dir",
            cut_short.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--cluster-addr",
            "127.0.0.1:0",
            "--quic-port",
            "0",
        ],
        &[],
    );
    assert!(!ok && out.contains("did not finish"), "{out}");

    // The restored node is the node that was backed up: the same cluster secret (the old token
    // works), the messages up to the backup, the uploaded file.
    let mut restored = Node::start_at(&target, &[], &env);
    let base = restored.base();
    restored.until("join token");
    let deadline = Instant::now() + WAIT;
    let texts = loop {
        let texts = message_texts(&base, demo, &token).await;
        if texts.len() >= 3 || Instant::now() > deadline {
            break texts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(texts, ["before-1", "before-2", "before-3"]);
    let file_url = file_url.replacen(&file_url[..file_url.find("/api/").unwrap_or(0)], &base, 1);
    let file = http().get(&file_url).send().await.unwrap();
    assert_eq!(file.status(), 200, "{file_url}");
    assert_eq!(&file.bytes().await.unwrap()[..], b"kept across a restore\n");
    // It goes on taking writes.
    let sent = http()
        .post(format!("{base}/api/channels/{demo}/messages"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "text": "after-restore" }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);
    restored.terminate_output();
}

/// A node whose `cluster.join` names itself creates the cluster only when told to: the first
/// node of a cluster that lost its data would otherwise found a second one.
#[test]
fn a_join_target_with_an_empty_directory_bootstraps_only_when_told() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    // Advertised as the join target; it listens on an ephemeral port all the same.
    let me = "127.0.0.1:9";
    let join = ["--join", me, "--join-token", "unused-when-bootstrapping"];
    let env = [("CHATSDK_CLUSTER__ADVERTISE", me)];
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .args(["--http", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0"])
        .args(["--quic-port", "0"])
        .args(join)
        .envs(env)
        .env("CHATSDK_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--bootstrap") && err.contains(me), "{err}");
    assert!(!dir.join("db").exists(), "nothing was created");

    let mut told = join.to_vec();
    told.push("--bootstrap");
    let mut first = Node::start_at(&dir, &told, &env);
    first.base();
    first.terminate_output();
    // Its directory now belongs to the cluster: it restarts without being told again.
    let mut again = Node::start_at(&dir, &join, &env);
    again.base();
    again.terminate_output();
}
