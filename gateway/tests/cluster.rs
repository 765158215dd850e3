//! Three in-process nodes (real QUIC and HTTP on 127.0.0.1): clients on different nodes of one
//! channel all receive every message in seq order; stopping the node that leads the channel's
//! shard loses no acknowledged message, and every client recovers what it missed.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chatsdk_cluster::{placement::place, shard_for, StartMode};
use chatsdk_gateway::GatewayConfig;
use serde_json::{json, Value};
use support::{Cred, Rest, TestNode, WsClient, WAIT};

async fn cluster() -> Vec<TestNode> {
    cluster_with(GatewayConfig::default()).await
}

async fn cluster_with(config: GatewayConfig) -> Vec<TestNode> {
    cluster_chat(config, support::test_chat_config()).await
}

async fn cluster_chat(config: GatewayConfig, chat: chatsdk_actors::ChatConfig) -> Vec<TestNode> {
    cluster_tuned(config, chat, |_| {}).await
}

/// Three nodes whose cluster settings `tune` changes from the tests' usual ones.
async fn cluster_tuned(
    config: GatewayConfig,
    chat: chatsdk_actors::ChatConfig,
    tune: impl Fn(&mut chatsdk_cluster::ClusterConfig),
) -> Vec<TestNode> {
    let first =
        TestNode::start_tuned(config.clone(), chat.clone(), StartMode::Bootstrap, &tune).await;
    let (token, _) = first
        .chat
        .cluster()
        .mint_join_token(Duration::from_secs(3600), false)
        .await
        .unwrap();
    let addr = first.chat.cluster().addr();
    let mut nodes = vec![first];
    for _ in 0..2 {
        let mode = StartMode::Join {
            addr,
            token: token.clone(),
        };
        nodes.push(TestNode::start_tuned(config.clone(), chat.clone(), mode, &tune).await);
    }
    support::eventually("three active nodes with settled, balanced shards", || {
        let state = nodes[0].chat.cluster().meta_state();
        let active = state.active_nodes();
        let settled = active.len() == 3
            && state
                .shard_map
                .values()
                .all(|r| r.settled && r.placement.replicas.len() == 3)
            && place(&active, &state.placement_map(), state.replication) == state.placement_map();
        async move { settled }
    })
    .await;
    nodes
}

/// A subscriber that follows one channel across reconnects, recovering by offset.
struct Follower {
    user: String,
    ws: WsClient,
    epoch: String,
    offset: u64,
    texts: Vec<String>,
    reconnects: usize,
}

impl Follower {
    async fn start(node: &TestNode, rest: &Rest, key: &str, user: &str, channel: &str) -> Follower {
        let ws_token = rest.login(key, user).await.1;
        let mut ws = WsClient::open(&node.ws_url()).await;
        ws.connect(&ws_token).await;
        let sub = ws.call("subscribe", json!({"channel": channel})).await;
        let r = &sub["subscribe"];
        assert!(r.is_object(), "{sub:?}");
        Follower {
            user: user.into(),
            ws,
            epoch: r["epoch"].as_str().unwrap_or_default().into(),
            offset: r["offset"].as_u64().unwrap_or(0),
            texts: vec![],
            reconnects: 0,
        }
    }

    fn absorb(&mut self, pubs: Vec<Value>) {
        for p in pubs {
            // Ephemeral publications (presence, typing) carry no offset.
            let Some(offset) = p["offset"].as_u64() else {
                continue;
            };
            assert_eq!(
                offset,
                self.offset + 1,
                "{}: offsets in order without gaps",
                self.user
            );
            self.offset = offset;
            if p["data"]["type"] == "message.new" {
                self.texts.push(
                    p["data"]["payload"]["message"]["text"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
    }

    /// Waits until `want` messages arrived, reconnecting (with recovery) to a live node
    /// whenever the connection closes.
    async fn follow(
        &mut self,
        want: usize,
        nodes: &[&TestNode],
        rest: &Rest,
        key: &str,
        channel: &str,
    ) {
        let deadline = Instant::now() + WAIT * 2;
        while self.texts.len() < want {
            assert!(
                Instant::now() < deadline,
                "{} has {} of {want} messages",
                self.user,
                self.texts.len()
            );
            self.ws
                .pump(Instant::now() + Duration::from_millis(300))
                .await;
            let got = self.ws.take_pubs(channel);
            self.absorb(got);
            if self.ws.closed.is_none() {
                continue;
            }
            // Closed (node gone, or a gap): reconnect to the next live node and recover.
            self.reconnects += 1;
            let node = nodes[self.reconnects % nodes.len()];
            let ws_token = Rest {
                base: format!("http://{}", node.http),
                http: rest.http.clone(),
            }
            .login(key, &self.user)
            .await
            .1;
            let mut ws = WsClient::open(&node.ws_url()).await;
            ws.connect(&ws_token).await;
            let sub = ws.call("subscribe", json!({"channel": channel, "recover": true, "epoch": self.epoch, "offset": self.offset})).await;
            let r = &sub["subscribe"];
            assert_eq!(
                r["recovered"], true,
                "{} could not recover: {sub:?}",
                self.user
            );
            self.ws = ws;
            self.absorb(r["publications"].as_array().cloned().unwrap_or_default());
        }
    }
}

/// The node that leads `group`.
fn leader_of(nodes: &[TestNode], group: chatsdk_cluster::GroupId) -> usize {
    nodes
        .iter()
        .position(|n| {
            n.chat
                .cluster()
                .watch_leadership()
                .borrow()
                .contains(&group)
        })
        .expect("a leader")
}

/// A channel of Alice's alone in a new app, known on every node (with the interests of its
/// shard gathered), and the node that leads its shard.
struct Solo {
    key: String,
    channel: String,
    stream: String,
    leader: usize,
}

async fn alice_alone(nodes: &[TestNode], rests: &[Rest], name: &str) -> Solo {
    let (app, key) = nodes[0].app(name).await;
    rests[0]
        .call(
            "POST",
            "/api/users",
            Cred::Key(&key),
            Some(json!({"user_id": "alice"})),
        )
        .await;
    // Alice alone: her sends notify no other member's `user:` stream.
    let ch = rests[0]
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "type": "group", "name": name, "member_ids": []})),
        )
        .await;
    let channel = ch.body["id"].as_str().unwrap().to_string();
    let stream = format!("chat:{app}:{channel}");
    let group = shard_for(&app, &channel, nodes[0].chat.cluster().meta_state().shards);
    let leader = leader_of(nodes, group);
    for n in nodes {
        let chat = n.chat.clone();
        let (app, channel) = (app.clone(), channel.clone());
        support::eventually("directory replicated, interests gathered", move || {
            let ok = chat.channel(&app, &channel).ok().flatten().is_some()
                && chat.user(&app, "alice").ok().flatten().is_some()
                && chat.interests_settled();
            async move { ok }
        })
        .await;
    }
    Solo {
        key,
        channel,
        stream,
        leader,
    }
}

/// Sends with a client message id, retrying (the same id) through leader changes.
async fn send(rest: &Rest, key: &str, channel: &str, user: &str, text: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = rest
            .call("POST", "/api/messages", Cred::Key(key), Some(json!({"channel_id": channel, "user_id": user, "text": text, "client_msg_id": text})))
            .await;
        if r.status == 201 || r.status == 200 {
            return r.body["seq"].as_u64().unwrap();
        }
        assert!(
            r.status == 503 && Instant::now() < deadline,
            "send {text}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_deliver_in_order_and_survive_the_shard_leader() {
    let mut nodes = cluster().await;
    let rests: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let (app, key) = nodes[0].app("cluster").await;
    for u in ["alice", "bob", "carol"] {
        rests[0]
            .call(
                "POST",
                "/api/users",
                Cred::Key(&key),
                Some(json!({"user_id": u})),
            )
            .await;
    }
    let ch = rests[0].call("POST", "/api/channels", Cred::Key(&key), Some(json!({"user_id": "alice", "type": "group", "name": "everywhere", "member_ids": ["bob", "carol"]}))).await;
    let channel = ch.body["id"].as_str().unwrap().to_string();
    let stream = format!("chat:{app}:{channel}");
    // Every node must know the key and users before clients use them there.
    for n in &nodes {
        let chat = n.chat.clone();
        let (app, channel) = (app.clone(), channel.clone());
        support::eventually("directory replicated", move || {
            let ok = chat.channel(&app, &channel).ok().flatten().is_some()
                && chat.user(&app, "carol").ok().flatten().is_some();
            async move { ok }
        })
        .await;
    }

    let mut followers = Vec::new();
    for (i, user) in ["alice", "bob", "carol"].iter().enumerate() {
        followers.push(Follower::start(&nodes[i], &rests[i], &key, user, &stream).await);
    }
    // Messages sent through every node, acknowledged with consecutive seqs.
    let mut acked = Vec::new();
    for i in 0..15 {
        let text = format!("m{i}");
        let seq = send(&rests[i % 3], &key, &channel, "alice", &text).await;
        assert_eq!(seq, i as u64 + 1);
        acked.push(text);
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    for f in followers.iter_mut() {
        f.follow(acked.len(), &all, &rests[0], &key, &stream).await;
        assert_eq!(f.texts, acked, "{} saw every message in seq order", f.user);
    }

    // Stop the node leading the channel's shard.
    let group = shard_for(&app, &channel, nodes[0].chat.cluster().meta_state().shards);
    let leader = leader_of(&nodes, group);
    let stopped = nodes.remove(leader);
    let survivors_rest: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let sends = {
        let (r0, r1) = (survivors_rest[0].clone(), survivors_rest[1].clone());
        let (key, channel) = (key.clone(), channel.clone());
        tokio::spawn(async move {
            let mut texts = Vec::new();
            for i in 15..30 {
                let text = format!("m{i}");
                send(
                    if i % 2 == 0 { &r0 } else { &r1 },
                    &key,
                    &channel,
                    "bob",
                    &text,
                )
                .await;
                texts.push(text);
            }
            texts
        })
    };
    stopped.stop().await;
    acked.extend(sends.await.unwrap());
    let live: Vec<&TestNode> = nodes.iter().collect();
    for f in followers.iter_mut() {
        f.follow(acked.len(), &live, &survivors_rest[0], &key, &stream)
            .await;
        assert_eq!(
            f.texts, acked,
            "{} has every acknowledged message once, in order",
            f.user
        );
    }
    assert!(
        followers.iter().any(|f| f.reconnects > 0),
        "the client on the stopped node reconnected"
    );
    // REST agrees: nothing acknowledged was lost.
    let listed = survivors_rest[0]
        .call(
            "GET",
            &format!("/api/channels/{channel}/messages?since_seq=0&limit=200&user_id=alice"),
            Cred::Key(&key),
            None,
        )
        .await;
    let texts: Vec<&str> = listed.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, acked.iter().map(String::as_str).collect::<Vec<_>>());
    let seqs: BTreeSet<u64> = listed.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), acked.len(), "one message per acknowledged send");
    for n in nodes {
        n.stop().await;
    }
}

/// A command that waits longer than the pong timeout (a send while its shard has lost its
/// quorum: it waits for a commit that cannot come) does not close the connection: the client's
/// pongs are read while it runs, a read sent after it is answered first (pipelining; replies
/// matched by id), and the command is answered when it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pongs_and_reads_are_served_while_a_slow_command_runs() {
    let config = GatewayConfig {
        ping_interval: Duration::from_millis(200),
        pong_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    };
    let mut nodes = cluster_with(config).await;
    let rest = Rest::new(&nodes[0]);
    let (app, key) = nodes[0].app("slow").await;
    rest.call(
        "POST",
        "/api/users",
        Cred::Key(&key),
        Some(json!({"user_id": "alice"})),
    )
    .await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "type": "group", "name": "quiet", "member_ids": []})),
        )
        .await;
    let channel = ch.body["id"].as_str().unwrap().to_string();
    let ws_token = rest.login(&key, "alice").await.1;
    let mut ws = WsClient::open(&nodes[0].ws_url()).await;
    ws.connect(&ws_token).await;
    let sent = ws.call("rpc", json!({"method": "message.send", "data": {"channelId": channel, "text": "before", "clientMsgId": "slow-1"}})).await;
    assert_eq!(sent["rpc"]["data"]["text"], "before", "{sent:?}");

    // The two other nodes go: no shard of node 0 can commit any more.
    for _ in 0..2 {
        let node = nodes.pop().unwrap();
        node.stop().await;
    }
    let started = Instant::now();
    let id = ws
        .send("rpc", json!({"method": "message.send", "data": {"channelId": channel, "text": "stuck", "clientMsgId": "slow-2"}}))
        .await;
    let stats = ws
        .send(
            "presence_stats",
            json!({"channel": format!("chat:{app}:{channel}")}),
        )
        .await;
    let read = ws.reply(stats).await;
    assert!(read["presence_stats"].is_object(), "{read:?}");
    assert!(
        !ws.inbox.iter().any(|v| v["id"] == id),
        "the read was answered after the slow send: {:?}",
        ws.inbox
    );
    let reply = ws.reply(id).await;
    assert!(
        started.elapsed() > Duration::from_millis(1500),
        "the send was not slow ({:?}): {reply:?}",
        started.elapsed()
    );
    assert!(reply["error"].is_object(), "{reply:?}");
    assert_eq!(ws.closed, None, "closed while the command ran");
    // Still served: the next command is answered on the same connection.
    let presence = ws
        .call(
            "presence_stats",
            json!({"channel": format!("chat:{app}:{channel}")}),
        )
        .await;
    assert_eq!(ws.closed, None, "{presence:?}");
    for node in nodes {
        node.stop().await;
    }
}

/// Events cross the network only to nodes with subscribers: with a subscriber on one node that
/// does not lead the channel's shard, that node receives every message, the third node none.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_cross_only_to_nodes_with_subscribers() {
    let nodes = cluster().await;
    let rests: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let Solo {
        key,
        channel,
        stream,
        leader,
    } = alice_alone(&nodes, &rests, "interest").await;
    let (sub, other) = ((leader + 1) % 3, (leader + 2) % 3);
    let mut follower = Follower::start(&nodes[sub], &rests[sub], &key, "alice", &stream).await;
    let before = nodes[other].chat.fanout().deliveries_from_peers();
    let received = nodes[sub].chat.fanout().deliveries_from_peers();
    let mut acked = Vec::new();
    for i in 0..10 {
        let text = format!("i{i}");
        send(&rests[leader], &key, &channel, "alice", &text).await;
        acked.push(text);
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    follower
        .follow(acked.len(), &all, &rests[0], &key, &stream)
        .await;
    assert_eq!(follower.texts, acked);
    assert_eq!(follower.reconnects, 0);
    assert!(nodes[sub].chat.fanout().deliveries_from_peers() >= received + 10);
    assert_eq!(
        nodes[other].chat.fanout().deliveries_from_peers(),
        before,
        "a node without subscribers received the channel's events"
    );
    for n in nodes {
        n.stop().await;
    }
}

/// A send whose proposal timed out at the shard's leader (the followers' acknowledgements were
/// held up) but committed afterwards reaches the channel's subscribers, here and on another
/// node, with no later write to carry it: the leader's actor emits what committed without its
/// hearing, and subscribers' position checks see the stream's real top. (The fault suite's
/// partitions left every subscriber of a channel short of its last messages.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_that_timed_out_but_committed_reaches_every_subscriber() {
    const HELD: Duration = Duration::from_millis(2500);
    let nodes = cluster_tuned(GatewayConfig::default(), support::test_chat_config(), |c| {
        c.propose_timeout = Duration::from_secs(1)
    })
    .await;
    let rests: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let Solo {
        key,
        channel,
        stream,
        leader,
    } = alice_alone(&nodes, &rests, "late").await;
    let leader_id = nodes[leader].chat.cluster().id();
    let remote = (leader + 1) % 3;
    let mut followers = vec![
        Follower::start(&nodes[leader], &rests[leader], &key, "alice", &stream).await,
        Follower::start(&nodes[remote], &rests[remote], &key, "alice", &stream).await,
    ];
    send(&rests[leader], &key, &channel, "alice", "before").await;
    // The followers take the leader's appends at once but answer them only after HELD: the
    // send times out at the leader, and commits when the answers come.
    for (i, n) in nodes.iter().enumerate() {
        if i != leader {
            n.chat.cluster().faults().delay_to(leader_id, HELD);
        }
    }
    let late = rests[leader]
        .call(
            "POST",
            "/api/messages",
            Cred::Key(&key),
            Some(json!({"channel_id": channel, "user_id": "alice", "text": "late", "client_msg_id": "late"})),
        )
        .await;
    assert!(
        late.status >= 500,
        "the send was to time out at the leader: {late:?}"
    );
    for n in &nodes {
        n.chat.cluster().faults().heal_all();
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    for f in &mut followers {
        f.follow(2, &all, &rests[0], &key, &stream).await;
        assert_eq!(f.texts, ["before", "late"]);
    }
    for n in nodes {
        n.stop().await;
    }
}

/// A user connected to one node is online for a client asking another node, and offline
/// everywhere once their last session (on whichever node) ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_the_cluster() {
    let nodes = cluster().await;
    let rests: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let (app, key) = nodes[0].app("presence").await;
    for u in ["alice", "bob"] {
        rests[0]
            .call(
                "POST",
                "/api/users",
                Cred::Key(&key),
                Some(json!({"user_id": u})),
            )
            .await;
    }
    let ch = rests[0]
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "type": "group", "name": "p", "member_ids": ["bob"]})),
        )
        .await;
    let channel = ch.body["id"].as_str().unwrap().to_string();
    for n in &nodes {
        let chat = n.chat.clone();
        let (app, channel) = (app.clone(), channel.clone());
        support::eventually("the channel on every node", move || {
            let ok = chat
                .members(&app, &channel)
                .map(|m| m.len() == 2)
                .unwrap_or(false);
            async move { ok }
        })
        .await;
    }
    let (bob, _) = rests[0].login(&key, "bob").await;
    let online_seen_from = |i: usize| {
        let (rest, bob) = (&rests[i], bob.clone());
        async move {
            let r = rest
                .call(
                    "POST",
                    "/api/presence/query",
                    Cred::Bearer(&bob),
                    Some(json!({"userIds": ["alice"]})),
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            r.body["presence"]["alice"]["online"] == true
        }
    };
    assert!(!online_seen_from(0).await);
    let (_, alice_ws) = rests[1].login(&key, "alice").await;
    let mut alice = WsClient::open(&nodes[1].ws_url()).await;
    alice.connect(&alice_ws).await;
    for i in [0, 2] {
        assert!(
            online_seen_from(i).await,
            "node {i} sees alice, connected to node 1"
        );
    }
    alice.close().await;
    support::eventually("alice offline on every node", || async {
        !online_seen_from(0).await && !online_seen_from(2).await
    })
    .await;
    // Her last-seen time is written once her last session is known to be gone.
    support::eventually("alice's last-seen time", || async {
        rests[2]
            .call("GET", "/api/users/alice", Cred::Bearer(&bob), None)
            .await
            .body["lastActiveAt"]
            .is_string()
    })
    .await;
    for n in nodes {
        n.stop().await;
    }
}

/// A revoked server key and a ban hold on every node as soon as the request that made them
/// is answered: the very next request to another node is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_keys_and_bans_hold_on_every_node_at_once() {
    let nodes = cluster().await;
    let rests: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let (_app, key) = nodes[0].app("revocation").await;
    rests[0]
        .call(
            "POST",
            "/api/users",
            Cred::Key(&key),
            Some(json!({"user_id": "mallory"})),
        )
        .await;
    let made = rests[0]
        .call(
            "POST",
            "/api/auth/api-keys",
            Cred::Key(&key),
            Some(json!({"name": "leaked"})),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    let leaked = made.body["api_key"].as_str().unwrap().to_string();
    let leaked_id = made.body["id"].as_str().unwrap().to_string();
    let (token, _) = rests[0].login(&key, "mallory").await;
    for rest in &rests {
        support::eventually("the new key and token work on every node", || async {
            rest.call("GET", "/api/users/mallory", Cred::Key(&leaked), None)
                .await
                .status
                == 200
                && rest
                    .call("GET", "/api/users/me", Cred::Bearer(&token), None)
                    .await
                    .status
                    == 200
        })
        .await;
    }
    let revoke = rests[0]
        .call(
            "DELETE",
            &format!("/api/auth/api-keys/{leaked_id}"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(revoke.status, 200, "{revoke:?}");
    let ban = rests[1]
        .call(
            "POST",
            "/api/moderation/bans",
            Cred::Key(&key),
            Some(json!({"user_id": "mallory"})),
        )
        .await;
    assert_eq!(ban.status, 201, "{ban:?}");
    for rest in &rests {
        let r = rest
            .call("GET", "/api/users/mallory", Cred::Key(&leaked), None)
            .await;
        assert_eq!(r.status, 401, "{r:?}");
        let r = rest
            .call("GET", "/api/users/me", Cred::Bearer(&token), None)
            .await;
        assert_eq!(r.body["error"]["code"], "USER_BANNED", "{r:?}");
    }
    // A user's tokens revoked through one node are refused by every node at once, and a token
    // minted after the revocation, on another node, works everywhere (the generation, not the
    // nodes' clocks, decides).
    rests[0]
        .call(
            "POST",
            "/api/users",
            Cred::Key(&key),
            Some(json!({"user_id": "trent"})),
        )
        .await;
    let (old, _) = rests[0].login(&key, "trent").await;
    for rest in &rests {
        support::eventually("trent's token works on every node", || async {
            rest.call("GET", "/api/users/me", Cred::Bearer(&old), None)
                .await
                .status
                == 200
        })
        .await;
    }
    let r = rests[1]
        .call(
            "POST",
            "/api/users/trent/revoke-tokens",
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    for rest in &rests {
        let r = rest
            .call("GET", "/api/users/me", Cred::Bearer(&old), None)
            .await;
        assert_eq!(r.status, 401, "{r:?}");
    }
    let (new, _) = rests[1].login(&key, "trent").await;
    for rest in &rests {
        support::eventually(
            "the token minted after the revocation works everywhere",
            || async {
                rest.call("GET", "/api/users/me", Cred::Bearer(&new), None)
                    .await
                    .status
                    == 200
            },
        )
        .await;
    }
    for n in nodes {
        n.stop().await;
    }
}

/// A pending webhook delivery survives the node that was delivering it: the shard's next
/// leader delivers it, with the same delivery id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_delivery_continues_after_the_delivering_node_stops() {
    let chat = chatsdk_actors::ChatConfig {
        webhooks: chatsdk_actors::hooks::HookConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            timeout: Duration::from_secs(5),
            // The first leader keeps retrying (failing) until it is stopped.
            retries: 10,
            backoff: Duration::from_millis(200),
            disable_after: 100,
            log_keep: 50,
            poll_every: Duration::from_millis(100),
        },
        ..support::test_chat_config()
    };
    let mut nodes = cluster_chat(GatewayConfig::default(), chat).await;
    let rests: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let (app, key) = nodes[0].app("hooks-failover").await;
    for u in ["alice", "bob"] {
        rests[0]
            .call(
                "POST",
                "/api/users",
                Cred::Key(&key),
                Some(json!({"user_id": u})),
            )
            .await;
    }
    let ch = rests[0]
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "type": "group", "name": "h", "member_ids": ["bob"]})),
        )
        .await;
    let channel = ch.body["id"].as_str().unwrap().to_string();
    let rx = support::Receiver::start().await;
    rx.answer(&[500; 10_000]);
    let made = rests[0]
        .call(
            "POST",
            "/api/webhooks",
            Cred::Key(&key),
            Some(json!({"url": rx.url(), "events": ["message.new"]})),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    let shards = nodes[0].chat.cluster().meta_state().shards;
    let group = shard_for(&app, &channel, shards);
    let leader = nodes
        .iter()
        .position(|n| {
            n.chat
                .cluster()
                .watch_leadership()
                .borrow()
                .contains(&group)
        })
        .expect("a leader of the channel's shard");
    let other = (leader + 1) % nodes.len();
    // Every node must know the webhook before the send (the proposer decides to record it).
    for n in &nodes {
        let chat = n.chat.clone();
        let app = app.clone();
        support::eventually("the webhook known everywhere", || {
            let chat = chat.clone();
            let app = app.clone();
            async move { chat.has_webhooks(&app) }
        })
        .await;
    }
    let sent = rests[other]
        .call(
            "POST",
            "/api/messages",
            Cred::Key(&key),
            Some(json!({"channel_id": channel, "user_id": "alice", "text": "survive"})),
        )
        .await;
    assert_eq!(sent.status, 201, "{sent:?}");
    let first = rx
        .wait_for("a first (failing) attempt", |h| {
            h.body["data"]["message"]["text"] == "survive"
        })
        .await;
    let delivery = first.headers["x-chatsdk-delivery-id"].clone();
    let node = nodes.remove(leader);
    node.stop().await;
    rx.answers.lock().unwrap().clear();
    let done = rx
        .wait_for("the delivery, by the next leader", |h| {
            h.status == 200 && h.body["data"]["message"]["text"] == "survive"
        })
        .await;
    assert_eq!(done.headers["x-chatsdk-delivery-id"], delivery);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_upload_is_readable_after_the_node_that_took_it_stops() {
    let mut nodes = cluster().await;
    let rests: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let (app, key) = nodes[0].app("media-failover").await;
    for u in ["alice", "bob"] {
        rests[0]
            .call(
                "POST",
                "/api/users",
                Cred::Key(&key),
                Some(json!({"user_id": u})),
            )
            .await;
    }
    let ch = rests[0]
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "type": "group", "name": "m", "member_ids": ["bob"]})),
        )
        .await;
    let channel = ch.body["id"].as_str().unwrap().to_string();
    let shards = nodes[0].chat.cluster().meta_state().shards;
    let group = shard_for(&app, &channel, shards);
    // The node that takes the upload also leads the channel's shard: stopping it loses both
    // the first copy of the file and the leader of its metadata.
    let taker = nodes
        .iter()
        .position(|n| {
            n.chat
                .cluster()
                .watch_leadership()
                .borrow()
                .contains(&group)
        })
        .expect("a leader of the channel's shard");
    let (alice, _) = rests[taker].login(&key, "alice").await;
    // Three and a half chunks of text, so the copy to the other replicas takes several
    // requests.
    let file: Vec<u8> = (0..(3 << 20) + 4321)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let boundary = "media-failover-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"channelId\"\r\n\r\n{channel}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.txt\"\r\n\
         Content-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let auth = format!("Bearer {alice}");
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let up = rests[taker]
        .raw(
            "POST",
            "/api/uploads/direct",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", ctype.as_str()),
            ],
            body,
        )
        .await;
    assert_eq!(up.status, 201, "{up:?}");
    let url = up.body["url"].as_str().unwrap().to_string();
    let node = nodes.remove(taker);
    node.stop().await;
    for n in &nodes {
        let rest = Rest::new(n);
        let res = rest
            .http
            .get(format!("{}{}", rest.base, url))
            .timeout(WAIT)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let bytes = res.bytes().await.unwrap();
        assert!(
            bytes.as_ref() == file.as_slice(),
            "the file differs on a survivor"
        );
    }
    // The survivors' sweep finds every file the shard refers to on each of them.
    for n in &nodes {
        let report = n.chat.media().sweep().await.unwrap();
        assert_eq!(report.missing, 0, "{report:?}");
    }
    for n in nodes {
        n.stop().await;
    }
}

/// The admin view of three nodes: every node reachable with its own report, every group's
/// leader known; a stopped node shows as unreachable, and removing it moves its replicas to
/// the others until it is marked removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_view_shows_three_nodes_and_a_dead_one_can_be_removed() {
    const ADMIN: &str = "admin-key-for-cluster-tests";
    let mut nodes = cluster_with(GatewayConfig {
        admin_api_key: Some(ADMIN.into()),
        ..GatewayConfig::default()
    })
    .await;
    let rest = Rest::new(&nodes[0]);
    let view = rest
        .call("GET", "/admin/cluster", Cred::Bearer(ADMIN), None)
        .await;
    assert_eq!(view.status, 200, "{view:?}");
    let listed = view.body["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{:?}", view.body);
    for (n, node) in listed.iter().zip(&nodes) {
        assert_eq!(n["id"], node.chat.cluster().id());
        assert_eq!(n["reachable"], true, "{n}");
        assert_eq!(n["httpAddr"], node.http.to_string(), "{n}");
        let shards = view.body["shards"].as_u64().unwrap();
        assert_eq!(n["replicas"].as_u64(), Some(shards + 1), "{n}");
    }
    for g in view.body["groups"].as_array().unwrap() {
        assert!(g["leader"].is_u64(), "{g}");
        assert_eq!(g["replicas"].as_array().unwrap().len(), 3, "{g}");
        assert_eq!(g["matched"].as_object().unwrap().len(), 3, "{g}");
    }

    let gone = nodes.pop().unwrap();
    let gone_id = gone.chat.cluster().id();
    gone.stop().await;
    let view = rest
        .call("GET", "/admin/cluster", Cred::Bearer(ADMIN), None)
        .await;
    let dead = view.body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == gone_id)
        .unwrap()
        .clone();
    assert_eq!(dead["reachable"], false, "{dead}");
    assert!(dead["version"].is_null(), "{dead}");
    let ca_before = view.body["ca"]["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(view.body["ca"]["rotations"], 0, "{}", view.body["ca"]);

    let r = rest
        .call(
            "DELETE",
            &format!("/admin/cluster/nodes/{gone_id}"),
            Cred::Bearer(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["status"], "leaving");
    support::eventually("the dead node removed, its replicas moved", || {
        let state = nodes[0].chat.cluster().meta_state();
        let done = state.nodes.get(&gone_id).map(|n| n.state)
            == Some(chatsdk_cluster::NodeState::Removed)
            && state.shard_map.values().all(|r| {
                r.settled
                    && r.placement.replicas.len() == 2
                    && !r.placement.replicas.contains(&gone_id)
            });
        async move { done }
    })
    .await;
    // The dead node held the CA key: the two others replace the CA and retire the old one.
    let seen = std::sync::Mutex::new(serde_json::Value::Null);
    support::eventually("the CA rotated and the old one retired", || {
        let (rest, seen) = (&rest, &seen);
        async move {
            let view = rest
                .call("GET", "/admin/cluster", Cred::Bearer(ADMIN), None)
                .await;
            let ca = view.body["ca"].clone();
            let done = ca["rotations"] == 1 && ca["retiring"] == serde_json::json!([]);
            *seen.lock().unwrap() = ca;
            done
        }
    })
    .await;
    let ca = seen.into_inner().unwrap();
    assert_eq!(ca["rotations"], 1, "{ca}");
    assert_eq!(ca["retiring"], serde_json::json!([]), "{ca}");
    assert!(ca["staged"].is_null(), "{ca}");
    assert_ne!(ca["fingerprint"], ca_before.as_str(), "{ca}");
    for node in nodes {
        node.stop().await;
    }
}

/// The shards `node` leads now (the meta group aside).
fn shards_led(node: &TestNode) -> BTreeSet<chatsdk_cluster::GroupId> {
    let led = node.chat.cluster().watch_leadership().borrow().clone();
    led.into_iter().filter(|g| *g != 0).collect()
}

/// Draining a node moves its shards' leadership to the other replicas, so writes go on while it
/// drains and after it stops (its restart, which makes it active again, is in
/// `node/tests/drain.rs`: it needs a process).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_node_hands_its_shard_leaders_over() {
    const ADMIN: &str = "admin-key-for-the-drain-test";
    let config = GatewayConfig {
        admin_api_key: Some(ADMIN.into()),
        ..GatewayConfig::default()
    };
    let mut nodes = cluster_with(config.clone()).await;
    // The directory's leader is drained: it hands the directory over too.
    let meta_leader = |n: &TestNode| {
        n.chat
            .cluster()
            .group_metrics(0)
            .and_then(|m| m.borrow().current_leader)
    };
    let leader = meta_leader(&nodes[0]).expect("a directory leader");
    let at = nodes
        .iter()
        .position(|n| n.chat.cluster().id() == leader)
        .unwrap();
    let other = (at + 1) % nodes.len();
    let rest = Rest::new(&nodes[other]);
    let drained = nodes[at].chat.cluster().id();
    support::eventually("the drained-to-be node leads a shard", || {
        let leads = !shards_led(&nodes[at]).is_empty();
        async move { leads }
    })
    .await;

    let r = rest
        .call(
            "POST",
            &format!("/admin/cluster/nodes/{drained}/drain"),
            Cred::Bearer(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    support::eventually(
        "the drained node leads no group (shards, directory), and is marked draining",
        || {
            let state = nodes[other].chat.cluster().meta_state();
            let done = state.nodes.get(&drained).map(|n| n.state)
                == Some(chatsdk_cluster::NodeState::Draining)
                && state.shard_map.values().all(|r| {
                    r.placement.leader != Some(drained) && r.placement.replicas.len() == 3
                })
                && shards_led(&nodes[at]).is_empty()
                && meta_leader(&nodes[other]).is_some_and(|l| l != drained);
            async move { done }
        },
    )
    .await;
    let view = rest
        .call("GET", "/admin/cluster", Cred::Bearer(ADMIN), None)
        .await;
    let row = view.body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == drained)
        .unwrap()
        .clone();
    assert_eq!(row["state"], "draining", "{row}");

    // Writes go on while it drains, and after it stops.
    let (_app, key) = nodes[other].app("drain").await;
    rest.ensure_user(&key, "drain-user").await;
    let (token, _) = rest.login(&key, "drain-user").await;
    let channel = rest.group(&token, "drain room", &["drain-user"]).await;
    send(&rest, &key, &channel, "drain-user", "while draining").await;
    nodes.remove(at).stop().await;
    send(&rest, &key, &channel, "drain-user", "while stopped").await;
    for node in nodes {
        node.stop().await;
    }
}

/// Rotating the token secret (what to do once a node, its disk or a backup may have been
/// copied): tokens signed with the new secret pass on every node at once, those signed with the
/// old one pass for the grace period and are then refused everywhere, and so is a token minted
/// afterwards with a copy of the old secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_token_secret_retires_the_old_one_everywhere() {
    use chatsdk_gateway::auth::{jwt, tokens::Tokens};
    const ADMIN: &str = "admin-key-for-the-token-secret-test";
    let nodes = cluster_with(GatewayConfig {
        admin_api_key: Some(ADMIN.into()),
        ..GatewayConfig::default()
    })
    .await;
    let rests: Vec<Rest> = nodes.iter().map(Rest::new).collect();
    let (_app, key) = nodes[0].app("rotation").await;
    let (old, _) = rests[0].login(&key, "alice").await;
    assert_eq!(jwt::kid_of(&old).unwrap().as_deref(), Some("chatsdk"));
    // What a removed node's copy of the directory holds.
    let copied = nodes[0]
        .chat
        .token_keys()
        .unwrap()
        .current()
        .unwrap()
        .secret
        .clone();
    let forger = Tokens::new(&copied, 900, 3600);
    let claims = forger.access(&old).unwrap();
    let me = |rest: &Rest, token: String| {
        let rest = rest.clone();
        async move {
            rest.call("GET", "/api/users/me", Cred::Bearer(&token), None)
                .await
                .status
        }
    };
    for rest in &rests {
        assert_eq!(me(rest, old.clone()).await, 200);
    }

    let r = rests[1]
        .call(
            "POST",
            "/admin/cluster/token-secret/rotate",
            Cred::Bearer(ADMIN),
            Some(json!({"graceSeconds": 4})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["kid"], "k1", "{r:?}");
    assert_eq!(r.body["previousKid"], "chatsdk", "{r:?}");
    // The node that rotated signs with the new key at once; any node checks it at once.
    let (new, _) = rests[1].login(&key, "alice").await;
    assert_eq!(jwt::kid_of(&new).unwrap().as_deref(), Some("k1"));
    for rest in &rests {
        assert_eq!(me(rest, new.clone()).await, 200);
    }
    // Every node takes the rotation up and signs with the new key.
    support::eventually("every node signs with the new key", || {
        let (rests, key) = (&rests, &key);
        async move {
            let mut all = true;
            for rest in rests {
                let (t, _) = rest.login(key, "alice").await;
                all &= jwt::kid_of(&t).unwrap().as_deref() == Some("k1");
            }
            all
        }
    })
    .await;
    // The old key's tokens stop passing once its grace ends, on every node; so does a token
    // minted with the copied secret now.
    support::eventually("the old key retired everywhere", || {
        let (rests, old) = (&rests, &old);
        async move {
            let mut refused = true;
            for rest in rests {
                refused &= me(rest, old.clone()).await == 401;
            }
            refused
        }
    })
    .await;
    let mut fresh = claims.clone();
    fresh.jti = "forged".into();
    let forged = forger.sign_access(&fresh);
    for rest in &rests {
        assert_eq!(me(rest, forged.clone()).await, 401);
        assert_eq!(me(rest, new.clone()).await, 200);
    }
    for node in nodes {
        node.stop().await;
    }
}
