//! The realtime client against a real node, each scenario over WebSocket and over QUIC:
//! typed publications, recovery after a dropped transport, the `message.send` RPC, error
//! replies, and close codes on the raw wire.

mod support;

use chatsdk_client::realtime::codes;
use chatsdk_client::wire::{self, Frame, WireOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use chatsdk_client::{ClientError, Event, Realtime};
use serde_json::json;
use support::{message_text, Client, Server, Transport};

/// A message sent through REST arrives as a typed publication with the next offset.
async fn rest_message_arrives_as_publication(transport: Transport) {
    let server = Server::start().await;
    let (alice, tokens) = server.user("alice").await;
    server.user("bob").await;
    let (channel_id, channel) = server.channel(&alice, &["bob"]).await;
    // Subscribing right away, without waiting for the connection, works.
    let (rt, events) = Realtime::connect(server.config(transport, &tokens.ws_token));
    let mut client = Client { rt, events };
    client.rt.subscribe(&channel).await.unwrap();
    assert!(matches!(client.next().await, Event::Connected { .. }));
    let Event::Subscribed {
        channel: on,
        recovered: false,
        was_recovering: false,
        offset: top,
        ..
    } = client.next().await
    else {
        panic!("expected the subscription")
    };
    assert_eq!(on, channel);

    let sent = alice
        .send_message(&channel_id, "hello", Some("m-1"))
        .await
        .unwrap();
    let event = client
        .expect("publication", |e| matches!(e, Event::Publication { .. }))
        .await;
    let Event::Publication {
        channel: on,
        offset,
        data,
        ..
    } = event
    else {
        unreachable!()
    };
    assert_eq!(on, channel);
    assert_eq!(offset, top + 1);
    assert_eq!(data["type"], "message.new");
    assert_eq!(data["payload"]["message"]["id"], sent.id.as_str());
    assert_eq!(message_text(&data), "hello");

    client.rt.close().await;
    let last = client
        .expect("final disconnect", |e| {
            matches!(e, Event::Disconnected { .. })
        })
        .await;
    assert_eq!(
        last,
        Event::Disconnected {
            code: codes::CLOSE_CALLED,
            reason: "client closed".into(),
            will_reconnect: false
        }
    );
    assert!(matches!(
        client.rt.subscribe("chat:x:y").await,
        Err(ClientError::Closed)
    ));
    server.stop().await;
}

/// Messages sent while the transport is down are recovered, exactly and in order, when the
/// client resubscribes.
async fn missed_publications_are_recovered(transport: Transport) {
    let server = Server::start().await;
    let (alice, tokens) = server.user("alice").await;
    server.user("bob").await;
    let (channel_id, channel) = server.channel(&alice, &["bob"]).await;
    let mut client = Client::connect(server.config(transport, &tokens.ws_token)).await;
    client.subscribe(&channel).await;
    alice
        .send_message(&channel_id, "before", None)
        .await
        .unwrap();
    let (seen, text) = client.publication(&channel).await;
    assert_eq!(text, "before");

    let gate = client.rt.reconnect_now().await.unwrap();
    let down = client.next().await;
    assert_eq!(
        down,
        Event::Disconnected {
            code: codes::RECONNECT_CALLED,
            reason: "reconnect requested".into(),
            will_reconnect: true
        }
    );
    for text in ["missed 1", "missed 2", "missed 3"] {
        alice.send_message(&channel_id, text, None).await.unwrap();
    }
    drop(gate);

    assert!(matches!(client.next().await, Event::Connected { .. }));
    match client.next().await {
        Event::Subscribed {
            channel: c,
            recovered,
            was_recovering,
            offset,
            ..
        } => {
            assert_eq!(c, channel);
            assert!(recovered && was_recovering);
            assert_eq!(offset, seen + 3);
        }
        other => panic!("expected the resubscription, got {other:?}"),
    }
    for (i, expected) in ["missed 1", "missed 2", "missed 3"].iter().enumerate() {
        match client.next().await {
            Event::Publication { offset, data, .. } => {
                assert_eq!(offset, seen + 1 + i as u64);
                assert_eq!(message_text(&data), *expected);
            }
            other => panic!("expected recovered publication {i}, got {other:?}"),
        }
    }
    // The next live publication follows directly: nothing was delivered twice.
    alice
        .send_message(&channel_id, "after", None)
        .await
        .unwrap();
    assert_eq!(
        client.publication(&channel).await,
        (seen + 4, "after".to_string())
    );
    server.stop().await;
}

/// `message.send` over the socket answers like REST, is idempotent by client id, and the
/// message is published.
async fn rpc_message_send_round_trip(transport: Transport) {
    let server = Server::start().await;
    let (alice, tokens) = server.user("alice").await;
    server.user("bob").await;
    let (channel_id, channel) = server.channel(&alice, &["bob"]).await;
    let mut client = Client::connect(server.config(transport, &tokens.ws_token)).await;
    let top = client.subscribe(&channel).await;

    let sent = client
        .rt
        .send_message(&channel_id, "over the socket", Some("rpc-1"))
        .await
        .unwrap();
    assert_eq!(sent.text.as_deref(), Some("over the socket"));
    assert_eq!(sent.channel_id, channel_id);
    assert_eq!(sent.client_msg_id.as_deref(), Some("rpc-1"));
    assert!(!sent.duplicate);
    assert_eq!(
        client.publication(&channel).await,
        (top + 1, "over the socket".to_string())
    );
    let again = client
        .rt
        .send_message(&channel_id, "over the socket", Some("rpc-1"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.id, sent.id);

    let listed = alice
        .list_messages(&channel_id, Some(0), Some(10))
        .await
        .unwrap();
    assert_eq!(listed.messages.len(), 1);
    assert_eq!(listed.messages[0].id, sent.id);

    let history = client.rt.history(&channel, 10, None, false).await.unwrap();
    assert_eq!(history.offset, top + 1);
    assert!(history.publications.iter().any(|p| p.offset == top + 1));

    let presence = client.rt.presence(&channel).await.unwrap();
    assert_eq!(presence.presence.len(), 1);
    client.rt.unsubscribe(&channel).await.unwrap();
    let stats = client.rt.presence_stats(&channel).await.unwrap();
    assert_eq!(stats.num_clients, 0, "unsubscribed");

    let (_, renewed) = server.user("alice").await;
    let refreshed = client.rt.refresh(&renewed.ws_token).await.unwrap();
    assert!(refreshed.expires && refreshed.ttl > 0);
    server.stop().await;
}

fn code<T: std::fmt::Debug>(result: Result<T, ClientError>) -> u32 {
    match result {
        Err(ClientError::Server { code, .. }) => code,
        other => panic!("expected a server error, got {other:?}"),
    }
}

/// Error replies become `ClientError::Server` with the protocol's code; the connection stays.
async fn server_errors_are_typed(transport: Transport) {
    let server = Server::start().await;
    let (alice, tokens) = server.user("alice").await;
    let (_, channel) = server.channel(&alice, &[]).await;
    let mut client = Client::connect(server.config(transport, &tokens.ws_token)).await;

    assert_eq!(code(client.rt.rpc("no.such.method", json!({})).await), 104);
    let unknown = format!(
        "chat:{}:00000000-0000-0000-0000-00000000dead",
        server.app_id
    );
    assert_eq!(code(client.rt.subscribe(&unknown).await), 102);
    assert_eq!(
        code(
            client
                .rt
                .publish(&channel, json!({"type": "message.new"}))
                .await
        ),
        103
    );
    client.subscribe(&channel).await;
    assert!(matches!(
        client.rt.subscribe(&channel).await,
        Err(ClientError::AlreadySubscribed { .. })
    ));
    // Still connected: a valid call works.
    client
        .rt
        .publish(&channel, json!({"type": "typing.start"}))
        .await
        .unwrap();
    let stats = client.rt.presence_stats(&channel).await.unwrap();
    assert_eq!((stats.num_clients, stats.num_users), (1, 1));
    server.stop().await;
}

/// On the raw wire, a server close comes out as `Frame::Close` with the disconnect code.
async fn raw_wire_reports_close_codes(transport: Transport) {
    let server = Server::start().await;
    let (_, tokens) = server.user("alice").await;
    let options = WireOptions::default();
    let mut conn = wire::connect(&server.endpoint(transport), &options)
        .await
        .unwrap();
    let connect = json!({"id": 1, "connect": {"token": tokens.ws_token}}).to_string();
    conn.send(connect.as_bytes()).await.unwrap();
    match conn.recv().await.unwrap() {
        Frame::Data(bytes) => {
            let reply: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(reply["id"], 1);
            assert!(reply["connect"]["client"].is_string(), "{reply}");
        }
        other => panic!("{other:?}"),
    }
    conn.send(b"not json").await.unwrap();
    assert_eq!(
        conn.recv().await.unwrap(),
        Frame::Close {
            code: 3501,
            reason: "bad request".into()
        }
    );
    assert!(matches!(conn.recv().await, Err(wire::WireError::Closed)));
    server.stop().await;
}

/// A frame above the server's limit (64 KiB) ends the connection instead of being buffered.
/// Over QUIC the length prefix alone is enough for the server to refuse it, with 3501.
async fn oversized_frames_close_the_connection(transport: Transport) {
    let server = Server::start().await;
    let (_, tokens) = server.user("alice").await;
    let mut conn = wire::connect(&server.endpoint(transport), &WireOptions::default())
        .await
        .unwrap();
    let connect = json!({"id": 1, "connect": {"token": tokens.ws_token}}).to_string();
    conn.send(connect.as_bytes()).await.unwrap();
    assert!(matches!(conn.recv().await.unwrap(), Frame::Data(_)));
    let big = json!({"id": 2, "rpc": {"method": "x", "data": "y".repeat(70 * 1024)}}).to_string();
    let _ = conn.send(big.as_bytes()).await;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), conn.recv())
        .await
        .expect("the server closes within 10 s");
    match (transport, closed) {
        (Transport::Quic, Ok(Frame::Close { code, .. })) => assert_eq!(code, 3501),
        // The WebSocket layer may fail the read before a close frame can be written.
        (Transport::WebSocket, Ok(Frame::Close { code, .. })) => {
            assert!(code == 3501 || code == 1009, "{code}")
        }
        (Transport::WebSocket, Err(_)) => {}
        (_, other) => panic!("{other:?}"),
    }
    server.stop().await;
}

/// A token the server calls expired is replaced by the refresher before reconnecting; without
/// a refresher, or with a forged token, the client stops for good.
async fn token_refusals(transport: Transport) {
    let server = Server::start().await;
    let (_, tokens) = server.user("alice").await;
    let calls = Arc::new(AtomicUsize::new(0));
    let (fresh, counter) = (tokens.ws_token.clone(), calls.clone());
    let config = server
        .config(transport, &server.expired_token("alice"))
        .with_token_refresher(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let fresh = fresh.clone();
            async move { Ok(fresh) }
        });
    let (rt, events) = Realtime::connect(config);
    let mut client = Client { rt, events };
    assert_eq!(
        client.next().await,
        Event::Disconnected {
            code: 109,
            reason: "token expired".into(),
            will_reconnect: true
        }
    );
    assert!(matches!(client.next().await, Event::Connected { .. }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    for (token, code, reason) in [
        (server.expired_token("alice"), 109, "token expired"),
        ("forged".to_string(), 3500, "invalid token"),
    ] {
        let (rt, events) = Realtime::connect(server.config(transport, &token));
        let mut client = Client { rt, events };
        assert_eq!(
            client.next().await,
            Event::Disconnected {
                code,
                reason: reason.into(),
                will_reconnect: false
            }
        );
        let end = tokio::time::timeout(support::WAIT, client.events.recv()).await;
        assert_eq!(end, Ok(None), "the client stopped");
        assert!(matches!(
            client.rt.rpc("x", json!({})).await,
            Err(ClientError::Closed)
        ));
    }
    server.stop().await;
}

/// A draining node closes with 3001; the client keeps trying until it is closed.
async fn server_shutdown_asks_to_reconnect(transport: Transport) {
    let server = Server::start().await;
    let (_, tokens) = server.user("alice").await;
    let mut config = server.config(transport, &tokens.ws_token);
    config.wire.connect_timeout = std::time::Duration::from_millis(500);
    let mut client = Client::connect(config).await;
    server.stop().await;
    assert_eq!(
        client.next().await,
        Event::Disconnected {
            code: 3001,
            reason: "shutdown".into(),
            will_reconnect: true
        }
    );
    match client.next().await {
        Event::Disconnected {
            code,
            will_reconnect: true,
            ..
        } => assert_eq!(code, codes::TRANSPORT_CLOSED),
        other => panic!("expected a failed attempt, got {other:?}"),
    }
    client.rt.close().await;
    let last = client
        .expect("final disconnect", |e| {
            matches!(
                e,
                Event::Disconnected {
                    will_reconnect: false,
                    ..
                }
            )
        })
        .await;
    assert!(matches!(
        last,
        Event::Disconnected {
            code: codes::CLOSE_CALLED,
            ..
        }
    ));
}

/// A QUIC client that subscribes to a busy channel and stops reading is closed with 3008
/// (slow): its stream stalls behind flow control, the write waits past the pong timeout, and
/// the server closes the connection, which needs no room in the stream. Its connection,
/// session and subscription are gone from the node.
#[test]
fn a_quic_client_that_stops_reading_is_closed_as_slow() {
    // The runtime goes before the data directory (see `Server::stop_keeping_dir`): this test's
    // large values put sled's blob files there.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = runtime.block_on(a_quic_client_that_stops_reading_is_closed_as_slow_body());
    drop(runtime);
    drop(dir);
}

async fn a_quic_client_that_stops_reading_is_closed_as_slow_body() -> tempfile::TempDir {
    use std::time::{Duration, Instant};
    let server = Server::start_with(|c| {
        c.realtime.pong_timeout_s = 1;
        c.limits.outbound_queue_bytes = 64 * 1024;
        c.limits.message_rate_per_minute = 1_000_000;
        c.limits.message_burst = 100_000;
    })
    .await;
    let (alice, tokens) = server.user("alice").await;
    server.user("bob").await;
    let (channel_id, channel) = server.channel(&alice, &["bob"]).await;
    let mut conn = wire::connect(&server.endpoint(Transport::Quic), &WireOptions::default())
        .await
        .unwrap();
    let frames = [
        json!({"id": 1, "connect": {"token": tokens.ws_token}}),
        json!({"id": 2, "subscribe": {"channel": channel}}),
    ];
    for (i, frame) in frames.iter().enumerate() {
        conn.send(frame.to_string().as_bytes()).await.unwrap();
        loop {
            match conn.recv().await.unwrap() {
                Frame::Data(bytes) => {
                    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    if v["id"] == json!(i + 1) {
                        assert!(v.get("error").is_none(), "{v}");
                        break;
                    }
                }
                other => panic!("no reply to {frame}: {other:?}"),
            }
        }
    }
    let live = || {
        server
            .node
            .state
            .realtime_connections
            .load(Ordering::Relaxed)
    };
    assert_eq!(live(), 1);
    // The client reads nothing more while the channel gets 10 KB messages (its receive
    // windows hold about 1.25 MB of them).
    let text = "x".repeat(10_000);
    let started = Instant::now();
    for _ in 0..2_000 {
        if live() == 0 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        alice.send_message(&channel_id, &text, None).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while live() > 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled connection is still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fanout = server.node.chat.fanout();
    assert_eq!(
        fanout.session_count(),
        0,
        "the session outlived its connection"
    );
    assert!(
        fanout.presence(&channel).is_empty(),
        "the subscription outlived its connection"
    );
    // What the client had buffered may still be read; then comes the close, with 3008.
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), conn.recv()).await {
            Ok(Ok(Frame::Data(_))) => continue,
            Ok(Ok(Frame::Close { code, .. })) => break code,
            other => panic!("expected a close: {other:?}"),
        }
    };
    assert_eq!(code, 3008);
    server.stop_keeping_dir().await
}

/// Reactions, polls and pins are events of the channel's stream: live, and recovered after a
/// dropped transport in order with their offsets.
async fn collaboration_events_are_live_and_recovered(transport: Transport) {
    use reqwest::Method;
    let server = Server::start().await;
    let (alice, tokens) = server.user("alice").await;
    let (bob, _) = server.user("bob").await;
    let (channel_id, channel) = server.channel(&alice, &["bob"]).await;
    let mut client = Client::connect(server.config(transport, &tokens.ws_token)).await;
    client.subscribe(&channel).await;
    let sent = alice
        .send_message(&channel_id, "lunch?", None)
        .await
        .unwrap();
    let (seen, _) = client.publication(&channel).await;
    let base = format!("/api/channels/{channel_id}/messages/{}", sent.id);
    bob.call(
        Method::POST,
        &format!("{base}/reactions"),
        Some(&json!({"emoji": "yum"})),
    )
    .await
    .unwrap();
    let live = client
        .expect("the reaction", |e| matches!(e, Event::Publication { .. }))
        .await;
    let Event::Publication { offset, data, .. } = live else {
        unreachable!()
    };
    assert_eq!(
        (offset, data["type"].as_str()),
        (seen + 1, Some("reaction.added"))
    );
    let poll = alice
        .call(
            Method::POST,
            &format!("{base}/polls"),
            Some(&json!({"question": "Where?", "options": [{"id": "a", "text": "Here"}, {"id": "b", "text": "There"}]})),
        )
        .await
        .unwrap();
    let poll_id = poll["id"].as_str().unwrap().to_string();
    let created = client
        .expect("the poll", |e| matches!(e, Event::Publication { .. }))
        .await;
    let Event::Publication { offset, data, .. } = created else {
        unreachable!()
    };
    assert_eq!(
        (offset, data["type"].as_str()),
        (seen + 2, Some("poll.created"))
    );

    let gate = client.rt.reconnect_now().await.unwrap();
    client
        .expect("the drop", |e| matches!(e, Event::Disconnected { .. }))
        .await;
    bob.call(
        Method::POST,
        &format!("/api/polls/{poll_id}/vote"),
        Some(&json!({"optionIds": ["b"]})),
    )
    .await
    .unwrap();
    alice
        .call(Method::POST, &format!("{base}/pin"), None)
        .await
        .unwrap();
    drop(gate);
    let mut kinds = Vec::new();
    let mut offsets = Vec::new();
    while kinds.len() < 2 {
        if let Event::Publication { offset, data, .. } = client
            .expect("the missed events", |e| {
                matches!(e, Event::Publication { .. })
            })
            .await
        {
            offsets.push(offset);
            kinds.push(data["type"].as_str().unwrap_or_default().to_string());
        }
    }
    assert_eq!(kinds, vec!["poll.voted", "message.updated"]);
    assert_eq!(offsets, vec![seen + 3, seen + 4]);
    server.stop().await;
}

macro_rules! over_both_transports {
    ($($scenario:ident),* $(,)?) => {
        mod websocket {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Transport::WebSocket).await;
                }
            )*
        }
        mod quic {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Transport::Quic).await;
                }
            )*
        }
    };
}

over_both_transports!(
    rest_message_arrives_as_publication,
    missed_publications_are_recovered,
    rpc_message_send_round_trip,
    server_errors_are_typed,
    raw_wire_reports_close_codes,
    oversized_frames_close_the_connection,
    token_refusals,
    server_shutdown_asks_to_reconnect,
    collaboration_events_are_live_and_recovered,
);
