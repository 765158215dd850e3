//! Link previews against a local HTML server (allow-listed), and the SSRF cases: internal
//! addresses, a redirect to one, too many redirects, pages that are not HTML.

mod support;

use std::time::Duration;

use chatsdk_actors::chat::PreviewConfig;
use chatsdk_actors::hooks::HookClient;
use chatsdk_gateway::GatewayConfig;
use serde_json::json;
use support::{Cred, Rest, TestNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny web server on 127.0.0.1: `/page` (OpenGraph), `/plain` (a title only), `/to-metadata`
/// (a redirect to 169.254.169.254), `/loop` (redirects forever), `/json` (not HTML), `/big`
/// (3 MiB, its tags first). Returns its port.
async fn site() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, ctype, extra, body): (&str, &str, String, Vec<u8>) = match path.as_str() {
                    "/page" => ("200 OK", "text/html; charset=utf-8", String::new(), br#"<html><head><title>fallback</title>
                        <meta property="og:title" content="A &amp; B">
                        <meta property="og:description" content="Described">
                        <meta property="og:image" content="/card.png"></head><body>x</body></html>"#.to_vec()),
                    "/plain" => ("200 OK", "text/html", String::new(), b"<title>Just a title</title>".to_vec()),
                    "/to-metadata" => ("302 Found", "text/html", "Location: http://169.254.169.254/latest/meta-data\r\n".into(), Vec::new()),
                    "/loop" => ("302 Found", "text/html", "Location: /loop\r\n".into(), Vec::new()),
                    "/json" => ("200 OK", "application/json", String::new(), br#"{"title":"no"}"#.to_vec()),
                    "/big" => {
                        let mut b = b"<title>Big page</title>".to_vec();
                        b.resize(3 << 20, b' ');
                        ("200 OK", "text/html", String::new(), b)
                    }
                    _ => ("404 Not Found", "text/plain", String::new(), Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fetcher_refuses_internal_targets_redirects_to_them_and_non_html() {
    let port = site().await;
    let open = HookClient::build(&["127.0.0.1".into()], Duration::from_secs(5), "test").unwrap();
    let (url, html) = open
        .get_html(&format!("http://127.0.0.1:{port}/page"), 1 << 20, 3)
        .await
        .unwrap();
    assert!(url.ends_with("/page") && html.contains("og:title"));
    // The body is capped.
    let (_, big) = open
        .get_html(&format!("http://127.0.0.1:{port}/big"), 1 << 20, 3)
        .await
        .unwrap();
    assert_eq!(big.len(), 1 << 20);
    for (path, why) in [
        ("/to-metadata", "internal address"),
        ("/loop", "redirects"),
        ("/json", "not an HTML page"),
    ] {
        let e = open
            .get_html(&format!("http://127.0.0.1:{port}{path}"), 1 << 20, 3)
            .await
            .unwrap_err();
        assert!(e.contains(why), "{path}: {e}");
    }
    // Without an allow list: loopback by address or by name, IPv6 loopback, metadata.
    let guarded = HookClient::build(&[], Duration::from_secs(5), "test").unwrap();
    for url in [
        format!("http://127.0.0.1:{port}/page"),
        format!("http://localhost:{port}/page"),
        format!("http://[::1]:{port}/page"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://[::ffff:127.0.0.1]/".to_string(),
    ] {
        let e = guarded.get_html(&url, 1 << 20, 3).await.unwrap_err();
        assert!(e.contains("internal"), "{url}: {e}");
    }
    // Credentials in a URL are refused outright.
    assert!(open
        .get_html(&format!("http://user:pw@127.0.0.1:{port}/page"), 1 << 20, 3)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_message_gets_its_previews_without_being_marked_edited() {
    let port = site().await;
    let chat = chatsdk_actors::ChatConfig {
        previews: PreviewConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            poll_every: Duration::from_millis(100),
            ..PreviewConfig::default()
        },
        ..support::test_chat_config()
    };
    let node = TestNode::start_chat(GatewayConfig::default(), chat).await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("previews").await;
    rest.call(
        "POST",
        "/api/users",
        Cred::Key(&key),
        Some(json!({"user_id": "alice"})),
    )
    .await;
    let (alice, _) = rest.login(&key, "alice").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "links"})),
        )
        .await;
    let ch = ch.body["id"].as_str().unwrap().to_string();
    let send = |text: String| {
        let (rest, alice, ch) = (rest.clone(), alice.clone(), ch.clone());
        async move {
            let r = rest
                .call(
                    "POST",
                    &format!("/api/channels/{ch}/messages"),
                    Cred::Bearer(&alice),
                    Some(json!({ "text": text })),
                )
                .await;
            assert_eq!(r.status, 201, "{r:?}");
            r.body["id"].as_str().unwrap().to_string()
        }
    };
    // A message whose links all point inside (or redirect there) gets none, and is cleared.
    let refused = send(format!(
        "http://169.254.169.254/latest/meta-data http://127.0.0.1:{port}/to-metadata http://[::1]:{port}/page"
    ))
    .await;
    let good = send(format!(
        "see http://127.0.0.1:{port}/page and https://youtu.be/dQw4w9WgXcQ, 127.0.0.1:{port}/plain"
    ))
    .await;
    let get = |id: String| {
        let (rest, alice, ch) = (rest.clone(), alice.clone(), ch.clone());
        async move {
            rest.call(
                "GET",
                &format!("/api/channels/{ch}/messages/{id}"),
                Cred::Bearer(&alice),
                None,
            )
            .await
        }
    };
    support::eventually("the previews of the good message", || {
        let good = good.clone();
        async move {
            get(good).await.body["linkPreviews"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        }
    })
    .await;
    let m = get(good.clone()).await.body;
    let previews = m["linkPreviews"].as_array().unwrap();
    assert_eq!(previews.len(), 2, "{m}");
    assert_eq!(previews[0]["title"], "A & B");
    assert_eq!(previews[0]["description"], "Described");
    assert_eq!(
        previews[0]["image"],
        format!("http://127.0.0.1:{port}/card.png")
    );
    assert_eq!(previews[1]["siteName"], "YouTube");
    assert_eq!(
        previews[1]["video"]["embedUrl"],
        "https://www.youtube.com/embed/dQw4w9WgXcQ"
    );
    assert!(m["editedAt"].is_null(), "{m}");
    // The earlier message was handled first: it has none.
    let r = get(refused).await.body;
    assert_eq!(r["linkPreviews"], json!([]), "{r}");
    node.stop().await;
}
