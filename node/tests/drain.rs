//! Draining before an upgrade, as an operator does it with the binary: `chatsdk node drain`
//! moves the node's shard leaders to the other replicas (the cluster view shows it leading
//! nothing, writes go on), SIGTERM stops it, and once it starts again on its data directory it
//! is active and leads its share again.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Node, ADMIN_KEY, BIN, WAIT};

async fn view(base: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}/admin/cluster"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls the cluster view until `pred` holds for node `id`'s row.
async fn until_node(base: &str, id: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = view(base).await;
        let row = v["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["id"] == id))
            .cloned()
            .unwrap_or(Value::Null);
        if pred(&row) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(base: &str, key: &str, channel: &str, text: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/messages"))
            .header("X-API-Key", key)
            .json(&serde_json::json!({
                "channel_id": channel, "user_id": "operator", "text": text, "client_msg_id": text
            }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 201 || status == 200 {
            return;
        }
        let body = r.text().await.unwrap_or_default();
        assert!(
            status == 503 && Instant::now() < deadline,
            "send {text}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_leads_nothing_until_it_restarts() {
    let mut first = Node::start(&[]);
    let base = first.base();
    first.until("join token");
    let key = first.value_after("server API key (shown once):");
    let token = support::mint_join_token(&base);
    let peer = first.cluster_addr();
    let join = ["--join", peer.as_str(), "--join-token", token.as_str()];
    let mut second = Node::start(&join);
    second.base();
    let mut third = Node::start(&join);
    third.base();
    let leads = |row: &Value| row["state"] == "active" && row["leads"].as_u64() > Some(0);
    until_node(&base, 3, "node 3 active and leading a shard", leads).await;

    let client = reqwest::Client::new();
    for user in ["operator"] {
        let r = client
            .post(format!("{base}/api/users"))
            .header("X-API-Key", &key)
            .json(&serde_json::json!({ "user_id": user }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{r:?}");
    }
    let r = client
        .post(format!("{base}/api/channels"))
        .header("X-API-Key", &key)
        .json(&serde_json::json!({
            "type": "group", "name": "drain room",
            "user_id": "operator", "member_ids": ["operator"]
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{r:?}");
    let created: Value = r.json().await.unwrap();
    let channel = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    send(&base, &key, &channel, "before").await;

    let out = Command::new(BIN)
        .args([
            "node",
            "drain",
            "3",
            "--url",
            &base,
            "--admin-key",
            ADMIN_KEY,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let drained = |row: &Value| row["state"] == "draining" && row["leads"] == 0;
    let v = until_node(&base, 3, "node 3 draining and leading nothing", drained).await;
    for g in v["groups"].as_array().unwrap() {
        if g["kind"] == "shard" {
            assert_ne!(g["leader"], 3, "{g}");
        }
    }
    send(&base, &key, &channel, "while draining").await;
    let dir = third.terminate();
    send(&base, &key, &channel, "while it is stopped").await;
    // Dev mode, which lets anyone create apps and keys, is refused on a member of a cluster.
    let mut dev = Command::new(BIN)
        .args(["serve", "--dev", "--data-dir"])
        .arg(dir.path())
        .args(["--http", "127.0.0.1:0", "--cluster-addr", "127.0.0.1:0"])
        .args(["--quic-port", "0"])
        .env("CHATSDK_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = dev.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = dev.kill();
            panic!("a cluster member started in dev mode");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut dev.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("cluster of 3 nodes"), "{err}");

    let mut back = Node::start_in(dir, &join);
    back.base();
    until_node(&base, 3, "node 3 active and leading again", leads).await;
    send(&base, &key, &channel, "after the restart").await;
}
