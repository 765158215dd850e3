//! The Centrifugo-protocol WebSocket over real sockets: connect, subscribe, live delivery,
//! recovery of every durable event, history, presence, typing, RPC, and protocol errors.

mod support;

use chatsdk_actors::ChatConfig;
use chatsdk_gateway::GatewayConfig;
use serde_json::{json, Value};
use support::{assert_error, test_chat_config, Cred, Rest, TestNode, WsClient};

struct World {
    node: TestNode,
    rest: Rest,
    app: String,
    key: String,
    channel: String,
}

impl World {
    async fn new(config: GatewayConfig) -> World {
        Self::with_chat(config, test_chat_config()).await
    }

    async fn with_chat(config: GatewayConfig, chat: ChatConfig) -> World {
        let node = TestNode::start_chat(config, chat).await;
        let rest = Rest::new(&node);
        let (app, key) = node.app("rt").await;
        for u in ["alice", "bob", "carol", "mallory"] {
            rest.call(
                "POST",
                "/api/users",
                Cred::Key(&key),
                Some(json!({"user_id": u, "name": u})),
            )
            .await;
        }
        let ch = rest
            .call("POST", "/api/channels", Cred::Key(&key), Some(json!({"user_id": "alice", "type": "group", "name": "room", "member_ids": ["bob"]})))
            .await;
        let channel = ch.body["id"].as_str().unwrap().to_string();
        World {
            node,
            rest,
            app,
            key,
            channel,
        }
    }

    fn chan(&self) -> String {
        format!("chat:{}:{}", self.app, self.channel)
    }

    async fn ws_token(&self, user: &str) -> String {
        self.rest.login(&self.key, user).await.1
    }

    async fn client(&self, user: &str) -> WsClient {
        let mut c = WsClient::open(&self.node.ws_url()).await;
        c.connect(&self.ws_token(user).await).await;
        c
    }

    async fn send(&self, user: &str, text: &str) -> Value {
        let r = self
            .rest
            .call(
                "POST",
                "/api/messages",
                Cred::Key(&self.key),
                Some(json!({"channel_id": self.channel, "user_id": user, "text": text})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body
    }
}

fn kinds(pubs: &[Value]) -> Vec<String> {
    pubs.iter()
        .map(|p| p["data"]["type"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn offsets(pubs: &[Value]) -> Vec<u64> {
    pubs.iter()
        .map(|p| p["offset"].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_delivery_then_recovery_of_exactly_the_missed_events() {
    let w = World::new(GatewayConfig::default()).await;
    let mut bob = w.client("bob").await;
    let sub = bob
        .call(
            "subscribe",
            json!({"channel": w.chan(), "recoverable": true}),
        )
        .await;
    let res = &sub["subscribe"];
    assert_eq!(res["recoverable"], true, "{sub:?}");
    let epoch = res["epoch"].as_str().unwrap_or_default().to_string();
    let start = res["offset"].as_u64().unwrap_or(0);

    w.send("alice", "one").await;
    w.send("alice", "two").await;
    let mut live = Vec::new();
    bob.collect_pubs(&w.chan(), &mut live, 2).await;
    assert_eq!(kinds(&live), vec!["message.new", "message.new"]);
    assert_eq!(live[0]["data"]["payload"]["message"]["text"], "one");
    assert_eq!(offsets(&live), vec![start + 1, start + 2]);
    let epoch = if epoch.is_empty() {
        String::new()
    } else {
        epoch
    };
    let last = start + 2;
    bob.close().await;

    // While bob is away: a message, an edit, a delete, a member joining, a read.
    let m = w.send("alice", "three").await;
    let mid = m["id"].as_str().unwrap();
    let (alice, _) = w.rest.login(&w.key, "alice").await;
    let base = format!("/api/channels/{}/messages/{mid}", w.channel);
    assert_eq!(
        w.rest
            .call(
                "PATCH",
                &base,
                Cred::Bearer(&alice),
                Some(json!({"text": "three!"}))
            )
            .await
            .status,
        200
    );
    assert_eq!(
        w.rest
            .call("DELETE", &base, Cred::Bearer(&alice), None)
            .await
            .status,
        200
    );
    let add = w
        .rest
        .call(
            "POST",
            &format!("/api/channels/{}/members", w.channel),
            Cred::Bearer(&alice),
            Some(json!({"userId": "carol"})),
        )
        .await;
    assert_eq!(add.status, 200, "{add:?}");
    assert_eq!(
        w.rest
            .call(
                "POST",
                &format!("/api/channels/{}/read", w.channel),
                Cred::Bearer(&alice),
                None
            )
            .await
            .status,
        200
    );

    let mut bob = w.client("bob").await;
    let sub = bob
        .call(
            "subscribe",
            json!({"channel": w.chan(), "recover": true, "epoch": epoch, "offset": last}),
        )
        .await;
    let res = &sub["subscribe"];
    assert_eq!(res["recovered"], true, "{sub:?}");
    assert_eq!(res["was_recovering"], true);
    let missed = res["publications"].as_array().unwrap().clone();
    assert_eq!(
        kinds(&missed),
        vec![
            "message.new",
            "message.updated",
            "message.deleted",
            "channel.member_joined",
            "read.updated"
        ]
    );
    assert_eq!(offsets(&missed), (last + 1..=last + 5).collect::<Vec<_>>());
    assert_eq!(res["offset"], last + 5);
    // And live again, continuing the sequence.
    w.send("alice", "four").await;
    let mut after = Vec::new();
    bob.collect_pubs(&w.chan(), &mut after, 1).await;
    assert_eq!(offsets(&after), vec![last + 6]);

    // A position from another epoch, or too old, is reported as not recovered.
    let mut carol = w.client("carol").await;
    let sub = carol
        .call(
            "subscribe",
            json!({"channel": w.chan(), "recover": true, "epoch": "not-this-one", "offset": 1}),
        )
        .await;
    assert_eq!(sub["subscribe"]["recovered"], false, "{sub:?}");
    assert!(sub["subscribe"]["publications"]
        .as_array()
        .is_none_or(|p| p.is_empty()));

    // A position beyond what the answering leader has applied (a new leader still applying
    // what the old one committed and delivered) stands: nothing is missed, and events up to
    // it are not sent a second time when they are emitted.
    let mut dave = w.client("carol").await;
    let ahead = last + 8;
    let sub = dave
        .call(
            "subscribe",
            json!({"channel": w.chan(), "recover": true, "epoch": epoch, "offset": ahead}),
        )
        .await;
    assert_eq!(sub["subscribe"]["recovered"], true, "{sub:?}");
    assert_eq!(sub["subscribe"]["offset"], ahead, "{sub:?}");
    for text in ["five", "six", "seven"] {
        w.send("alice", text).await;
    }
    let mut after = Vec::new();
    dave.collect_pubs(&w.chan(), &mut after, 1).await;
    assert_eq!(offsets(&after), vec![ahead + 1], "{after:?}");
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_older_than_the_window_cannot_be_recovered() {
    let w = World::new(GatewayConfig::default()).await;
    let mut bob = w.client("bob").await;
    let sub = bob.call("subscribe", json!({"channel": w.chan()})).await;
    let epoch = sub["subscribe"]["epoch"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    bob.close().await;
    // The test node retains 100 events per stream.
    for i in 0..105 {
        w.send("alice", &format!("m{i}")).await;
    }
    let mut bob = w.client("bob").await;
    let head = bob
        .call("history", json!({"channel": w.chan(), "limit": 0}))
        .await;
    let epoch = if epoch.is_empty() {
        head["history"]["epoch"].as_str().unwrap().to_string()
    } else {
        epoch
    };
    let sub = bob
        .call(
            "subscribe",
            json!({"channel": w.chan(), "recover": true, "epoch": epoch, "offset": 1}),
        )
        .await;
    assert_eq!(sub["subscribe"]["recovered"], false, "{sub:?}");
    assert_eq!(sub["subscribe"]["offset"], 105);
    let within = bob.call("unsubscribe", json!({"channel": w.chan()})).await;
    assert!(within["unsubscribe"].is_object());
    let sub = bob
        .call(
            "subscribe",
            json!({"channel": w.chan(), "recover": true, "epoch": epoch, "offset": 100}),
        )
        .await;
    assert_eq!(sub["subscribe"]["recovered"], true, "{sub:?}");
    assert_eq!(
        sub["subscribe"]["publications"].as_array().unwrap().len(),
        5
    );
    let hist = bob
        .call(
            "history",
            json!({"channel": w.chan(), "limit": 3, "reverse": true}),
        )
        .await;
    assert_eq!(
        offsets(hist["history"]["publications"].as_array().unwrap()),
        vec![105, 104, 103],
        "{hist:?}"
    );
    let old = bob
        .call(
            "history",
            json!({"channel": w.chan(), "limit": 3, "since": {"offset": 1, "epoch": epoch}}),
        )
        .await;
    assert_eq!(old["error"]["code"], 112, "{old:?}");
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_authorised_by_membership() {
    let w = World::new(GatewayConfig {
        max_subscriptions: 3,
        ..GatewayConfig::default()
    })
    .await;
    let mut mallory = w.client("mallory").await;
    let r = mallory
        .call("subscribe", json!({"channel": w.chan()}))
        .await;
    assert_eq!(r["error"]["code"], 103, "non-member: {r:?}");
    let r = mallory
        .call(
            "subscribe",
            json!({"channel": format!("user:{}:alice", w.app)}),
        )
        .await;
    assert_eq!(r["error"]["code"], 103, "another user's channel: {r:?}");
    let r = mallory
        .call(
            "subscribe",
            json!({"channel": format!("chat:other-app:{}", w.channel)}),
        )
        .await;
    assert_eq!(r["error"]["code"], 103, "another app: {r:?}");
    let r = mallory
        .call(
            "subscribe",
            json!({"channel": format!("chat:{}:no-such-channel", w.app)}),
        )
        .await;
    assert_eq!(r["error"]["code"], 102, "unknown channel: {r:?}");
    let r = mallory
        .call("subscribe", json!({"channel": "nonsense"}))
        .await;
    assert_eq!(r["error"]["code"], 102, "malformed name: {r:?}");
    let r = mallory
        .call("subscribe", json!({"channel": format!("app:{}", w.app)}))
        .await;
    assert_eq!(r["error"]["code"], 103, "app channel, not an admin: {r:?}");
    w.rest
        .call(
            "POST",
            "/api/users",
            Cred::Key(&w.key),
            Some(json!({"user_id": "admin", "role": "admin"})),
        )
        .await;
    let mut admin = w.client("admin").await;
    let r = admin
        .call("subscribe", json!({"channel": format!("app:{}", w.app)}))
        .await;
    assert!(
        r["subscribe"].is_object(),
        "an app admin subscribes to the app channel: {r:?}"
    );
    let own = format!("user:{}:mallory", w.app);
    assert!(mallory.call("subscribe", json!({"channel": own})).await["subscribe"].is_object());
    let r = mallory.call("subscribe", json!({"channel": own})).await;
    assert_eq!(r["error"]["code"], 105, "already subscribed: {r:?}");

    // A member may also present a subscription token minted over REST; a token for another
    // channel is refused.
    let (bob_access, bob_ws) = w.rest.login(&w.key, "bob").await;
    let t = w
        .rest
        .call(
            "POST",
            "/api/realtime/subscription-token",
            Cred::Bearer(&bob_access),
            Some(json!({"channel": w.chan()})),
        )
        .await;
    assert_eq!(t.status, 200, "{t:?}");
    let token = t.body["token"].as_str().unwrap();
    let mut bob = WsClient::open(&w.node.ws_url()).await;
    bob.connect(&bob_ws).await;
    assert!(bob
        .call("subscribe", json!({"channel": w.chan(), "token": token}))
        .await["subscribe"]
        .is_object());
    let r = bob
        .call(
            "subscribe",
            json!({"channel": format!("user:{}:bob", w.app), "token": token}),
        )
        .await;
    assert_eq!(r["error"]["code"], 103, "{r:?}");
    let denied = w
        .rest
        .call(
            "POST",
            "/api/realtime/subscription-token",
            Cred::Bearer(&w.rest.login(&w.key, "mallory").await.0),
            Some(json!({"channel": w.chan()})),
        )
        .await;
    assert_eq!(denied.status, 403);
    // The subscription cap.
    assert!(bob
        .call(
            "subscribe",
            json!({"channel": format!("user:{}:bob", w.app)})
        )
        .await["subscribe"]
        .is_object());
    let ch2 = w
        .rest
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&w.key),
            Some(json!({"user_id": "bob", "type": "group", "name": "b2"})),
        )
        .await;
    let ch3 = w
        .rest
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&w.key),
            Some(json!({"user_id": "bob", "type": "group", "name": "b3"})),
        )
        .await;
    assert!(bob
        .call(
            "subscribe",
            json!({"channel": format!("chat:{}:{}", w.app, ch2.body["id"].as_str().unwrap())})
        )
        .await["subscribe"]
        .is_object());
    let r = bob
        .call(
            "subscribe",
            json!({"channel": format!("chat:{}:{}", w.app, ch3.body["id"].as_str().unwrap())}),
        )
        .await;
    assert_eq!(r["error"]["code"], 106, "{r:?}");
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_publish_presence_and_user_channel() {
    let w = World::new(GatewayConfig::default()).await;
    let mut alice = w.client("alice").await;
    let mut bob = w.client("bob").await;
    let bob_user = format!("user:{}:bob", w.app);
    assert!(bob.call("subscribe", json!({"channel": bob_user})).await["subscribe"].is_object());
    for c in [&mut alice, &mut bob] {
        assert!(c.call("subscribe", json!({"channel": w.chan()})).await["subscribe"].is_object());
    }
    // A message sent over the socket, with idempotency.
    let sent = alice.call("rpc", json!({"method": "message.send", "data": {"channelId": w.channel, "text": "over ws", "clientMsgId": "ws-1"}})).await;
    assert_eq!(sent["rpc"]["data"]["text"], "over ws", "{sent:?}");
    let again = alice.call("rpc", json!({"method": "message.send", "data": {"channelId": w.channel, "text": "over ws", "clientMsgId": "ws-1"}})).await;
    assert_eq!(again["rpc"]["data"]["id"], sent["rpc"]["data"]["id"]);
    assert_eq!(again["rpc"]["data"]["duplicate"], true);
    let mut got = Vec::new();
    bob.collect_pubs(&w.chan(), &mut got, 1).await;
    assert_eq!(got[0]["data"]["payload"]["message"]["text"], "over ws");
    // The answer to the send is the message exactly as its event carries it.
    assert_eq!(sent["rpc"]["data"], got[0]["data"]["payload"]["message"]);
    // Bob's user channel tells him his unread count (ephemeral).
    let unread = bob
        .wait_for("unread_changed", |v| {
            v["push"]["channel"] == bob_user.as_str()
                && v["push"]["pub"]["data"]["type"] == "channel.unread_changed"
        })
        .await;
    assert_eq!(
        unread["push"]["pub"]["data"]["payload"]["count"], 1,
        "{unread:?}"
    );
    assert!(unread["push"]["pub"].get("offset").is_none());
    // Typing: ephemeral, no offset; other data may not be published.
    let p = alice
        .call(
            "publish",
            json!({"channel": w.chan(), "data": {"type": "typing.start"}}),
        )
        .await;
    assert!(p["publish"].is_object(), "{p:?}");
    let typing = bob
        .wait_for("typing", |v| {
            v["push"]["pub"]["data"]["type"] == "typing.start"
        })
        .await;
    assert!(typing["push"]["pub"].get("offset").is_none(), "{typing:?}");
    assert_eq!(
        typing["push"]["pub"]["data"]["payload"]["user"]["id"],
        "alice"
    );
    let p = alice
        .call(
            "publish",
            json!({"channel": w.chan(), "data": {"type": "message.new", "text": "forged"}}),
        )
        .await;
    assert_eq!(p["error"]["code"], 103, "{p:?}");
    // Presence.
    let pr = bob.call("presence", json!({"channel": w.chan()})).await;
    assert_eq!(
        pr["presence"]["presence"].as_object().unwrap().len(),
        2,
        "{pr:?}"
    );
    let st = bob
        .call("presence_stats", json!({"channel": w.chan()}))
        .await;
    assert_eq!(st["presence_stats"]["num_users"], 2);
    // Unknown methods.
    let r = bob.call("rpc", json!({"method": "nope", "data": {}})).await;
    assert_eq!(r["error"]["code"], 104);
    bob.send_raw(r#"{"id": 77, "fly": {}}"#).await;
    assert_eq!(bob.reply(77).await["error"]["code"], 104);
    // The user channel gets membership events.
    let ch = w
        .rest
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&w.key),
            Some(
                json!({"user_id": "alice", "type": "group", "name": "new", "member_ids": ["bob"]}),
            ),
        )
        .await;
    assert_eq!(ch.status, 201);
    let created = bob
        .wait_for("channel.created", |v| {
            v["push"]["channel"] == bob_user.as_str()
                && v["push"]["pub"]["data"]["type"] == "channel.created"
        })
        .await;
    assert_eq!(
        created["push"]["pub"]["data"]["payload"]["channel"]["id"],
        ch.body["id"]
    );
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_close_with_their_codes() {
    let w = World::new(GatewayConfig {
        ws_message_bytes: 4096,
        ws_frame_bytes: 4096,
        ..GatewayConfig::default()
    })
    .await;
    // A command before connect.
    let mut c = WsClient::open(&w.node.ws_url()).await;
    c.send("subscribe", json!({"channel": w.chan()})).await;
    assert_eq!(c.wait_close().await, 3501);
    // Malformed JSON.
    let mut c = WsClient::open(&w.node.ws_url()).await;
    c.send_raw("{not json").await;
    assert_eq!(c.wait_close().await, 3501);
    // A forged token.
    let mut c = WsClient::open(&w.node.ws_url()).await;
    c.send("connect", json!({"token": "eyJhbGciOiJIUzI1NiJ9.e30.AAAA"}))
        .await;
    assert_eq!(c.wait_close().await, 3500);
    // An oversized message.
    let mut c = w.client("bob").await;
    c.send_raw(&format!(
        r#"{{"id": 1, "rpc": {{"method": "x", "data": "{}"}}}}"#,
        "x".repeat(10_000)
    ))
    .await;
    let code = c.wait_close().await;
    assert!(
        code == 1009 || code == 3501 || code == 1006,
        "oversized frame closed with {code}"
    );
    // An empty frame is no command; binary (protobuf) frames are refused.
    let mut c = w.client("bob").await;
    c.send_raw("").await;
    let r = c.call("presence_stats", json!({"channel": w.chan()})).await;
    assert!(r["presence_stats"].is_object());
    c.send_binary(&[0x0a, 0x01]).await;
    assert_eq!(c.wait_close().await, 3501);
    // Revoking the user closes their connection with "force disconnect".
    let mut bob = w.client("bob").await;
    assert!(bob.call("subscribe", json!({"channel": w.chan()})).await["subscribe"].is_object());
    assert_eq!(
        w.rest
            .call(
                "POST",
                "/api/users/bob/revoke-tokens",
                Cred::Key(&w.key),
                None
            )
            .await
            .status,
        200
    );
    assert_eq!(bob.wait_close().await, 3503);
    // Draining closes sessions with 3001.
    let mut alice = w.client("alice").await;
    assert!(alice.call("subscribe", json!({"channel": w.chan()})).await["subscribe"].is_object());
    w.node.state.draining.cancel();
    assert_eq!(alice.wait_close().await, 3001);
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_stops_receiving_the_channel() {
    let w = World::new(GatewayConfig::default()).await;
    let mut bob = w.client("bob").await;
    assert!(bob.call("subscribe", json!({"channel": w.chan()})).await["subscribe"].is_object());
    let (alice, _) = w.rest.login(&w.key, "alice").await;
    let r = w
        .rest
        .call(
            "DELETE",
            &format!("/api/channels/{}/members/bob", w.channel),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let left = bob
        .wait_for("member_left", |v| {
            v["push"]["pub"]["data"]["type"] == "channel.member_left"
        })
        .await;
    assert_eq!(left["push"]["pub"]["data"]["payload"]["userId"], "bob");
    let unsub = bob
        .wait_for("unsubscribe push", |v| v["push"]["unsubscribe"].is_object())
        .await;
    assert_eq!(unsub["push"]["channel"], w.chan().as_str());
    assert!(
        unsub["push"]["unsubscribe"]["code"].as_u64().unwrap() < 2500,
        "no automatic resubscribe: {unsub:?}"
    );
    // A message sent now is delivered (if at all) before the reply to a later command.
    w.send("alice", "after removal").await;
    assert!(bob
        .call(
            "presence_stats",
            json!({"channel": format!("user:{}:bob", w.app)})
        )
        .await["presence_stats"]
        .is_object());
    assert!(
        bob.take_pubs(&w.chan()).is_empty(),
        "a removed member received a message"
    );
    let again = bob.call("subscribe", json!({"channel": w.chan()})).await;
    assert_eq!(again["error"]["code"], 103, "{again:?}");
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_that_move_nothing_emit_nothing() {
    let w = World::new(GatewayConfig::default()).await;
    let mut bob = w.client("bob").await;
    let sub = bob.call("subscribe", json!({"channel": w.chan()})).await;
    let start = sub["subscribe"]["offset"].as_u64().unwrap();
    w.send("alice", "one").await;
    for _ in 0..3 {
        let r = bob
            .call(
                "rpc",
                json!({"method": "read", "data": {"channelId": w.channel}}),
            )
            .await;
        assert_eq!(r["rpc"]["data"]["lastReadSeq"], 1, "{r:?}");
    }
    w.send("alice", "two").await;
    let mut got = Vec::new();
    bob.collect_pubs(&w.chan(), &mut got, 3).await;
    assert_eq!(
        kinds(&got),
        vec!["message.new", "read.updated", "message.new"]
    );
    assert_eq!(offsets(&got), vec![start + 1, start + 2, start + 3]);
    w.node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_replies_invalid_utf8_and_expired_tokens() {
    let w = World::new(GatewayConfig::default()).await;
    let mut bob = w.client("bob").await;
    assert!(bob.call("subscribe", json!({"channel": w.chan()})).await["subscribe"].is_object());
    let parent = w.send("alice", "a thread starts").await;
    let (alice, _) = w.rest.login(&w.key, "alice").await;
    let path = format!(
        "/api/channels/{}/messages/{}/thread",
        w.channel,
        parent["id"].as_str().unwrap()
    );
    let reply = w
        .rest
        .call(
            "POST",
            &path,
            Cred::Bearer(&alice),
            Some(json!({"text": "a reply"})),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let mut got = Vec::new();
    bob.collect_pubs(&w.chan(), &mut got, 3).await;
    assert_eq!(
        kinds(&got),
        vec!["message.new", "message.new", "thread.reply"]
    );
    assert_eq!(got[2]["data"]["payload"]["threadId"], parent["id"]);
    let thread = w.rest.call("GET", &path, Cred::Bearer(&alice), None).await;
    assert_eq!(thread.body["replies"][0]["text"], "a reply");
    assert_eq!(thread.body["parent"]["replyCount"], 1);
    let orphan = w
        .rest
        .call(
            "POST",
            &format!("/api/channels/{}/messages", w.channel),
            Cred::Bearer(&alice),
            Some(json!({"text": "x", "parentId": "no-such-message"})),
        )
        .await;
    assert_eq!(orphan.status, 404, "{orphan:?}");

    // A text frame that is not UTF-8 closes the connection.
    let stream = tokio::net::TcpStream::connect(w.node.http).await.unwrap();
    let (mut raw, _) = tokio_tungstenite::client_async(w.node.ws_url(), stream)
        .await
        .unwrap();
    use futures::SinkExt;
    let frame = tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![0xff, 0xfe, 0xfd],
        tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode::Data(
            tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text,
        ),
        true,
    );
    raw.send(tokio_tungstenite::tungstenite::Message::Frame(frame))
        .await
        .unwrap();
    use futures::StreamExt;
    let closed = tokio::time::timeout(support::WAIT, async {
        loop {
            match raw.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))
                | None
                | Some(Err(_)) => return true,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));

    // An expired connection token is answered with 109 so the client refreshes it.
    let now = chatsdk_actors::time::now_ms() / 1000;
    let claims = chatsdk_gateway::auth::tokens::Claims {
        sub: format!("{}:bob", w.app),
        user_id: "bob".into(),
        app_id: w.app.clone(),
        iat: now - 3600,
        iat_ms: (now - 3600) * 1000,
        exp: now - 600,
        ..Default::default()
    };
    let expired = w.node.state.tokens.sign_access(&claims);
    let mut c = WsClient::open(&w.node.ws_url()).await;
    let r = c.call("connect", json!({"token": expired})).await;
    assert_eq!(r["error"]["code"], 109, "{r:?}");
    w.node.stop().await;
}

/// REST and the `message.send` RPC are one command: a client message id used on one is a
/// duplicate on the other, and both draw on the sender's one rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_rpc_sends_share_idempotency_and_rate_limit() {
    let w = World::with_chat(
        GatewayConfig::default(),
        ChatConfig {
            send_rate_per_minute: 1,
            send_burst: 3,
            ..test_chat_config()
        },
    )
    .await;
    let (token, _) = w.rest.login(&w.key, "bob").await;
    let path = format!("/api/channels/{}/messages", w.channel);
    let rest_send = |cmid: &'static str| {
        let (rest, path, token) = (&w.rest, path.clone(), token.clone());
        async move {
            rest.call(
                "POST",
                &path,
                Cred::Bearer(&token),
                Some(json!({"text": "hello", "clientMsgId": cmid})),
            )
            .await
        }
    };
    let first = rest_send("shared-1").await;
    assert_eq!(first.status, 201, "{first:?}");

    let mut bob = w.client("bob").await;
    let again = bob
        .call("rpc", json!({"method": "message.send", "data": {"channelId": w.channel, "text": "hello", "clientMsgId": "shared-1"}}))
        .await;
    assert_eq!(again["rpc"]["data"]["id"], first.body["id"], "{again:?}");
    assert_eq!(again["rpc"]["data"]["duplicate"], true, "{again:?}");

    // Three sends of the burst are spent (REST, RPC, REST); the fourth is refused on either
    // surface with the same error.
    assert_eq!(rest_send("shared-2").await.status, 201);
    let refused = bob
        .call(
            "rpc",
            json!({"method": "message.send", "data": {"channelId": w.channel, "text": "more"}}),
        )
        .await;
    assert_eq!(refused["error"]["code"], 111, "{refused:?}");
    let refused = rest_send("shared-3").await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.body["error"]["code"], "RATE_LIMITED", "{refused:?}");

    // Malformed RPC data is a bad request that names the problem.
    let bad = bob
        .call(
            "rpc",
            json!({"method": "message.send", "data": {"text": "no channel"}}),
        )
        .await;
    assert_eq!(bad["error"]["code"], 107, "{bad:?}");
    w.node.stop().await;
}

/// A client that stops reading is let go: once a write has waited for the pong timeout the
/// connection ends, and its slot, session and subscriptions are released (before, the writer
/// waited on the full socket forever).
#[test]
fn a_client_that_stops_reading_is_let_go() {
    // The runtime is dropped before the data directory: tasks that outlive the node's stop (an
    // unread-notice round holds the chat layer for up to 250 ms) must not close sled in a
    // directory already deleted: with this test's large values sled then writes blob files
    // there, and its flush on drop waits forever for the failed write.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = runtime.block_on(a_client_that_stops_reading_is_let_go_body());
    drop(runtime);
    drop(dir);
}

async fn a_client_that_stops_reading_is_let_go_body() -> tempfile::TempDir {
    use futures::{SinkExt, StreamExt};
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;

    let w = World::with_chat(
        GatewayConfig {
            pong_timeout: Duration::from_millis(500),
            outbound_queue_bytes: 64 * 1024,
            ..GatewayConfig::default()
        },
        ChatConfig {
            send_rate_per_minute: 1_000_000,
            send_burst: 10_000,
            ..test_chat_config()
        },
    )
    .await;
    // A socket with a small receive buffer, so that the server's writes stop soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(w.node.http).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(w.node.ws_url(), stream)
        .await
        .expect("websocket opens");
    let token = w.ws_token("bob").await;
    let frames = [
        json!({"id": 1, "connect": {"token": token}}),
        json!({"id": 2, "subscribe": {"channel": w.chan()}}),
    ];
    for (i, frame) in frames.iter().enumerate() {
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        let reply = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["id"] == json!(i + 1) {
                        break v;
                    }
                }
                other => panic!("no reply to {frame}: {other:?}"),
            }
        };
        assert!(reply.get("error").is_none(), "{reply}");
    }
    assert_eq!(w.node.state.realtime_connections.load(Ordering::Relaxed), 1);
    // The client reads nothing more while the channel gets messages, until the socket's
    // buffers (several MB on loopback) are full and a write waits (at most 3,000 of 10 KB).
    let text = "x".repeat(10_000);
    let started = std::time::Instant::now();
    for i in 0..3000 {
        if w.node.state.realtime_connections.load(Ordering::Relaxed) == 0
            || started.elapsed() > Duration::from_secs(60)
        {
            break;
        }
        let user = ["alice", "bob", "carol"][i % 3];
        w.send(user, &text).await;
    }
    support::eventually("the non-reading connection to be let go", || async {
        w.node.state.realtime_connections.load(Ordering::Relaxed) == 0
    })
    .await;
    // Others are served as before.
    let mut alice = w.client("alice").await;
    assert!(alice.call("subscribe", json!({"channel": w.chan()})).await["subscribe"].is_object());
    drop(ws);
    alice.close().await;
    w.node.stop().await
}

/// Pipelined writes: a client that sends many `message.send` rpcs without waiting (in one
/// frame and in frames of their own), on a connection that runs at most two commands at once,
/// gets every one answered, by id, and stored in the order it sent them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_sends_are_answered_by_id_and_kept_in_order() {
    let config = GatewayConfig {
        commands_in_flight: 2,
        ..GatewayConfig::default()
    };
    let w = World::new(config).await;
    let mut alice = w.client("alice").await;
    let send = |id: u32| {
        json!({"id": id, "rpc": {"method": "message.send", "data": {"channelId": w.channel, "text": format!("p{id}"), "clientMsgId": format!("pipe-{id}")}}})
        .to_string()
    };
    let one_frame: Vec<String> = (100..110).map(send).collect();
    alice.send_raw(&one_frame.join("\n")).await;
    for id in 110..120 {
        alice.send_raw(&send(id)).await;
    }
    let mut seqs = Vec::new();
    for id in 100..120u32 {
        let reply = alice.reply(id).await;
        assert_eq!(reply["rpc"]["data"]["text"], format!("p{id}"), "{reply:?}");
        seqs.push(reply["rpc"]["data"]["seq"].as_u64().unwrap());
    }
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seqs, sorted, "stored out of the order sent");
    assert_eq!(seqs.len(), 20);
    assert_eq!(alice.closed, None);
}

/// The command budget holds with pipelining: a client that sends more commands than its
/// burst allows (here set to 20), without waiting for replies, is closed with 3013.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_command_budget_closes_with_3013() {
    let config = GatewayConfig {
        commands_per_sec: 1,
        command_burst: 20,
        ..GatewayConfig::default()
    };
    let w = World::new(config).await;
    let mut alice = w.client("alice").await;
    let chan = w.chan();
    let frame: Vec<String> = (1000..1040)
        .map(|id| json!({"id": id, "presence_stats": {"channel": chan}}).to_string())
        .collect();
    alice.send_raw(&frame.join("\n")).await;
    assert_eq!(alice.wait_close().await, 3013);
}

/// Idle connections cost one task each and nothing more: a few hundred connected sessions
/// subscribed to one channel add at most one task per connection to the node's runtime (no
/// writer task, no session actor, no timer task), and all of them are gone once the clients
/// leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cost_one_task_each() {
    const N: usize = 300;
    let w = World::new(GatewayConfig::default()).await;
    let tokens = [w.ws_token("alice").await, w.ws_token("bob").await];
    // The channel's actor (shared by every subscriber) is started before counting.
    let mut first = WsClient::open(&w.node.ws_url()).await;
    first.connect(&tokens[0]).await;
    assert!(first.call("subscribe", json!({"channel": w.chan()})).await["subscribe"].is_object());
    let metrics = tokio::runtime::Handle::current().metrics();
    let base = metrics.num_alive_tasks();
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = WsClient::open(&w.node.ws_url()).await;
        c.connect(&tokens[i % 2]).await;
        let sub = c.call("subscribe", json!({"channel": w.chan()})).await;
        assert!(sub["subscribe"].is_object(), "{sub:?}");
        clients.push(c);
    }
    let alive = metrics.num_alive_tasks();
    // A little slack for the node's own periodic work that may be running at the moment.
    assert!(
        alive <= base + N + 8,
        "{N} idle connections added {} tasks",
        alive.saturating_sub(base)
    );
    for c in clients {
        c.close().await;
    }
    let state = w.node.state.clone();
    support::eventually("the idle connections are gone", || {
        let left = state
            .realtime_connections
            .load(std::sync::atomic::Ordering::Relaxed);
        let tasks = metrics.num_alive_tasks();
        async move { left == 1 && tasks <= base + 8 }
    })
    .await;
}

/// Subscribing reads a stream without starting its actor (an idle session on its own `user:`
/// stream costs no actor); the stream's first write starts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_starts_no_channel_actor_and_a_write_starts_one() {
    let w = World::new(GatewayConfig::default()).await;
    let chat = w.node.state.chat.clone();
    let mut clients = Vec::new();
    let mut offsets_at = Vec::new();
    for user in ["carol", "mallory"] {
        let stream = format!("user:{}:{user}", w.app);
        assert!(!chat.actor_running(&stream), "{stream} was written before");
        let mut c = w.client(user).await;
        let sub = c
            .call("subscribe", json!({"channel": stream, "recoverable": true}))
            .await;
        assert!(sub["subscribe"].is_object(), "{sub:?}");
        assert!(
            !chat.actor_running(&stream),
            "subscribing to {stream} started its actor"
        );
        offsets_at.push(sub["subscribe"]["offset"].as_u64().unwrap_or(0));
        clients.push(c);
    }
    // Carol creates a channel with mallory: its `channel.created` event is the first write to
    // mallory's `user:` stream, which starts the stream's actor, and reaches her subscription
    // live, right after the position her subscribe was answered with.
    let (carol, _) = w.rest.login(&w.key, "carol").await;
    let r = w
        .rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&carol),
            Some(json!({"type": "group", "name": "new", "member_ids": ["mallory"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let stream = format!("user:{}:mallory", w.app);
    assert!(
        chat.actor_running(&stream),
        "a write did not start the actor"
    );
    let mut pubs = Vec::new();
    clients[1].collect_pubs(&stream, &mut pubs, 1).await;
    assert_eq!(kinds(&pubs), vec!["channel.created"]);
    assert_eq!(offsets(&pubs), vec![offsets_at[1] + 1]);
    for c in clients {
        c.close().await;
    }
}

/// Reactions, pins and poll votes are events of the channel's stream: delivered live, and
/// recovered after a reconnect like messages (anonymous votes name nobody).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_pins_and_polls_are_live_and_recovered() {
    let w = World::new(GatewayConfig::default()).await;
    let m = w.send("alice", "vote here").await;
    let mid = m["id"].as_str().unwrap().to_string();
    let (alice, _) = w.rest.login(&w.key, "alice").await;
    let (bob_token, _) = w.rest.login(&w.key, "bob").await;
    let base = format!("/api/channels/{}/messages/{mid}", w.channel);
    let mut bob = w.client("bob").await;
    let sub = bob
        .call(
            "subscribe",
            json!({"channel": w.chan(), "recoverable": true}),
        )
        .await;
    let epoch = sub["subscribe"]["epoch"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let start = sub["subscribe"]["offset"].as_u64().unwrap_or(0);

    let r = w
        .rest
        .call(
            "POST",
            &format!("{base}/reactions"),
            Cred::Bearer(&alice),
            Some(json!({"emoji": "🎉"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let poll = w
        .rest
        .call("POST", &format!("{base}/polls"), Cred::Bearer(&alice), Some(json!({"question": "When?", "options": [{"id": "mon", "text": "Monday"}, {"id": "tue", "text": "Tuesday"}]})))
        .await;
    assert_eq!(poll.status, 201, "{poll:?}");
    let pid = poll.body["id"].as_str().unwrap().to_string();
    let mut live = Vec::new();
    bob.collect_pubs(&w.chan(), &mut live, 2).await;
    assert_eq!(kinds(&live), vec!["reaction.added", "poll.created"]);
    let added = &live[0]["data"]["payload"];
    assert_eq!(added["messageId"], mid.as_str());
    assert_eq!(added["reaction"]["type"], "🎉");
    assert_eq!(added["reaction"]["userId"], "alice");
    assert_eq!(added["reaction"]["user"]["name"], "alice");
    assert_eq!(added["count"], 1);
    assert_eq!(live[1]["data"]["payload"]["poll"]["question"], "When?");
    assert_eq!(
        live[1]["data"]["payload"]["poll"]["options"][1]["voteCount"],
        0
    );
    assert_eq!(offsets(&live), vec![start + 1, start + 2]);
    let last = start + 2;
    bob.close().await;

    // While bob is away: a vote, a changed vote, a pin, a removed reaction, a removed vote.
    let vote = |token: String, options: Value| {
        let path = format!("/api/polls/{pid}/vote");
        let rest = &w.rest;
        async move {
            let r = rest
                .call(
                    "POST",
                    &path,
                    Cred::Bearer(&token),
                    Some(json!({"optionIds": options})),
                )
                .await;
            assert_eq!(r.status, 201, "{r:?}");
        }
    };
    vote(alice.clone(), json!(["mon"])).await;
    vote(alice.clone(), json!(["tue"])).await;
    let pin = w
        .rest
        .call("POST", &format!("{base}/pin"), Cred::Bearer(&alice), None)
        .await;
    assert_eq!(pin.status, 200, "{pin:?}");
    let unreact = w
        .rest
        .call(
            "DELETE",
            &format!("{base}/reactions/%F0%9F%8E%89"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(unreact.status, 200, "{unreact:?}");
    let unvote = w
        .rest
        .call(
            "DELETE",
            &format!("/api/polls/{pid}/vote"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(unvote.status, 200, "{unvote:?}");
    // Repeats change nothing and add no event.
    let again = w
        .rest
        .call(
            "DELETE",
            &format!("/api/polls/{pid}/vote"),
            Cred::Bearer(&bob_token),
            None,
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");

    let mut bob = w.client("bob").await;
    let sub = bob
        .call(
            "subscribe",
            json!({"channel": w.chan(), "recover": true, "epoch": epoch, "offset": last}),
        )
        .await;
    let res = &sub["subscribe"];
    assert_eq!(res["recovered"], true, "{sub:?}");
    let missed = res["publications"].as_array().unwrap().clone();
    assert_eq!(
        kinds(&missed),
        vec![
            "poll.voted",
            "poll.voted",
            "message.updated",
            "reaction.removed",
            "poll.vote_removed"
        ]
    );
    assert_eq!(offsets(&missed), (last + 1..=last + 5).collect::<Vec<_>>());
    let first_vote = &missed[0]["data"]["payload"];
    assert_eq!(first_vote["pollId"], pid.as_str());
    assert_eq!(first_vote["userId"], "alice");
    assert_eq!(first_vote["optionIds"], json!(["mon"]));
    assert_eq!(first_vote["totalVotes"], 1);
    let changed = &missed[1]["data"]["payload"];
    assert_eq!(changed["totalVotes"], 1);
    assert_eq!(
        changed["options"],
        json!([{"id": "mon", "voteCount": 0}, {"id": "tue", "voteCount": 1}])
    );
    let pinned = &missed[2]["data"]["payload"];
    assert_eq!(pinned["id"], mid.as_str());
    assert_eq!(pinned["pinned"], true);
    assert_eq!(pinned["pinnedBy"], "alice");
    assert_eq!(missed[3]["data"]["payload"]["count"], 0);
    assert_eq!(missed[4]["data"]["payload"]["totalVotes"], 0);

    // An anonymous poll's votes name nobody, live.
    let anon = w
        .rest
        .call("POST", &format!("{base}/polls"), Cred::Bearer(&alice), Some(json!({"question": "Secret?", "isAnonymous": true, "options": [{"id": "y", "text": "yes"}, {"id": "n", "text": "no"}]})))
        .await;
    let aid = anon.body["id"].as_str().unwrap().to_string();
    let v = w
        .rest
        .call(
            "POST",
            &format!("/api/polls/{aid}/vote"),
            Cred::Bearer(&bob_token),
            Some(json!({"optionIds": ["y"]})),
        )
        .await;
    assert_eq!(v.status, 201, "{v:?}");
    let mut after = Vec::new();
    bob.collect_pubs(&w.chan(), &mut after, 2).await;
    assert_eq!(kinds(&after), vec!["poll.created", "poll.voted"]);
    let secret = &after[1]["data"]["payload"];
    assert_eq!(secret["userId"], Value::Null, "{secret}");
    assert!(secret.get("optionIds").is_none(), "{secret}");
    assert_eq!(secret["totalVotes"], 1);
    w.node.stop().await;
}

/// A publication on `channel` of event `kind` whose payload matches `pred`.
fn is_pub(v: &Value, channel: &str, kind: &str, pred: impl Fn(&Value) -> bool) -> bool {
    v["push"]["channel"] == channel
        && v["push"]["pub"]["data"]["type"] == kind
        && pred(&v["push"]["pub"]["data"]["payload"])
}

/// Read receipts and unread counts reach the reader's channels; workspace events reach the
/// workspace's channel (members only) and are recovered after a reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_unread_totals_and_workspace_events() {
    let w = World::new(GatewayConfig::default()).await;
    let mut bob = w.client("bob").await;
    let own = format!("user:{}:bob", w.app);
    for ch in [w.chan(), own.clone()] {
        let sub = bob.call("subscribe", json!({"channel": ch})).await;
        assert!(sub["subscribe"].is_object(), "{sub:?}");
    }
    let m = w.send("alice", "read me").await;
    let mid = m["id"].as_str().unwrap().to_string();
    bob.wait_for("the unread count", |v| {
        is_pub(v, &own, "channel.unread_changed", |p| p["count"] == 1)
    })
    .await;
    bob.wait_for("the unread total", |v| {
        is_pub(v, &own, "channel.total_unread_changed", |p| p["count"] == 1)
    })
    .await;
    let (bob_token, _) = w.rest.login(&w.key, "bob").await;
    let r = w
        .rest
        .call(
            "POST",
            &format!("/api/channels/{}/receipts", w.channel),
            Cred::Bearer(&bob_token),
            Some(json!({"messageId": mid})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let receipt = bob
        .wait_for("the receipt", |v| {
            is_pub(v, &w.chan(), "read_receipt", |_| true)
        })
        .await;
    let p = &receipt["push"]["pub"]["data"]["payload"];
    assert_eq!(p["userId"], "bob");
    assert_eq!(p["messageId"], mid.as_str());
    assert_eq!(p["lastReadSeq"], 1);
    assert!(p["readAt"].is_string());
    bob.wait_for("the unread count back to zero", |v| {
        is_pub(v, &own, "channel.unread_changed", |p| p["count"] == 0)
    })
    .await;
    bob.wait_for("the unread total back to zero", |v| {
        is_pub(v, &own, "channel.total_unread_changed", |p| p["count"] == 0)
    })
    .await;

    // Workspaces: members subscribe to the workspace's channel.
    let (alice, _) = w.rest.login(&w.key, "alice").await;
    let ws = w
        .rest
        .call(
            "POST",
            "/api/workspaces",
            Cred::Bearer(&alice),
            Some(json!({"name": "hq"})),
        )
        .await;
    let wid = ws.body["id"].as_str().unwrap().to_string();
    let wchan = format!("workspace:{}:{wid}", w.app);
    let denied = bob.call("subscribe", json!({"channel": wchan})).await;
    assert_eq!(denied["error"]["code"], 103, "{denied:?}");
    let add = |users: Value| {
        let (rest, path, alice) = (
            &w.rest,
            format!("/api/workspaces/{wid}/members"),
            alice.clone(),
        );
        async move {
            let r = rest
                .call(
                    "POST",
                    &path,
                    Cred::Bearer(&alice),
                    Some(json!({"userIds": users})),
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
        }
    };
    add(json!(["bob"])).await;
    bob.wait_for("bob's own joining, on his user channel", |v| {
        is_pub(v, &own, "workspace.member_joined", |p| {
            p["workspaceId"] == wid.as_str()
        })
    })
    .await;
    let sub = bob
        .call("subscribe", json!({"channel": wchan, "recoverable": true}))
        .await;
    assert!(sub["subscribe"].is_object(), "{sub:?}");
    let epoch = sub["subscribe"]["epoch"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let offset = sub["subscribe"]["offset"].as_u64().unwrap();
    add(json!(["carol"])).await;
    let mut live = Vec::new();
    bob.collect_pubs(&wchan, &mut live, 1).await;
    assert_eq!(kinds(&live), vec!["workspace.member_joined"]);
    assert_eq!(live[0]["data"]["payload"]["userId"], "carol");
    bob.close().await;
    let renamed = w
        .rest
        .call(
            "PATCH",
            &format!("/api/workspaces/{wid}"),
            Cred::Bearer(&alice),
            Some(json!({"name": "HQ"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    let mut bob = w.client("bob").await;
    let sub = bob
        .call(
            "subscribe",
            json!({"channel": wchan, "recover": true, "epoch": epoch, "offset": offset + 1}),
        )
        .await;
    assert_eq!(sub["subscribe"]["recovered"], true, "{sub:?}");
    let missed = sub["subscribe"]["publications"].as_array().unwrap().clone();
    assert_eq!(kinds(&missed), vec!["workspace.updated"]);
    assert_eq!(missed[0]["data"]["payload"]["workspace"]["name"], "HQ");
    w.node.stop().await;
}

/// Presence: online while connected (or after a heartbeat), appearing offline on request,
/// `presence.*` events on the `user:` channels of those who share a channel with the user,
/// visible only to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_follows_sessions_heartbeats_and_choice() {
    let w = World::new(GatewayConfig::default()).await;
    let (bob_token, _) = w.rest.login(&w.key, "bob").await;
    let (alice_token, _) = w.rest.login(&w.key, "alice").await;
    let (mallory_token, _) = w.rest.login(&w.key, "mallory").await;
    let presence_of = |token: String, user: &'static str| {
        let rest = &w.rest;
        async move {
            let r = rest
                .call(
                    "GET",
                    &format!("/api/users/{user}"),
                    Cred::Bearer(&token),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            (r.body["online"].clone(), r.body["lastActiveAt"].clone())
        }
    };
    assert_eq!(
        presence_of(bob_token.clone(), "alice").await,
        (json!(false), Value::Null)
    );
    let mut bob = w.client("bob").await;
    let own = format!("user:{}:bob", w.app);
    bob.call("subscribe", json!({"channel": own})).await;
    bob.call("subscribe", json!({"channel": w.chan()})).await;
    let alice = w.client("alice").await;
    bob.wait_for("alice online", |v| {
        is_pub(v, &own, "presence.online", |p| p["userId"] == "alice")
    })
    .await;
    let (online, seen) = presence_of(bob_token.clone(), "alice").await;
    assert_eq!(online, json!(true));
    assert!(seen.is_string());
    // Someone who shares no channel with alice sees nothing.
    assert_eq!(
        presence_of(mallory_token.clone(), "alice").await,
        (json!(false), Value::Null)
    );
    let q = w
        .rest
        .call(
            "POST",
            "/api/presence/query",
            Cred::Bearer(&bob_token),
            Some(json!({"userIds": ["alice", "mallory", "alice"]})),
        )
        .await;
    assert_eq!(q.status, 200, "{q:?}");
    assert_eq!(q.body["presence"]["alice"]["online"], true);
    assert_eq!(q.body["presence"]["alice"]["user"]["id"], "alice");
    assert!(q.body["presence"].get("mallory").is_none(), "{q:?}");
    assert_error(
        &w.rest
            .call(
                "POST",
                "/api/presence/query",
                Cred::Bearer(&bob_token),
                Some(json!({"userIds": []})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    let ch = w
        .rest
        .call(
            "GET",
            &format!("/api/channels/{}/presence", w.channel),
            Cred::Bearer(&bob_token),
            None,
        )
        .await;
    assert_eq!(ch.body["totalOnline"], 2, "{ch:?}");
    assert_eq!(ch.body["totalMembers"], 2);
    let live = w
        .rest
        .call(
            "GET",
            &format!("/api/channels/{}/presence/live", w.channel),
            Cred::Bearer(&bob_token),
            None,
        )
        .await;
    assert_eq!(live.body["count"], 1, "only bob subscribed: {live:?}");
    assert_eq!(live.body["clients"][0]["userId"], "bob");
    assert_error(
        &w.rest
            .call(
                "GET",
                &format!("/api/channels/{}/presence", w.channel),
                Cred::Bearer(&mallory_token),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );

    // The end of her last session is announced, and she was last seen then.
    alice.close().await;
    bob.wait_for("alice's session ending", |v| {
        is_pub(v, &own, "presence.offline", |p| p["userId"] == "alice")
    })
    .await;
    support::eventually("alice offline, last seen", || {
        let f = presence_of(bob_token.clone(), "alice");
        async move {
            let (online, seen) = f.await;
            online == json!(false) && seen.is_string()
        }
    })
    .await;
    // Appearing offline hides a connected user; appearing online shows them again.
    let _alice = w.client("alice").await;
    bob.wait_for("alice back", |v| {
        is_pub(v, &own, "presence.online", |p| p["userId"] == "alice")
    })
    .await;
    let off = w
        .rest
        .call(
            "POST",
            "/api/presence/offline",
            Cred::Bearer(&alice_token),
            None,
        )
        .await;
    assert_eq!(off.status, 200, "{off:?}");
    bob.wait_for("alice appearing offline", |v| {
        is_pub(v, &own, "presence.offline", |p| p["userId"] == "alice")
    })
    .await;
    assert_eq!(
        presence_of(bob_token.clone(), "alice").await.0,
        json!(false)
    );
    w.rest
        .call(
            "POST",
            "/api/presence/online",
            Cred::Bearer(&alice_token),
            None,
        )
        .await;
    bob.wait_for("alice appearing online", |v| {
        is_pub(v, &own, "presence.online", |p| p["userId"] == "alice")
    })
    .await;
    assert_eq!(presence_of(bob_token.clone(), "alice").await.0, json!(true));
    let beat = w
        .rest
        .call(
            "POST",
            "/api/presence/heartbeat",
            Cred::Bearer(&bob_token),
            None,
        )
        .await;
    assert_eq!(beat.status, 200, "{beat:?}");
    w.node.stop().await;
}
