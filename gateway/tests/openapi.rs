//! `/api/openapi.json` describes the router exactly: every route the router serves (read from
//! its source, method by method) is in the document, and every operation of the document is
//! answered by a handler of a live node (not by the router's fallbacks). The request bodies
//! carry the schemas of the types the handlers read.

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

    // Bodies are the handlers' types: names, aliases' canonical spelling, what is required.
    let send = &doc["paths"]["/api/channels/{id}/messages"]["post"];
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
