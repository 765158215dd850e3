//! Trust and safety over real sockets: reports and their review, app bans enforced on REST,
//! token minting and realtime, channel bans and mutes.

mod support;

use chatsdk_gateway::GatewayConfig;
use serde_json::{json, Value};
use support::{assert_error, Cred, Rest, TestNode, WsClient};

async fn node() -> (TestNode, Rest) {
    let node = TestNode::start(GatewayConfig::default()).await;
    let rest = Rest::new(&node);
    (node, rest)
}

async fn user(rest: &Rest, key: &str, id: &str, admin: bool) {
    let mut body = json!({"user_id": id, "name": id.to_uppercase()});
    if admin {
        body["role"] = json!("admin");
    }
    let r = rest
        .call("POST", "/api/users", Cred::Key(key), Some(body))
        .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
}

async fn send(rest: &Rest, token: &str, channel: &str, text: &str) -> support::Res {
    rest.call(
        "POST",
        &format!("/api/channels/{channel}/messages"),
        Cred::Bearer(token),
        Some(json!({"text": text})),
    )
    .await
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_reviewed_and_bans_are_enforced_everywhere() {
    const OPERATOR: &str = "admin-key-of-the-moderation-test";
    let node = TestNode::start(GatewayConfig {
        admin_api_key: Some(OPERATOR.into()),
        ..GatewayConfig::default()
    })
    .await;
    let rest = Rest::new(&node);
    let (app, key) = node.app("moderation").await;
    user(&rest, &key, "mod", true).await;
    for u in ["alice", "bob", "carol"] {
        user(&rest, &key, u, false).await;
    }
    let (admin, _) = rest.login(&key, "mod").await;
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, bob_ws) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "g", "memberIds": ["bob", "mod"]})),
        )
        .await;
    assert_eq!(ch.status, 201, "{ch:?}");
    let gid = id(&ch.body);
    let m = send(&rest, &bob, &gid, "something rude").await;
    assert_eq!(m.status, 201, "{m:?}");
    let mid = id(&m.body);
    let m2 = send(&rest, &bob, &gid, "more of it").await;
    let mid2 = id(&m2.body);

    // Reports: members report others' messages once, with a known reason.
    let report = |token: String, mid: String, reason: &'static str| {
        let rest = &rest;
        async move {
            rest.call(
                "POST",
                &format!("/api/moderation/{mid}/report"),
                Cred::Bearer(&token),
                Some(json!({"reason": reason, "details": "not ok"})),
            )
            .await
        }
    };
    let r = report(alice.clone(), mid.clone(), "harassment").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "pending");
    assert_eq!(r.body["messageId"], mid.as_str());
    let report_id = id(&r.body);
    assert_error(
        &report(alice.clone(), mid.clone(), "harassment").await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &report(alice.clone(), mid2.clone(), "rude").await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &report(bob.clone(), mid.clone(), "spam").await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &report(carol.clone(), mid.clone(), "spam").await,
        403,
        "FORBIDDEN",
    );
    // The Server API's form, for a user named in the body.
    let s = rest
        .call(
            "POST",
            &format!("/api/messages/{mid2}/report"),
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "reason": "spam"})),
        )
        .await;
    assert_eq!(s.status, 201, "{s:?}");
    assert_eq!(s.body["reporter_id"], "alice");
    let report2 = id(&s.body);

    // The queue is for app admins.
    assert_error(
        &rest
            .call("GET", "/api/moderation/reports", Cred::Bearer(&alice), None)
            .await,
        403,
        "FORBIDDEN",
    );
    let q = rest
        .call(
            "GET",
            "/api/moderation/reports?status=pending",
            Cred::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(q.status, 200, "{q:?}");
    let reports = q.body["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{q:?}");
    // The operator sees the same queue with the admin key alone.
    let operator = rest
        .call(
            "GET",
            &format!("/admin/apps/{app}/reports?status=pending"),
            Cred::Bearer(OPERATOR),
            None,
        )
        .await;
    assert_eq!(operator.status, 200, "{operator:?}");
    let ids = |v: &Value| -> Vec<Value> {
        v["reports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect()
    };
    assert_eq!(ids(&operator.body), ids(&q.body));
    assert_error(
        &rest
            .call(
                "GET",
                "/admin/apps/no-such-app/reports",
                Cred::Bearer(OPERATOR),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(reports[0]["id"], report2.as_str(), "newest first");
    assert_eq!(reports[1]["message"]["text"], "something rude");
    assert_eq!(reports[1]["message"]["author"]["id"], "bob");
    assert_eq!(reports[1]["message"]["channelName"], "g");
    assert_eq!(
        reports[1]["reporter"]["name"], "alice",
        "as the last login named her"
    );

    // Review: delete the message (with its realtime event) ...
    let mut watcher = WsClient::open(&node.ws_url()).await;
    let (_, alice_ws) = rest.login(&key, "alice").await;
    watcher.connect(&alice_ws).await;
    let stream = format!("chat:{app}:{gid}");
    watcher.call("subscribe", json!({"channel": stream})).await;
    assert_error(
        &rest
            .call(
                "PUT",
                &format!("/api/moderation/reports/{report_id}/review"),
                Cred::Bearer(&admin),
                Some(json!({"action": "shout"})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    let rv = rest
        .call(
            "PUT",
            &format!("/api/moderation/reports/{report_id}/review"),
            Cred::Bearer(&admin),
            Some(json!({"action": "delete_message", "adminNotes": "removed"})),
        )
        .await;
    assert_eq!(rv.status, 200, "{rv:?}");
    assert_eq!(rv.body["status"], "actioned");
    assert_eq!(rv.body["actionTaken"], "delete_message");
    assert_eq!(rv.body["reviewedBy"], "mod");
    let deleted = watcher
        .wait_for("message.deleted", |v| {
            v["push"]["pub"]["data"]["type"] == "message.deleted"
        })
        .await;
    assert_eq!(
        deleted["push"]["pub"]["data"]["payload"]["messageId"],
        mid.as_str(),
        "{deleted:?}"
    );

    // ... then ban the author through the Server API's review form.
    let mut bob_conn = WsClient::open(&node.ws_url()).await;
    bob_conn.connect(&bob_ws).await;
    let rs = rest
        .call(
            "PATCH",
            &format!("/api/moderation/reports/{report2}"),
            Cred::Key(&key),
            Some(json!({"status": "resolved", "action_taken": "ban_user", "moderator_notes": "repeat"})),
        )
        .await;
    assert_eq!(rs.status, 200, "{rs:?}");
    assert_eq!(rs.body["status"], "resolved");
    assert_eq!(rs.body["action_taken"], "ban_user");
    // Bob's open connection is closed, and everything he does is refused.
    assert_eq!(bob_conn.wait_close().await, 3503);
    assert_error(&send(&rest, &bob, &gid, "hello?").await, 403, "USER_BANNED");
    assert_error(
        &rest
            .call("GET", "/api/channels", Cred::Bearer(&bob), None)
            .await,
        403,
        "USER_BANNED",
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/tokens",
                Cred::Key(&key),
                Some(json!({"userId": "bob"})),
            )
            .await,
        403,
        "USER_BANNED",
    );
    // Even a server key cannot write in his name.
    assert_error(
        &rest
            .call(
                "POST",
                "/api/messages",
                Cred::Key(&key),
                Some(json!({"channel_id": gid, "user_id": "bob", "text": "x"})),
            )
            .await,
        403,
        "USER_BANNED",
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/api/channels",
                Cred::Key(&key),
                Some(json!({"user_id": "bob", "type": "group", "name": "x"})),
            )
            .await,
        403,
        "USER_BANNED",
    );
    let mut again = WsClient::open(&node.ws_url()).await;
    again
        .send("connect", json!({"token": bob_ws, "name": "t"}))
        .await;
    assert_eq!(again.wait_close().await, 3503);
    let bans = rest
        .call("GET", "/api/moderation/bans", Cred::Bearer(&admin), None)
        .await;
    assert_eq!(bans.body["bans"][0]["userId"], "bob", "{bans:?}");

    let stats = rest
        .call("GET", "/api/moderation/stats", Cred::Key(&key), None)
        .await;
    assert_eq!(stats.body["total_reports"], 2, "{stats:?}");
    assert_eq!(stats.body["resolved_reports"], 2);
    assert_eq!(stats.body["pending_reports"], 0);

    // An unban restores him, with the same token.
    assert_error(
        &rest
            .call(
                "DELETE",
                "/api/moderation/bans/bob",
                Cred::Bearer(&alice),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let ub = rest
        .call(
            "DELETE",
            "/api/moderation/bans/bob",
            Cred::Bearer(&admin),
            None,
        )
        .await;
    assert_eq!(ub.status, 200, "{ub:?}");
    assert_eq!(send(&rest, &bob, &gid, "sorry").await.status, 201);
    let mut back = WsClient::open(&node.ws_url()).await;
    back.connect(&bob_ws).await;
    rest.login(&key, "bob").await;

    // A timed ban, and a warning (the user hears of it on their user channel).
    let tb = rest
        .call(
            "POST",
            "/api/moderation/bans",
            Cred::Key(&key),
            Some(json!({"user_id": "carol", "reason": "cool off", "duration_seconds": 3600})),
        )
        .await;
    assert_eq!(tb.status, 201, "{tb:?}");
    assert!(tb.body["expires_at"].is_string(), "{tb:?}");
    assert_error(
        &rest
            .call("GET", "/api/users/me", Cred::Bearer(&carol), None)
            .await,
        403,
        "USER_BANNED",
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/api/moderation/bans",
                Cred::Key(&key),
                Some(json!({"user_id": "carol", "duration_seconds": 0})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/api/moderation/bans",
                Cred::Bearer(&admin),
                Some(json!({"userId": "nobody"})),
            )
            .await,
        404,
        "NOT_FOUND",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_bans_and_mutes_keep_users_out_and_quiet() {
    let (node, rest) = node().await;
    let (app, key) = node.app("channel-moderation").await;
    for u in ["owner", "bob", "carol"] {
        user(&rest, &key, u, false).await;
    }
    let (owner, _) = rest.login(&key, "owner").await;
    let (bob, bob_ws) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&owner),
            Some(json!({"type": "public", "name": "town", "memberIds": ["bob", "carol"]})),
        )
        .await;
    assert_eq!(ch.status, 201, "{ch:?}");
    let cid = id(&ch.body);
    let other = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&owner),
            Some(json!({"type": "group", "name": "elsewhere", "memberIds": ["carol"]})),
        )
        .await;
    let other_id = id(&other.body);

    // A member cannot restrict others; the owner can.
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/channels/{cid}/mutes"),
                Cred::Bearer(&bob),
                Some(json!({"userId": "carol"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let mute = rest
        .call(
            "POST",
            &format!("/api/channels/{cid}/mutes"),
            Cred::Bearer(&owner),
            Some(json!({"userId": "carol", "durationSeconds": 600})),
        )
        .await;
    assert_eq!(mute.status, 201, "{mute:?}");
    assert_error(
        &send(&rest, &carol, &cid, "can I talk").await,
        403,
        "CHANNEL_RESTRICTED",
    );
    assert_eq!(
        send(&rest, &carol, &other_id, "elsewhere I can")
            .await
            .status,
        201
    );
    let mutes = rest
        .call(
            "GET",
            &format!("/api/channels/{cid}/mutes"),
            Cred::Bearer(&owner),
            None,
        )
        .await;
    assert_eq!(mutes.body["mutes"][0]["userId"], "carol", "{mutes:?}");
    assert!(mutes.body["mutes"][0]["expiresAt"].is_string());
    let unmute = rest
        .call(
            "DELETE",
            &format!("/api/channels/{cid}/mutes/carol"),
            Cred::Bearer(&owner),
            None,
        )
        .await;
    assert_eq!(unmute.status, 200, "{unmute:?}");
    assert_eq!(send(&rest, &carol, &cid, "thanks").await.status, 201);

    // A channel ban removes Bob, ends his subscription and keeps him out of an open channel.
    let mut conn = WsClient::open(&node.ws_url()).await;
    conn.connect(&bob_ws).await;
    let stream = format!("chat:{app}:{cid}");
    conn.call("subscribe", json!({"channel": stream})).await;
    let ban = rest
        .call(
            "POST",
            &format!("/api/channels/{cid}/bans"),
            Cred::Bearer(&owner),
            Some(json!({"userId": "bob", "reason": "spam"})),
        )
        .await;
    assert_eq!(ban.status, 201, "{ban:?}");
    conn.wait_for("unsubscribe push", |v| {
        v["push"]["channel"] == stream.as_str() && v["push"]["unsubscribe"].is_object()
    })
    .await;
    let members = rest
        .call(
            "GET",
            &format!("/api/channels/{cid}/members"),
            Cred::Bearer(&owner),
            None,
        )
        .await;
    assert!(
        !members.body.to_string().contains("\"bob\""),
        "bob removed: {members:?}"
    );
    assert_error(
        &send(&rest, &bob, &cid, "let me in").await,
        403,
        "CHANNEL_RESTRICTED",
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/channels/{cid}/messages"),
                Cred::Bearer(&bob),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let sub = conn.call("subscribe", json!({"channel": stream})).await;
    assert_eq!(sub["error"]["code"], 103, "{sub:?}");
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/channels/{cid}/members"),
                Cred::Bearer(&owner),
                Some(json!({"userId": "bob"})),
            )
            .await,
        403,
        "CHANNEL_RESTRICTED",
    );
    let bans = rest
        .call(
            "GET",
            &format!("/api/channels/{cid}/bans"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(bans.body["bans"][0]["user_id"], "bob", "{bans:?}");
    assert_eq!(bans.body["bans"][0]["reason"], "spam");
    // Lifted: he may join again (it is an open channel).
    let lift = rest
        .call(
            "DELETE",
            &format!("/api/channels/{cid}/bans/bob"),
            Cred::Bearer(&owner),
            None,
        )
        .await;
    assert_eq!(lift.status, 200, "{lift:?}");
    assert_eq!(send(&rest, &bob, &cid, "back").await.status, 201);
    // Nobody restricts the owner, and nobody restricts themselves.
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/channels/{cid}/bans"),
                Cred::Bearer(&owner),
                Some(json!({"userId": "owner"})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_users_events_do_not_reach_the_blocker_in_realtime_or_recovery() {
    let (node, rest) = node().await;
    let (app, key) = node.app("block-realtime").await;
    for u in ["alice", "bob", "carol"] {
        user(&rest, &key, u, false).await;
    }
    let (alice, alice_ws) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&carol),
            Some(json!({"type": "group", "name": "g", "memberIds": ["alice", "bob"]})),
        )
        .await;
    let gid = id(&ch.body);
    let stream = format!("chat:{app}:{gid}");
    let mut conn = WsClient::open(&node.ws_url()).await;
    conn.connect(&alice_ws).await;
    let sub = conn.call("subscribe", json!({"channel": stream})).await;
    let start = sub["subscribe"]["offset"].as_u64().unwrap_or(0);
    let epoch = sub["subscribe"]["epoch"].clone();
    let b = rest
        .call("POST", "/api/users/bob/block", Cred::Bearer(&alice), None)
        .await;
    assert_eq!(b.status, 200, "{b:?}");
    // Bob's message, reaction and typing are not sent to Alice; Carol's message is, at the
    // offset after Bob's (no gap close).
    let bm = send(&rest, &bob, &gid, "from bob").await;
    assert_eq!(bm.status, 201);
    let react = rest
        .call(
            "POST",
            &format!("/api/channels/{gid}/messages/{}/reactions", id(&bm.body)),
            Cred::Bearer(&bob),
            Some(json!({"emoji": "x"})),
        )
        .await;
    assert_eq!(react.status, 201, "{react:?}");
    // Reaction lists leave Bob out for Alice, not for Carol.
    let reactions = |token: String| {
        let rest = &rest;
        let url = format!("/api/channels/{gid}/messages/{}/reactions", id(&bm.body));
        async move {
            rest.call("GET", &url, Cred::Bearer(&token), None)
                .await
                .body["reactions"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(0)
        }
    };
    assert_eq!(reactions(alice.clone()).await, 0);
    assert_eq!(reactions(carol.clone()).await, 1);
    rest.call(
        "POST",
        &format!("/api/channels/{gid}/typing"),
        Cred::Bearer(&bob),
        Some(json!({"typing": true})),
    )
    .await;
    let cm = send(&rest, &carol, &gid, "from carol").await;
    assert_eq!(cm.status, 201);
    let mut pubs = Vec::new();
    conn.collect_pubs(&stream, &mut pubs, 1).await;
    assert_eq!(
        pubs[0]["data"]["payload"]["message"]["text"], "from carol",
        "{pubs:?}"
    );
    assert_eq!(pubs[0]["offset"].as_u64(), Some(start + 3), "{pubs:?}");
    // Recovery and history leave Bob out too.
    let mut again = WsClient::open(&node.ws_url()).await;
    again.connect(&alice_ws).await;
    let rec = again
        .call(
            "subscribe",
            json!({"channel": stream, "recover": true, "epoch": epoch, "offset": start}),
        )
        .await;
    let recovered = rec["subscribe"]["publications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(recovered.len(), 1, "{rec:?}");
    assert_eq!(
        recovered[0]["data"]["payload"]["message"]["text"],
        "from carol"
    );
    let hist = again
        .call("history", json!({"channel": stream, "limit": 10}))
        .await;
    let texts: Vec<&Value> = hist["history"]["publications"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| &p["data"]["payload"]["message"]["text"])
                .collect()
        })
        .unwrap_or_default();
    assert!(!texts.iter().any(|t| *t == "from bob"), "{hist:?}");
    assert!(texts.iter().any(|t| *t == "from carol"), "{hist:?}");
    // Unblocked: Bob's messages arrive again on the open subscription.
    let ub = rest
        .call("DELETE", "/api/users/bob/block", Cred::Bearer(&alice), None)
        .await;
    assert_eq!(ub.status, 200, "{ub:?}");
    assert_eq!(send(&rest, &bob, &gid, "bob again").await.status, 201);
    let mut more = Vec::new();
    conn.collect_pubs(&stream, &mut more, 1).await;
    assert_eq!(
        more[0]["data"]["payload"]["message"]["text"], "bob again",
        "{more:?}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_keys_are_scoped_listed_capped_and_revoked() {
    let node = TestNode::start_chat(
        GatewayConfig::default(),
        chatsdk_actors::ChatConfig {
            max_api_keys_per_app: 4,
            ..support::test_chat_config()
        },
    )
    .await;
    let rest = Rest::new(&node);
    let (app, admin_key) = node.app("keys").await;
    user(&rest, &admin_key, "u", false).await;
    let create = |key: String, body: Value| {
        let rest = &rest;
        async move {
            rest.call("POST", "/api/auth/api-keys", Cred::Key(&key), Some(body))
                .await
        }
    };
    // Without scopes: everything but key management.
    let plain = create(admin_key.clone(), json!({"name": "backend"})).await;
    assert_eq!(plain.status, 201, "{plain:?}");
    assert_eq!(plain.body["scopes"], json!(["read", "write", "tokens"]));
    let backend = plain.body["api_key"].as_str().unwrap().to_string();
    assert_error(
        &create(backend.clone(), json!({"name": "more"})).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call("GET", "/api/auth/api-keys", Cred::Key(&backend), None)
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &create(
            admin_key.clone(),
            json!({"name": "x", "scopes": ["everything"]}),
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    // A read-only key reads and nothing else.
    let ro = create(admin_key.clone(), json!({"name": "ro", "scopes": ["read"]})).await;
    assert_eq!(ro.status, 201, "{ro:?}");
    let ro_key = ro.body["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        rest.call("GET", "/api/users/u", Cred::Key(&ro_key), None)
            .await
            .status,
        200
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/api/users",
                Cred::Key(&ro_key),
                Some(json!({"user_id": "v"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/tokens",
                Cred::Key(&ro_key),
                Some(json!({"userId": "u"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    rest.login(&backend, "u").await;
    // The cap counts keys not revoked (the test app's own key, backend, ro: 3 of 4).
    assert_eq!(
        create(admin_key.clone(), json!({"name": "fourth"}))
            .await
            .status,
        201
    );
    assert_error(
        &create(admin_key.clone(), json!({"name": "fifth"})).await,
        429,
        "LIMIT_EXCEEDED",
    );
    let list = rest
        .call("GET", "/api/auth/api-keys", Cred::Key(&admin_key), None)
        .await;
    assert_eq!(list.status, 200, "{list:?}");
    let keys = list.body["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4, "{list:?}");
    assert!(
        !list.body.to_string().contains(&backend),
        "no plaintext listed"
    );
    assert!(keys.iter().all(|k| k["app_id"] == app.as_str()));
    // Revoked: refused at once, and a slot is free again.
    let backend_id = plain.body["id"].as_str().unwrap();
    let r = rest
        .call(
            "DELETE",
            &format!("/api/auth/api-keys/{backend_id}"),
            Cred::Key(&admin_key),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_error(
        &rest
            .call("GET", "/api/users/u", Cred::Key(&backend), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &rest
            .call(
                "DELETE",
                &format!("/api/auth/api-keys/{backend_id}"),
                Cred::Key(&admin_key),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    assert_eq!(
        create(admin_key.clone(), json!({"name": "fifth"}))
            .await
            .status,
        201
    );
    // Another app's key cannot see or revoke these.
    let (_other, other_key) = node.app("other").await;
    let ro_id = ro.body["id"].as_str().unwrap();
    assert_error(
        &rest
            .call(
                "DELETE",
                &format!("/api/auth/api-keys/{ro_id}"),
                Cred::Key(&other_key),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    node.stop().await;
}

/// Webhook settings for tests: the local receiver allowed, quick retries and polls.
fn hook_chat_config() -> chatsdk_actors::ChatConfig {
    chatsdk_actors::ChatConfig {
        webhooks: chatsdk_actors::hooks::HookConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            timeout: std::time::Duration::from_secs(5),
            retries: 2,
            backoff: std::time::Duration::from_millis(20),
            disable_after: 3,
            log_keep: 50,
            poll_every: std::time::Duration::from_millis(100),
        },
        ..support::test_chat_config()
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_logged_and_turned_off() {
    use chatsdk_actors::hooks::sign;
    let node = TestNode::start_chat(GatewayConfig::default(), hook_chat_config()).await;
    let rest = Rest::new(&node);
    let (app, key) = node.app("hooks").await;
    user(&rest, &key, "alice", false).await;
    user(&rest, &key, "bob", false).await;
    let (alice, _) = rest.login(&key, "alice").await;
    let rx = support::Receiver::start().await;
    // Only app admins and server keys manage webhooks; the URL and events are checked.
    assert_error(
        &rest
            .call(
                "POST",
                "/api/webhooks",
                Cred::Bearer(&alice),
                Some(json!({"url": rx.url(), "events": ["message.new"]})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    for (body, why) in [
        (
            json!({"url": "ftp://x/", "events": ["message.new"]}),
            "scheme",
        ),
        (
            json!({"url": rx.url(), "events": ["message.sent"]}),
            "event",
        ),
        (json!({"url": rx.url(), "events": []}), "no events"),
        (
            json!({"url": rx.url(), "events": ["message.new"], "secret": "short"}),
            "secret",
        ),
    ] {
        let r = rest
            .call("POST", "/api/webhooks", Cred::Key(&key), Some(body))
            .await;
        assert_eq!(r.status, 400, "{why}: {r:?}");
    }
    let made = rest
        .call(
            "POST",
            "/api/webhooks",
            Cred::Key(&key),
            Some(json!({"url": rx.url(), "events": ["message.created", "reaction.added"], "secret": "0123456789abcdef-secret"})),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    assert_eq!(
        made.body["events"],
        json!(["message.new", "reaction.added"])
    );
    assert_eq!(made.body["is_active"], true);
    let hid = id(&made.body);
    let secret = "0123456789abcdef-secret";
    let listed = rest
        .call("GET", "/api/webhooks", Cred::Key(&key), None)
        .await;
    assert!(listed.body["webhooks"][0]["secret"].is_null(), "{listed:?}");

    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "g", "memberIds": ["bob"]})),
        )
        .await;
    let gid = id(&ch.body);
    let text_of = |h: &support::Hit| {
        h.body["data"]["message"]["text"]
            .as_str()
            .map(str::to_string)
    };

    // A delivery, signed both ways.
    assert_eq!(send(&rest, &alice, &gid, "first").await.status, 201);
    let hit = rx
        .wait_for("first", |h| text_of(h).as_deref() == Some("first"))
        .await;
    assert_eq!(hit.headers["x-chatsdk-event"], "message.new");
    assert_eq!(hit.body["event"], "message.new");
    assert_eq!(hit.body["app_id"], app.as_str());
    assert!(hit.body["created_at"].is_string());
    assert!(sign::verify_v1(
        secret,
        &hit.headers["x-chatsdk-signature-256"],
        &hit.raw,
        now_secs(),
        300
    ));
    let t: u64 = hit.headers["x-chatsdk-timestamp"].parse().unwrap();
    assert!(hit.headers["x-chatsdk-signature-256"].starts_with(&format!("t={t},v1=")));
    assert_eq!(
        hit.headers["x-chatsdk-signature"],
        sign::signature_legacy(secret, &hit.raw)
    );
    assert!(!hit.headers["x-chatsdk-delivery-id"].is_empty());

    // 5xx is retried with the same delivery id; 4xx is not.
    rx.answer(&[503]);
    assert_eq!(send(&rest, &alice, &gid, "second").await.status, 201);
    let ok = rx
        .wait_for("second, retried", |h| {
            text_of(h).as_deref() == Some("second") && h.status == 200
        })
        .await;
    let tries: Vec<support::Hit> = rx
        .hits()
        .into_iter()
        .filter(|h| text_of(h).as_deref() == Some("second"))
        .collect();
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(
        tries[0].headers["x-chatsdk-delivery-id"],
        ok.headers["x-chatsdk-delivery-id"]
    );
    rx.answer(&[400]);
    assert_eq!(send(&rest, &alice, &gid, "third").await.status, 201);
    rx.wait_for("third", |h| text_of(h).as_deref() == Some("third"))
        .await;
    let log_has = |want: &'static str| {
        let rest = &rest;
        let (key, hid) = (key.clone(), hid.clone());
        async move {
            let log = rest
                .call(
                    "GET",
                    &format!("/api/webhooks/{hid}/deliveries"),
                    Cred::Key(&key),
                    None,
                )
                .await;
            log.body["deliveries"]
                .as_array()
                .map(|d| d.iter().any(|x| x["status_code"] == 400 && want == "400"))
                .unwrap_or(false)
        }
    };
    support::eventually("the 4xx delivery logged", || log_has("400")).await;
    let log = rest
        .call(
            "GET",
            &format!("/api/webhooks/{hid}/deliveries"),
            Cred::Key(&key),
            None,
        )
        .await;
    let entries = log.body["deliveries"].as_array().unwrap().clone();
    assert_eq!(entries[0]["success"], false, "newest first: {log:?}");
    assert_eq!(entries[0]["retry_count"], 0, "4xx not retried");
    assert!(entries
        .iter()
        .any(|d| d["success"] == true && d["retry_count"] == 1));
    assert_eq!(
        rx.hits()
            .iter()
            .filter(|h| text_of(h).as_deref() == Some("third"))
            .count(),
        1
    );

    // Failing again and again turns it off (3 in a row: the 400, then two more).
    rx.answer(&[500; 6]);
    assert_eq!(send(&rest, &alice, &gid, "fourth").await.status, 201);
    assert_eq!(send(&rest, &alice, &gid, "fifth").await.status, 201);
    support::eventually("the webhook turned off", || async {
        rest.call(
            "GET",
            &format!("/api/webhooks/{hid}"),
            Cred::Key(&key),
            None,
        )
        .await
        .body["is_active"]
            == false
    })
    .await;
    let off = rest
        .call(
            "GET",
            &format!("/api/webhooks/{hid}"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(off.body["failure_count"], 3, "{off:?}");
    assert!(off.body["disabled_reason"].is_string());
    // Off: nothing is recorded for it; on again: deliveries resume, with a new secret.
    assert_eq!(send(&rest, &alice, &gid, "while off").await.status, 201);
    let on = rest
        .call(
            "PATCH",
            &format!("/api/webhooks/{hid}"),
            Cred::Key(&key),
            Some(json!({"is_active": true})),
        )
        .await;
    assert_eq!(on.body["failure_count"], 0, "{on:?}");
    let regen = rest
        .call(
            "POST",
            &format!("/api/webhooks/{hid}/regenerate-secret"),
            Cred::Key(&key),
            None,
        )
        .await;
    let new_secret = regen.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(send(&rest, &alice, &gid, "back on").await.status, 201);
    let back = rx
        .wait_for("back on", |h| text_of(h).as_deref() == Some("back on"))
        .await;
    assert!(sign::verify_v1(
        &new_secret,
        &back.headers["x-chatsdk-signature-256"],
        &back.raw,
        now_secs(),
        300
    ));
    assert!(!rx
        .hits()
        .iter()
        .any(|h| text_of(h).as_deref() == Some("while off")));
    // Reactions are delivered too; /test sends a webhook.test now.
    let m = send(&rest, &alice, &gid, "react to me").await;
    rest.call(
        "POST",
        &format!("/api/channels/{gid}/messages/{}/reactions", id(&m.body)),
        Cred::Bearer(&alice),
        Some(json!({"emoji": "tada"})),
    )
    .await;
    rx.wait_for("reaction.added", |h| h.body["event"] == "reaction.added")
        .await;
    let t = rest
        .call(
            "POST",
            &format!("/api/webhooks/{hid}/test"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(t.body["success"], true, "{t:?}");
    assert_eq!(t.body["status_code"], 200);
    rx.wait_for("webhook.test", |h| h.body["event"] == "webhook.test")
        .await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_never_reach_internal_addresses_unless_allowed() {
    // No allow list: the local receiver is an internal address.
    let node = TestNode::start_chat(
        GatewayConfig::default(),
        chatsdk_actors::ChatConfig {
            webhooks: chatsdk_actors::hooks::HookConfig {
                retries: 0,
                ..hook_chat_config().webhooks
            }
            .without_allow_list(),
            ..support::test_chat_config()
        },
    )
    .await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("ssrf").await;
    let rx = support::Receiver::start().await;
    for url in [
        rx.url(),
        format!("http://localhost:{}/hook", rx.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::1]:9/".to_string(),
        "http://10.0.0.1/".to_string(),
    ] {
        let made = rest
            .call(
                "POST",
                "/api/webhooks",
                Cred::Key(&key),
                Some(json!({"url": url, "events": ["message.new"]})),
            )
            .await;
        assert_eq!(made.status, 201, "{made:?}");
        let t = rest
            .call(
                "POST",
                &format!("/api/webhooks/{}/test", id(&made.body)),
                Cred::Key(&key),
                None,
            )
            .await;
        assert_eq!(t.body["success"], false, "{url}: {t:?}");
        assert!(
            t.body["message"]
                .as_str()
                .unwrap_or("")
                .contains("internal"),
            "{url}: {t:?}"
        );
    }
    assert!(rx.hits().is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_rules_fire_on_their_triggers_once_per_user() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("enrollment").await;
    user(&rest, &key, "admin", true).await;
    user(&rest, &key, "owner", false).await;
    let (admin, _) = rest.login(&key, "admin").await;
    let mk = |body: Value| {
        let rest = &rest;
        let key = key.clone();
        async move {
            rest.call("POST", "/api/channels", Cred::Key(&key), Some(body))
                .await
        }
    };
    let general = id(
        &mk(json!({"user_id": "owner", "type": "group", "name": "general"}))
            .await
            .body,
    );
    let staff = id(
        &mk(json!({"user_id": "owner", "type": "group", "name": "staff"}))
            .await
            .body,
    );
    let sales = id(
        &mk(json!({"user_id": "owner", "type": "group", "name": "sales"}))
            .await
            .body,
    );
    let ws = rest
        .call(
            "POST",
            "/api/workspaces",
            Cred::Key(&key),
            Some(json!({"user_id": "owner", "name": "acme"})),
        )
        .await;
    let wid = id(&ws.body);
    let ws_room = id(&mk(
        json!({"user_id": "owner", "type": "group", "name": "ws-room", "workspace_id": wid}),
    )
    .await
    .body);
    let rule = |body: Value| {
        let rest = &rest;
        let admin = admin.clone();
        async move {
            rest.call(
                "POST",
                "/api/enrollment/rules",
                Cred::Bearer(&admin),
                Some(body),
            )
            .await
        }
    };
    // Rules are checked when they are saved.
    for (body, why) in [
        (
            json!({"ruleType": "nonsense", "actions": {"joinChannels": [general]}}),
            "type",
        ),
        (
            json!({"ruleType": "role_based", "actions": {"joinChannels": [general]}}),
            "no roles",
        ),
        (json!({"ruleType": "all_users", "actions": {}}), "no action"),
        (
            json!({"ruleType": "all_users", "conditions": {"colour": "red"}, "actions": {"joinChannels": [general]}}),
            "unknown condition",
        ),
        (
            json!({"ruleType": "event_trigger", "conditions": {"trigger": "birthday"}, "actions": {"joinChannels": [general]}}),
            "trigger",
        ),
        (
            json!({"ruleType": "all_users", "actions": {"joinChannels": ["nope"]}}),
            "unknown channel",
        ),
    ] {
        let r = rule(body).await;
        assert!(r.status == 400 || r.status == 404, "{why}: {r:?}");
    }
    let everyone = rule(json!({"ruleType": "event_trigger", "conditions": {"trigger": "user_created"}, "actions": {"joinChannels": [general]}, "priority": 1})).await;
    assert_eq!(everyone.status, 201, "{everyone:?}");
    let tagged = rule(json!({"ruleType": "tag_based", "conditions": {"tags": ["staff"]}, "actions": {"joinChannels": [staff], "channelRole": "moderator"}, "priority": 5})).await;
    assert_eq!(tagged.status, 201, "{tagged:?}");
    let attr = rule(json!({"ruleType": "attribute_match", "conditions": {"attributes": {"team": ["sales", "bizdev"]}, "trigger": "attributes_changed"}, "actions": {"joinChannels": [sales]}})).await;
    assert_eq!(attr.status, 201, "{attr:?}");
    let joined = rule(json!({"ruleType": "event_trigger", "conditions": {"trigger": "workspace_joined", "workspaceId": wid}, "actions": {"joinChannels": [ws_room]}})).await;
    assert_eq!(joined.status, 201, "{joined:?}");
    // The Server API's form, listed by workspace.
    let server_rule = rest
        .call(
            "POST",
            "/api/auto-enrollment/rules",
            Cred::Key(&key),
            Some(json!({"workspace_id": wid, "name": "into acme", "conditions": {"tags": ["acme"]}, "actions": {}, "is_active": true, "rule_type": "tag_based"})),
        )
        .await;
    assert_eq!(server_rule.status, 201, "{server_rule:?}");
    assert_eq!(server_rule.body["is_active"], true);
    let listed = rest
        .call(
            "GET",
            &format!("/api/workspaces/{wid}/auto-enrollment/rules"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(
        listed.body["rules"].as_array().map(Vec::len),
        Some(1),
        "{listed:?}"
    );

    let member_of = |user: &'static str, channel: String| {
        let rest = &rest;
        let key = key.clone();
        async move {
            let m = rest
                .call(
                    "GET",
                    &format!("/api/channels/{channel}/members"),
                    Cred::Key(&key),
                    None,
                )
                .await;
            m.body.to_string().contains(&format!("\"{user}\""))
        }
    };
    // User created (through token minting): the user_created rule, and the tag rule (with its
    // role); creating again is not a new trigger.
    let minted = rest
        .call(
            "POST",
            "/tokens",
            Cred::Key(&key),
            Some(json!({"userId": "dana", "custom": {"tags": ["staff"]}})),
        )
        .await;
    assert_eq!(minted.status, 200, "{minted:?}");
    assert!(member_of("dana", general.clone()).await);
    assert!(member_of("dana", staff.clone()).await);
    assert!(!member_of("dana", sales.clone()).await);
    let role = rest
        .call(
            "GET",
            &format!("/api/channels/{staff}/members"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert!(role.body.to_string().contains("moderator"), "{role:?}");
    // Attributes changed: the attribute rule.
    let put = rest
        .call(
            "PUT",
            "/api/users/dana",
            Cred::Key(&key),
            Some(json!({"custom": {"tags": ["staff"], "team": "bizdev"}})),
        )
        .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert!(member_of("dana", sales.clone()).await);
    // Leaving and changing again does not run it a second time (once per rule and user).
    let (dana, _) = rest.login(&key, "dana").await;
    rest.call(
        "DELETE",
        &format!("/api/channels/{sales}/members/dana"),
        Cred::Bearer(&dana),
        None,
    )
    .await;
    rest.call(
        "PUT",
        "/api/users/dana",
        Cred::Key(&key),
        Some(json!({"custom": {"tags": ["staff"], "team": "sales"}})),
    )
    .await;
    assert!(!member_of("dana", sales.clone()).await);
    // Joining the workspace: its rule.
    let add = rest
        .call(
            "POST",
            &format!("/api/workspaces/{wid}/members"),
            Cred::Key(&key),
            Some(json!({"user_ids": ["dana"], "user_id": "owner"})),
        )
        .await;
    assert_eq!(add.status, 200, "{add:?}");
    assert!(member_of("dana", ws_room.clone()).await);
    // A manual run applies matching rules again.
    let ex = rest
        .call(
            "POST",
            "/api/enrollment/execute",
            Cred::Bearer(&admin),
            Some(json!({"userId": "dana"})),
        )
        .await;
    assert_eq!(ex.status, 200, "{ex:?}");
    assert!(
        ex.body["rulesExecuted"].as_u64().unwrap_or(0) >= 2,
        "{ex:?}"
    );
    assert!(member_of("dana", sales.clone()).await);
    let hist = rest
        .call(
            "GET",
            "/api/enrollment/history?userId=dana",
            Cred::Bearer(&admin),
            None,
        )
        .await;
    let runs = hist.body["executions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(runs.len() >= 4, "{hist:?}");
    assert!(runs.iter().all(|r| r["success"] == true), "{hist:?}");
    assert!(runs.iter().any(|r| r["trigger"] == "user_created"));
    assert!(runs.iter().any(|r| r["trigger"] == "workspace_joined"));
    // Only app admins manage rules.
    assert_error(
        &rest
            .call("GET", "/api/enrollment/rules", Cred::Bearer(&dana), None)
            .await,
        403,
        "FORBIDDEN",
    );
    let off = rest
        .call(
            "PATCH",
            &format!("/api/enrollment/rules/{}", id(&everyone.body)),
            Cred::Bearer(&admin),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(off.body["enabled"], false, "{off:?}");
    rest.login(&key, "erin").await;
    assert!(!member_of("erin", general.clone()).await, "disabled rule");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_see_activity_and_age_restrictions_hold() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("supervision").await;
    user(&rest, &key, "teacher", true).await;
    for u in ["kid", "friend", "stranger"] {
        user(&rest, &key, u, false).await;
    }
    let (teacher, _) = rest.login(&key, "teacher").await;
    let (kid, _) = rest.login(&key, "kid").await;
    let (stranger, _) = rest.login(&key, "stranger").await;
    // Only app admins supervise; the type and age are checked.
    assert_error(
        &rest
            .call(
                "POST",
                "/api/users/x/supervise",
                Cred::Bearer(&stranger),
                Some(json!({"supervisedUserId": "kid", "supervisionType": "guardian"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    for body in [
        json!({"supervisedUserId": "kid", "supervisionType": "uncle"}),
        json!({"supervisedUserId": "kid", "supervisionType": "school", "ageRestriction": 0}),
        json!({"supervisedUserId": "nobody", "supervisionType": "school"}),
    ] {
        let r = rest
            .call(
                "POST",
                "/api/users/x/supervise",
                Cred::Bearer(&teacher),
                Some(body),
            )
            .await;
        assert!(r.status == 400 || r.status == 404, "{r:?}");
    }
    let s = rest
        .call(
            "POST",
            "/api/users/ignored/supervise",
            Cred::Bearer(&teacher),
            Some(json!({"supervisedUserId": "kid", "supervisionType": "school", "ageRestriction": 12})),
        )
        .await;
    assert_eq!(s.status, 201, "{s:?}");
    assert_eq!(s.body["supervisorUserId"], "teacher");
    assert_eq!(s.body["monitoringEnabled"], true);
    let mine = rest
        .call(
            "GET",
            "/api/users/me/supervised",
            Cred::Bearer(&teacher),
            None,
        )
        .await;
    assert_eq!(mine.body["supervised"][0]["userId"], "kid", "{mine:?}");
    let theirs = rest
        .call("GET", "/api/users/me/supervisors", Cred::Bearer(&kid), None)
        .await;
    assert_eq!(
        theirs.body["supervisors"][0]["userId"], "teacher",
        "{theirs:?}"
    );
    assert_eq!(theirs.body["supervisors"][0]["ageRestriction"], 12);

    // Activity: the kid's messages everywhere, DMs included, and the flags on them.
    let dm = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&kid),
            Some(json!({"type": "messaging", "memberIds": ["friend"]})),
        )
        .await;
    let dm_id = id(&dm.body);
    assert_eq!(send(&rest, &kid, &dm_id, "secret plan").await.status, 201);
    let (friend, _) = rest.login(&key, "friend").await;
    assert_eq!(send(&rest, &friend, &dm_id, "ok").await.status, 201);
    let m = send(&rest, &kid, &dm_id, "rude words").await;
    rest.call(
        "POST",
        &format!("/api/moderation/{}/report", id(&m.body)),
        Cred::Bearer(&friend),
        Some(json!({"reason": "harassment"})),
    )
    .await;
    let act = rest
        .call(
            "GET",
            "/api/users/kid/activity",
            Cred::Bearer(&teacher),
            None,
        )
        .await;
    assert_eq!(act.status, 200, "{act:?}");
    let recent = act.body["activity"]["recentMessages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let texts: Vec<&str> = recent.iter().filter_map(|m| m["text"].as_str()).collect();
    assert_eq!(texts, vec!["rude words", "secret plan"], "{act:?}");
    assert_eq!(
        act.body["activity"]["moderationFlags"][0]["reason"],
        "harassment"
    );
    assert_eq!(act.body["activity"]["channels"][0]["id"], dm_id.as_str());
    // Without monitoring, or for someone else's supervisee: refused.
    let off = rest
        .call(
            "PATCH",
            "/api/users/kid/supervise",
            Cred::Bearer(&teacher),
            Some(json!({"monitoringEnabled": false, "ageRestriction": null})),
        )
        .await;
    assert_eq!(off.body["monitoringEnabled"], false, "{off:?}");
    assert!(off.body["ageRestriction"].is_null());
    assert_error(
        &rest
            .call(
                "GET",
                "/api/users/kid/activity",
                Cred::Bearer(&teacher),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "GET",
                "/api/users/friend/activity",
                Cred::Bearer(&teacher),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    // Age restriction: a channel rated 16 is closed to a user restricted to 12.
    rest.call(
        "PATCH",
        "/api/users/kid/supervise",
        Cred::Bearer(&teacher),
        Some(json!({"ageRestriction": 12})),
    )
    .await;
    let rated = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&stranger),
            Some(json!({"type": "public", "name": "late night", "config": {"minAge": 16}})),
        )
        .await;
    let rated_id = id(&rated.body);
    assert_error(&send(&rest, &kid, &rated_id, "hi").await, 403, "FORBIDDEN");
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/channels/{rated_id}/members"),
                Cred::Bearer(&stranger),
                Some(json!({"userId": "kid"})),
            )
            .await,
        403,
        "CHANNEL_RESTRICTED",
    );
    assert_eq!(send(&rest, &friend, &rated_id, "hi").await.status, 201);
    let gone = rest
        .call(
            "DELETE",
            "/api/users/kid/supervise",
            Cred::Bearer(&teacher),
            None,
        )
        .await;
    assert_eq!(gone.body["success"], true, "{gone:?}");
    assert_eq!(send(&rest, &kid, &rated_id, "hi").await.status, 201);
    node.stop().await;
}

/// A browser's subscription keys: the private key decrypts one push (ring's keys agree once).
fn browser_keys() -> (ring::agreement::EphemeralPrivateKey, Vec<u8>, [u8; 16]) {
    let rng = ring::rand::SystemRandom::new();
    let private =
        ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng).unwrap();
    let public = private.compute_public_key().unwrap().as_ref().to_vec();
    (private, public, rand_auth())
}

fn rand_auth() -> [u8; 16] {
    let mut a = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut a).unwrap();
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_push_is_encrypted_signed_and_respects_online_mute_and_blocks() {
    use chatsdk_actors::chat::b64url;
    let node = TestNode::start_chat(GatewayConfig::default(), hook_chat_config()).await;
    let rest = Rest::new(&node);
    let (app, key) = node.app("push").await;
    for u in ["alice", "bob", "carol"] {
        user(&rest, &key, u, false).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, bob_ws) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let rx = support::Receiver::start().await;
    // The VAPID key is the cluster's; devices are a registry.
    let vapid = rest
        .call("GET", "/api/webpush/vapid-key", Cred::Bearer(&bob), None)
        .await;
    let vapid_key = vapid.body["publicKey"].as_str().unwrap().to_string();
    assert_eq!(vapid_key.len(), 87, "{vapid:?}");
    let dev = rest
        .call(
            "POST",
            "/api/devices",
            Cred::Bearer(&bob),
            Some(json!({"token": "fcm-token-1", "platform": "android", "deviceName": "Pixel"})),
        )
        .await;
    assert_eq!(dev.status, 200, "{dev:?}");
    assert_error(
        &rest
            .call(
                "POST",
                "/api/devices",
                Cred::Bearer(&bob),
                Some(json!({"token": "t", "platform": "nokia"})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    let listed = rest
        .call("GET", "/api/devices", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(
        listed.body["devices"][0]["platform"], "android",
        "{listed:?}"
    );
    assert!(
        !listed.body.to_string().contains("fcm-token-1"),
        "tokens not listed"
    );
    let prefs = rest
        .call(
            "PATCH",
            "/api/devices/preferences",
            Cred::Bearer(&bob),
            Some(json!({"reactions": false, "quietHoursStart": "23:00"})),
        )
        .await;
    assert_eq!(prefs.body["preferences"]["reactions"], false, "{prefs:?}");
    assert_eq!(prefs.body["preferences"]["newMessages"], true);
    assert_error(
        &rest
            .call(
                "PATCH",
                "/api/devices/preferences",
                Cred::Bearer(&bob),
                Some(json!({"quietHoursStart": "25:99"})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    // Subscriptions: keys are checked.
    let (bob_private, bob_public, bob_auth) = browser_keys();
    assert_error(
        &rest
            .call(
                "POST",
                "/api/webpush/subscribe",
                Cred::Bearer(&bob),
                Some(json!({"endpoint": format!("{}?who=bob", rx.url()), "keys": {"p256dh": "AAAA", "auth": b64url(&bob_auth)}})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    for (token, who, public, auth) in [
        (&bob, "bob", bob_public.clone(), bob_auth),
        (&carol, "carol", browser_keys().1, rand_auth()),
    ] {
        let s = rest
            .call(
                "POST",
                "/api/webpush/subscribe",
                Cred::Bearer(token),
                Some(json!({"endpoint": format!("{}?who={who}", rx.url()), "keys": {"p256dh": b64url(&public), "auth": b64url(&auth)}})),
            )
            .await;
        assert_eq!(s.status, 200, "{s:?}");
    }
    let to = |who: &'static str| {
        let rx = rx.clone();
        move || {
            rx.hits()
                .into_iter()
                .filter(|h| h.uri.ends_with(&format!("who={who}")))
                .count()
        }
    };
    let (bob_pushes, carol_pushes) = (to("bob"), to("carol"));

    // A DM to Bob, who is offline: one push, encrypted for his browser and signed with VAPID.
    let dm = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "messaging", "memberIds": ["bob"]})),
        )
        .await;
    assert_eq!(send(&rest, &alice, &id(&dm.body), "psst").await.status, 201);
    let hit = rx
        .wait_for("bob's push", |h| h.uri.ends_with("who=bob"))
        .await;
    assert_eq!(hit.headers["content-encoding"], "aes128gcm");
    assert!(hit.headers["ttl"].parse::<u64>().is_ok());
    let auth_header = &hit.headers["authorization"];
    let (jwt, k) = auth_header
        .trim_start_matches("vapid t=")
        .split_once(", k=")
        .unwrap();
    assert_eq!(k, vapid_key);
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        b64.decode(k).unwrap(),
    )
    .verify(input.as_bytes(), &b64.decode(sig).unwrap())
    .expect("VAPID signature");
    let claims: Value =
        serde_json::from_slice(&b64.decode(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(claims["aud"], format!("http://{}", rx.addr));
    let plain =
        chatsdk_actors::push::decrypt(&hit.raw, bob_private, &bob_public, &bob_auth).unwrap();
    let payload: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(payload["body"], "psst", "{payload:?}");
    assert_eq!(payload["type"], "message.new");
    assert_eq!(bob_pushes(), 1);

    // In a group (members are notified in id order: bob before carol), Bob is skipped while
    // online, while he mutes the group and while he blocks the sender.
    let group = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "g", "memberIds": ["bob", "carol"]})),
        )
        .await;
    let gid = id(&group.body);
    let carol_after = |n: usize| {
        let carol_pushes = to("carol");
        async move {
            support::eventually("carol's push", || {
                let c = carol_pushes.clone();
                async move { c() >= n }
            })
            .await
        }
    };
    let mut conn = WsClient::open(&node.ws_url()).await;
    conn.connect(&bob_ws).await;
    let n = carol_pushes();
    assert_eq!(send(&rest, &alice, &gid, "while online").await.status, 201);
    carol_after(n + 1).await;
    assert_eq!(bob_pushes(), 1, "online: no push");
    conn.close().await;
    support::eventually("bob offline", || async {
        !node.chat.fanout().is_connected(&format!("{app}:bob"))
    })
    .await;
    let muted = rest
        .call(
            "PATCH",
            &format!("/api/channels/{gid}/mute"),
            Cred::Bearer(&bob),
            Some(json!({"muted": true})),
        )
        .await;
    assert_eq!(muted.status, 200, "{muted:?}");
    let n = carol_pushes();
    assert_eq!(send(&rest, &alice, &gid, "while muted").await.status, 201);
    carol_after(n + 1).await;
    assert_eq!(bob_pushes(), 1, "muted: no push");
    rest.call(
        "PATCH",
        &format!("/api/channels/{gid}/mute"),
        Cred::Bearer(&bob),
        Some(json!({"muted": false})),
    )
    .await;
    rest.call("POST", "/api/users/alice/block", Cred::Bearer(&bob), None)
        .await;
    let n = carol_pushes();
    assert_eq!(send(&rest, &alice, &gid, "while blocked").await.status, 201);
    carol_after(n + 1).await;
    assert_eq!(bob_pushes(), 1, "blocked: no push");
    rest.call("DELETE", "/api/users/alice/block", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(send(&rest, &alice, &gid, "all clear").await.status, 201);
    support::eventually("bob's second push", || {
        let b = to("bob");
        async move { b() == 2 }
    })
    .await;
    // The test route, and unsubscribing.
    let t = rest
        .call("POST", "/api/webpush/test", Cred::Bearer(&carol), None)
        .await;
    assert_eq!(t.body["sent"], 1, "{t:?}");
    let un = rest
        .call(
            "POST",
            "/api/webpush/unsubscribe",
            Cred::Bearer(&carol),
            Some(json!({"endpoint": format!("{}?who=carol", rx.url())})),
        )
        .await;
    assert_eq!(un.status, 200, "{un:?}");
    let t = rest
        .call("POST", "/api/webpush/test", Cred::Bearer(&carol), None)
        .await;
    assert_eq!(t.body["sent"], 0, "{t:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legal_holds_refuse_deletion_and_exports_round_trip() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("lifecycle").await;
    user(&rest, &key, "admin", true).await;
    for u in ["alice", "bob"] {
        user(&rest, &key, u, false).await;
    }
    let (admin, _) = rest.login(&key, "admin").await;
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "case", "memberIds": ["bob"]})),
        )
        .await;
    let gid = id(&ch.body);
    let m1 = id(&send(&rest, &alice, &gid, "evidence one").await.body);
    let m2 = id(&send(&rest, &bob, &gid, "evidence two").await.body);
    let reply = rest
        .call(
            "POST",
            &format!("/api/channels/{gid}/messages/{m1}/thread"),
            Cred::Bearer(&bob),
            Some(json!({"text": "in a thread"})),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    // Only app admins and keys place holds.
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/channels/{gid}/legal-hold"),
                Cred::Bearer(&alice),
                Some(json!({"reason": "litigation"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let h = rest
        .call(
            "POST",
            &format!("/api/channels/{gid}/legal-hold"),
            Cred::Bearer(&admin),
            Some(json!({"reason": "litigation 2026-17"})),
        )
        .await;
    assert_eq!(h.status, 201, "{h:?}");
    for (method, path, token) in [
        (
            "DELETE",
            format!("/api/channels/{gid}/messages/{m1}"),
            alice.clone(),
        ),
        (
            "DELETE",
            format!("/api/channels/{gid}/messages/{m2}/purge"),
            alice.clone(),
        ),
        ("DELETE", format!("/api/channels/{gid}"), alice.clone()),
    ] {
        assert_error(
            &rest.call(method, &path, Cred::Bearer(&token), None).await,
            423,
            "LEGAL_HOLD_ACTIVE",
        );
    }
    let holds = rest
        .call("GET", "/api/legal-holds", Cred::Key(&key), None)
        .await;
    assert_eq!(holds.body["holds"][0]["target"], gid.as_str(), "{holds:?}");
    // A hold on a user covers their messages anywhere, and their deletion.
    rest.call(
        "DELETE",
        &format!("/api/channels/{gid}/legal-hold"),
        Cred::Bearer(&admin),
        None,
    )
    .await;
    let uh = rest
        .call(
            "POST",
            "/api/users/bob/legal-hold",
            Cred::Key(&key),
            Some(json!({"reason": "custodian"})),
        )
        .await;
    assert_eq!(uh.status, 201, "{uh:?}");
    assert_error(
        &rest
            .call(
                "DELETE",
                &format!("/api/channels/{gid}/messages/{m2}"),
                Cred::Bearer(&bob),
                None,
            )
            .await,
        423,
        "LEGAL_HOLD_ACTIVE",
    );
    assert_error(
        &rest
            .call("DELETE", "/api/users/bob", Cred::Key(&key), None)
            .await,
        423,
        "LEGAL_HOLD_ACTIVE",
    );
    // Alice's own message is not held.
    assert_eq!(
        rest.call(
            "DELETE",
            &format!("/api/channels/{gid}/messages/{m1}"),
            Cred::Bearer(&alice),
            None,
        )
        .await
        .status,
        200
    );

    // Exports: Bob's own data, and the channel's, downloaded and read back.
    let ex = rest
        .call("POST", "/api/users/me/export", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(ex.status, 201, "{ex:?}");
    assert_eq!(ex.body["manifest"]["scope"], "user");
    assert!(ex.body["expiresAt"].is_string());
    let url = ex.body["downloadUrl"].as_str().unwrap().to_string();
    let got = rest.call("GET", &url, Cred::Bearer(&bob), None).await;
    assert_eq!(got.status, 200, "{got:?}");
    let texts: Vec<&str> = got.body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, vec!["evidence two", "in a thread"], "{got:?}");
    assert_eq!(got.body["data"]["user"]["id"], "bob");
    assert_eq!(
        format!(
            "sha256:{}",
            got.headers["x-checksum-sha256"].to_str().unwrap()
        ),
        ex.body["checksum"].as_str().unwrap()
    );
    // Someone else's export is not theirs to read.
    assert_error(
        &rest.call("GET", &url, Cred::Bearer(&alice), None).await,
        404,
        "NOT_FOUND",
    );
    let cx = rest
        .call(
            "POST",
            &format!("/api/channels/{gid}/export"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(cx.status, 201, "{cx:?}");
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/channels/{gid}/export"),
                Cred::Bearer(&bob),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let got = rest
        .call(
            "GET",
            cx.body["downloadUrl"].as_str().unwrap(),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(got.body["data"]["channel"]["name"], "case", "{got:?}");
    assert_eq!(
        got.body["data"]["members"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        got.body["data"]["messages"].as_array().map(Vec::len),
        Some(3)
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_purges_old_messages_except_under_legal_hold() {
    let node = TestNode::start_chat(
        GatewayConfig::default(),
        chatsdk_actors::ChatConfig {
            retention_every: std::time::Duration::from_millis(100),
            ..support::test_chat_config()
        },
    )
    .await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("retention").await;
    user(&rest, &key, "alice", false).await;
    let (alice, _) = rest.login(&key, "alice").await;
    let mk = |name: &'static str, config: Value| {
        let rest = &rest;
        let alice = alice.clone();
        async move {
            rest.call(
                "POST",
                "/api/channels",
                Cred::Bearer(&alice),
                Some(json!({"type": "group", "name": name, "config": config})),
            )
            .await
        }
    };
    assert_error(
        &mk("bad", json!({"retentionDays": -3})).await,
        400,
        "BAD_REQUEST",
    );
    let short = id(&mk("short", json!({"retentionSeconds": 1})).await.body);
    let held = id(&mk("held", json!({"retentionSeconds": 1})).await.body);
    let keep = id(&mk("keep", json!({})).await.body);
    for ch in [&short, &held, &keep] {
        assert_eq!(send(&rest, &alice, ch, "old news").await.status, 201);
    }
    let h = rest
        .call(
            "POST",
            &format!("/api/channels/{held}/legal-hold"),
            Cred::Key(&key),
            Some(json!({"reason": "audit"})),
        )
        .await;
    assert_eq!(h.status, 201, "{h:?}");
    let count = |ch: String| {
        let rest = &rest;
        let alice = alice.clone();
        async move {
            rest.call(
                "GET",
                &format!("/api/channels/{ch}/messages"),
                Cred::Bearer(&alice),
                None,
            )
            .await
            .body["messages"]
                .as_array()
                .map(Vec::len)
                .unwrap_or(usize::MAX)
        }
    };
    support::eventually("the short channel's message expired", || async {
        count(short.clone()).await == 0
    })
    .await;
    // A later pass has run over the held channel too (it runs over all of them each time).
    assert_eq!(send(&rest, &alice, &short, "again").await.status, 201);
    support::eventually("the second message expired", || async {
        count(short.clone()).await == 0
    })
    .await;
    assert_eq!(count(held.clone()).await, 1, "held");
    assert_eq!(count(keep.clone()).await, 1, "no retention");
    node.stop().await;
}
