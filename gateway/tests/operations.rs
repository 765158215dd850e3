//! What an operator relies on, over real sockets: request ids, CORS, compression, the
//! metrics a realtime client and a send move, and the admin cluster API (view, drain, remove).

mod support;

use chatsdk_gateway::GatewayConfig;
use serde_json::json;
use support::{assert_error, Cred, Rest, TestNode, WsClient};

const ADMIN: &str = "admin-key-for-operations-0123";

async fn node() -> (TestNode, Rest) {
    let node = TestNode::start(GatewayConfig {
        admin_api_key: Some(ADMIN.into()),
        cors_origins: vec!["https://app.example".into()],
        ..GatewayConfig::default()
    })
    .await;
    let rest = Rest::new(&node);
    (node, rest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_cors_and_compression() {
    let (node, rest) = node().await;
    // A usable id is kept, echoed and put in error bodies; an unusable one is replaced.
    let r = rest
        .raw(
            "GET",
            "/nowhere",
            &[("x-request-id", "trace-42")],
            Vec::new(),
        )
        .await;
    assert_eq!(r.headers["x-request-id"], "trace-42");
    assert_eq!(r.body["error"]["requestId"], "trace-42", "{:?}", r.body);
    let long = "x".repeat(300);
    let r = rest
        .raw("GET", "/nowhere", &[("x-request-id", &long)], Vec::new())
        .await;
    let made = r.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(!made.is_empty() && made != long, "{made}");
    assert_eq!(r.body["error"]["requestId"], made.as_str());
    let r = rest.call("GET", "/health", Cred::None, None).await;
    assert!(r.headers.contains_key("x-request-id"));

    // CORS: the configured origin is allowed (preflight and simple), another is not.
    let pre = rest
        .http
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/users/me", rest.base),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = rest
        .http
        .get(format!("{}/health", rest.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));

    // Compression: JSON is gzipped when asked for, and only then.
    let (_app, key) = node.app("ops").await;
    for i in 0..40 {
        rest.ensure_user(&key, &format!("user-with-a-long-id-{i:03}"))
            .await;
    }
    let get = |gzip: bool| {
        let mut req = rest
            .http
            .get(format!("{}/api/users?limit=100", rest.base))
            .header("x-api-key", &key);
        if gzip {
            req = req.header("accept-encoding", "gzip");
        }
        req.send()
    };
    let zipped = get(true).await.unwrap();
    assert_eq!(zipped.status(), 200);
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let plain = get(false).await.unwrap();
    assert!(!plain.headers().contains_key("content-encoding"));
    let plain_len = plain.bytes().await.unwrap().len();
    let zipped_len = zipped.bytes().await.unwrap().len();
    assert!(zipped_len * 3 < plain_len, "{zipped_len} vs {plain_len}");
    node.stop().await;
}

/// The value of the first sample line starting with `prefix`.
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_connections_sends_and_the_raft_log() {
    let (node, rest) = node().await;
    let (app, key) = node.app("metrics").await;
    rest.ensure_user(&key, "amy").await;
    let (token, ws_token) = rest.login(&key, "amy").await;
    let channel = rest.group(&token, "ops", &["amy"]).await;
    let mut ws = WsClient::open(&node.ws_url()).await;
    ws.connect(&ws_token).await;
    let sub = ws
        .call(
            "subscribe",
            json!({"channel": format!("chat:{app}:{channel}")}),
        )
        .await;
    assert!(sub["subscribe"].is_object(), "{sub}");
    let r = rest
        .call(
            "POST",
            &format!("/api/channels/{channel}/messages"),
            Cred::Bearer(&token),
            Some(json!({"text": "counted"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    ws.wait_for("the message", |v| v["push"]["pub"].is_object())
        .await;
    let scrape = || async {
        rest.http
            .get(format!("{}/metrics", rest.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let text = scrape().await;
    for (prefix, at_least) in [
        (
            "chatsdk_realtime_connections{transport=\"websocket\"} ",
            1.0,
        ),
        ("chatsdk_realtime_sessions ", 1.0),
        ("chatsdk_realtime_subscriptions ", 1.0),
        ("chatsdk_deliveries_total ", 1.0),
        ("chatsdk_sends_total{outcome=\"ok\"} ", 1.0),
        ("chatsdk_send_commit_duration_seconds_count ", 1.0),
        ("chatsdk_storage_fsync_duration_seconds_count ", 1.0),
        ("chatsdk_raft_replicas{kind=\"shard\"} ", 1.0),
        ("chatsdk_raft_replicas{kind=\"directory\"} ", 1.0),
        ("chatsdk_raft_log_entries{kind=\"directory\"} ", 1.0),
        ("chatsdk_raft_leader_changes_total{kind=\"shard\"} ", 1.0),
    ] {
        let v = sample(&text, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
        assert!(v >= at_least, "{prefix}{v}");
    }
    for line in [
        "# TYPE chatsdk_raft_apply_lag_entries gauge",
        "# TYPE chatsdk_cluster_peer_failures counter",
        "# TYPE chatsdk_cluster_unreachable_peers gauge",
        "# TYPE chatsdk_raft_snapshot_installs counter",
        "chatsdk_raft_snapshot_installs_running 0",
        "# TYPE chatsdk_queue_depth gauge",
        "chatsdk_queue_depth{queue=\"proposals\"} ",
        "chatsdk_queue_depth{queue=\"forwards\"} ",
        "chatsdk_queue_limit{queue=\"proposals\"} 1024",
        "# TYPE chatsdk_webhook_deliveries counter",
        "# TYPE chatsdk_link_previews counter",
        "# TYPE chatsdk_web_pushes counter",
        "chatsdk_position_checks_total{outcome=\"closed\"} 0",
        "# TYPE process_cpu_seconds gauge",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    // The server closes the connection on drain: counted by code.
    let drained = rest
        .call(
            "POST",
            &format!("/admin/cluster/nodes/{}/drain", node.chat.cluster().id()),
            Cred::Bearer(ADMIN),
            None,
        )
        .await;
    assert_eq!(drained.status, 202, "{drained:?}");
    assert_eq!(ws.wait_close().await, 3001);
    support::eventually("the close is counted", || {
        let scraped = scrape();
        async move {
            let text = scraped.await;
            sample(&text, "chatsdk_realtime_closes_total{code=\"3001\"} ") == Some(1.0)
                && sample(
                    &text,
                    "chatsdk_realtime_connections{transport=\"websocket\"} ",
                ) == Some(0.0)
        }
    })
    .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cluster_api_shows_drains_and_guards_removal() {
    let (node, rest) = node().await;
    let r = rest
        .call(
            "GET",
            "/admin/cluster",
            Cred::Bearer("not-the-admin-key"),
            None,
        )
        .await;
    assert_error(&r, 401, "UNAUTHORIZED");
    let r = rest
        .call("GET", "/admin/cluster", Cred::Bearer(ADMIN), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let me = node.chat.cluster().id();
    let nodes = r.body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 1, "{:?}", r.body);
    let n = &nodes[0];
    assert_eq!(n["id"], me);
    assert_eq!(n["state"], "active");
    assert_eq!(n["reachable"], true);
    assert_eq!(n["httpAddr"], node.http.to_string());
    assert_eq!(n["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(n["draining"], false);
    let groups = r.body["groups"].as_array().unwrap();
    let shards = r.body["shards"].as_u64().unwrap() as usize;
    assert_eq!(groups.len(), shards + 1, "the directory and every shard");
    assert_eq!(groups[0]["kind"], "directory");
    for g in groups {
        assert_eq!(g["leader"], me, "{g}");
        assert!(g["lastLogIndex"].as_u64().unwrap() >= 1, "{g}");
        assert_eq!(g["lastLogIndex"], g["appliedIndex"], "{g}");
    }
    assert_eq!(n["leads"].as_u64().unwrap() as usize, shards + 1);

    let r = rest
        .call(
            "DELETE",
            &format!("/admin/cluster/nodes/{me}"),
            Cred::Bearer(ADMIN),
            None,
        )
        .await;
    assert_error(&r, 409, "CONFLICT");
    let r = rest
        .call(
            "DELETE",
            "/admin/cluster/nodes/77",
            Cred::Bearer(ADMIN),
            None,
        )
        .await;
    assert_error(&r, 404, "NOT_FOUND");
    let r = rest
        .call(
            "POST",
            "/admin/cluster/nodes/x/drain",
            Cred::Bearer(ADMIN),
            None,
        )
        .await;
    assert_error(&r, 400, "BAD_REQUEST");
    let r = rest
        .call(
            "POST",
            &format!("/admin/cluster/nodes/{me}/drain"),
            Cred::Bearer(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let ready = rest.call("GET", "/ready", Cred::None, None).await;
    assert_eq!(ready.status, 503);
    let r = rest
        .call("GET", "/admin/cluster", Cred::Bearer(ADMIN), None)
        .await;
    assert_eq!(r.body["nodes"][0]["draining"], true);
    node.stop().await;
}
