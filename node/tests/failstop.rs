//! Fail-stop: a node whose disk stops taking writes exits with status 74 and one clear line
//! instead of serving on; restarted on the same directory, it has every message it
//! acknowledged. Two failures: a write that fails (a file-size limit, so writes past it fail
//! with EFBIG as on a full or failing disk) and a sync that fails (`fdatasync` and `fsync`
//! answer EIO through a preloaded shim, `support/failsync.c`, as when write-back failed).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Node, WAIT};

/// The node's files may not grow past this (KiB): its Raft log reaches it after a megabyte or
/// two of messages.
const FILE_LIMIT_KIB: u64 = 3 * 1024;
/// Limits meant for humans would throttle the sends long before the disk fills.
const ENV: [(&str, &str); 1] = [("CHATSDK_LIMITS__BENCH_PROFILE", "true")];

async fn get(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let res = http.get(url).bearer_auth(token).send().await.unwrap();
    res.json().await.unwrap()
}

#[tokio::test]
async fn a_node_whose_disk_fails_stops_and_restarts_with_what_it_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let node = Node::start_with_file_limit(&dir, &["--dev"], &ENV, FILE_LIMIT_KIB);
    fails_then_restarts_whole(node, &dir, |_| {}, "File too large").await;
}

#[tokio::test]
async fn a_node_whose_sync_fails_stops_and_restarts_with_what_it_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let trigger = tmp.path().join("fail-syncs");
    let lib = support::failsync_lib();
    let env = [
        ENV[0],
        ("LD_PRELOAD", lib.to_str().unwrap()),
        ("FAILSYNC_TRIGGER", trigger.to_str().unwrap()),
    ];
    let node = Node::start_at(&dir, &["--dev"], &env);
    // Syncs fail from the 30th send on: the node must notice at its next sync.
    let trip = |i: usize| {
        if i == 30 {
            std::fs::write(&trigger, b"").unwrap();
        }
    };
    fails_then_restarts_whole(node, &dir, trip, "Input/output error").await;
}

/// Sends ~9 KB messages through `node` (calling `before_send` with each send's number) until
/// it stops answering; checks it exited with 74 and a storage failure line containing
/// `cause`; restarts it on `dir` without the fault and checks that every acknowledged message
/// is there, once, in order.
async fn fails_then_restarts_whole(
    mut node: Node,
    dir: &Path,
    mut before_send: impl FnMut(usize),
    cause: &str,
) {
    let base = node.base();
    let token = node.value_after("token for user-1:");
    let http = reqwest::Client::new();
    let channels = get(&http, &format!("{base}/api/channels"), &token).await;
    let channel = channels["channels"][0]["id"].as_str().unwrap().to_string();

    // Sends of ~9 KB each until the node stops answering (bounded in count and time).
    let filler = "a".repeat(9000);
    let mut acknowledged = Vec::new();
    let deadline = Instant::now() + WAIT;
    for i in 0..2000 {
        assert!(
            Instant::now() < deadline,
            "the node still serves after {i} sends"
        );
        before_send(i);
        let text = format!("{i:05} {filler}");
        let res = http
            .post(format!("{base}/api/channels/{channel}/messages"))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(10))
            .json(&json!({ "text": text }))
            .send()
            .await;
        match res {
            Ok(r) if r.status() == 201 => acknowledged.push(format!("{i:05}")),
            Ok(r) if r.status().is_server_error() => {}
            Ok(r) => panic!("send {i}: {}", r.status()),
            Err(_) => break, // the node is gone
        }
    }
    assert!(acknowledged.len() > 20, "{}", acknowledged.len());
    eprintln!(
        "acknowledged {} sends before the disk failed",
        acknowledged.len()
    );
    let (status, output) = node.wait_exit();
    assert_eq!(status.code(), Some(74), "{output:#?}");
    let line = output
        .iter()
        .find(|l| l.starts_with("chatsdk: storage failed"))
        .unwrap_or_else(|| panic!("no storage failure line in {output:#?}"));
    assert!(line.contains(cause), "{line}");
    eprintln!("the node said: {line}");

    // Restarted without the fault: every acknowledged message is there, once, in order.
    let mut again = Node::start_at(dir, &[], &ENV);
    let base = again.base();
    let mut texts: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/channels/{channel}/messages?limit=200");
        if let Some(b) = &before {
            url.push_str(&format!("&before={b}"));
        }
        let page = get(&http, &url, &token).await;
        let messages = page["messages"].as_array().unwrap();
        let mut batch: Vec<String> = messages
            .iter()
            .filter_map(|m| m["text"].as_str())
            .filter(|t| t.ends_with(&filler))
            .map(|t| t[..5].to_string())
            .collect();
        batch.extend(texts);
        texts = batch;
        if page["hasMore"] != true || messages.is_empty() {
            break;
        }
        before = messages[0]["id"].as_str().map(str::to_string);
    }
    let lost: Vec<&String> = acknowledged.iter().filter(|a| !texts.contains(a)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let mut sorted = texts.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, texts, "once each, in order");
    again.terminate_output();
}
