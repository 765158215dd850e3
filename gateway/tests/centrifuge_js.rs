//! The public `centrifuge` JavaScript client, installed from the npm registry into a temp dir
//! and run with node, against a real node: connect with a token minted over REST, subscribe,
//! receive `message.new`, drop the connection, miss messages, reconnect and recover exactly the
//! missed ones. Needs `node` and `npm` (`scripts/test` installs them when missing).

mod support;

use std::process::Command;

use chatsdk_gateway::GatewayConfig;
use serde_json::{json, Value};
use support::{Cred, Rest, TestNode};

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what} could not start ({e}); install node and npm (scripts/test does)")
    });
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_centrifuge_client_recovers_missed_messages() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/recover.mjs"),
        dir.path().join("recover.mjs"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "chatsdk-centrifuge-test", "private": true, "type": "module"}"#,
    )
    .unwrap();
    let install = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        run(
            Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "centrifuge@5",
                    "ws@8",
                ])
                .current_dir(&install),
            "npm install centrifuge",
        )
    })
    .await
    .unwrap();

    let node = TestNode::start(GatewayConfig::default()).await;
    let rest = Rest::new(&node);
    let (app, key) = node.app("js").await;
    let minted = rest
        .call(
            "POST",
            "/api/auth/connect",
            Cred::Key(&key),
            Some(json!({"userId": "js-user", "displayName": "JS"})),
        )
        .await;
    assert_eq!(minted.status, 200, "{minted:?}");
    let token = minted.body["token"].as_str().unwrap().to_string();
    let ws_token = minted.body["_internal"]["wsToken"]
        .as_str()
        .unwrap()
        .to_string();
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&token),
            Some(json!({"type": "group", "name": "js room"})),
        )
        .await;
    assert_eq!(ch.status, 201, "{ch:?}");
    let channel = ch.body["id"].as_str().unwrap().to_string();

    let script_dir = dir.path().to_path_buf();
    let args = vec![
        node.ws_url(),
        format!("http://{}", node.http),
        token,
        ws_token,
        app,
        channel,
    ];
    let out = tokio::task::spawn_blocking(move || {
        run(
            Command::new("node")
                .arg("recover.mjs")
                .args(&args)
                .current_dir(&script_dir),
            "node recover.mjs",
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let seen: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("unexpected output {stdout:?}: {e}"));
    assert_eq!(seen["recovered"], true, "{seen}");
    assert_eq!(seen["wasRecovering"], true, "{seen}");
    assert_eq!(
        seen["texts"],
        json!(["live-1", "missed-1", "missed-2", "missed-3"]),
        "exactly the missed messages, once each: {seen}"
    );
    let offsets: Vec<u64> = seen["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[1] == w[0] + 1),
        "offsets without gaps: {offsets:?}"
    );
    node.stop().await;
}
