//! A short smoke run of every scenario, as CI runs them: each must complete with valid runs
//! (no lost messages, no failed connections). The long benchmarks are run by hand; see
//! docs/benchmarks.md.

use std::process::Command;

/// Runs the harness with `args` in smoke mode; every run must be valid. Returns the runs.
fn smoke(args: &[&str]) -> Vec<serde_json::Value> {
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
    runs
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
fn media_uploads_and_search() {
    let runs = smoke(&["media"]);
    let m = &runs[0]["metrics"];
    for k in [
        "file_uploads_per_s",
        "photo_uploads_per_s",
        "search_common_word_p99_ms",
    ] {
        assert!(m[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {m}");
    }
}

/// Retention keeps pace with sustained sends (the run is invalid when the channels hold far
/// more than the retention window at the end), and disk and memory are sampled.
#[test]
fn soak_with_retention() {
    let runs = smoke(&["soak"]);
    let m = &runs[0]["metrics"];
    for k in ["disk_mb_end", "rss_mb_end", "sent_ok", "token_refreshes"] {
        assert!(m[k].as_f64().is_some_and(|v| v > 0.0), "{k}: {m}");
    }
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
fn durable_one_and_three_nodes_rest_ws_and_jetstream_on_one_and_three() {
    let runs = smoke(&["durable"]);
    for system in [
        "chatsdk-1node",
        "chatsdk-1node-ws",
        "jetstream",
        "chatsdk-3node",
        "jetstream-3node",
    ] {
        for scenario in ["durable", "durable-summary"] {
            assert!(
                runs.iter()
                    .any(|r| r["system"] == system && r["scenario"] == scenario),
                "no {scenario} run of {system}"
            );
        }
    }
    // Every send of the step was acknowledged (50/s for 1 s), JetStream's included.
    for r in runs.iter().filter(|r| r["scenario"] == "durable") {
        assert!(
            r["metrics"]["acked_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{r}"
        );
        assert_eq!(r["metrics"]["errors"], 0.0, "{r}");
    }
}

#[test]
fn durable_no_peers_skips_jetstream() {
    let runs = smoke(&["durable", "--no-peers", "--no-cluster"]);
    assert!(runs.iter().all(|r| r["system"] != "jetstream"));
    assert!(runs.iter().any(|r| r["system"] == "chatsdk-1node-ws"));
}

#[test]
fn durable_only_runs_the_named_systems() {
    let runs = smoke(&[
        "durable",
        "--no-peers",
        "--no-cluster",
        "--only",
        "chatsdk-1node-ws",
    ]);
    assert!(runs.iter().all(|r| r["system"] == "chatsdk-1node-ws"));
}

#[test]
fn failover() {
    smoke(&["failover"]);
}
