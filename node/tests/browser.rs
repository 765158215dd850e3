//! The browser pages in a real headless Chromium, driven by `playwright-core` (installed from the
//! npm registry into a temp dir, as `gateway/tests/centrifuge_js.rs` does) against `chatsdk`
//! processes on ephemeral ports:
//! - the demo chat page: Alice and Bob chat in realtime both ways; Bob goes offline while Alice
//!   sends two messages, reconnects and his page recovers exactly those, once each; a reconnect
//!   while Alice sends still shows every message once;
//! - the operator console against a three-node cluster: the admin key, the three nodes and the
//!   Raft groups, metrics, an app's keys, users and channels, draining a node;
//! - on every page: no console error, no uncaught error, no request to another origin (the
//!   pages' content security policy would log one as a console error).
//!
//! Needs node, npm and Chromium at /usr/bin/chromium (or `CHROMIUM`); `scripts/test` installs
//! Debian's packages when they are missing. The scripts are in `tests/browser/`.

use std::path::Path;
use std::process::Command;

use std::time::Instant;

use serde_json::Value;

mod support;

use support::{Node, ADMIN_KEY};

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what} could not start ({e}); install node and npm (scripts/test does)")
    });
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temp dir with the scripts and `playwright-core` installed from npm.
fn browser_project() -> tempfile::TempDir {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's chromium package (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    for entry in std::fs::read_dir(scripts).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "mjs") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        dir.path().join("package.json"),
        r#"{"name": "chatsdk-browser-test", "private": true, "type": "module"}"#,
    )
    .unwrap();
    run(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "playwright-core@1",
            ])
            .current_dir(dir.path()),
        "npm install playwright-core",
    );
    dir
}

/// Runs a script of the project with node; its last line of output is what it saw, as JSON.
fn script(project: &Path, name: &str, args: &[String]) -> Value {
    let out = run(
        Command::new("node")
            .arg(name)
            .args(args)
            .current_dir(project),
        &format!("node {name}"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("unexpected output {stdout:?}: {e}"))
}

fn texts(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_demo_page_chats_in_realtime_and_recovers_missed_messages() {
    let started = Instant::now();
    let project = browser_project();
    let mut node = Node::start(&["--dev"]);
    let base = node.base();
    let seen = script(project.path(), "demo.mjs", &[base]);

    assert_eq!(seen["alice"], "Signed in as Alice", "{seen}");
    assert_eq!(seen["bob"], "Signed in as Bob", "{seen}");
    assert_eq!(seen["recovery"]["count"], "2", "{seen}");
    assert_eq!(
        seen["recovery"]["text"], "Recovered 2 missed messages",
        "{seen}"
    );
    let hello = "Hello Bob <b>not bold</b>";
    // Bob's page after the reconnect: the two missed messages came by recovery, once each.
    assert_eq!(
        texts(&seen["afterRecovery"]),
        [hello, "Hi Alice", "missed 1", "missed 2"],
        "{seen}"
    );
    for m in &seen["afterRecovery"].as_array().unwrap()[2..] {
        assert_eq!(m["via"], "recovered", "{seen}");
        assert_eq!(m["deliveries"], 1, "{seen}");
    }
    assert_eq!(seen["afterRecovery"][0]["via"], "live", "{seen}");
    let all = [
        hello,
        "Hi Alice",
        "missed 1",
        "missed 2",
        "during reconnect 1",
        "during reconnect 2",
        "after reconnect",
    ];
    // Both pages show every message once, in order; each reached each page by realtime once
    // (the sender's own included); user text is shown as text, never as markup.
    for page in ["bobFinal", "aliceFinal"] {
        assert_eq!(texts(&seen[page]), all, "{page}: {seen}");
        for m in seen[page].as_array().unwrap() {
            assert_eq!(m["deliveries"], 1, "{page}: {m}");
        }
    }
    assert_eq!(seen["bobFinal"][1]["author"], "Bob", "{seen}");
    assert_eq!(seen["bobConnState"], "connected", "{seen}");
    eprintln!("demo page test took {:?}", started.elapsed());
}

#[test]
fn the_demo_page_renews_its_tokens_and_follows_the_servers_unsubscribe_and_disconnect() {
    let started = Instant::now();
    let project = browser_project();
    let dir = tempfile::tempdir().unwrap();
    // Tokens that live four seconds: the page outlives several of them.
    let mut node = Node::start_at(
        dir.path(),
        &["--dev"],
        &[("CHATSDK_AUTH__ACCESS_TTL_S", "4")],
    );
    let base = node.base();
    let key = node.value_after("server API key (shown once):");
    let seen = script(project.path(), "session.mjs", &[base, key]);

    // Renewed in place: each page connected once.
    assert_eq!(seen["renewed"]["aliceConnects"], "1", "{seen}");
    assert_eq!(seen["renewed"]["bobConnects"], "1", "{seen}");
    assert_eq!(seen["renewed"]["bobState"], "connected", "{seen}");
    assert!(
        seen["unsubscribed"]
            .as_str()
            .unwrap()
            .contains("unsubscribed by the server"),
        "{seen}"
    );
    // Bob saw nothing of the channel once removed from it.
    let bob: Vec<String> = texts(&seen["bobShows"]);
    assert!(
        bob.contains(&"after the tokens expired".to_string()),
        "{seen}"
    );
    assert!(!bob.contains(&"after Bob left".to_string()), "{seen}");
    // Revoked: disconnected with the server's code, and not reconnected.
    assert!(
        seen["disconnected"].as_str().unwrap().contains("3503"),
        "{seen}"
    );
    assert_eq!(seen["bobConnects"], "1", "{seen}");
    assert_eq!(seen["aliceState"], "connected", "{seen}");
    eprintln!("session page test took {:?}", started.elapsed());
}

#[test]
fn the_console_shows_a_three_node_cluster() {
    let started = Instant::now();
    let project = browser_project();
    let mut first = Node::start(&[]);
    let base = first.base();
    first.until("join token");
    let app = first.value_after("default app");
    let key = first.value_after("server API key (shown once):");
    let token = support::mint_join_token(&base);
    let peer = first.cluster_addr();
    let mut others: Vec<Node> = (0..2)
        .map(|_| Node::start(&["--join", &peer, "--join-token", &token]))
        .collect();
    let mut addrs = vec![base.trim_start_matches("http://").to_string()];
    for node in &mut others {
        addrs.push(node.base().trim_start_matches("http://").to_string());
    }

    let seen = script(
        project.path(),
        "console.mjs",
        &[base, ADMIN_KEY.into(), app, key, addrs.join(",")],
    );
    let nodes = seen["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{seen}");
    for addr in &addrs {
        assert!(
            nodes.iter().any(|n| n["http"] == addr.as_str()),
            "{addr}: {seen}"
        );
    }
    assert!(
        nodes
            .iter()
            .any(|n| n["id"] == "3" && n["state"] == "draining"),
        "{seen}"
    );
    assert!(seen["groups"].as_u64().unwrap() >= 2, "{seen}");
    assert_eq!(seen["metrics"]["metric-cluster-nodes"], "3", "{seen}");
    assert!(
        !seen["keys"].as_array().unwrap().is_empty(),
        "the app's keys are listed: {seen}"
    );
    assert!(
        seen["channels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c[3] == "ops room"),
        "{seen}"
    );
    assert_eq!(seen["error"], "", "{seen}");
    assert!(seen["apiOps"].as_u64().unwrap() > 200, "{seen}");
    eprintln!("console test took {:?}", started.elapsed());
}
