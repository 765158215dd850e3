//! Search over real sockets: only channels the caller may read, filters, highlights with
//! escaping, edits and deletes reflected, blocks respected, bad queries refused. (An index
//! rebuilt on a restarted node: `node/tests/cli.rs`, with real processes.)

mod support;

use chatsdk_gateway::GatewayConfig;
use serde_json::{json, Value};
use support::{assert_error, Cred, Res, Rest, TestNode};

async fn send(rest: &Rest, token: &str, ch: &str, text: &str) -> String {
    let r = rest
        .call(
            "POST",
            &format!("/api/channels/{ch}/messages"),
            Cred::Bearer(token),
            Some(json!({"text": text})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    r.body["id"].as_str().unwrap().to_string()
}

async fn search(rest: &Rest, token: &str, query: &str) -> Res {
    rest.call(
        "GET",
        &format!("/api/search?{query}"),
        Cred::Bearer(token),
        None,
    )
    .await
}

fn texts(r: &Res) -> Vec<String> {
    let mut out: Vec<String> = r.body["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| h["text"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Waits until `query` by `token` finds exactly `want` (sorted texts).
async fn until(rest: &Rest, token: &str, query: &str, want: &[&str]) -> Res {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let mut last = None;
    let deadline = std::time::Instant::now() + support::WAIT;
    while std::time::Instant::now() < deadline {
        let r = search(rest, token, query).await;
        assert_eq!(r.status, 200, "{r:?}");
        if texts(&r) == want {
            return r;
        }
        last = Some(r);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{query}: wanted {want:?}, last answer {last:?}");
}

fn enc(s: &str) -> String {
    chatsdk_actors::media::encode_component(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_sees_only_readable_channels_and_follows_edits_deletes_and_blocks() {
    let node = TestNode::start(GatewayConfig::default()).await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("search").await;
    for u in ["alice", "bob", "carol"] {
        rest.ensure_user(&key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let ab = rest.group(&alice, "ab", &["bob"]).await;
    let ac = rest.group(&alice, "ac", &["carol"]).await;
    let c = rest.group(&carol, "c", &[]).await;
    let fox = send(
        &rest,
        &alice,
        &ab,
        "the quick brown fox <b>jumps</b> & runs",
    )
    .await;
    let dog = send(&rest, &bob, &ab, "a lazy dog sleeps").await;
    send(&rest, &carol, &ac, "quick question about foxes").await;
    send(&rest, &carol, &c, "quick secret").await;

    // Alice reads ab and ac; Bob only ab; nobody else's channels leak.
    let r = until(
        &rest,
        &alice,
        "q=quick",
        &[
            "the quick brown fox <b>jumps</b> & runs",
            "quick question about foxes",
        ],
    )
    .await;
    assert_eq!(r.body["totalHits"], 2);
    let hit = r.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["messageId"] == fox.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        hit["highlightedText"],
        "the <mark>quick</mark> brown fox &lt;b&gt;jumps&lt;/b&gt; &amp; runs"
    );
    assert_eq!(
        (hit["channelId"].as_str(), hit["channelName"].as_str()),
        (Some(ab.as_str()), Some("ab"))
    );
    assert_eq!(
        (hit["userId"].as_str(), hit["userName"].as_str()),
        (Some("alice"), Some("alice"))
    );
    until(
        &rest,
        &bob,
        "q=quick",
        &["the quick brown fox <b>jumps</b> & runs"],
    )
    .await;
    until(&rest, &carol, "q=secret", &["quick secret"]).await;
    until(&rest, &alice, "q=secret", &[]).await;
    // Every word must match; the last is also a prefix (search as you type).
    until(
        &rest,
        &alice,
        "q=quick%20fox",
        &[
            "the quick brown fox <b>jumps</b> & runs",
            "quick question about foxes",
        ],
    )
    .await;
    until(
        &rest,
        &alice,
        "q=brown%20qu",
        &["the quick brown fox <b>jumps</b> & runs"],
    )
    .await;

    // Filters: channel, author, dates; filters alone list messages newest first.
    until(
        &rest,
        &alice,
        &format!("q=quick&channelId={ac}"),
        &["quick question about foxes"],
    )
    .await;
    until(&rest, &alice, "authorId=bob", &["a lazy dog sleeps"]).await;
    let r = rest
        .call(
            "GET",
            &format!("/api/channels/{ab}/search?q=&user_id=bob"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(texts(&r), vec!["a lazy dog sleeps".to_string()], "{r:?}");
    until(&rest, &alice, "q=quick&from=2999-01-01", &[]).await;
    until(&rest, &alice, "q=quick&toDate=2001-01-01T00:00:00Z", &[]).await;
    until(
        &rest,
        &alice,
        "q=quick&fromDate=2001-01-01",
        &[
            "the quick brown fox <b>jumps</b> & runs",
            "quick question about foxes",
        ],
    )
    .await;
    // Pages.
    let first = search(&rest, &alice, "q=quick&limit=1").await;
    let second = search(&rest, &alice, "q=quick&limit=1&offset=1").await;
    assert_eq!(
        (
            first.body["results"].as_array().unwrap().len(),
            first.body["hasMore"].as_bool()
        ),
        (1, Some(true))
    );
    assert_ne!(
        first.body["results"][0]["messageId"],
        second.body["results"][0]["messageId"]
    );
    // A channel one may not read, by name.
    let r = rest
        .call(
            "GET",
            &format!("/api/channels/{c}/search?q=quick"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    // An empty query without filters finds nothing, without error.
    let r = rest
        .call(
            "GET",
            &format!("/api/channels/{ab}/search?q="),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!((r.status, r.body["totalHits"].as_u64()), (200, Some(0)));

    // Bad queries: too long, or not parsing in query syntax; user text is never syntax.
    let long = "q".repeat(300);
    assert_error(
        &search(&rest, &alice, &format!("q={long}")).await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &search(&rest, &alice, &format!("q={}&syntax=true", enc("(quick"))).await,
        400,
        "BAD_REQUEST",
    );
    let r = search(
        &rest,
        &alice,
        &format!("q={}", enc("quick AND (fox OR \"dog")),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    until(
        &rest,
        &alice,
        &format!("q={}&syntax=true", enc("quick -question")),
        &["the quick brown fox <b>jumps</b> & runs"],
    )
    .await;

    // Suggestions.
    let r = rest
        .call(
            "GET",
            "/api/search/suggestions?q=qu",
            Cred::Bearer(&alice),
            None,
        )
        .await;
    let s: Vec<Value> = r.body["suggestions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        s.contains(&json!("quick")) && s.contains(&json!("question")),
        "{r:?}"
    );

    // An edit, a delete and a block are reflected.
    let r = rest
        .call(
            "PATCH",
            &format!("/api/channels/{ab}/messages/{fox}"),
            Cred::Bearer(&alice),
            Some(json!({"text": "the slow brown fox"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    until(&rest, &alice, "q=slow", &["the slow brown fox"]).await;
    until(&rest, &bob, "q=quick", &[]).await;
    let r = rest
        .call(
            "DELETE",
            &format!("/api/channels/{ab}/messages/{dog}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    until(&rest, &alice, "q=lazy", &[]).await;
    let r = rest
        .call(
            "POST",
            "/api/users/alice/blocks",
            Cred::Bearer(&alice),
            Some(json!({"blockedUserId": "carol"})),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    until(&rest, &alice, "q=quick", &[]).await;
    until(&rest, &alice, "q=brown", &["the slow brown fox"]).await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_and_uploads_are_rate_limited_per_user() {
    let chat = chatsdk_actors::ChatConfig {
        search_rate_per_minute: 3,
        upload_rate_per_minute: 2,
        ..support::test_chat_config()
    };
    let node = TestNode::start_chat(GatewayConfig::default(), chat).await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("limits").await;
    rest.ensure_user(&key, "alice").await;
    let (alice, _) = rest.login(&key, "alice").await;
    let ch = rest.group(&alice, "l", &[]).await;
    for _ in 0..3 {
        assert_eq!(search(&rest, &alice, "q=x").await.status, 200);
    }
    let r = search(&rest, &alice, "q=x").await;
    assert_error(&r, 429, "RATE_LIMITED");
    assert!(r.headers.contains_key("retry-after"));
    // A server key is not limited.
    let r = rest
        .call(
            "GET",
            "/api/search?q=x&user_id=alice",
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let presign = || {
        rest.call(
            "POST",
            "/api/uploads/presigned",
            Cred::Bearer(&alice),
            Some(json!({"channelId": ch, "filename": "a.txt", "contentType": "text/plain", "size": 5})),
        )
    };
    assert_eq!(presign().await.status, 200);
    assert_eq!(presign().await.status, 200);
    assert_error(&presign().await, 429, "RATE_LIMITED");
    node.stop().await;
}
