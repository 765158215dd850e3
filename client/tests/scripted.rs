//! The realtime client against a scripted WebSocket peer, for the paths a real node does not
//! take on demand: server pings and a silent server, batched frames, in-flight calls on a
//! dropped connection, a server-requested resubscribe, and malformed frames.

use std::collections::VecDeque;
use std::time::Duration;

use chatsdk_client::realtime::{codes, RealtimeConfig};
use chatsdk_client::{ClientError, Endpoint, Event, Realtime};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const WAIT: Duration = Duration::from_secs(10);

/// One accepted client connection, driven by the test.
struct Peer {
    ws: WebSocketStream<TcpStream>,
    inbox: VecDeque<Value>,
}

impl Peer {
    async fn accept(listener: &TcpListener) -> Peer {
        let (tcp, _) = tokio::time::timeout(WAIT, listener.accept())
            .await
            .expect("the client connects")
            .unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        Peer {
            ws,
            inbox: VecDeque::new(),
        }
    }

    /// The next JSON object the client sent.
    async fn recv(&mut self) -> Value {
        loop {
            if let Some(v) = self.inbox.pop_front() {
                return v;
            }
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    for line in text.as_str().split('\n') {
                        self.inbox.push_back(serde_json::from_str(line).unwrap());
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("expected a frame from the client, got {other:?}"),
            }
        }
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
    }

    /// Answers the client's `connect` with a ping interval of `ping` seconds.
    async fn handshake(&mut self, ping: u32) {
        let connect = self.recv().await;
        assert_eq!(connect["id"], 1);
        assert_eq!(connect["connect"]["token"], "token");
        let reply = json!({"id": 1, "connect": {"client": "c1", "version": "test", "ping": ping, "pong": true, "node": "fake"}});
        self.send(&reply.to_string()).await;
    }
}

async fn start() -> (TcpListener, Realtime, mpsc::Receiver<Event>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "ws://{}/connection/websocket",
        listener.local_addr().unwrap()
    );
    let mut config = RealtimeConfig::new(Endpoint::WebSocket(url), "token");
    config.backoff.min = Duration::from_millis(10);
    config.backoff.max = Duration::from_millis(50);
    config.ping_grace = Duration::from_millis(300);
    let (rt, events) = Realtime::connect(config);
    (listener, rt, events)
}

async fn next(events: &mut mpsc::Receiver<Event>) -> Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event in time")
        .expect("events continue")
}

#[tokio::test]
async fn pings_are_answered_and_a_silent_server_is_left() {
    let (listener, _rt, mut events) = start().await;
    let mut peer = Peer::accept(&listener).await;
    peer.handshake(1).await;
    assert_eq!(
        next(&mut events).await,
        Event::Connected {
            client: "c1".into(),
            node: "fake".into()
        }
    );
    peer.send("{}").await;
    assert_eq!(peer.recv().await, json!({}), "the pong");
    // No further ping: after 1 s + grace the client gives up and comes back.
    match next(&mut events).await {
        Event::Disconnected {
            code,
            will_reconnect,
            ..
        } => assert_eq!((code, will_reconnect), (codes::NO_PING, true)),
        other => panic!("{other:?}"),
    }
    let mut again = Peer::accept(&listener).await;
    again.handshake(25).await;
    assert!(matches!(next(&mut events).await, Event::Connected { .. }));
}

#[tokio::test]
async fn batched_frames_and_recovery_requests() {
    let (listener, rt, mut events) = start().await;
    let mut peer = Peer::accept(&listener).await;
    peer.handshake(25).await;
    next(&mut events).await;

    let subscribing = tokio::spawn({
        let rt = rt.clone();
        async move { rt.subscribe("chat:a:b").await }
    });
    let sub = peer.recv().await;
    assert_eq!(sub["subscribe"], json!({"channel": "chat:a:b"}));
    // The reply and a publication in one message, as the server batches them.
    let batch = [
        json!({"id": sub["id"], "subscribe": {"recoverable": true, "epoch": "e1", "offset": 7, "positioned": true}}),
        json!({"push": {"channel": "chat:a:b", "pub": {"data": {"type": "message.new"}, "offset": 8}}}),
    ]
    .map(|v| v.to_string())
    .join("\n");
    peer.send(&batch).await;
    subscribing.await.unwrap().unwrap();
    assert!(matches!(
        next(&mut events).await,
        Event::Subscribed { offset: 7, .. }
    ));
    assert!(matches!(
        next(&mut events).await,
        Event::Publication { offset: 8, .. }
    ));

    // The server asks for a resubscribe (2500–2999): the client recovers from offset 8.
    peer.send(r#"{"push":{"channel":"chat:a:b","unsubscribe":{"code":2500,"reason":"insufficient state"}}}"#)
        .await;
    let again = peer.recv().await;
    assert_eq!(
        again["subscribe"],
        json!({"channel": "chat:a:b", "recover": true, "epoch": "e1", "offset": 8})
    );

    // A call in flight when the connection drops fails as Disconnected.
    let call = tokio::spawn({
        let rt = rt.clone();
        async move { rt.rpc("typing", json!({})).await }
    });
    let rpc = peer.recv().await;
    assert_eq!(rpc["rpc"]["method"], "typing");
    peer.close(3008, "slow").await;
    assert!(matches!(
        call.await.unwrap(),
        Err(ClientError::Disconnected)
    ));
    assert_eq!(
        next(&mut events).await,
        Event::Disconnected {
            code: 3008,
            reason: "slow".into(),
            will_reconnect: true
        }
    );

    // The next connection resubscribes from the last position.
    let mut peer = Peer::accept(&listener).await;
    peer.handshake(25).await;
    let resub = peer.recv().await;
    assert_eq!(resub["subscribe"]["recover"], true);
    assert_eq!(resub["subscribe"]["offset"], 8);

    // Something that is not the protocol ends the client for good.
    peer.send("this is not json").await;
    assert!(matches!(next(&mut events).await, Event::Connected { .. }));
    match next(&mut events).await {
        Event::Disconnected {
            code,
            will_reconnect,
            ..
        } => assert_eq!((code, will_reconnect), (codes::BAD_PROTOCOL, false)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        rt.subscribe("chat:a:c").await,
        Err(ClientError::Closed)
    ));
}
