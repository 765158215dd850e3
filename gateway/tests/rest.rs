//! The REST API over real sockets, in both dialects: flows, permissions, tenant isolation and
//! bad input.

mod support;

use chatsdk_actors::ChatConfig;
use chatsdk_gateway::auth::tokens::Claims;
use chatsdk_gateway::GatewayConfig;
use serde_json::{json, Value};
use support::{assert_error, test_chat_config, Cred, Rest, TestNode};

async fn node() -> (TestNode, Rest) {
    let node = TestNode::start(GatewayConfig {
        admin_api_key: Some("admin-key-for-tests-0123".into()),
        ..GatewayConfig::default()
    })
    .await;
    let rest = Rest::new(&node);
    (node, rest)
}

async fn user(rest: &Rest, key: &str, id: &str) {
    let r = rest
        .call(
            "POST",
            "/api/users",
            Cred::Key(key),
            Some(json!({"user_id": id, "name": id.to_uppercase()})),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_dialects_end_to_end() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("one").await;
    // Server API: snake_case in and out.
    let r = rest
        .call(
            "POST",
            "/api/users",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "name": "Alice", "custom": {"teamId": 7}})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["custom"]["teamId"], 7, "user data keeps its keys");
    assert!(r.body["created_at"].is_string(), "{r:?}");
    let again = rest
        .call(
            "POST",
            "/api/users",
            Cred::Key(&key),
            Some(json!({"user_id": "alice"})),
        )
        .await;
    assert_eq!(again.status, 200);
    user(&rest, &key, "bob").await;
    let ch = rest
        .call("POST", "/api/channels", Cred::Key(&key), Some(json!({"user_id": "alice", "name": "general", "type": "group", "member_ids": ["bob"]})))
        .await;
    assert_eq!(ch.status, 201, "{ch:?}");
    assert!(
        ch.body.get("workspace_id").is_some() && ch.body.get("member_count").is_some(),
        "snake_case channel: {ch:?}"
    );
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let m = rest
        .call("POST", "/api/messages", Cred::Key(&key), Some(json!({"channel_id": cid, "user_id": "bob", "text": "hi from the backend", "client_msg_id": "srv-1"})))
        .await;
    assert_eq!(m.status, 201, "{m:?}");
    assert_eq!(m.body["seq"], 1);
    assert_eq!(m.body["channel_id"], cid.as_str());

    // Client API: camelCase, user tokens.
    let (alice, _) = rest.login(&key, "alice").await;
    let list = rest
        .call("GET", "/api/channels", Cred::Bearer(&alice), None)
        .await;
    assert_eq!(list.status, 200);
    let mine = list.body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cid.as_str())
        .expect("channel listed")
        .clone();
    assert_eq!(mine["role"], "owner");
    assert_eq!(mine["unreadCount"], 1);
    let path = format!("/api/channels/{cid}/messages");
    let first = rest
        .call(
            "POST",
            &path,
            Cred::Bearer(&alice),
            Some(json!({"text": "hello", "clientMsgId": "c-1"})),
        )
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    let retry = rest
        .call(
            "POST",
            &path,
            Cred::Bearer(&alice),
            Some(json!({"text": "hello", "clientMsgId": "c-1"})),
        )
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(
        retry.body["id"], first.body["id"],
        "a retried send returns the first message"
    );
    assert_eq!(retry.body["duplicate"], true);
    // The first answer is the JSON its event carried; the retry's is rendered from the stored
    // message: the same message either way.
    let mut again = retry.body.clone();
    again.as_object_mut().unwrap().remove("duplicate");
    assert_eq!(again, first.body);
    let all = rest
        .call(
            "GET",
            &format!("{path}?since_seq=0"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(all.body["maxSeq"], 2, "{all:?}");
    assert_eq!(all.body["hasMore"], false);
    let seqs: Vec<u64> = all.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2]);
    let latest = rest
        .call(
            "GET",
            &format!("{path}?limit=1"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(latest.body["messages"][0]["seq"], 2);
    assert_eq!(latest.body["hasMore"], true);
    let before = rest
        .call(
            "GET",
            &format!("{path}?before={}", first.body["id"].as_str().unwrap()),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(before.body["messages"].as_array().unwrap().len(), 1);

    // Edit and delete follow ownership and roles.
    let mid = first.body["id"].as_str().unwrap();
    let (bob, _) = rest.login(&key, "bob").await;
    let edit = rest
        .call(
            "PATCH",
            &format!("{path}/{mid}"),
            Cred::Bearer(&alice),
            Some(json!({"text": "hello, edited"})),
        )
        .await;
    assert_eq!(edit.body["text"], "hello, edited", "{edit:?}");
    assert!(edit.body["editedAt"].is_string());
    assert_error(
        &rest
            .call(
                "PATCH",
                &format!("{path}/{mid}"),
                Cred::Bearer(&bob),
                Some(json!({"text": "mine now"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call("DELETE", &format!("{path}/{mid}"), Cred::Bearer(&bob), None)
            .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        rest.call(
            "DELETE",
            &format!("{path}/{mid}"),
            Cred::Bearer(&alice),
            None
        )
        .await
        .status,
        200
    );
    let gone = rest
        .call("GET", &format!("{path}/{mid}"), Cred::Bearer(&alice), None)
        .await;
    assert_eq!(gone.body["type"], "deleted");
    assert_eq!(gone.body["text"], Value::Null);
    let server_mid = m.body["id"].as_str().unwrap();
    assert_eq!(
        rest.call(
            "DELETE",
            &format!("{path}/{server_mid}/purge"),
            Cred::Bearer(&alice),
            None
        )
        .await
        .status,
        200
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("{path}/{server_mid}"),
                Cred::Bearer(&alice),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );

    // Read state: marking read zeroes the unread count.
    let read = rest
        .call(
            "POST",
            &format!("/api/channels/{cid}/read"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(read.body["lastReadSeq"], 2, "{read:?}");
    let unread = rest
        .call(
            "GET",
            "/api/channels/unread-count",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(unread.body["count"], 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_follow_membership_and_roles() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("perm").await;
    for u in ["owner", "mod", "member", "outsider"] {
        user(&rest, &key, u).await;
    }
    let (owner, _) = rest.login(&key, "owner").await;
    let (modr, _) = rest.login(&key, "mod").await;
    let (member, _) = rest.login(&key, "member").await;
    let (outsider, _) = rest.login(&key, "outsider").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&owner),
            Some(json!({"type": "group", "name": "g", "memberIds": ["mod", "member"]})),
        )
        .await;
    assert_eq!(ch.status, 201, "{ch:?}");
    let id = ch.body["id"].as_str().unwrap().to_string();
    let msgs = format!("/api/channels/{id}/messages");
    assert_error(
        &rest.call("GET", &msgs, Cred::Bearer(&outsider), None).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "POST",
                &msgs,
                Cred::Bearer(&outsider),
                Some(json!({"text": "let me in"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/channels/{id}"),
                Cred::Bearer(&outsider),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let members = format!("/api/channels/{id}/members");
    assert_error(
        &rest
            .call(
                "POST",
                &members,
                Cred::Bearer(&member),
                Some(json!({"userId": "outsider"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "PATCH",
                &format!("/api/channels/{id}"),
                Cred::Bearer(&member),
                Some(json!({"name": "mine"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let promote = rest
        .call(
            "PATCH",
            &format!("{members}/mod"),
            Cred::Bearer(&owner),
            Some(json!({"role": "moderator"})),
        )
        .await;
    assert_eq!(promote.status, 200, "{promote:?}");
    assert_error(
        &rest
            .call(
                "PATCH",
                &format!("{members}/member"),
                Cred::Bearer(&modr),
                Some(json!({"role": "owner"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let add = rest
        .call(
            "POST",
            &members,
            Cred::Bearer(&modr),
            Some(json!({"userId": "outsider"})),
        )
        .await;
    assert_eq!(add.body["addedCount"], 1, "{add:?}");
    assert_eq!(
        rest.call("GET", &msgs, Cred::Bearer(&outsider), None)
            .await
            .status,
        200
    );
    // Leaving is always allowed; removing an equal role is not.
    assert_error(
        &rest
            .call(
                "DELETE",
                &format!("{members}/owner"),
                Cred::Bearer(&modr),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        rest.call(
            "DELETE",
            &format!("{members}/outsider"),
            Cred::Bearer(&outsider),
            None
        )
        .await
        .status,
        200
    );
    assert_error(
        &rest.call("GET", &msgs, Cred::Bearer(&outsider), None).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "DELETE",
                &format!("/api/channels/{id}"),
                Cred::Bearer(&modr),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );

    // Open channels: readable by anyone in the app, joined on first send.
    let open = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&owner),
            Some(json!({"type": "public", "name": "town square"})),
        )
        .await;
    let oid = open.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        rest.call(
            "GET",
            &format!("/api/channels/{oid}/messages"),
            Cred::Bearer(&outsider),
            None
        )
        .await
        .status,
        200
    );
    let sent = rest
        .call(
            "POST",
            &format!("/api/channels/{oid}/messages"),
            Cred::Bearer(&outsider),
            Some(json!({"text": "hi all"})),
        )
        .await;
    assert_eq!(sent.status, 201, "{sent:?}");
    let me = rest
        .call(
            "GET",
            &format!("/api/channels/{oid}"),
            Cred::Bearer(&outsider),
            None,
        )
        .await;
    assert_eq!(me.body["role"], "member", "auto-joined: {me:?}");

    // A DM is fixed and a second create finds the same channel.
    let dm = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&owner),
            Some(json!({"type": "messaging", "memberIds": ["member"]})),
        )
        .await;
    assert_eq!(dm.status, 201, "{dm:?}");
    let dm2 = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&member),
            Some(json!({"type": "messaging", "memberIds": ["owner"]})),
        )
        .await;
    assert_eq!(dm2.status, 303);
    assert_eq!(dm2.body["id"], dm.body["id"]);
    let dmid = dm.body["id"].as_str().unwrap();
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/channels/{dmid}/members"),
                Cred::Bearer(&owner),
                Some(json!({"userId": "mod"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    // Users cannot grant themselves admin.
    let me = rest
        .call(
            "PATCH",
            "/api/users/me",
            Cred::Bearer(&member),
            Some(json!({"custom": {"is_admin": true}, "role": "admin"})),
        )
        .await;
    assert_eq!(me.status, 200);
    assert!(node
        .chat
        .user(&_app, "member")
        .unwrap()
        .unwrap()
        .role
        .is_none());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_token_of_one_app_reaches_another() {
    let (node, rest) = node().await;
    let (_a, key_a) = node.app("a").await;
    let (app_b, key_b) = node.app("b").await;
    user(&rest, &key_a, "eve").await;
    user(&rest, &key_b, "bob").await;
    user(&rest, &key_b, "carol").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&key_b),
            Some(json!({"user_id": "bob", "name": "secret", "member_ids": ["carol"]})),
        )
        .await;
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let m = rest
        .call(
            "POST",
            "/api/messages",
            Cred::Key(&key_b),
            Some(json!({"channel_id": cid, "user_id": "bob", "text": "b only"})),
        )
        .await;
    let mid = m.body["id"].as_str().unwrap().to_string();
    let report = rest
        .call(
            "POST",
            &format!("/api/messages/{mid}/report"),
            Cred::Key(&key_b),
            Some(json!({"user_id": "carol", "reason": "spam"})),
        )
        .await;
    assert_eq!(report.status, 201, "{report:?}");
    let rid = report.body["id"].as_str().unwrap().to_string();
    let hook = rest
        .call(
            "POST",
            "/api/webhooks",
            Cred::Key(&key_b),
            Some(json!({"url": "https://example.com/b-hook", "events": ["message.new"]})),
        )
        .await;
    assert_eq!(hook.status, 201, "{hook:?}");
    let hid = hook.body["id"].as_str().unwrap().to_string();
    let rule = rest
        .call(
            "POST",
            "/api/auto-enrollment/rules",
            Cred::Key(&key_b),
            Some(json!({"rule_type": "all_users", "actions": {"join_channels": [cid]}})),
        )
        .await;
    assert_eq!(rule.status, 201, "{rule:?}");
    let rule_id = rule.body["id"].as_str().unwrap().to_string();
    let export = rest
        .call("POST", "/api/users/bob/export", Cred::Key(&key_b), None)
        .await;
    assert_eq!(export.status, 201, "{export:?}");
    let export_id = export.body["id"].as_str().unwrap().to_string();
    let poll = rest
        .call(
            "POST",
            &format!("/api/channels/{cid}/messages/{mid}/polls"),
            Cred::Key(&key_b),
            Some(json!({"user_id": "bob", "question": "b?", "options": [{"id": "y", "text": "yes"}, {"id": "n", "text": "no"}]})),
        )
        .await;
    assert_eq!(poll.status, 201, "{poll:?}");
    let pid = poll.body["id"].as_str().unwrap().to_string();
    let ws = rest
        .call(
            "POST",
            "/api/workspaces",
            Cred::Key(&key_b),
            Some(json!({"user_id": "bob", "name": "b-space"})),
        )
        .await;
    assert_eq!(ws.status, 201, "{ws:?}");
    let wid = ws.body["id"].as_str().unwrap().to_string();
    let invite = rest
        .call(
            "POST",
            &format!("/api/workspaces/{wid}/invite"),
            Cred::Key(&key_b),
            Some(json!({"user_id": "bob", "emails": ["eve@example.com"]})),
        )
        .await;
    let token = invite.body["invites"][0]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let template = rest
        .call(
            "POST",
            "/api/templates",
            Cred::Key(&key_b),
            Some(json!({"user_id": "bob", "name": "b-tpl", "channels": [{"name": "c"}]})),
        )
        .await;
    assert_eq!(template.status, 201, "{template:?}");
    let tid = template.body["id"].as_str().unwrap().to_string();
    let (ct, form) = multipart(&[
        ("workspaceId", None, wid.as_bytes()),
        ("name", None, b"b_emoji"),
        ("user_id", None, b"bob"),
        ("file", Some("e.gif"), b"GIF89a-b"),
    ]);
    let emoji = rest
        .raw(
            "POST",
            "/api/emoji",
            &[("content-type", &ct), ("x-api-key", &key_b)],
            form,
        )
        .await;
    assert_eq!(emoji.status, 201, "{emoji:?}");
    let eid = emoji.body["id"].as_str().unwrap().to_string();
    let (eve, _) = rest.login(&key_a, "eve").await;
    let (bob, _) = rest.login(&key_b, "bob").await;
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/api/channels/{cid}"), None),
        (
            "PATCH",
            format!("/api/channels/{cid}"),
            Some(json!({"name": "pwned"})),
        ),
        ("DELETE", format!("/api/channels/{cid}"), None),
        ("GET", format!("/api/channels/{cid}/members"), None),
        (
            "POST",
            format!("/api/channels/{cid}/members"),
            Some(json!({"userId": "eve", "user_id": "eve"})),
        ),
        (
            "PATCH",
            format!("/api/channels/{cid}/members/carol"),
            Some(json!({"role": "owner"})),
        ),
        ("DELETE", format!("/api/channels/{cid}/members/carol"), None),
        (
            "POST",
            format!("/api/channels/{cid}/typing"),
            Some(json!({"typing": true, "user_id": "eve"})),
        ),
        (
            "POST",
            format!("/api/channels/{cid}/read"),
            Some(json!({"user_id": "eve"})),
        ),
        (
            "PATCH",
            format!("/api/channels/{cid}/star"),
            Some(json!({"starred": true, "user_id": "eve"})),
        ),
        (
            "PATCH",
            format!("/api/channels/{cid}/mute"),
            Some(json!({"muted": true, "user_id": "eve"})),
        ),
        ("GET", format!("/api/channels/{cid}/messages"), None),
        (
            "POST",
            format!("/api/channels/{cid}/messages"),
            Some(json!({"text": "x", "user_id": "eve"})),
        ),
        ("GET", format!("/api/channels/{cid}/messages/{mid}"), None),
        (
            "PATCH",
            format!("/api/channels/{cid}/messages/{mid}"),
            Some(json!({"text": "x"})),
        ),
        (
            "DELETE",
            format!("/api/channels/{cid}/messages/{mid}"),
            None,
        ),
        (
            "DELETE",
            format!("/api/channels/{cid}/messages/{mid}/purge"),
            None,
        ),
        (
            "GET",
            format!("/api/channels/{cid}/messages/{mid}/thread"),
            None,
        ),
        (
            "POST",
            format!("/api/channels/{cid}/messages/{mid}/thread"),
            Some(json!({"text": "x", "user_id": "eve"})),
        ),
        (
            "POST",
            "/api/messages".to_string(),
            Some(json!({"channel_id": cid, "user_id": "eve", "text": "x"})),
        ),
        (
            "POST",
            format!("/api/channels/{cid}/messages/{mid}/reactions"),
            Some(json!({"emoji": "x", "user_id": "eve"})),
        ),
        (
            "GET",
            format!("/api/channels/{cid}/messages/{mid}/reactions"),
            None,
        ),
        (
            "DELETE",
            format!("/api/channels/{cid}/messages/{mid}/reactions/x?user_id=eve"),
            None,
        ),
        (
            "POST",
            format!("/api/channels/{cid}/messages/{mid}/pin"),
            Some(json!({"user_id": "eve"})),
        ),
        (
            "DELETE",
            format!("/api/channels/{cid}/messages/{mid}/pin?user_id=eve"),
            None,
        ),
        ("GET", format!("/api/channels/{cid}/messages/pins"), None),
        (
            "POST",
            format!("/api/channels/{cid}/messages/{mid}/save"),
            Some(json!({"user_id": "eve"})),
        ),
        (
            "POST",
            format!("/api/channels/{cid}/messages/{mid}/polls"),
            Some(
                json!({"user_id": "eve", "question": "q", "options": [{"id": "a", "text": "a"}, {"id": "b", "text": "b"}]}),
            ),
        ),
        (
            "POST",
            format!("/api/polls/{pid}/vote"),
            Some(json!({"user_id": "eve", "optionIds": ["y"]})),
        ),
        ("DELETE", format!("/api/polls/{pid}/vote?user_id=eve"), None),
        ("GET", format!("/api/polls/{pid}/results"), None),
        ("GET", format!("/api/polls/{pid}"), None),
        (
            "POST",
            format!("/api/channels/{cid}/receipts"),
            Some(json!({"messageId": mid, "user_id": "eve"})),
        ),
        (
            "GET",
            format!("/api/channels/{cid}/receipts/messages/{mid}/receipts"),
            None,
        ),
        (
            "POST",
            format!("/api/channels/{cid}/receipts/query"),
            Some(json!({"messageIds": [mid]})),
        ),
        (
            "GET",
            format!("/api/channels/{cid}/receipts/read-status"),
            None,
        ),
        (
            "GET",
            format!("/api/mentions/search?q=b&channelId={cid}&user_id=eve"),
            None,
        ),
        ("GET", format!("/api/channels/{cid}/presence"), None),
        ("GET", format!("/api/channels/{cid}/presence/live"), None),
        (
            "POST",
            "/api/users/bob/block".to_string(),
            Some(json!({"user_id": "eve"})),
        ),
        (
            "DELETE",
            "/api/users/bob/block?user_id=eve".to_string(),
            None,
        ),
        ("GET", "/api/users/bob/blocks".to_string(), None),
        (
            "POST",
            "/api/users/bob/blocks".to_string(),
            Some(json!({"blocked_user_id": "carol"})),
        ),
        ("DELETE", "/api/users/bob/blocks/carol".to_string(), None),
        (
            "POST",
            format!("/api/messages/{mid}/report"),
            Some(json!({"user_id": "eve", "reason": "spam"})),
        ),
        (
            "POST",
            format!("/api/moderation/{mid}/report"),
            Some(json!({"user_id": "eve", "reason": "spam"})),
        ),
        ("GET", format!("/api/enrollment/rules/{rule_id}"), None),
        (
            "PATCH",
            format!("/api/enrollment/rules/{rule_id}"),
            Some(json!({"enabled": false})),
        ),
        (
            "DELETE",
            format!("/api/auto-enrollment/rules/{rule_id}"),
            None,
        ),
        (
            "POST",
            "/api/enrollment/execute".to_string(),
            Some(json!({"userId": "bob"})),
        ),
        (
            "GET",
            format!("/api/workspaces/{wid}/auto-enrollment/rules"),
            None,
        ),
        (
            "POST",
            "/api/auto-enrollment/rules".to_string(),
            Some(json!({"rule_type": "all_users", "actions": {"join_channels": [cid]}})),
        ),
        (
            "POST",
            "/api/webpush/unsubscribe".to_string(),
            Some(json!({"endpoint": "https://push.example/x", "user_id": "bob"})),
        ),
        ("DELETE", "/api/devices/t?user_id=bob".to_string(), None),
        (
            "POST",
            format!("/api/channels/{cid}/legal-hold"),
            Some(json!({"reason": "x"})),
        ),
        ("DELETE", format!("/api/channels/{cid}/legal-hold"), None),
        (
            "POST",
            "/api/users/bob/legal-hold".to_string(),
            Some(json!({"reason": "x"})),
        ),
        ("POST", format!("/api/channels/{cid}/export"), None),
        ("POST", "/api/users/bob/export".to_string(), None),
        ("GET", format!("/api/exports/{export_id}"), None),
        (
            "POST",
            "/api/users/x/supervise".to_string(),
            Some(json!({"supervisedUserId": "bob", "user_id": "eve"})),
        ),
        (
            "PATCH",
            "/api/users/bob/supervise".to_string(),
            Some(json!({"monitoringEnabled": true, "user_id": "eve"})),
        ),
        (
            "GET",
            "/api/users/bob/activity?user_id=eve".to_string(),
            None,
        ),
        ("GET", format!("/api/webhooks/{hid}"), None),
        (
            "PATCH",
            format!("/api/webhooks/{hid}"),
            Some(json!({"url": "https://evil.example/"})),
        ),
        ("DELETE", format!("/api/webhooks/{hid}"), None),
        (
            "POST",
            format!("/api/webhooks/{hid}/regenerate-secret"),
            None,
        ),
        ("POST", format!("/api/webhooks/{hid}/test"), None),
        ("GET", format!("/api/webhooks/{hid}/deliveries"), None),
        ("GET", format!("/api/moderation/reports/{rid}"), None),
        (
            "PATCH",
            format!("/api/moderation/reports/{rid}"),
            Some(json!({"status": "dismissed"})),
        ),
        (
            "PUT",
            format!("/api/moderation/reports/{rid}/review"),
            Some(json!({"action": "ban_user"})),
        ),
        (
            "POST",
            "/api/moderation/bans".to_string(),
            Some(json!({"user_id": "bob"})),
        ),
        ("DELETE", "/api/moderation/bans/bob".to_string(), None),
        (
            "POST",
            format!("/api/channels/{cid}/bans"),
            Some(json!({"user_id": "carol"})),
        ),
        ("GET", format!("/api/channels/{cid}/bans"), None),
        ("DELETE", format!("/api/channels/{cid}/bans/carol"), None),
        (
            "POST",
            format!("/api/channels/{cid}/mutes"),
            Some(json!({"user_id": "carol"})),
        ),
        ("GET", format!("/api/channels/{cid}/mutes"), None),
        ("DELETE", format!("/api/channels/{cid}/mutes/carol"), None),
        ("GET", format!("/api/messages/{mid}"), None),
        (
            "PATCH",
            format!("/api/messages/{mid}"),
            Some(json!({"text": "x", "user_id": "eve"})),
        ),
        ("DELETE", format!("/api/messages/{mid}?user_id=eve"), None),
        (
            "POST",
            format!("/api/messages/{mid}/reactions"),
            Some(json!({"emoji": "x", "user_id": "eve"})),
        ),
        ("GET", format!("/api/messages/{mid}/reactions"), None),
        (
            "POST",
            format!("/api/messages/{mid}/polls"),
            Some(
                json!({"user_id": "eve", "question": "q", "options": [{"id": "a", "text": "a"}, {"id": "b", "text": "b"}]}),
            ),
        ),
        (
            "POST",
            format!("/api/messages/{mid}/reactions?channel_id={cid}"),
            Some(json!({"emoji": "x", "user_id": "eve"})),
        ),
        ("GET", format!("/api/emoji?workspaceId={wid}"), None),
        (
            "GET",
            format!("/api/emoji/search/query?q=b&workspaceId={wid}"),
            None,
        ),
        ("GET", format!("/api/emoji/{eid}"), None),
        ("DELETE", format!("/api/emoji/{eid}?user_id=eve"), None),
        (
            "POST",
            format!("/api/emoji/{eid}/use"),
            Some(json!({"messageId": "m", "user_id": "eve"})),
        ),
        ("GET", format!("/api/emoji/{eid}/analytics"), None),
        ("GET", format!("/api/templates/{tid}"), None),
        (
            "PATCH",
            format!("/api/templates/{tid}"),
            Some(json!({"name": "pwned", "user_id": "eve"})),
        ),
        ("DELETE", format!("/api/templates/{tid}?user_id=eve"), None),
        (
            "POST",
            "/api/templates/from-template".to_string(),
            Some(json!({"templateId": tid, "name": "stolen", "user_id": "eve"})),
        ),
        ("GET", format!("/api/workspaces/{wid}"), None),
        (
            "PATCH",
            format!("/api/workspaces/{wid}"),
            Some(json!({"name": "pwned", "user_id": "eve"})),
        ),
        (
            "PUT",
            format!("/api/workspaces/{wid}"),
            Some(json!({"name": "pwned", "user_id": "eve"})),
        ),
        ("DELETE", format!("/api/workspaces/{wid}?user_id=eve"), None),
        (
            "POST",
            format!("/api/workspaces/{wid}/members"),
            Some(json!({"userIds": ["eve"], "user_id": "eve"})),
        ),
        (
            "PATCH",
            format!("/api/workspaces/{wid}/members/bob"),
            Some(json!({"role": "member", "user_id": "eve"})),
        ),
        (
            "DELETE",
            format!("/api/workspaces/{wid}/members/bob?user_id=eve"),
            None,
        ),
        ("GET", format!("/api/workspaces/{wid}/channels"), None),
        ("GET", format!("/api/workspaces/{wid}/stats"), None),
        (
            "POST",
            format!("/api/workspaces/{wid}/invite"),
            Some(json!({"emails": ["eve@example.com"], "user_id": "eve"})),
        ),
        (
            "GET",
            format!("/api/workspaces/invites/{token}?user_id=eve"),
            None,
        ),
        (
            "POST",
            format!("/api/workspaces/invites/{token}?user_id=eve"),
            None,
        ),
        (
            "GET",
            format!("/api/channels?workspaceId={wid}&user_id=eve"),
            None,
        ),
        ("GET", "/api/users/bob".to_string(), None),
        ("DELETE", "/api/users/bob".to_string(), None),
        ("POST", "/api/users/bob/revoke-tokens".to_string(), None),
        (
            "POST",
            "/api/realtime/subscription-token".to_string(),
            Some(json!({"channel": format!("chat:{app_b}:{cid}"), "user_id": "eve"})),
        ),
    ];
    for (method, path, body) in &routes {
        for cred in [
            Cred::Key(&key_a),
            Cred::Bearer(&eve),
            Cred::Both(&bob, &key_a),
        ] {
            let label = match cred {
                Cred::Key(_) => "A's key",
                Cred::Bearer(_) => "A's user",
                _ => "B's user with A's key",
            };
            let r = rest.call(method, path, cred, body.clone()).await;
            assert!(
                matches!(r.status, 400 | 403 | 404),
                "{label}: {method} {path} answered {} {:?}",
                r.status,
                r.body
            );
        }
    }
    // B's data is intact.
    let (carol, _) = rest.login(&key_b, "carol").await;
    let msgs = rest
        .call(
            "GET",
            &format!("/api/channels/{cid}/messages"),
            Cred::Bearer(&carol),
            None,
        )
        .await;
    assert_eq!(
        msgs.body["messages"].as_array().unwrap().len(),
        1,
        "{msgs:?}"
    );
    assert_eq!(msgs.body["messages"][0]["text"], "b only");
    assert_eq!(msgs.body["messages"][0]["reactionCount"], 0);
    assert_eq!(msgs.body["messages"][0]["pinned"], false);
    assert_eq!(msgs.body["messages"][0]["poll"]["totalVotes"], 0);
    assert_eq!(msgs.body["messages"][0]["poll"]["question"], "b?");
    let bws = rest
        .call(
            "GET",
            &format!("/api/workspaces/{wid}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(bws.body["name"], "b-space", "{bws:?}");
    assert_eq!(bws.body["memberCount"], 1);
    let chan = rest
        .call(
            "GET",
            &format!("/api/channels/{cid}"),
            Cred::Bearer(&carol),
            None,
        )
        .await;
    assert_eq!(chan.body["name"], "secret");
    assert_eq!(chan.body["memberCount"], 2);
    // An upsert with A's key makes A's own user, never touches B's.
    let before = node.chat.user(&app_b, "bob").unwrap().unwrap();
    assert_eq!(
        rest.call(
            "PUT",
            "/api/users/bob",
            Cred::Key(&key_a),
            Some(json!({"name": "pwned"}))
        )
        .await
        .status,
        200
    );
    assert_eq!(node.chat.user(&app_b, "bob").unwrap().unwrap(), before);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_documented_error() {
    let node = TestNode::start_chat(
        GatewayConfig {
            body_limit: 4096,
            ..GatewayConfig::default()
        },
        ChatConfig {
            send_rate_per_minute: 60,
            send_burst: 3,
            ..test_chat_config()
        },
    )
    .await;
    let rest = Rest::new(&node);
    let (app, key) = node.app("bad").await;
    user(&rest, &key, "u").await;
    let (tok, _) = rest.login(&key, "u").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&tok),
            Some(json!({"type": "group", "name": "x"})),
        )
        .await;
    let path = format!("/api/channels/{}/messages", ch.body["id"].as_str().unwrap());
    let auth = format!("Bearer {tok}");
    let json_ct = ("content-type", "application/json");
    assert_error(
        &rest
            .raw(
                "POST",
                &path,
                &[("authorization", &auth), json_ct],
                b"{\"text\": ".to_vec(),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .raw(
                "POST",
                &path,
                &[("authorization", &auth), json_ct],
                b"{\"text\": \"\xff\xfe\"}".to_vec(),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .raw(
                "POST",
                &path,
                &[("authorization", &auth), json_ct],
                b"[1,2]".to_vec(),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .raw(
                "POST",
                &path,
                &[("authorization", &auth), json_ct],
                vec![b' '; 5000],
            )
            .await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert_error(
        &rest
            .call("POST", &path, Cred::Bearer(&tok), Some(json!({"text": 5})))
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .call("POST", &path, Cred::Bearer(&tok), Some(json!({"text": ""})))
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .call(
                "POST",
                &path,
                Cred::Bearer(&tok),
                Some(json!({"text": "x", "clientMsgId": "c".repeat(65)})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("{path}?limit=lots"),
                Cred::Bearer(&tok),
                None,
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .call("GET", "/api/nothing/here", Cred::Bearer(&tok), None)
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &rest.call("GET", &path, Cred::None, None).await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &rest
            .call("GET", &path, Cred::Key("chatsdk_forged"), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    let forged = format!("{}x", &tok[..tok.len() - 1]);
    assert_error(
        &rest.call("GET", &path, Cred::Bearer(&forged), None).await,
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &rest
            .call("GET", &path, Cred::Bearer("not.a.jwt"), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    let now = chatsdk_actors::time::now_ms() / 1000;
    let expired = node.state.tokens.sign_access(&Claims {
        sub: format!("{app}:u"),
        user_id: "u".into(),
        app_id: app.clone(),
        iat: now - 3600,
        iat_ms: (now - 3600) * 1000,
        exp: now - 600,
        ..Claims::default()
    });
    assert_error(
        &rest.call("GET", &path, Cred::Bearer(&expired), None).await,
        401,
        "TOKEN_EXPIRED",
    );
    // A restricted token only does what its scopes say.
    let read_only = node.state.tokens.sign_access(&Claims {
        sub: format!("{app}:u"),
        user_id: "u".into(),
        app_id: app.clone(),
        iat: now,
        iat_ms: now * 1000,
        exp: now + 600,
        scopes: Some(vec!["chat:read".into()]),
        ..Claims::default()
    });
    assert_eq!(
        rest.call("GET", &path, Cred::Bearer(&read_only), None)
            .await
            .status,
        200
    );
    assert_error(
        &rest
            .call(
                "POST",
                &path,
                Cred::Bearer(&read_only),
                Some(json!({"text": "x"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    // Rate limit: a burst of 3, then 429 with Retry-After (a fresh user: the refused sends
    // above counted against the first one).
    let (sender, _) = rest.login(&key, "sender").await;
    let open = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&sender),
            Some(json!({"type": "group", "name": "y"})),
        )
        .await;
    let path = format!(
        "/api/channels/{}/messages",
        open.body["id"].as_str().unwrap()
    );
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(
            rest.call(
                "POST",
                &path,
                Cred::Bearer(&sender),
                Some(json!({"text": format!("m{i}")})),
            )
            .await,
        );
    }
    assert!(
        statuses[..3].iter().all(|r| r.status == 201),
        "{statuses:?}"
    );
    assert_error(&statuses[3], 429, "RATE_LIMITED");
    assert!(statuses[3].headers.contains_key("retry-after"));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refresh_validate_revoke_and_keys() {
    let (node, rest) = node().await;
    let (app, key) = node.app("tok").await;
    let r = rest
        .call(
            "POST",
            "/tokens",
            Cred::Key(&key),
            Some(json!({"userId": "t1", "name": "Tee"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let access = r.body["token"].as_str().unwrap().to_string();
    let refresh = r.body["refreshToken"].as_str().unwrap().to_string();
    assert_eq!(r.body["expiresIn"], 900);
    let v = rest
        .call("GET", "/tokens/validate", Cred::Bearer(&access), None)
        .await;
    assert_eq!(v.body["payload"]["userId"], "t1");
    assert_eq!(v.body["payload"]["appId"], app.as_str());
    assert_error(
        &rest
            .call("GET", "/tokens/validate", Cred::Bearer(&refresh), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    let rr = rest
        .call("POST", "/api/auth/refresh", Cred::Bearer(&refresh), None)
        .await;
    assert_eq!(rr.status, 200, "{rr:?}");
    let fresh = rr.body["token"].as_str().unwrap().to_string();
    assert!(rr.body["_internal"]["wsToken"].is_string());
    assert_eq!(
        rest.call("GET", "/api/users/me", Cred::Bearer(&fresh), None)
            .await
            .body["name"],
        "Tee"
    );
    // A refresh token works once; replaying it revokes the whole login session.
    let replay = rest
        .call("POST", "/api/auth/refresh", Cred::Bearer(&refresh), None)
        .await;
    assert_error(&replay, 401, "UNAUTHORIZED");
    assert_error(
        &rest
            .call("GET", "/api/users/me", Cred::Bearer(&fresh), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    let next_refresh = rr.body["refreshToken"].as_str().unwrap().to_string();
    assert_error(
        &rest
            .call("POST", "/tokens/refresh", Cred::Bearer(&next_refresh), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    let (fresh, _) = rest.login(&key, "t1").await;
    let c = rest
        .call(
            "POST",
            "/api/auth/connect",
            Cred::Key(&key),
            Some(json!({"userId": "t2", "displayName": "Two"})),
        )
        .await;
    assert_eq!(c.body["user"]["displayName"], "Two", "{c:?}");
    assert!(c.body["_internal"]["wsToken"].is_string());

    // Revocation bites immediately; deletion anonymises.
    assert_eq!(
        rest.call("POST", "/api/users/t1/revoke-tokens", Cred::Key(&key), None)
            .await
            .status,
        200
    );
    assert_error(
        &rest
            .call("GET", "/api/users/me", Cred::Bearer(&fresh), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    let (again, _) = rest.login(&key, "t1").await;
    assert_eq!(
        rest.call("GET", "/api/users/me", Cred::Bearer(&again), None)
            .await
            .status,
        200
    );
    let del = rest
        .call("DELETE", "/api/users/t1", Cred::Key(&key), None)
        .await;
    assert_eq!(del.body["anonymized_user_id"], "t1", "{del:?}");
    assert_error(
        &rest
            .call("GET", "/api/users/me", Cred::Bearer(&again), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    assert!(node
        .chat
        .user_record(&app, "t1")
        .unwrap()
        .unwrap()
        .name
        .starts_with("Deleted user "));

    // Server keys: admin key, same-app key, or nothing outside dev mode.
    let admin = "admin-key-for-tests-0123";
    let created = rest
        .call(
            "POST",
            "/admin/apps",
            Cred::Bearer(admin),
            Some(json!({"name": "made by admin"})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let new_key = created.body["apiKey"].as_str().unwrap();
    assert_eq!(
        rest.call(
            "POST",
            "/api/users",
            Cred::Key(new_key),
            Some(json!({"user_id": "z"}))
        )
        .await
        .status,
        201
    );
    let listed = rest
        .call("GET", "/admin/apps", Cred::Bearer(admin), None)
        .await;
    assert_eq!(listed.body["total"], 2, "{listed:?}");
    assert_error(
        &rest
            .call("GET", "/admin/apps", Cred::Bearer("wrong"), None)
            .await,
        401,
        "UNAUTHORIZED",
    );
    // The operator reads an app's users and channels with the admin key alone.
    let new_app = created.body["id"].as_str().unwrap();
    let (token_z, _) = rest.login(new_key, "z").await;
    let room = rest.group(&token_z, "admin-visible room", &["z"]).await;
    let users = rest
        .call(
            "GET",
            &format!("/admin/apps/{new_app}/users?q=Z"),
            Cred::Bearer(admin),
            None,
        )
        .await;
    assert_eq!(users.status, 200, "{users:?}");
    assert_eq!(users.body["users"][0]["id"], "z", "{users:?}");
    assert!(users.body["users"][0]["createdAt"].is_string(), "{users:?}");
    let channels = rest
        .call(
            "GET",
            &format!("/admin/apps/{new_app}/channels"),
            Cred::Bearer(admin),
            None,
        )
        .await;
    assert_eq!(channels.status, 200, "{channels:?}");
    assert_eq!(channels.body["total"], 1, "{channels:?}");
    assert_eq!(channels.body["channels"][0]["id"], room.as_str());
    assert_eq!(channels.body["channels"][0]["name"], "admin-visible room");
    assert_eq!(channels.body["channels"][0]["memberCount"], 1);
    assert_error(
        &rest
            .call(
                "GET",
                "/admin/apps/nope/channels",
                Cred::Bearer(admin),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/admin/apps/{new_app}/users"),
                Cred::Key(new_key),
                None,
            )
            .await,
        401,
        "UNAUTHORIZED",
    );
    let k = rest
        .call(
            "POST",
            "/api/auth/api-keys",
            Cred::Key(&key),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(k.status, 201, "{k:?}");
    assert_eq!(k.body["app_id"], app.as_str());
    assert_eq!(
        rest.call(
            "GET",
            "/api/users/t2",
            Cred::Key(k.body["api_key"].as_str().unwrap()),
            None
        )
        .await
        .status,
        200
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/api/auth/api-keys",
                Cred::None,
                Some(json!({"name": "x", "app_id": app})),
            )
            .await,
        401,
        "UNAUTHORIZED",
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_creates_keys_without_credentials_and_health_reports_drain() {
    let node = TestNode::start(GatewayConfig {
        dev: true,
        ..GatewayConfig::default()
    })
    .await;
    let rest = Rest::new(&node);
    let k = rest
        .call(
            "POST",
            "/api/auth/api-keys",
            Cred::None,
            Some(json!({"name": "dev", "app_id": "my-app"})),
        )
        .await;
    assert_eq!(k.status, 201, "{k:?}");
    assert_eq!(
        rest.call(
            "POST",
            "/api/users",
            Cred::Key(k.body["api_key"].as_str().unwrap()),
            Some(json!({"user_id": "d"}))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        rest.call("GET", "/health", Cred::None, None).await.body["status"],
        "ok"
    );
    assert_eq!(
        rest.call("GET", "/live", Cred::None, None).await.body["alive"],
        true
    );
    assert_eq!(
        rest.call("GET", "/ready", Cred::None, None).await.status,
        200
    );
    node.state.draining.cancel();
    let ready = rest.call("GET", "/ready", Cred::None, None).await;
    assert_eq!(ready.status, 503, "{ready:?}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = TestNode::start(GatewayConfig {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..GatewayConfig::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(node.http).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    // The server closes the connection (possibly after a 408) instead of waiting forever.
    let read = tokio::time::timeout(support::WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert_eq!(read, Ok(true), "connection was not closed");
    node.stop().await;
}

/// Unread counts of several members come from one scan of the channel: each counts others'
/// top-level, undeleted messages after their own read position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_counts_skip_own_replies_and_deleted_messages() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("unread").await;
    for u in ["ann", "ben", "cat"] {
        user(&rest, &key, u).await;
    }
    let ch = rest
        .call("POST", "/api/channels", Cred::Key(&key), Some(json!({"user_id": "ann", "name": "u", "type": "group", "member_ids": ["ben", "cat"]})))
        .await;
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let (ann, _) = rest.login(&key, "ann").await;
    let (ben, _) = rest.login(&key, "ben").await;
    let (cat, _) = rest.login(&key, "cat").await;
    let path = format!("/api/channels/{cid}/messages");
    let send =
        |who: &str, text: &str| json!({"text": text, "clientMsgId": format!("{who}-{text}")});
    let mut ids = Vec::new();
    for (who, tok, text) in [
        ("ann", &ann, "a1"),
        ("ben", &ben, "b1"),
        ("ann", &ann, "a2"),
        ("ann", &ann, "a3"),
    ] {
        let r = rest
            .call("POST", &path, Cred::Bearer(tok), Some(send(who, text)))
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        ids.push(r.body["id"].as_str().unwrap().to_string());
    }
    // A thread reply does not count; a deleted message does not either.
    let reply = rest
        .call(
            "POST",
            &format!("{path}/{}/thread", ids[0]),
            Cred::Bearer(&ben),
            Some(json!({"text": "in thread"})),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let del = rest
        .call(
            "DELETE",
            &format!("{path}/{}", ids[3]),
            Cred::Bearer(&ann),
            None,
        )
        .await;
    assert!(del.status < 300, "{del:?}");
    let count = |tok: String| {
        let rest = &rest;
        async move {
            rest.call(
                "GET",
                "/api/channels/unread-count",
                Cred::Bearer(&tok),
                None,
            )
            .await
            .body["count"]
                .clone()
        }
    };
    // ann: ben's b1. ben: ann's a1, a2 (a3 deleted). cat: a1, b1, a2.
    assert_eq!(count(ann.clone()).await, 1);
    assert_eq!(count(ben.clone()).await, 2);
    assert_eq!(count(cat.clone()).await, 3);
    // Mentions: by id and by display name (case-insensitive), never the sender, not an email.
    let m = rest
        .call(
            "POST",
            &path,
            Cred::Bearer(&ben),
            Some(json!({"text": "hey @ann, @[Cat] and @ben, mail x@y.z"})),
        )
        .await;
    assert_eq!(m.status, 201, "{m:?}");
    assert_eq!(m.body["mentions"], json!(["ann", "cat"]), "{m:?}");
    let plain = rest
        .call(
            "POST",
            &path,
            Cred::Bearer(&ben),
            Some(json!({"text": "no one here"})),
        )
        .await;
    assert_eq!(plain.body["mentions"], json!([]), "{plain:?}");
    // cat now has two more unread (ben's messages); the counts converge after the burst.
    assert_eq!(count(cat.clone()).await, 5);
    // ben reads up to now: nothing left for him; cat is unchanged.
    let read = rest
        .call(
            "POST",
            &format!("/api/channels/{cid}/read"),
            Cred::Bearer(&ben),
            None,
        )
        .await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(count(ben).await, 0);
    assert_eq!(count(cat).await, 5);
    node.stop().await;
}

/// Star and mute flags are the caller's own (kept with the user's stream in a data shard):
/// they show on the channel for that member only, in the list and on the channel itself, and
/// can be turned off again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn star_and_mute_are_per_member() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("flags").await;
    user(&rest, &key, "alice").await;
    user(&rest, &key, "bob").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "name": "g", "type": "group", "member_ids": ["bob"]})),
        )
        .await;
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    // `star` sets `starred`, `mute` sets `muted`; answers the status.
    let flag = |token: &str, route: &str, on: bool| {
        let field = if route == "star" { "starred" } else { "muted" };
        let (rest, path, token) = (
            &rest,
            format!("/api/channels/{cid}/{route}"),
            token.to_string(),
        );
        async move {
            rest.call(
                "PATCH",
                &path,
                Cred::Bearer(&token),
                Some(json!({ field: on })),
            )
            .await
            .status
        }
    };
    // `(starred, muted)` as the channel shows them to `token`'s user.
    let shown = |token: &str| {
        let (rest, path, token) = (&rest, format!("/api/channels/{cid}"), token.to_string());
        async move {
            let v = rest.call("GET", &path, Cred::Bearer(&token), None).await;
            (v.body["starred"].clone(), v.body["muted"].clone())
        }
    };
    assert_eq!(flag(&alice, "star", true).await, 200);
    assert_eq!(flag(&alice, "mute", true).await, 200);
    assert_eq!(shown(&alice).await, (json!(true), json!(true)));
    assert_eq!(
        shown(&bob).await,
        (json!(false), json!(false)),
        "flags are the member's own"
    );
    assert_eq!(flag(&alice, "star", false).await, 200);
    let list = rest
        .call("GET", "/api/channels", Cred::Bearer(&alice), None)
        .await;
    let listed = list.body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == cid.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        (listed["starred"].clone(), listed["muted"].clone()),
        (json!(false), json!(true)),
        "{listed:?}"
    );
    // Leaving forgets the flags: a member who comes back starts clean.
    assert_eq!(flag(&bob, "star", true).await, 200);
    let left = rest
        .call(
            "DELETE",
            &format!("/api/channels/{cid}/members/me"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(left.status, 200, "{left:?}");
    let back = rest
        .call(
            "POST",
            &format!("/api/channels/{cid}/members"),
            Cred::Key(&key),
            Some(json!({"user_id": "bob"})),
        )
        .await;
    assert!(back.status == 200 || back.status == 201, "{back:?}");
    assert_eq!(shown(&bob).await.0, json!(false));
    // Not a member: no flags to set.
    user(&rest, &key, "carol").await;
    let (carol, _) = rest.login(&key, "carol").await;
    assert_eq!(flag(&carol, "star", true).await, 403);
    node.stop().await;
}

/// Bulk user writes take the Server API's snake_case items as well as camelCase ones, report a
/// bad item on its own, and write the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_ensure_takes_both_spellings_per_item() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("bulk").await;
    let r = rest
        .call(
            "POST",
            "/api/users/bulk-ensure",
            Cred::Key(&key),
            Some(json!({"users": [
                {"user_id": "snake", "name": "Snake"},
                {"userId": "camel", "name": "Camel"},
                {"user_id": "bad", "image": "ftp://x"},
                7
            ]})),
        )
        .await;
    assert_eq!(r.status, 207, "{r:?}");
    assert_eq!(r.body["created"], 2, "{r:?}");
    assert_eq!(r.body["errors"].as_array().map(Vec::len), Some(2), "{r:?}");
    for id in ["snake", "camel"] {
        let u = rest
            .call("GET", &format!("/api/users/{id}"), Cred::Key(&key), None)
            .await;
        assert_eq!(u.status, 200, "{id}: {u:?}");
    }
    let sync = rest
        .call(
            "POST",
            "/api/users/sync",
            Cred::Key(&key),
            Some(json!({"users": [{"id": "snake", "name": "Snake 2"}]})),
        )
        .await;
    assert_eq!(sync.status, 200, "{sync:?}");
    assert_eq!(sync.body["updated"], 1, "{sync:?}");
    node.stop().await;
}

/// Keys that hold what a user wrote: their spelling is the user's, in both dialects.
const USER_OBJECTS: [&str; 4] = ["custom", "config", "settings", "attachments"];

/// Every key of `v` outside user objects, with its path.
fn api_keys(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                out.push(format!("{path}.{k}"));
                if !USER_OBJECTS.contains(&k.as_str()) {
                    api_keys(child, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| api_keys(i, path, out)),
        _ => {}
    }
}

/// Each response is spelled in its caller's dialect all the way down (nested messages, authors,
/// members), and user objects keep the keys their writer chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_a_response_is_in_the_callers_dialect() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("one").await;
    let made = rest
        .call(
            "POST",
            "/api/users",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "name": "Alice", "custom": {"teamId": 7}})),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    user(&rest, &key, "bob").await;
    let ch = rest
        .call("POST", "/api/channels", Cred::Key(&key), Some(json!({"user_id": "alice", "name": "g", "type": "group", "member_ids": ["bob"], "config": {"slowMode": 1}})))
        .await;
    assert_eq!(ch.status, 201, "{ch:?}");
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let parent = rest
        .call("POST", "/api/messages", Cred::Key(&key), Some(json!({"channel_id": cid, "user_id": "alice", "text": "p", "client_msg_id": "k-1", "attachments": [{"fileUrl": "https://x/y"}]})))
        .await;
    assert_eq!(parent.status, 201, "{parent:?}");
    let pid = parent.body["id"].as_str().unwrap().to_string();
    let reply = rest
        .call(
            "POST",
            &format!("/api/channels/{cid}/messages/{pid}/thread"),
            Cred::Key(&key),
            Some(json!({"user_id": "bob", "text": "r"})),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let (alice, _) = rest.login(&key, "alice").await;
    let base = format!("/api/channels/{cid}/messages/{pid}");
    for (path, body) in [
        (
            format!("{base}/reactions"),
            json!({"user_id": "bob", "emoji": "+1"}),
        ),
        (format!("{base}/pin"), json!({"user_id": "alice"})),
        (format!("{base}/save"), json!({"user_id": "alice"})),
        (
            format!("{base}/polls"),
            json!({"user_id": "alice", "question": "q", "options": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}]}),
        ),
        (
            "/api/workspaces".to_string(),
            json!({"user_id": "alice", "name": "w"}),
        ),
    ] {
        let r = rest.call("POST", &path, Cred::Key(&key), Some(body)).await;
        assert!(r.status == 200 || r.status == 201, "{path}: {r:?}");
    }
    let poll = rest
        .call(
            "GET",
            &format!("{base}?user_id=alice"),
            Cred::Key(&key),
            None,
        )
        .await;
    let poll_id = poll.body["poll_id"].as_str().unwrap().to_string();
    let vote = rest
        .call(
            "POST",
            &format!("/api/polls/{poll_id}/vote"),
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "option_ids": ["a"]})),
        )
        .await;
    assert_eq!(vote.status, 201, "{vote:?}");
    let ws = rest
        .call(
            "GET",
            "/api/workspaces?user_id=alice",
            Cred::Key(&key),
            None,
        )
        .await;
    let wid = ws.body["workspaces"][0]["id"].as_str().unwrap().to_string();
    let gets = [
        format!("{base}/reactions"),
        format!("/api/channels/{cid}/messages/pins"),
        "/api/channels/x/messages/me/saved".to_string(),
        format!("/api/polls/{poll_id}/results"),
        "/api/workspaces".to_string(),
        format!("/api/workspaces/{wid}"),
        format!("/api/workspaces/{wid}/stats"),
        format!("/api/channels/{cid}"),
        format!("/api/channels/{cid}/members"),
        format!("/api/channels/{cid}/messages"),
        format!("/api/channels/{cid}/messages/{pid}"),
        format!("/api/channels/{cid}/messages/{pid}/thread"),
        "/api/channels".to_string(),
        "/api/users".to_string(),
        "/api/users/alice".to_string(),
    ];
    for path in &gets {
        let sep = if path.contains('?') { '&' } else { '?' };
        let snake = rest
            .call(
                "GET",
                &format!("{path}{sep}user_id=alice"),
                Cred::Key(&key),
                None,
            )
            .await;
        let camel = rest.call("GET", path, Cred::Bearer(&alice), None).await;
        assert_eq!(snake.status, 200, "{path}: {snake:?}");
        assert_eq!(camel.status, 200, "{path}: {camel:?}");
        let (mut s, mut c) = (Vec::new(), Vec::new());
        api_keys(&snake.body, "", &mut s);
        api_keys(&camel.body, "", &mut c);
        assert!(s.len() >= 3, "{path}: {s:?}");
        for k in &s {
            let last = k.rsplit('.').next().unwrap_or_default();
            assert!(
                !last.chars().any(|c| c.is_ascii_uppercase()),
                "{path}: snake key {k}"
            );
        }
        for k in &c {
            let last = k.rsplit('.').next().unwrap_or_default();
            assert!(!last.contains('_'), "{path}: camel key {k}");
        }
    }
    // User objects keep their keys in both dialects.
    let snake = rest
        .call(
            "GET",
            &format!("/api/channels/{cid}/messages/{pid}?user_id=alice"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(
        snake.body["attachments"][0]["fileUrl"], "https://x/y",
        "{snake:?}"
    );
    assert_eq!(snake.body["user"]["custom"]["teamId"], 7, "{snake:?}");
    assert!(snake.body["user"]["created_at"].is_string(), "{snake:?}");
    let camel = rest
        .call(
            "GET",
            &format!("/api/channels/{cid}"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(camel.body["config"]["slowMode"], 1, "{camel:?}");
    assert_eq!(camel.body["memberCount"], 2, "{camel:?}");
    // Errors carry the request id under the same name in both dialects.
    let missing = rest
        .call("GET", "/api/channels/nope", Cred::Key(&key), None)
        .await;
    assert!(
        missing.body["error"]["requestId"].is_string(),
        "{missing:?}"
    );
}

/// Reactions, pins, saved messages and polls, in both dialects: success and refusal paths,
/// role rules, limits, and how messages render them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_pins_saves_and_polls() {
    let node = TestNode::start_chat(
        GatewayConfig::default(),
        ChatConfig {
            max_reactions_per_user: 2,
            max_pins_per_channel: 1,
            ..test_chat_config()
        },
    )
    .await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("collab").await;
    for u in ["alice", "bob", "carol"] {
        user(&rest, &key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "g", "memberIds": ["bob"]})),
        )
        .await;
    assert_eq!(ch.status, 201, "{ch:?}");
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let send = |token: String, text: &'static str| {
        let (rest, cid) = (&rest, cid.clone());
        async move {
            let m = rest
                .call(
                    "POST",
                    &format!("/api/channels/{cid}/messages"),
                    Cred::Bearer(&token),
                    Some(json!({"text": text})),
                )
                .await;
            assert_eq!(m.status, 201, "{m:?}");
            m.body["id"].as_str().unwrap().to_string()
        }
    };
    let m1 = send(alice.clone(), "first").await;
    let m2 = send(alice.clone(), "second").await;
    let base = format!("/api/channels/{cid}/messages");

    // Reactions: idempotent adds, counts by emoji, own, the first reactors.
    for (token, emoji) in [(&bob, "👍"), (&bob, "👍"), (&alice, "👍"), (&alice, "🎉")] {
        let r = rest
            .call(
                "POST",
                &format!("{base}/{m1}/reactions"),
                Cred::Bearer(token),
                Some(json!({"emoji": emoji})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.body["success"], true);
    }
    let list = rest.call("GET", &base, Cred::Bearer(&bob), None).await;
    let first = &list.body["messages"][0];
    assert_eq!(first["id"], m1.as_str());
    assert_eq!(first["reactionCount"], 3, "{first}");
    assert_eq!(first["reactions"][0]["type"], "👍");
    assert_eq!(first["reactions"][0]["count"], 2);
    assert_eq!(first["reactions"][0]["own"], true);
    assert_eq!(first["reactions"][0]["users"][0]["id"], "bob");
    assert_eq!(first["reactions"][1]["type"], "🎉");
    assert_eq!(first["reactions"][1]["own"], false);
    assert_eq!(list.body["messages"][1]["reactionCount"], 0);
    // The Server API lists every reaction, snake_case.
    let all = rest
        .call(
            "GET",
            &format!("{base}/{m1}/reactions"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(
        all.body["reactions"].as_array().unwrap().len(),
        3,
        "{all:?}"
    );
    assert_eq!(all.body["reactions"][0]["user_id"], "bob");
    // A user's reactions per message are limited (2 here).
    let third = rest
        .call(
            "POST",
            &format!("{base}/{m1}/reactions"),
            Cred::Bearer(&alice),
            Some(json!({"emoji": "🔥"})),
        )
        .await;
    assert_error(&third, 400, "BAD_REQUEST");
    // Removing (the emoji URL-encoded), then the count follows.
    let del = rest
        .call(
            "DELETE",
            &format!("{base}/{m1}/reactions/%F0%9F%91%8D"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(del.status, 200, "{del:?}");
    let one = rest
        .call("GET", &format!("{base}/{m1}"), Cred::Bearer(&bob), None)
        .await;
    assert_eq!(one.body["reactions"][0]["count"], 1, "{one:?}");
    assert_eq!(one.body["reactions"][0]["own"], false);
    assert_eq!(one.body["reactions"][0]["users"][0]["id"], "alice");
    // Refusals: too long, not a member, no such message.
    let long = rest
        .call(
            "POST",
            &format!("{base}/{m1}/reactions"),
            Cred::Bearer(&bob),
            Some(json!({"emoji": "x".repeat(65)})),
        )
        .await;
    assert_error(&long, 400, "BAD_REQUEST");
    let outsider = rest
        .call(
            "POST",
            &format!("{base}/{m1}/reactions"),
            Cred::Bearer(&carol),
            Some(json!({"emoji": "👀"})),
        )
        .await;
    assert_error(&outsider, 403, "FORBIDDEN");
    let missing = rest
        .call(
            "POST",
            &format!("{base}/00000000-0000-7000-8000-000000000000/reactions"),
            Cred::Bearer(&bob),
            Some(json!({"emoji": "👀"})),
        )
        .await;
    assert_error(&missing, 404, "NOT_FOUND");

    // Pins: owners, admins and moderators in a group; at most one here.
    let by_member = rest
        .call(
            "POST",
            &format!("{base}/{m1}/pin"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_error(&by_member, 403, "FORBIDDEN");
    let pinned = rest
        .call(
            "POST",
            &format!("{base}/{m1}/pin"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(pinned.status, 200, "{pinned:?}");
    let over = rest
        .call(
            "POST",
            &format!("{base}/{m2}/pin"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_error(&over, 400, "BAD_REQUEST");
    let pins = rest
        .call("GET", &format!("{base}/pins"), Cred::Bearer(&bob), None)
        .await;
    assert_eq!(pins.status, 200, "{pins:?}");
    assert_eq!(pins.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(pins.body["messages"][0]["pinnedBy"], "alice");
    assert!(pins.body["messages"][0]["pinnedAt"].is_string());
    let unpin = rest
        .call(
            "DELETE",
            &format!("{base}/{m1}/pin"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(unpin.status, 200);
    let pins = rest
        .call("GET", &format!("{base}/pins"), Cred::Key(&key), None)
        .await;
    assert_eq!(pins.body["messages"], json!([]), "{pins:?}");

    // Saved messages are the saver's own.
    let saved = rest
        .call(
            "POST",
            &format!("{base}/{m2}/save"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(saved.status, 200, "{saved:?}");
    let not_readable = rest
        .call(
            "POST",
            &format!("{base}/{m2}/save"),
            Cred::Bearer(&carol),
            None,
        )
        .await;
    assert_error(&not_readable, 403, "FORBIDDEN");
    let mine = rest
        .call(
            "GET",
            "/api/channels/any/messages/me/saved",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(mine.body["messages"][0]["id"], m2.as_str(), "{mine:?}");
    assert_eq!(mine.body["messages"][0]["channel"]["id"], cid.as_str());
    assert!(mine.body["messages"][0]["savedAt"].is_string());
    let theirs = rest
        .call(
            "GET",
            "/api/channels/any/messages/me/saved",
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(theirs.body["messages"], json!([]));
    rest.call(
        "DELETE",
        &format!("{base}/{m2}/save"),
        Cred::Bearer(&bob),
        None,
    )
    .await;
    let mine = rest
        .call(
            "GET",
            "/api/channels/any/messages/me/saved?user_id=bob",
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(mine.body["messages"], json!([]), "{mine:?}");

    // Polls: on one's own message, 2 to 10 distinct options, a future end.
    let poll_path = format!("{base}/{m1}/polls");
    let opts = |n: usize| {
        (0..n)
            .map(|i| json!({"id": format!("o{i}"), "text": format!("option {i}")}))
            .collect::<Vec<_>>()
    };
    for (token, body, status) in [
        (&bob, json!({"question": "q", "options": opts(2)}), 404),
        (&alice, json!({"question": "q", "options": opts(1)}), 400),
        (&alice, json!({"question": "q", "options": opts(11)}), 400),
        (
            &alice,
            json!({"question": "q", "options": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}),
            400,
        ),
        (
            &alice,
            json!({"question": "q", "options": opts(2), "endsAt": "2001-01-01T00:00:00Z"}),
            400,
        ),
        (
            &alice,
            json!({"question": "q", "options": opts(2), "endsAt": "soon"}),
            400,
        ),
        (&alice, json!({"question": "", "options": opts(2)}), 400),
    ] {
        let r = rest
            .call("POST", &poll_path, Cred::Bearer(token), Some(body))
            .await;
        assert_eq!(r.status, status, "{r:?}");
    }
    let poll = rest
        .call("POST", &poll_path, Cred::Bearer(&alice), Some(json!({"question": "Lunch?", "options": [{"id": "a", "text": "Pizza"}, {"id": "b", "text": "Sushi"}]})))
        .await;
    assert_eq!(poll.status, 201, "{poll:?}");
    assert_eq!(poll.body["totalVotes"], 0);
    assert_eq!(poll.body["isMultiChoice"], false);
    let pid = poll.body["id"].as_str().unwrap().to_string();
    let vote_path = format!("/api/polls/{pid}/vote");
    let vote = |token: String, options: Value| {
        let (rest, path) = (&rest, vote_path.clone());
        async move {
            rest.call(
                "POST",
                &path,
                Cred::Bearer(&token),
                Some(json!({"optionIds": options})),
            )
            .await
        }
    };
    let v = vote(bob.clone(), json!(["a"])).await;
    assert_eq!(v.status, 201, "{v:?}");
    assert_eq!(v.body["totalVotes"], 1);
    assert_error(
        &vote(bob.clone(), json!(["a", "b"])).await,
        400,
        "BAD_REQUEST",
    );
    assert_error(&vote(bob.clone(), json!(["zz"])).await, 400, "BAD_REQUEST");
    assert_error(&vote(bob.clone(), json!([])).await, 400, "BAD_REQUEST");
    assert_error(&vote(carol.clone(), json!(["a"])).await, 403, "FORBIDDEN");
    assert_eq!(
        vote(alice.clone(), json!(["b"])).await.body["totalVotes"],
        2
    );
    // A changed vote replaces the earlier one.
    assert_eq!(vote(bob.clone(), json!(["b"])).await.body["totalVotes"], 2);
    let results = rest
        .call(
            "GET",
            &format!("/api/polls/{pid}/results"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(results.status, 200, "{results:?}");
    assert_eq!(results.body["options"][0]["voteCount"], 0);
    assert_eq!(results.body["options"][1]["voteCount"], 2);
    assert_eq!(
        results.body["options"][1]["voters"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(results.body["userVotes"], json!(["b"]));
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/polls/{pid}/results"),
                Cred::Bearer(&carol),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    // The Server API votes for a user it names, snake_case.
    let srv = rest
        .call(
            "DELETE",
            &format!("/api/polls/{pid}/vote?user_id=bob"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(srv.status, 200, "{srv:?}");
    assert_eq!(srv.body["total_votes"], 1);
    let msg = rest
        .call("GET", &format!("{base}/{m1}"), Cred::Bearer(&alice), None)
        .await;
    assert_eq!(msg.body["pollId"], pid.as_str(), "{msg:?}");
    assert_eq!(msg.body["poll"]["totalVotes"], 1);
    assert_eq!(msg.body["poll"]["userVotes"], json!(["b"]));
    assert_error(
        &rest
            .call(
                "POST",
                "/api/polls/nope/vote",
                Cred::Bearer(&bob),
                Some(json!({"optionIds": ["a"]})),
            )
            .await,
        404,
        "NOT_FOUND",
    );
    // Anonymous multiple choice: nobody is named; an ended poll refuses votes.
    let anon = rest
        .call("POST", &format!("{base}/{m2}/polls"), Cred::Key(&key), Some(json!({"user_id": "alice", "question": "Which?", "options": opts(3), "is_anonymous": true, "is_multi_choice": true, "ends_at": chatsdk_actors::time::iso(chatsdk_actors::time::now_ms() + 1500)})))
        .await;
    assert_eq!(anon.status, 201, "{anon:?}");
    assert_eq!(anon.body["is_anonymous"], true);
    let aid = anon.body["id"].as_str().unwrap().to_string();
    let av = rest
        .call(
            "POST",
            &format!("/api/polls/{aid}/vote"),
            Cred::Bearer(&bob),
            Some(json!({"optionIds": ["o0", "o2"]})),
        )
        .await;
    assert_eq!(av.status, 201, "{av:?}");
    let ar = rest
        .call(
            "GET",
            &format!("/api/polls/{aid}/results"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(ar.body["options"][0]["voters"], Value::Null, "{ar:?}");
    assert_eq!(ar.body["options"][2]["voteCount"], 1);
    assert_eq!(ar.body["userVotes"], json!(["o0", "o2"]));
    support::eventually("the poll to end", || async {
        rest.call(
            "POST",
            &format!("/api/polls/{aid}/vote"),
            Cred::Bearer(&bob),
            Some(json!({"optionIds": ["o1"]})),
        )
        .await
        .status
            == 400
    })
    .await;
    let ended = rest
        .call(
            "GET",
            &format!("/api/polls/{aid}"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(ended.body["closed"], true, "{ended:?}");
    assert_eq!(ended.body["totalVotes"], 1);
    node.stop().await;
}

async fn user_with_email(rest: &Rest, key: &str, id: &str, email: Option<&str>) {
    let r = rest
        .call(
            "POST",
            "/api/users",
            Cred::Key(key),
            Some(json!({"user_id": id, "name": id, "email": email})),
        )
        .await;
    assert!(r.status == 201 || r.status == 200, "{r:?}");
}

/// Workspaces in both dialects: roles (the last owner kept), members, workspace channels and
/// their visibility, statistics, invitations bound to their email, deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_members_channels_and_invites() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("ws").await;
    let (_other, other_key) = node.app("other").await;
    for (u, email) in [
        ("alice", Some("alice@example.com")),
        ("bob", Some("bob@example.com")),
        ("carol", None),
        ("dave", Some("Dave@Example.com")),
    ] {
        user_with_email(&rest, &key, u, email).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let (dave, _) = rest.login(&key, "dave").await;
    let call = |method: &'static str, path: String, token: String, body: Option<Value>| {
        let rest = &rest;
        async move { rest.call(method, &path, Cred::Bearer(&token), body).await }
    };

    let ws = call(
        "POST",
        "/api/workspaces".into(),
        alice.clone(),
        Some(json!({"name": "Team A", "type": "project", "config": {"color": "red"}})),
    )
    .await;
    assert_eq!(ws.status, 201, "{ws:?}");
    assert_eq!(ws.body["role"], "owner");
    assert_eq!(ws.body["isDefault"], true);
    assert_eq!(ws.body["memberCount"], 1);
    assert_eq!(ws.body["type"], "project");
    assert_eq!(ws.body["config"]["color"], "red");
    let wid = ws.body["id"].as_str().unwrap().to_string();
    let wpath = format!("/api/workspaces/{wid}");
    assert_error(
        &call(
            "POST",
            "/api/workspaces".into(),
            bob.clone(),
            Some(json!({"name": "team a"})),
        )
        .await,
        409,
        "CONFLICT",
    );
    assert_error(
        &call(
            "POST",
            "/api/workspaces".into(),
            bob.clone(),
            Some(json!({"name": "x", "type": "club"})),
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &call(
            "POST",
            "/api/workspaces".into(),
            bob.clone(),
            Some(json!({"name": " "})),
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    let mine = call("GET", "/api/workspaces".into(), alice.clone(), None).await;
    assert_eq!(
        mine.body["workspaces"].as_array().unwrap().len(),
        1,
        "{mine:?}"
    );
    let theirs = call("GET", "/api/workspaces".into(), bob.clone(), None).await;
    assert_eq!(theirs.body["workspaces"], json!([]));
    assert_error(
        &call("GET", wpath.clone(), bob.clone(), None).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest.call("GET", &wpath, Cred::Key(&other_key), None).await,
        404,
        "NOT_FOUND",
    );

    // Members and roles.
    let add = call(
        "POST",
        format!("{wpath}/members"),
        alice.clone(),
        Some(json!({"userIds": ["bob"]})),
    )
    .await;
    assert_eq!(add.body, json!({"added": ["bob"], "count": 1}), "{add:?}");
    let again = call(
        "POST",
        format!("{wpath}/members"),
        alice.clone(),
        Some(json!({"userIds": ["bob"]})),
    )
    .await;
    assert_eq!(again.body["count"], 0);
    assert_error(
        &call(
            "POST",
            format!("{wpath}/members"),
            alice.clone(),
            Some(json!({"userIds": ["nobody"]})),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &call(
            "POST",
            format!("{wpath}/members"),
            bob.clone(),
            Some(json!({"userIds": ["carol"]})),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &call(
            "POST",
            format!("{wpath}/members"),
            alice.clone(),
            Some(json!({"userIds": ["carol"], "role": "boss"})),
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    let promote = call(
        "PATCH",
        format!("{wpath}/members/bob"),
        alice.clone(),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(
        promote.body,
        json!({"success": true, "role": "admin"}),
        "{promote:?}"
    );
    assert_error(
        &call(
            "POST",
            format!("{wpath}/members"),
            bob.clone(),
            Some(json!({"userIds": ["carol"], "role": "owner"})),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let by_admin = rest
        .call(
            "POST",
            &format!("{wpath}/members"),
            Cred::Key(&key),
            Some(json!({"user_id": "bob", "user_ids": ["carol"], "role": "member"})),
        )
        .await;
    assert_eq!(by_admin.body["count"], 1, "{by_admin:?}");
    assert_error(
        &call(
            "PATCH",
            format!("{wpath}/members/alice"),
            alice.clone(),
            Some(json!({"role": "member"})),
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &call(
            "DELETE",
            format!("{wpath}/members/alice"),
            alice.clone(),
            None,
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &call(
            "DELETE",
            format!("{wpath}/members/alice"),
            bob.clone(),
            None,
        )
        .await,
        403,
        "FORBIDDEN",
    );

    // Workspace channels: members only, visible to the workspace.
    let team = call(
        "POST",
        "/api/channels".into(),
        alice.clone(),
        Some(json!({"type": "team", "name": "ws-team", "workspaceId": wid})),
    )
    .await;
    assert_eq!(team.status, 201, "{team:?}");
    assert_eq!(team.body["workspaceId"], wid.as_str());
    let team_id = team.body["id"].as_str().unwrap().to_string();
    assert_error(
        &call(
            "POST",
            "/api/channels".into(),
            alice.clone(),
            Some(json!({"type": "group", "name": "x", "workspaceId": wid, "memberIds": ["dave"]})),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &call(
            "POST",
            "/api/channels".into(),
            dave.clone(),
            Some(json!({"type": "team", "name": "x", "workspaceId": wid})),
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(&call("POST", "/api/channels".into(), alice.clone(), Some(json!({"type": "team", "name": "x", "workspaceId": "00000000-0000-7000-8000-000000000000"}))).await, 404, "NOT_FOUND");
    let group = call(
        "POST",
        "/api/channels".into(),
        carol.clone(),
        Some(json!({"type": "group", "name": "side", "workspaceId": wid, "memberIds": ["bob"]})),
    )
    .await;
    assert_eq!(group.status, 201, "{group:?}");
    let group_id = group.body["id"].as_str().unwrap().to_string();
    let seen_by = |token: String| {
        let call = &call;
        let team_id = team_id.clone();
        async move {
            let list = call("GET", "/api/channels".into(), token, None).await;
            list.body["channels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["id"] == team_id.as_str())
        }
    };
    assert!(
        seen_by(bob.clone()).await,
        "a member sees the workspace's open channel"
    );
    assert!(!seen_by(dave.clone()).await, "an outsider does not");
    assert_error(
        &call(
            "GET",
            format!("/api/channels/{team_id}"),
            dave.clone(),
            None,
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &call(
            "POST",
            format!("/api/channels/{team_id}/messages"),
            dave.clone(),
            Some(json!({"text": "hi"})),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        call(
            "POST",
            format!("/api/channels/{team_id}/messages"),
            bob.clone(),
            Some(json!({"text": "hi"}))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        call(
            "POST",
            format!("/api/channels/{team_id}/messages"),
            alice.clone(),
            Some(json!({"text": "hello"}))
        )
        .await
        .status,
        201
    );
    let wchannels = call("GET", format!("{wpath}/channels"), bob.clone(), None).await;
    assert_eq!(
        wchannels.body["channels"].as_array().unwrap().len(),
        2,
        "{wchannels:?}"
    );
    let filtered = call(
        "GET",
        format!("/api/channels?workspaceId={wid}"),
        bob.clone(),
        None,
    )
    .await;
    assert_eq!(
        filtered.body["channels"].as_array().unwrap().len(),
        2,
        "{filtered:?}"
    );
    assert_error(
        &call(
            "GET",
            format!("/api/channels?workspaceId={wid}"),
            dave.clone(),
            None,
        )
        .await,
        403,
        "FORBIDDEN",
    );
    let stats = rest
        .call("GET", &format!("{wpath}/stats"), Cred::Key(&key), None)
        .await;
    assert_eq!(
        stats.body,
        json!({"member_count": 3, "channel_count": 2, "message_count": 2}),
        "{stats:?}"
    );

    // Leaving a workspace leaves its channels.
    assert_eq!(
        call(
            "GET",
            format!("/api/channels/{group_id}"),
            carol.clone(),
            None
        )
        .await
        .status,
        200
    );
    let out = call(
        "DELETE",
        format!("{wpath}/members/carol"),
        bob.clone(),
        None,
    )
    .await;
    assert_eq!(out.status, 200, "{out:?}");
    assert_error(
        &call(
            "GET",
            format!("/api/channels/{group_id}"),
            carol.clone(),
            None,
        )
        .await,
        403,
        "FORBIDDEN",
    );

    // Invitations: admins invite; a token is bound to its email and used once.
    let inv = call(
        "POST",
        format!("{wpath}/invite"),
        bob.clone(),
        Some(json!({"emails": ["dave@example.com", "eve@example.com"], "message": "join us"})),
    )
    .await;
    assert_eq!(inv.status, 200, "{inv:?}");
    let invites = inv.body["invites"].as_array().unwrap().clone();
    assert_eq!(invites.len(), 2);
    let token = invites[0]["token"].as_str().unwrap().to_string();
    assert!(invites[0]["inviteUrl"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/invite/{token}")));
    assert_error(
        &call(
            "POST",
            format!("{wpath}/invite"),
            carol.clone(),
            Some(json!({"emails": ["x@example.com"]})),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &call(
            "POST",
            format!("{wpath}/invite"),
            bob.clone(),
            Some(json!({"emails": ["not-an-email"]})),
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &call(
            "POST",
            format!("{wpath}/invite"),
            bob.clone(),
            Some(json!({"emails": []})),
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &call(
            "GET",
            format!("/api/workspaces/invites/{token}"),
            bob.clone(),
            None,
        )
        .await,
        400,
        "BAD_REQUEST",
    );
    let joined = call(
        "GET",
        format!("/api/workspaces/invites/{token}"),
        dave.clone(),
        None,
    )
    .await;
    assert_eq!(joined.status, 200, "{joined:?}");
    assert_eq!(joined.body["alreadyMember"], false);
    assert_eq!(joined.body["workspace"]["memberCount"], 3);
    assert_eq!(joined.body["workspace"]["role"], "member");
    assert!(
        seen_by(dave.clone()).await,
        "an invited member sees the workspace's channels"
    );
    assert_error(
        &call(
            "GET",
            format!("/api/workspaces/invites/{token}"),
            dave.clone(),
            None,
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &call(
            "POST",
            "/api/workspaces/invites/nope".into(),
            carol.clone(),
            None,
        )
        .await,
        404,
        "NOT_FOUND",
    );

    // Updates by admins; deletion by owners only, with the workspace's channels.
    let renamed = call(
        "PUT",
        wpath.clone(),
        bob.clone(),
        Some(json!({"name": "Team B", "expiresAt": "2030-01-01T00:00:00Z"})),
    )
    .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    assert_eq!(renamed.body["name"], "Team B");
    assert_eq!(renamed.body["expiresAt"], "2030-01-01T00:00:00.000Z");
    assert_error(
        &call(
            "PATCH",
            wpath.clone(),
            dave.clone(),
            Some(json!({"name": "mine"})),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &call("PATCH", wpath.clone(), bob.clone(), Some(json!({}))).await,
        400,
        "BAD_REQUEST",
    );
    let snake = rest
        .call(
            "GET",
            &format!("{wpath}?user_id=bob"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(snake.body["member_count"], 3, "{snake:?}");
    assert_eq!(snake.body["role"], "admin");
    assert_error(
        &call("DELETE", wpath.clone(), bob.clone(), None).await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        call("DELETE", wpath.clone(), alice.clone(), None)
            .await
            .status,
        200
    );
    assert_error(
        &call(
            "GET",
            format!("/api/channels/{team_id}"),
            alice.clone(),
            None,
        )
        .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &call("GET", wpath.clone(), alice.clone(), None).await,
        404,
        "NOT_FOUND",
    );
    let none = call("GET", "/api/workspaces".into(), bob.clone(), None).await;
    assert_eq!(none.body["workspaces"], json!([]));
    // The name is free again.
    assert_eq!(
        call(
            "POST",
            "/api/workspaces".into(),
            bob.clone(),
            Some(json!({"name": "Team B"}))
        )
        .await
        .status,
        201
    );
    node.stop().await;
}

/// Read receipts: forward-only positions, who read which message and when, member read
/// status, unread counts, in both mounts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_and_unread_counts() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("receipts").await;
    for u in ["alice", "bob", "carol", "dave"] {
        user(&rest, &key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let (dave, _) = rest.login(&key, "dave").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "r", "memberIds": ["bob", "carol"]})),
        )
        .await;
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let m = rest
            .call(
                "POST",
                &format!("/api/channels/{cid}/messages"),
                Cred::Bearer(&alice),
                Some(json!({"text": text})),
            )
            .await;
        ids.push(m.body["id"].as_str().unwrap().to_string());
    }
    let base = format!("/api/channels/{cid}");
    let r = rest
        .call(
            "POST",
            &format!("{base}/receipts"),
            Cred::Bearer(&bob),
            Some(json!({"messageId": ids[1]})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["lastReadSeq"], 2);
    assert_eq!(r.body["lastReadMessageId"], ids[1].as_str());
    let unread = rest
        .call(
            "GET",
            "/api/channels/unread-count",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(unread.body["count"], 1, "{unread:?}");
    // Receipts only move forward.
    let back = rest
        .call(
            "POST",
            &format!("{base}/receipts"),
            Cred::Bearer(&bob),
            Some(json!({"messageId": ids[0]})),
        )
        .await;
    assert_eq!(back.body["lastReadSeq"], 2, "{back:?}");
    let who = rest
        .call(
            "GET",
            &format!("{base}/receipts/messages/{}/receipts", ids[0]),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(who.status, 200, "{who:?}");
    assert_eq!(who.body["readCount"], 1);
    assert_eq!(who.body["totalMembers"], 3);
    assert_eq!(who.body["readBy"][0]["userId"], "bob");
    assert!(who.body["readBy"][0]["readAt"].is_string(), "{who:?}");
    let none = rest
        .call(
            "GET",
            &format!("{base}/read/messages/{}/receipts", ids[2]),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(none.body["readCount"], 0, "{none:?}");
    // `POST /read` naming a message is a receipt; without one, everything is read.
    let carol_read = rest
        .call(
            "POST",
            &format!("{base}/read"),
            Cred::Bearer(&carol),
            Some(json!({"messageId": ids[2]})),
        )
        .await;
    assert_eq!(carol_read.body["lastReadSeq"], 3, "{carol_read:?}");
    let q = rest
        .call(
            "POST",
            &format!("{base}/receipts/query"),
            Cred::Bearer(&alice),
            Some(json!({"messageIds": [ids[0], ids[2], "00000000-0000-7000-8000-000000000000"]})),
        )
        .await;
    assert_eq!(q.status, 200, "{q:?}");
    assert_eq!(q.body["receipts"][&ids[0]]["readCount"], 2);
    assert_eq!(q.body["receipts"][&ids[2]]["readCount"], 1);
    assert_eq!(q.body["receipts"][&ids[2]]["readers"][0]["userId"], "carol");
    assert_eq!(q.body["receipts"].as_object().unwrap().len(), 2);
    let status = rest
        .call(
            "GET",
            &format!("{base}/receipts/read-status?user_id=alice"),
            Cred::Key(&key),
            None,
        )
        .await;
    let members = status.body["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status:?}");
    let bob_row = members.iter().find(|m| m["user_id"] == "bob").unwrap();
    assert_eq!(bob_row["last_read_seq"], 2);
    assert_eq!(bob_row["last_read_message_id"], ids[1].as_str());
    let all = rest
        .call("POST", &format!("{base}/read"), Cred::Bearer(&bob), None)
        .await;
    assert_eq!(all.body["lastReadSeq"], 3, "{all:?}");
    let unread = rest
        .call(
            "GET",
            "/api/channels/unread-count",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(unread.body["count"], 0);
    // Refusals.
    assert_error(
        &rest
            .call(
                "POST",
                &format!("{base}/receipts"),
                Cred::Bearer(&bob),
                Some(json!({})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .call(
                "POST",
                &format!("{base}/receipts"),
                Cred::Bearer(&bob),
                Some(json!({"messageId": "nope"})),
            )
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &rest
            .call(
                "POST",
                &format!("{base}/receipts"),
                Cred::Bearer(&dave),
                Some(json!({"messageId": ids[0]})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("{base}/receipts/read-status"),
                Cred::Bearer(&dave),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let too_many: Vec<String> = (0..101).map(|i| format!("m{i}")).collect();
    assert_error(
        &rest
            .call(
                "POST",
                &format!("{base}/receipts/query"),
                Cred::Bearer(&alice),
                Some(json!({"messageIds": too_many})),
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    node.stop().await;
}

/// The mentions inbox: a mention is recorded for the mentioned member (with its realtime
/// event), reads as read once the channel is read past it or it is marked, pages by time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_inbox_and_search() {
    let (node, rest) = node().await;
    let (app, key) = node.app("mentions").await;
    for u in ["alice", "bob", "bobby", "carol"] {
        user(&rest, &key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, bob_ws) = rest.login(&key, "bob").await;
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "m", "memberIds": ["bob", "carol"]})),
        )
        .await;
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let mut ws = support::WsClient::open(&node.ws_url()).await;
    ws.connect(&bob_ws).await;
    let own = format!("user:{app}:bob");
    ws.call("subscribe", json!({"channel": own})).await;
    let send = |text: &'static str| {
        let (rest, cid, alice) = (&rest, cid.clone(), alice.clone());
        async move {
            let m = rest
                .call(
                    "POST",
                    &format!("/api/channels/{cid}/messages"),
                    Cred::Bearer(&alice),
                    Some(json!({"text": text})),
                )
                .await;
            assert_eq!(m.status, 201, "{m:?}");
            m.body
        }
    };
    let first = send("hi @bob").await;
    assert_eq!(first["mentions"], json!(["bob"]));
    send("ping @carol").await;
    let event = ws
        .wait_for("the mention event", |v| {
            v["push"]["channel"] == own.as_str() && v["push"]["pub"]["data"]["type"] == "mention"
        })
        .await;
    let p = &event["push"]["pub"]["data"]["payload"];
    assert_eq!(p["messageId"], first["id"]);
    assert_eq!(p["mentioner"]["id"], "alice");
    assert_eq!(p["message"]["text"], "hi @bob");
    let list = rest
        .call("GET", "/api/mentions", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(list.status, 200, "{list:?}");
    let items = list.body["mentions"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list:?}");
    assert_eq!(items[0]["read"], false);
    assert_eq!(items[0]["channel"]["id"], cid.as_str());
    assert_eq!(items[0]["mentioner"]["id"], "alice");
    let count = rest
        .call(
            "GET",
            "/api/mentions/unread-count",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(count.body["count"], 1);
    // Reading the channel reads its mentions.
    rest.call(
        "POST",
        &format!("/api/channels/{cid}/read"),
        Cred::Bearer(&bob),
        None,
    )
    .await;
    let count = rest
        .call(
            "GET",
            "/api/mentions/unread-count",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(count.body["count"], 0, "{count:?}");
    let list = rest
        .call("GET", "/api/mentions", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(list.body["mentions"][0]["read"], true);
    // Or marking them.
    let second = send("again @bob").await;
    let third = send("and @bob").await;
    let unread = rest
        .call("GET", "/api/mentions?unread=true", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(
        unread.body["mentions"].as_array().unwrap().len(),
        2,
        "{unread:?}"
    );
    assert_eq!(unread.body["mentions"][0]["id"], third["id"]);
    let marked = rest
        .call(
            "POST",
            "/api/mentions/read",
            Cred::Bearer(&bob),
            Some(json!({"messageIds": [second["id"]]})),
        )
        .await;
    assert_eq!(marked.body["count"], 1, "{marked:?}");
    let unread = rest
        .call("GET", "/api/mentions?unread=true", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(unread.body["mentions"].as_array().unwrap().len(), 1);
    let all = rest
        .call(
            "POST",
            "/api/mentions/read?user_id=bob",
            Cred::Key(&key),
            Some(json!({"user_id": "bob"})),
        )
        .await;
    assert_eq!(all.body["count"], 2, "{all:?}");
    // Paging: newest first, `before` a time, `hasMore`.
    let page = rest
        .call("GET", "/api/mentions?limit=2", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(page.body["mentions"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["hasMore"], true);
    let oldest_shown = page.body["mentions"][1]["mentionedAt"]
        .as_str()
        .unwrap()
        .to_string();
    let rest_page = rest
        .call(
            "GET",
            &format!("/api/mentions?before={oldest_shown}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(
        rest_page.body["mentions"].as_array().unwrap().len(),
        1,
        "{rest_page:?}"
    );
    assert_eq!(rest_page.body["hasMore"], false);
    assert_error(
        &rest
            .call(
                "GET",
                "/api/mentions?before=yesterday",
                Cred::Bearer(&bob),
                None,
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .call(
                "GET",
                "/api/mentions?unread=maybe",
                Cred::Bearer(&bob),
                None,
            )
            .await,
        400,
        "BAD_REQUEST",
    );
    // The picker's search: prefix matches first, the caller left out, a channel's members.
    let found = rest
        .call(
            "GET",
            "/api/mentions/search?q=bo",
            Cred::Bearer(&alice),
            None,
        )
        .await;
    let ids: Vec<&str> = found.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["bob", "bobby"], "{found:?}");
    let in_channel = rest
        .call(
            "GET",
            &format!("/api/mentions/search?q=b&channelId={cid}"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    let ids: Vec<&str> = in_channel.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["bob"], "{in_channel:?}");
    let me = rest
        .call(
            "GET",
            "/api/mentions/search?q=ali",
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(me.body["users"], json!([]));
    ws.close().await;
    node.stop().await;
}

/// Templates: built-in and the app's own (private ones only for their creator), changed only by
/// their creator or an app admin; a workspace made from one gets its channels, read-only ones
/// refusing members' posts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_make_workspaces_with_their_channels() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("tpl").await;
    for u in ["alice", "bob", "carol"] {
        user(&rest, &key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let built = rest
        .call(
            "GET",
            "/api/templates/built-in/list",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(
        built.body["templates"].as_array().unwrap().len(),
        5,
        "{built:?}"
    );
    assert_eq!(built.body["templates"][0]["isBuiltIn"], true);
    let t = rest
        .call("POST", "/api/templates", Cred::Bearer(&alice), Some(json!({"name": "Sprint", "category": "project", "isPublic": false, "channels": [{"name": "planning", "type": "team"}, {"name": "news", "type": "team", "readOnly": true}]})))
        .await;
    assert_eq!(t.status, 201, "{t:?}");
    assert_eq!(t.body["channels"][1]["readOnly"], true);
    let tid = t.body["id"].as_str().unwrap().to_string();
    let count = |token: String| {
        let rest = &rest;
        async move {
            rest.call("GET", "/api/templates", Cred::Bearer(&token), None)
                .await
                .body["templates"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(count(alice.clone()).await, 6);
    assert_eq!(
        count(bob.clone()).await,
        5,
        "a private template is its creator's"
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/templates/{tid}"),
                Cred::Bearer(&bob),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    let public = rest
        .call(
            "PATCH",
            &format!("/api/templates/{tid}"),
            Cred::Bearer(&alice),
            Some(json!({"isPublic": true})),
        )
        .await;
    assert_eq!(public.body["isPublic"], true, "{public:?}");
    assert_error(
        &rest
            .call(
                "PATCH",
                &format!("/api/templates/{tid}"),
                Cred::Bearer(&bob),
                Some(json!({"name": "mine"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let by_category = rest
        .call(
            "GET",
            "/api/templates?category=project",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(
        by_category.body["templates"].as_array().unwrap().len(),
        2,
        "{by_category:?}"
    );
    for bad in [
        json!({"name": "x", "category": "party", "channels": []}),
        json!({"name": "x", "channels": [{"name": "c", "type": "dm"}]}),
        json!({"name": "x"}),
        json!({"channels": []}),
    ] {
        let r = rest
            .call("POST", "/api/templates", Cred::Bearer(&bob), Some(bad))
            .await;
        assert_error(&r, 400, "BAD_REQUEST");
    }
    assert_error(
        &rest
            .call(
                "GET",
                "/api/templates?sortBy=name",
                Cred::Bearer(&bob),
                None,
            )
            .await,
        400,
        "BAD_REQUEST",
    );

    // A workspace from a template.
    let made = rest
        .call(
            "POST",
            "/api/templates/from-template",
            Cred::Bearer(&bob),
            Some(json!({"templateId": tid, "name": "Sprint 1", "customConfig": {"sprint": 1}})),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    assert_eq!(made.body["workspace"]["role"], "owner");
    assert_eq!(made.body["workspace"]["type"], "project");
    assert_eq!(made.body["workspace"]["config"]["sprint"], 1);
    assert_eq!(made.body["workspace"]["channelCount"], 2);
    assert_eq!(made.body["templateName"], "Sprint");
    let names: Vec<&str> = made.body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["planning", "news"]);
    let wid = made.body["workspace"]["id"].as_str().unwrap().to_string();
    let news = made.body["channels"][1]["id"].as_str().unwrap().to_string();
    let used = rest
        .call(
            "GET",
            &format!("/api/templates/{tid}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(used.body["usageCount"], 1);
    let by_use = rest
        .call(
            "GET",
            "/api/templates?sortBy=usage_count",
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(by_use.body["templates"][0]["id"], tid.as_str());
    // Read-only channels: owners and admins post, members do not.
    assert_eq!(
        rest.call(
            "POST",
            &format!("/api/channels/{news}/messages"),
            Cred::Bearer(&bob),
            Some(json!({"text": "welcome"}))
        )
        .await
        .status,
        201
    );
    rest.call(
        "POST",
        &format!("/api/workspaces/{wid}/members"),
        Cred::Bearer(&bob),
        Some(json!({"userIds": ["carol"]})),
    )
    .await;
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/channels/{news}/messages"),
                Cred::Bearer(&carol),
                Some(json!({"text": "hi"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    let conf = rest
        .call(
            "POST",
            "/api/templates/from-template",
            Cred::Bearer(&carol),
            Some(json!({"templateId": "builtin-conference", "name": "DevConf"})),
        )
        .await;
    assert_eq!(conf.status, 201, "{conf:?}");
    assert_eq!(conf.body["workspace"]["type"], "conference");
    assert_eq!(conf.body["channels"].as_array().unwrap().len(), 4);
    assert_error(
        &rest
            .call(
                "POST",
                "/api/templates/from-template",
                Cred::Bearer(&carol),
                Some(json!({"templateId": "nope", "name": "x"})),
            )
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &rest
            .call(
                "DELETE",
                "/api/templates/builtin-team",
                Cred::Bearer(&alice),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "DELETE",
                &format!("/api/templates/{tid}"),
                Cred::Bearer(&bob),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        rest.call(
            "DELETE",
            &format!("/api/templates/{tid}"),
            Cred::Bearer(&alice),
            None
        )
        .await
        .status,
        200
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/templates/{tid}"),
                Cred::Key(&key),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    node.stop().await;
}

/// A multipart/form-data body: `(content type, body)`; a part with a file name is a file.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "chatsdk-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, file, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file {
            Some(f) => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Custom emoji: uploaded by workspace admins (type read from the bytes, at most 1 MiB),
/// replaced by name, listed and searched by members, served as an image, counted when used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_emoji_upload_serve_use_and_analytics() {
    let (node, rest) = node().await;
    let (app, key) = node.app("emoji").await;
    for u in ["alice", "bob", "carol"] {
        user(&rest, &key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let ws = rest
        .call(
            "POST",
            "/api/workspaces",
            Cred::Bearer(&alice),
            Some(json!({"name": "e"})),
        )
        .await;
    let wid = ws.body["id"].as_str().unwrap().to_string();
    rest.call(
        "POST",
        &format!("/api/workspaces/{wid}/members"),
        Cred::Bearer(&alice),
        Some(json!({"userIds": ["bob"]})),
    )
    .await;
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend((0..300_000u32).map(|i| (i % 251) as u8));
    let upload = |token: String, name: &'static str, file: Vec<u8>| {
        let (rest, wid) = (&rest, wid.clone());
        async move {
            let (ct, body) = multipart(&[
                ("workspaceId", None, wid.as_bytes()),
                ("name", None, name.as_bytes()),
                ("category", None, b"animals"),
                ("file", Some("e.png"), &file),
            ]);
            let auth = format!("Bearer {token}");
            rest.raw(
                "POST",
                "/api/emoji",
                &[("content-type", &ct), ("authorization", &auth)],
                body,
            )
            .await
        }
    };
    let made = upload(alice.clone(), "party_parrot", png.clone()).await;
    assert_eq!(made.status, 201, "{made:?}");
    assert_eq!(made.body["contentType"], "image/png");
    assert_eq!(made.body["size"], png.len());
    let eid = made.body["id"].as_str().unwrap().to_string();
    let url = made.body["imageUrl"].as_str().unwrap().to_string();
    let img = rest
        .http
        .get(format!("{}{url}", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(img.status(), 200);
    assert_eq!(img.headers()["content-type"], "image/png");
    assert!(img.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(
        img.bytes().await.unwrap().to_vec(),
        png,
        "the image comes back whole"
    );
    // Refusals: members do not upload, names are plain, images only, 1 MiB at most.
    assert_error(
        &upload(bob.clone(), "mine", png.clone()).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &upload(alice.clone(), "Party!", png.clone()).await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &upload(alice.clone(), "text", b"just some text".to_vec()).await,
        400,
        "BAD_REQUEST",
    );
    let mut huge = b"GIF89a".to_vec();
    huge.resize(1024 * 1024 + 1, 0);
    assert_error(
        &upload(alice.clone(), "huge", huge).await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    // The same name replaces the image and keeps the id.
    let gif = b"GIF89a-tiny-animation".to_vec();
    let again = upload(alice.clone(), "party_parrot", gif.clone()).await;
    assert_eq!(again.body["id"], eid.as_str(), "{again:?}");
    assert_eq!(again.body["contentType"], "image/gif");
    let img = rest
        .http
        .get(format!("{}{url}", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(img.bytes().await.unwrap().to_vec(), gif);
    // Members list and search; outsiders do not.
    let list = rest
        .call(
            "GET",
            &format!("/api/emoji?workspaceId={wid}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(list.body["emoji"].as_array().unwrap().len(), 1, "{list:?}");
    let none = rest
        .call(
            "GET",
            &format!("/api/emoji?workspaceId={wid}&category=food"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(none.body["emoji"], json!([]));
    let found = rest
        .call(
            "GET",
            &format!("/api/emoji/search/query?q=par&workspaceId={wid}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(found.body["emoji"][0]["name"], "party_parrot", "{found:?}");
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/emoji?workspaceId={wid}"),
                Cred::Bearer(&carol),
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
                &format!("/api/emoji/{eid}"),
                Cred::Bearer(&carol),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    // An image of exactly the limit passes (four chunks of the workspace's stream).
    let mut max = b"\x89PNG\r\n\x1a\n".to_vec();
    max.resize(1024 * 1024, 7);
    let big = upload(alice.clone(), "big", max.clone()).await;
    assert_eq!(big.status, 201, "{big:?}");
    let big_url = big.body["imageUrl"].as_str().unwrap().to_string();
    let img = rest
        .http
        .get(format!("{}{big_url}", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(img.bytes().await.unwrap().len(), max.len());
    // Uses are counted per user and per day.
    for token in [&bob, &bob, &alice] {
        let r = rest
            .call(
                "POST",
                &format!("/api/emoji/{eid}/use"),
                Cred::Bearer(token),
                Some(json!({"messageId": "m1"})),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let one = rest
        .call(
            "GET",
            &format!("/api/emoji/{eid}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(one.body["usageCount"], 3);
    let stats = rest
        .call(
            "GET",
            &format!("/api/emoji/{eid}/analytics"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(stats.status, 200, "{stats:?}");
    assert_eq!(stats.body["totalUses"], 3);
    assert_eq!(
        stats.body["topUsers"][0],
        json!({"userId": "bob", "count": 2})
    );
    assert_eq!(stats.body["usageOverTime"][0]["count"], 3);
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/emoji/{eid}/analytics"),
                Cred::Bearer(&bob),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &rest
            .call(
                "DELETE",
                &format!("/api/emoji/{eid}"),
                Cred::Bearer(&bob),
                None,
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        rest.call(
            "DELETE",
            &format!("/api/emoji/{eid}"),
            Cred::Bearer(&alice),
            None
        )
        .await
        .status,
        200
    );
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/emoji/{eid}"),
                Cred::Bearer(&alice),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    let gone = rest
        .http
        .get(format!("{}{url}", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let other_app = rest
        .http
        .get(format!(
            "{}/api/emoji/{eid}/image?app=someone-else",
            rest.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other_app.status(), 404);
    let _ = app;
    node.stop().await;
}

/// Channels list busiest first with their message counts; quotes stay within their channel;
/// a thread names its participants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_activity_quotes_and_thread_participants() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("activity").await;
    for u in ["alice", "bob", "carol"] {
        user(&rest, &key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let (carol, _) = rest.login(&key, "carol").await;
    let mut ids = Vec::new();
    for name in ["first", "second", "third"] {
        let ch = rest
            .call(
                "POST",
                "/api/channels",
                Cred::Bearer(&alice),
                Some(json!({"type": "group", "name": name, "memberIds": ["bob", "carol"]})),
            )
            .await;
        ids.push(ch.body["id"].as_str().unwrap().to_string());
    }
    let send = |token: String, channel: String, body: Value| {
        let rest = &rest;
        async move {
            rest.call(
                "POST",
                &format!("/api/channels/{channel}/messages"),
                Cred::Bearer(&token),
                Some(body),
            )
            .await
        }
    };
    let root = send(alice.clone(), ids[0].clone(), json!({"text": "root"})).await;
    let root_id = root.body["id"].as_str().unwrap().to_string();
    send(bob.clone(), ids[1].clone(), json!({"text": "hello"})).await;
    let list = rest
        .call("GET", "/api/channels", Cred::Bearer(&bob), None)
        .await;
    let order: Vec<&str> = list.body["channels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, vec!["second", "first", "third"], "{list:?}");
    assert_eq!(list.body["channels"][0]["messageCount"], 1);
    assert!(list.body["channels"][0]["lastMessageAt"].is_string());
    assert_eq!(list.body["channels"][2]["lastMessageAt"], Value::Null);
    // Quotes: a message of the same channel only.
    let quote = send(
        carol.clone(),
        ids[0].clone(),
        json!({"text": "quoting", "replyToId": root_id}),
    )
    .await;
    assert_eq!(quote.status, 201, "{quote:?}");
    assert_eq!(quote.body["replyToId"], root_id.as_str());
    let elsewhere = send(
        carol.clone(),
        ids[1].clone(),
        json!({"text": "quoting", "replyToId": root_id}),
    )
    .await;
    assert_error(&elsewhere, 400, "BAD_REQUEST");
    let detail = rest
        .call(
            "GET",
            &format!("/api/channels/{}", ids[0]),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(detail.body["messageCount"], 2, "{detail:?}");
    // Thread participants: the root's author first, then repliers by replies.
    for (token, text) in [(&carol, "c1"), (&bob, "b1"), (&carol, "c2")] {
        let r = rest
            .call(
                "POST",
                &format!("/api/channels/{}/messages/{root_id}/thread", ids[0]),
                Cred::Bearer(token),
                Some(json!({"text": text})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let p = rest
        .call(
            "GET",
            &format!(
                "/api/channels/{}/messages/{root_id}/thread/participants",
                ids[0]
            ),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(p.status, 200, "{p:?}");
    let got: Vec<(String, u64)> = p.body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["id"].as_str().unwrap().to_string(),
                x["replyCount"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![("alice".into(), 0), ("carol".into(), 2), ("bob".into(), 1)]
    );
    node.stop().await;
}

/// The routes that name only a message (`/api/messages/:id/...`): the Server API's reactions
/// and polls, and the SDKs' message paths; a message sent with a client message id is found
/// with the channel named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_routes_without_the_channel() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("bymsg").await;
    let (_other, other_key) = node.app("other").await;
    for u in ["alice", "bob"] {
        user(&rest, &key, u).await;
    }
    let ch = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "type": "group", "name": "m", "member_ids": ["bob"]})),
        )
        .await;
    let cid = ch.body["id"].as_str().unwrap().to_string();
    let m = rest
        .call(
            "POST",
            "/api/messages",
            Cred::Key(&key),
            Some(json!({"channel_id": cid, "user_id": "bob", "text": "vote"})),
        )
        .await;
    let mid = m.body["id"].as_str().unwrap().to_string();
    let r = rest
        .call(
            "POST",
            &format!("/api/messages/{mid}/reactions"),
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "emoji": "heart"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["message_id"], mid.as_str());
    assert_eq!(r.body["user_id"], "alice");
    assert_eq!(r.body["emoji"], "heart");
    let list = rest
        .call(
            "GET",
            &format!("/api/messages/{mid}/reactions"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(list.body["reactions"][0]["emoji"], "heart", "{list:?}");
    let poll = rest
        .call("POST", &format!("/api/messages/{mid}/polls"), Cred::Key(&key), Some(json!({"user_id": "bob", "question": "Which?", "options": [{"id": "a", "text": "A"}, {"id": "b", "text": "B"}], "is_anonymous": false, "is_multi_choice": true})))
        .await;
    assert_eq!(poll.status, 201, "{poll:?}");
    assert_eq!(poll.body["is_multi_choice"], true);
    assert_eq!(poll.body["message_id"], mid.as_str());
    let (bob, _) = rest.login(&key, "bob").await;
    let got = rest
        .call(
            "GET",
            &format!("/api/messages/{mid}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body["reactionCount"], 1);
    assert_eq!(got.body["poll"]["question"], "Which?");
    let edited = rest
        .call(
            "PATCH",
            &format!("/api/messages/{mid}"),
            Cred::Bearer(&bob),
            Some(json!({"text": "vote!"})),
        )
        .await;
    assert_eq!(edited.body["text"], "vote!", "{edited:?}");
    let removed = rest
        .call(
            "DELETE",
            &format!("/api/messages/{mid}/reactions/heart?user_id=alice"),
            Cred::Key(&key),
            None,
        )
        .await;
    assert_eq!(removed.status, 200, "{removed:?}");
    assert_error(
        &rest
            .call(
                "GET",
                &format!("/api/messages/{mid}"),
                Cred::Key(&other_key),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    // A client message id makes the id: found with the channel named.
    let k = rest
        .call(
            "POST",
            "/api/messages",
            Cred::Key(&key),
            Some(
                json!({"channel_id": cid, "user_id": "bob", "text": "k", "client_msg_id": "srv-9"}),
            ),
        )
        .await;
    let kid = k.body["id"].as_str().unwrap().to_string();
    assert_error(
        &rest
            .call(
                "POST",
                &format!("/api/messages/{kid}/reactions"),
                Cred::Key(&key),
                Some(json!({"user_id": "alice", "emoji": "x"})),
            )
            .await,
        404,
        "NOT_FOUND",
    );
    let hinted = rest
        .call(
            "POST",
            &format!("/api/messages/{kid}/reactions"),
            Cred::Key(&key),
            Some(json!({"user_id": "alice", "emoji": "x", "channel_id": cid})),
        )
        .await;
    assert_eq!(hinted.status, 201, "{hinted:?}");
    let deleted = rest
        .call(
            "DELETE",
            &format!("/api/messages/{kid}?channel_id={cid}"),
            Cred::Bearer(&bob),
            None,
        )
        .await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_error(
        &rest
            .call("GET", "/api/messages/not-an-id", Cred::Bearer(&bob), None)
            .await,
        404,
        "NOT_FOUND",
    );
    node.stop().await;
}

/// Blocking: a blocked user cannot open or write to a DM with the blocker; the blocker's
/// history, mention inbox and presence leave them out; both API forms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_close_dms_and_hide_what_the_blocker_reads() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("blocks").await;
    for u in ["alice", "bob", "carol"] {
        user(&rest, &key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let dm = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&bob),
            Some(json!({"type": "messaging", "memberIds": ["alice"]})),
        )
        .await;
    assert_eq!(dm.status, 201, "{dm:?}");
    let dm_id = dm.body["id"].as_str().unwrap().to_string();
    let group = rest
        .call(
            "POST",
            "/api/channels",
            Cred::Bearer(&alice),
            Some(json!({"type": "group", "name": "g", "memberIds": ["bob", "carol"]})),
        )
        .await;
    let gid = group.body["id"].as_str().unwrap().to_string();
    let send = |token: String, channel: String, text: &'static str| {
        let rest = &rest;
        async move {
            rest.call(
                "POST",
                &format!("/api/channels/{channel}/messages"),
                Cred::Bearer(&token),
                Some(json!({"text": text})),
            )
            .await
        }
    };
    assert_eq!(
        send(bob.clone(), gid.clone(), "hi @alice").await.status,
        201
    );
    // Alice blocks Bob.
    let b = rest
        .call("POST", "/api/users/bob/block", Cred::Bearer(&alice), None)
        .await;
    assert_eq!(b.status, 200, "{b:?}");
    assert_error(
        &rest
            .call("POST", "/api/users/alice/block", Cred::Bearer(&alice), None)
            .await,
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/api/users/nobody/block",
                Cred::Bearer(&alice),
                None,
            )
            .await,
        404,
        "NOT_FOUND",
    );
    let mine = rest
        .call("GET", "/api/users/me/blocked", Cred::Bearer(&alice), None)
        .await;
    assert_eq!(mine.body["blockedUsers"][0]["id"], "bob", "{mine:?}");
    assert!(mine.body["blockedUsers"][0]["blockedAt"].is_string());
    // Bob can no longer write to their DM, nor open one (REST or the Server API's ensure).
    assert_error(
        &send(bob.clone(), dm_id.clone(), "please").await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        send(alice.clone(), dm_id.clone(), "bye").await.status,
        201,
        "the blocker still can"
    );
    assert_error(
        &rest
            .call(
                "POST",
                "/api/channels/dm/ensure",
                Cred::Key(&key),
                Some(json!({"requesterUserId": "bob", "peerUserId": "alice"})),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        rest.call(
            "POST",
            "/api/channels/dm/ensure",
            Cred::Key(&key),
            Some(json!({"requesterUserId": "alice", "peerUserId": "carol"}))
        )
        .await
        .status,
        201
    );
    // Alice's history and mention inbox leave Bob out; Carol's do not.
    assert_eq!(
        send(bob.clone(), gid.clone(), "still here").await.status,
        201
    );
    let root = rest
        .call(
            "POST",
            &format!("/api/channels/{gid}/messages"),
            Cred::Bearer(&alice),
            Some(json!({"text": "thread"})),
        )
        .await;
    let root_id = root.body["id"].as_str().unwrap().to_string();
    let reply = rest
        .call(
            "POST",
            &format!("/api/channels/{gid}/messages/{root_id}/thread"),
            Cred::Bearer(&bob),
            Some(json!({"text": "bob's reply"})),
        )
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let thread = rest
        .call(
            "GET",
            &format!("/api/channels/{gid}/messages/{root_id}/thread"),
            Cred::Bearer(&alice),
            None,
        )
        .await;
    assert_eq!(thread.body["replies"], json!([]), "{thread:?}");
    let texts = |token: String| {
        let (rest, gid) = (&rest, gid.clone());
        async move {
            let r = rest
                .call(
                    "GET",
                    &format!("/api/channels/{gid}/messages"),
                    Cred::Bearer(&token),
                    None,
                )
                .await;
            r.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(texts(alice.clone()).await, vec!["thread"]);
    let (carol, _) = rest.login(&key, "carol").await;
    assert_eq!(
        texts(carol.clone()).await,
        vec!["hi @alice", "still here", "thread"]
    );
    let inbox = rest
        .call("GET", "/api/mentions", Cred::Bearer(&alice), None)
        .await;
    assert_eq!(inbox.body["mentions"], json!([]), "{inbox:?}");
    // Bob no longer sees Alice's presence; Carol does.
    rest.call(
        "POST",
        "/api/presence/heartbeat",
        Cred::Bearer(&alice),
        None,
    )
    .await;
    let seen = |token: String| {
        let rest = &rest;
        async move {
            rest.call(
                "POST",
                "/api/presence/query",
                Cred::Bearer(&token),
                Some(json!({"userIds": ["alice"]})),
            )
            .await
            .body["presence"]
                .get("alice")
                .is_some()
        }
    };
    assert!(!seen(bob.clone()).await);
    assert!(seen(carol.clone()).await);
    let shown = rest
        .call("GET", "/api/users/alice", Cred::Bearer(&bob), None)
        .await;
    assert_eq!(shown.body["online"], false, "{shown:?}");
    // The Server API's form: list, then unblock; everything comes back.
    let listed = rest
        .call("GET", "/api/users/alice/blocks", Cred::Key(&key), None)
        .await;
    assert_eq!(
        listed.body["blocks"][0]["blocked_user_id"], "bob",
        "{listed:?}"
    );
    assert_error(
        &rest
            .call("GET", "/api/users/alice/blocks", Cred::Bearer(&bob), None)
            .await,
        403,
        "FORBIDDEN",
    );
    let made = rest
        .call(
            "POST",
            "/api/users/carol/blocks",
            Cred::Key(&key),
            Some(json!({"blocked_user_id": "bob"})),
        )
        .await;
    assert_eq!(made.status, 201, "{made:?}");
    assert_eq!(made.body["user_id"], "carol");
    assert_eq!(
        rest.call(
            "DELETE",
            "/api/users/carol/blocks/bob",
            Cred::Key(&key),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        rest.call("DELETE", "/api/users/bob/block", Cred::Bearer(&alice), None)
            .await
            .status,
        200
    );
    assert_eq!(
        send(bob.clone(), dm_id.clone(), "friends again")
            .await
            .status,
        201
    );
    assert_eq!(
        texts(alice.clone()).await,
        vec!["hi @alice", "still here", "thread"]
    );
    assert!(seen(bob.clone()).await);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_with_their_names_types_and_route_templates() {
    let node = TestNode::start(GatewayConfig::default()).await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("metrics").await;
    for u in ["metric-a", "metric-b"] {
        rest.call(
            "POST",
            "/api/users",
            Cred::Key(&key),
            Some(json!({"user_id": u})),
        )
        .await;
        let r = rest
            .call("GET", &format!("/api/users/{u}"), Cred::Key(&key), None)
            .await;
        assert_eq!(r.status, 200);
    }
    rest.call("GET", "/nowhere", Cred::None, None).await;
    let res = rest
        .http
        .get(format!("{}/metrics", rest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    for line in [
        "# TYPE chatsdk_http_requests counter",
        "# TYPE chatsdk_http_request_duration_seconds histogram",
        "# TYPE chatsdk_realtime_connections gauge",
        "# TYPE chatsdk_raft_groups gauge",
        "# TYPE process_resident_memory_bytes gauge",
        "chatsdk_http_requests_total{method=\"GET\",route=\"/api/users/{id}\",status=\"2xx\"} 2",
        "chatsdk_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"4xx\"} 1",
        "chatsdk_cluster_nodes 1",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    // No label carries a user id.
    assert!(!text.contains("metric-a"), "{text}");
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(rss > 1e6, "{rss}");
    node.stop().await;
}

/// An idempotency key answers its creator's retries with the first channel, and nobody
/// else's: another user replaying it makes a channel of their own and learns nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_idempotency_keys_belong_to_their_creator() {
    let (node, rest) = node().await;
    let (_app, key) = node.app("idem").await;
    for u in ["alice", "bob"] {
        user(&rest, &key, u).await;
    }
    let (alice, _) = rest.login(&key, "alice").await;
    let (bob, _) = rest.login(&key, "bob").await;
    let create = |token: String, name: &'static str| {
        let rest = &rest;
        async move {
            rest.call(
                "POST",
                "/api/channels",
                Cred::Bearer(&token),
                Some(json!({"type": "private", "name": name, "idempotencyKey": "same-key"})),
            )
            .await
        }
    };
    let first = create(alice.clone(), "alice's secret plans").await;
    assert_eq!(first.status, 201, "{first:?}");
    let again = create(alice.clone(), "alice's secret plans").await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body["id"], first.body["id"]);
    let other = create(bob.clone(), "bob's").await;
    assert_eq!(other.status, 201, "{other:?}");
    assert_ne!(other.body["id"], first.body["id"]);
    assert_eq!(other.body["name"], "bob's");
    let replay = create(bob, "bob's").await;
    assert_eq!(replay.body["id"], other.body["id"], "{replay:?}");
}

/// Login sessions of a user who never refreshes again are forgotten by the background sweep
/// once every refresh token they spent has expired (a refresh forgets only the user's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_login_sessions_are_swept_without_another_refresh() {
    let node = TestNode::start_chat(
        GatewayConfig {
            refresh_ttl: 2,
            ..GatewayConfig::default()
        },
        support::test_chat_config(),
    )
    .await;
    let rest = Rest::new(&node);
    let (_app, key) = node.app("sweep").await;
    let r = rest
        .call(
            "POST",
            "/tokens",
            Cred::Key(&key),
            Some(json!({"userId": "s1"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let refresh = r.body["refreshToken"].as_str().unwrap().to_string();
    let rr = rest
        .call("POST", "/api/auth/refresh", Cred::Bearer(&refresh), None)
        .await;
    assert_eq!(rr.status, 200, "{rr:?}");
    // Another user's session is revoked: its spent token replayed.
    let r = rest
        .call(
            "POST",
            "/tokens",
            Cred::Key(&key),
            Some(json!({"userId": "s2"})),
        )
        .await;
    let stolen = r.body["refreshToken"].as_str().unwrap().to_string();
    let first = rest
        .call("POST", "/api/auth/refresh", Cred::Bearer(&stolen), None)
        .await;
    assert_eq!(first.status, 200, "{first:?}");
    let replay = rest
        .call("POST", "/api/auth/refresh", Cred::Bearer(&stolen), None)
        .await;
    assert_eq!(replay.status, 401, "{replay:?}");
    // The spend is remembered while the token lives, and for a margin after (token checks
    // allow some leeway and clock skew): nothing to forget yet.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let swept = |streams, revocation_forgets| chatsdk_actors::SessionSweep {
        streams,
        revocation_forgets,
    };
    assert_eq!(node.chat.sweep_sessions().await.unwrap(), swept(0, 0));
    assert_eq!(
        node.chat.sweep_sessions_at(now + 60).await.unwrap(),
        swept(0, 0)
    );
    // Past the margin, a pass forgets s1's session (one user stream written); the revoked
    // one stays, here and in group 0; the next pass finds nothing more.
    assert_eq!(
        node.chat.sweep_sessions_at(now + 600).await.unwrap(),
        swept(1, 0)
    );
    assert_eq!(
        node.chat.sweep_sessions_at(now + 600).await.unwrap(),
        swept(0, 0)
    );
    // Once no token of the revoked session can live (the refresh lifetime, at least 31 days
    // by default), both its records go.
    let month = now + 32 * 86_400;
    assert_eq!(
        node.chat.sweep_sessions_at(month).await.unwrap(),
        swept(1, 1)
    );
    assert_eq!(
        node.chat.sweep_sessions_at(month).await.unwrap(),
        swept(0, 0)
    );
    node.stop().await;
}
