//! A short smoke run of every scenario, as CI runs them: each must complete with valid runs
//! (no lost messages, no failed connections). The long benchmarks are run by hand; see
//! docs/benchmarks.md.

use std::process::Command;

fn smoke(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_chatsdk-bench"))
        .args(args)
        .args(["--smoke", "--no-pin"])
        .env("CHATSDK_LOG", "off")
        .output()
        .expect("the harness runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let runs: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!runs.is_empty(), "{args:?} printed no run");
    for r in &runs {
        assert_eq!(r["valid"], true, "{args:?}: invalid run {r}");
        assert!(r["metrics"].as_object().is_some_and(|m| !m.is_empty()));
    }
}

#[test]
fn fanout_against_every_peer() {
    smoke(&[
        "fanout",
        "--shape",
        "f1",
        "--transport",
        "both",
        "--cluster",
    ]);
}

#[test]
fn idle() {
    smoke(&["idle", "--no-peers", "--transport", "both"]);
}

#[test]
fn storm() {
    smoke(&["storm", "--no-peers"]);
}

#[test]
fn chat_mix() {
    smoke(&["chat-mix"]);
}

#[test]
fn durable_one_and_three_nodes() {
    smoke(&["durable"]);
}

#[test]
fn failover() {
    smoke(&["failover"]);
}
