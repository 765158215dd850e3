//! `/api/openapi.json` describes the router exactly: every route the router serves (read from
//! its source, method by method) is in the document, and every operation of the document is
//! answered by a handler of a live node (not by the router's fallbacks). The request bodies
//! carry the schemas of the types the handlers read, the answers those of the views they write;
//! the answers of routes no other test calls with success are checked here.

mod support;

use std::collections::BTreeSet;

use chatsdk_gateway::GatewayConfig;
use serde_json::Value;
use support::{Cred, Rest, TestNode};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// `/a/{id}` and `/a/{x}` are one route.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// `(METHOD, path shape)` of every `.route("path", get(h).post(h2)...)` in the router's source.
fn served() -> BTreeSet<(String, String)> {
    let source = include_str!("../src/lib.rs");
    let mut out = BTreeSet::new();
    let mut rest = source;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap();
        let call = &rest[..end];
        let path = call.split('"').nth(1).unwrap();
        for method in METHODS {
            let mut from = 0;
            while let Some(at) = call[from..].find(&format!("{method}(")) {
                let at = from + at;
                let before = call[..at].chars().last().unwrap_or(' ');
                if !before.is_alphanumeric() && before != '_' {
                    out.insert((method.to_uppercase(), shape(path)));
                }
                from = at + method.len();
            }
        }
        rest = &rest[end..];
    }
    out
}

fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if item.get(method).is_some() {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// The property names of an object schema and the required ones, through `$ref` and `allOf`.
fn fields(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut names, mut required) = (BTreeSet::new(), BTreeSet::new());
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap();
        return fields(doc, &doc["components"]["schemas"][name]);
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (n, r) = fields(doc, part);
        names.extend(n);
        required.extend(r);
    }
    if let Some(props) = schema["properties"].as_object() {
        names.extend(props.keys().cloned());
    }
    for r in schema["required"].as_array().into_iter().flatten() {
        required.insert(r.as_str().unwrap().to_string());
    }
    (names, required)
}

/// Every `$ref` in `v` names a schema of the document.
fn check_refs(doc: &Value, v: &Value) {
    match v {
        Value::Object(map) => {
            if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                let name = r.strip_prefix("#/components/schemas/").unwrap();
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "dangling {r}"
                );
            }
            map.values().for_each(|x| check_refs(doc, x));
        }
        Value::Array(items) => items.iter().for_each(|x| check_refs(doc, x)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_and_the_router_agree_route_by_route() {
    let node = TestNode::start(GatewayConfig::default()).await;
    let rest = Rest::new(&node);
    let res = rest
        .call("GET", "/api/openapi.json", Cred::None, None)
        .await;
    assert_eq!(res.status, 200);
    let doc = res.body;
    assert_eq!(doc["openapi"], "3.1.0", "{}", doc["openapi"]);
    check_refs(&doc, &doc);

    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p)| (m, shape(&p)))
        .collect();
    let served = served();
    assert!(served.len() > 200, "{}", served.len());
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "served but not in the document: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");

    // Each documented operation reaches a handler: the router's fallbacks answer a 404 whose
    // message is "Not Found", or a 405.
    for (method, path) in operations(&doc) {
        let concrete = path
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let res = rest.call(&method, &concrete, Cred::None, None).await;
        assert_ne!(res.status, 405, "{method} {concrete}: {:?}", res.body);
        assert!(
            !(res.status == 404 && res.body["error"]["message"] == "Not Found"),
            "{method} {concrete} fell through to the router's fallback"
        );
    }

    // Answers are the handlers' views, in both dialects where they spell keys apart.
    let send = &doc["paths"]["/api/channels/{id}/messages"]["post"];
    let sent = &send["responses"]["201"]["content"]["application/json"]["schema"]["anyOf"];
    assert_eq!(
        sent,
        &serde_json::json!([
            {"$ref": "#/components/schemas/render.camel.MessageView"},
            {"$ref": "#/components/schemas/render.snake.MessageView"},
        ]),
        "{sent}"
    );
    let (camel, required) = fields(
        &doc,
        &doc["components"]["schemas"]["render.camel.MessageView"],
    );
    assert!(
        camel.contains("clientMsgId") && required.contains("channelId"),
        "{camel:?}"
    );
    let (snake, _) = fields(
        &doc,
        &doc["components"]["schemas"]["render.snake.MessageView"],
    );
    assert!(
        snake.contains("client_msg_id") && !snake.contains("clientMsgId"),
        "{snake:?}"
    );
    let count = &doc["paths"]["/api/channels/unread-count"]["get"]["responses"]["200"];
    assert_eq!(
        count["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/channels.camel.Count",
        "one schema for a view both dialects spell alike"
    );
    let mut without = Vec::new();
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('2') && status != "204" && response.get("content").is_none() {
                without.push(format!("{method} {path} {status}"));
            }
        }
    }
    // Only an upload's PUT answers success without a body.
    assert_eq!(
        without,
        ["PUT /api/uploads/put 200"],
        "answers without a schema"
    );

    // Bodies are the handlers' types: names, aliases' canonical spelling, what is required.
    let schema = &send["requestBody"]["content"]["application/json"]["schema"];
    let (send_fields, required) = fields(&doc, schema);
    for f in ["text", "clientMsgId", "parentId", "attachments", "userId"] {
        assert!(send_fields.contains(f), "{f} in {schema}");
    }
    assert!(
        required.contains("text") && !required.contains("userId"),
        "{schema}"
    );
    let poll = &doc["paths"]["/api/channels/{id}/messages/{mid}/polls"]["post"];
    let poll = &poll["requestBody"]["content"]["application/json"]["schema"];
    let (fields_of_poll, required) = fields(&doc, poll);
    for f in ["question", "options", "isAnonymous", "endsAt"] {
        assert!(fields_of_poll.contains(f), "{f} in {poll}");
    }
    assert!(
        required.contains("question") && required.contains("options"),
        "{poll}"
    );
    assert!(doc["components"]["schemas"]["NewPollOption"].is_object());
    let upload = &doc["paths"]["/api/uploads/direct"]["post"]["requestBody"]["content"];
    assert!(upload["multipart/form-data"].is_object(), "{upload}");
    // Who may call: admin routes take the admin key, health checks nothing.
    assert_eq!(
        doc["paths"]["/admin/cluster"]["get"]["security"][0]["admin"],
        serde_json::json!([])
    );
    assert_eq!(
        doc["paths"]["/health"]["get"]["security"][0],
        serde_json::json!({})
    );
    let query: Vec<&str> = doc["paths"]["/api/channels"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(query, ["type", "workspaceId", "limit", "offset"]);
    let params = &doc["paths"]["/api/users/{id}/activity"]["get"]["parameters"];
    let limit = params
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["type"], "integer", "{limit}");
    assert_eq!(limit["schema"]["default"], 50, "{limit}");
    assert_eq!(
        doc["paths"]["/api/emoji/{id}/image"]["get"]["security"][0],
        serde_json::json!({}),
        "an emoji image is public"
    );
    for (name, _) in doc["components"]["securitySchemes"].as_object().unwrap() {
        assert!(
            ["user", "apiKey", "admin"].contains(&name.as_str()),
            "{name}"
        );
    }

    // The browsable page and its script are served, from this origin only.
    let page = reqwest::get(format!("http://{}/api/docs", node.http))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/web/apidocs.js"));
    let script = reqwest::get(format!("http://{}/web/apidocs.js", node.http))
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.text().await.unwrap().contains("/api/openapi.json"));
}

/// The checker that every test's REST answers pass through refuses what the document does not
/// allow: a missing required key, a key of the other dialect, a value of another type, an
/// undocumented success status, an error without the error body.
#[test]
fn answers_are_held_to_the_document() {
    use serde_json::json;
    use support::schema::check;
    let json = Some("application/json");
    let count = |body: Value| check("GET", "/api/channels/unread-count", 200, json, &body);
    assert!(count(json!({"count": 3})).is_ok());
    assert!(count(json!({})).is_err(), "required key missing");
    assert!(count(json!({"count": "3"})).is_err(), "wrong type");
    assert!(
        count(json!({"count": 3, "extra": 1})).is_err(),
        "unknown key"
    );
    let read = |body: Value| check("POST", "/api/channels/c/read", 200, json, &body);
    assert!(read(json!({"success": true, "lastReadSeq": 4})).is_ok());
    assert!(read(json!({"success": true, "last_read_seq": 4})).is_ok());
    assert!(
        read(json!({"success": true, "lastReadSeq": 4, "last_read_seq": 4})).is_err(),
        "two dialects at once"
    );
    assert!(
        check(
            "GET",
            "/api/channels/unread-count",
            201,
            json,
            &json!({"count": 1})
        )
        .is_err(),
        "a success status the document does not list"
    );
    let error = json!({"error": {"code": "NOT_FOUND", "message": "no", "requestId": "r"}});
    assert!(check("GET", "/api/channels/c", 404, json, &error).is_ok());
    assert!(check(
        "GET",
        "/api/channels/c",
        404,
        json,
        &json!({"message": "no"})
    )
    .is_err());
    assert!(
        check("GET", "/api/users/me", 200, json, &json!({"id": "a"})).is_err(),
        "`/api/users/me` is matched before `/api/users/{{id}}`"
    );
}

/// The routes other tests do not answer with success, called once each so that their answers
/// meet the document's schemas too (the checks are in `support::Rest::call`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_less_travelled_routes_answer_their_documented_views() {
    use serde_json::json;
    const ADMIN: &str = "admin-key-for-openapi-0123";
    let node = TestNode::start(GatewayConfig {
        admin_api_key: Some(ADMIN.into()),
        ..GatewayConfig::default()
    })
    .await;
    let rest = Rest::new(&node);
    let admin = Cred::Bearer(ADMIN);
    let ok =
        |r: &support::Res, what: &str| assert!((200..300).contains(&r.status), "{what}: {r:?}");

    let app = rest
        .call("POST", "/admin/apps", admin, Some(json!({"name": "spare"})))
        .await;
    ok(&app, "create an app");
    let app_id = app.body["id"].as_str().unwrap().to_string();
    for (method, body) in [("GET", None), ("PATCH", Some(json!({"name": "renamed"})))] {
        let r = rest
            .call(method, &format!("/admin/apps/{app_id}"), admin, body)
            .await;
        ok(&r, method);
    }
    let r = rest
        .call(
            "POST",
            &format!("/admin/apps/{app_id}/regenerate-key"),
            admin,
            None,
        )
        .await;
    assert_eq!(r.status, 410, "{r:?}");
    ok(
        &rest
            .call(
                "POST",
                "/admin/cluster/join-tokens",
                admin,
                Some(json!({"ttlSeconds": 60, "singleUse": true})),
            )
            .await,
        "join token",
    );
    let secret = rest
        .call(
            "POST",
            "/admin/cluster/token-secret/rotate",
            admin,
            Some(json!({"graceSeconds": 900})),
        )
        .await;
    assert_eq!(secret.status, 200, "{secret:?}");
    assert_eq!(secret.body["previousKid"], "chatsdk", "{secret:?}");
    let too_long = rest
        .call(
            "POST",
            "/admin/cluster/token-secret/rotate",
            admin,
            Some(json!({"graceSeconds": 2_592_001})),
        )
        .await;
    assert_eq!(too_long.status, 400, "{too_long:?}");
    let rotation = rest
        .call("POST", "/admin/cluster/ca/rotate", admin, None)
        .await;
    assert_eq!(rotation.status, 202, "{rotation:?}");
    assert_eq!(rotation.body["status"], "staged", "{rotation:?}");
    // One node: it trusts the new CA, renews under it and retires the old one at once.
    let fingerprint = rotation.body["fingerprint"].clone();
    support::eventually("the rotation of a single node completes", || {
        let rest = &rest;
        let fingerprint = fingerprint.clone();
        async move {
            let ca = rest.call("GET", "/admin/cluster", admin, None).await.body["ca"].clone();
            ca["fingerprint"] == fingerprint && ca["retiring"] == json!([])
        }
    })
    .await;
    ok(
        &rest
            .call("DELETE", &format!("/admin/apps/{app_id}"), admin, None)
            .await,
        "delete an app",
    );

    let (_, key) = node.app("main").await;
    let k = Cred::Key(&key);
    let ensured = rest
        .call(
            "POST",
            "/api/users/ensure",
            k,
            Some(json!({"user_id": "alice"})),
        )
        .await;
    ok(&ensured, "ensure a user");
    rest.ensure_user(&key, "bob").await;
    let minted = rest
        .call("POST", "/tokens", k, Some(json!({"userId": "alice"})))
        .await;
    ok(&minted, "mint");
    let alice = minted.body["token"].as_str().unwrap().to_string();
    let refresh = minted.body["refreshToken"].as_str().unwrap();
    let ws = minted.body["wsToken"].as_str().unwrap();
    ok(
        &rest
            .call("POST", "/tokens/refresh", Cred::Bearer(refresh), None)
            .await,
        "refresh",
    );
    ok(
        &rest
            .call("GET", "/tokens/validate-ws", Cred::Bearer(ws), None)
            .await,
        "validate a realtime token",
    );

    let group = rest
        .call(
            "POST",
            "/api/channels/group/ensure",
            k,
            Some(json!({"external_id": "team-1", "member_ids": ["alice", "bob"], "name": "g"})),
        )
        .await;
    ok(&group, "group ensure");
    let cid = group.body["channel"]["id"].as_str().unwrap().to_string();
    let sent = rest
        .call(
            "POST",
            "/api/messages",
            k,
            Some(json!({"channel_id": cid, "user_id": "bob", "text": "hello"})),
        )
        .await;
    ok(&sent, "send");
    let mid = sent.body["id"].as_str().unwrap().to_string();
    let a = Cred::Bearer(&alice);
    for (method, path, body) in [
        (
            "POST",
            format!("/api/channels/{cid}/read/query"),
            Some(json!({"messageIds": [mid]})),
        ),
        ("GET", format!("/api/channels/{cid}/read/read-status"), None),
        ("GET", "/api/devices/preferences".to_string(), None),
    ] {
        ok(&rest.call(method, &path, a, body).await, &path);
    }
    let report = rest
        .call(
            "POST",
            &format!("/api/messages/{mid}/report"),
            k,
            Some(json!({"user_id": "alice", "reason": "spam"})),
        )
        .await;
    ok(&report, "report");
    let rid = report.body["id"].as_str().unwrap();
    ok(
        &rest
            .call("GET", &format!("/api/moderation/reports/{rid}"), k, None)
            .await,
        "a report",
    );
    let rule = rest
        .call(
            "POST",
            "/api/auto-enrollment/rules",
            k,
            Some(json!({"rule_type": "all_users", "actions": {"join_channels": [cid]}})),
        )
        .await;
    ok(&rule, "a rule");
    let rule_id = rule.body["id"].as_str().unwrap();
    let hook = rest
        .call(
            "POST",
            "/api/webhooks",
            k,
            Some(json!({"url": "https://example.com/hook", "events": ["message.new"]})),
        )
        .await;
    ok(&hook, "a webhook");
    let hook_id = hook.body["id"].as_str().unwrap();
    let hold = rest
        .call(
            "POST",
            "/api/users/bob/legal-hold",
            k,
            Some(json!({"reason": "litigation"})),
        )
        .await;
    ok(&hold, "a hold");
    for (method, path, body) in [
        ("GET", "/api/enrollment/rules".to_string(), None),
        ("GET", format!("/api/auto-enrollment/rules/{rule_id}"), None),
        (
            "PATCH",
            format!("/api/auto-enrollment/rules/{rule_id}"),
            Some(json!({"name": "r2"})),
        ),
        ("GET", format!("/api/enrollment/rules/{rule_id}"), None),
        ("DELETE", format!("/api/enrollment/rules/{rule_id}"), None),
        ("DELETE", format!("/api/webhooks/{hook_id}"), None),
        ("DELETE", "/api/users/bob/legal-hold".to_string(), None),
        (
            "POST",
            "/api/devices".to_string(),
            Some(json!({"token": "device-token-1", "platform": "ios", "user_id": "alice"})),
        ),
        (
            "DELETE",
            "/api/devices/device-token-1?user_id=alice".to_string(),
            None,
        ),
        (
            "PATCH",
            format!("/api/channels/{cid}"),
            Some(json!({"name": "renamed"})),
        ),
        ("DELETE", format!("/api/channels/{cid}?user_id=alice"), None),
    ] {
        ok(&rest.call(method, &path, k, body).await, &path);
    }
}
