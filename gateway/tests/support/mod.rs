//! Test harness: real nodes (sled in temp dirs, QUIC and HTTP on 127.0.0.1:0), a REST client
//! and a Centrifugo-protocol WebSocket client.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatsdk_actors::{Chat, ChatConfig};
use chatsdk_cluster::{ClusterConfig, StartMode};
use chatsdk_gateway::{GatewayConfig, GatewayState};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub mod schema;

pub const WAIT: Duration = Duration::from_secs(20);

/// Cluster settings for tests: a few shards, quick elections.
pub fn cluster_config(dir: &std::path::Path) -> ClusterConfig {
    let mut c = ClusterConfig::new(dir, "127.0.0.1:0".parse().unwrap());
    c.shards = 4;
    c.heartbeat = Duration::from_millis(200);
    c.election_timeout = (Duration::from_millis(800), Duration::from_millis(1600));
    c
}

/// One node with its HTTP server.
pub struct TestNode {
    pub chat: Chat,
    pub state: GatewayState,
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    pub dir: tempfile::TempDir,
}

/// The chat settings of test nodes: a short history.
pub fn test_chat_config() -> ChatConfig {
    ChatConfig {
        history_size: 100,
        // Tests poll search until the index has caught up.
        search_rate_per_minute: 100_000,
        ..ChatConfig::default()
    }
}

impl TestNode {
    pub async fn start(config: GatewayConfig) -> TestNode {
        Self::start_mode(config, StartMode::Bootstrap, None).await
    }

    pub async fn start_mode(
        config: GatewayConfig,
        mode: StartMode,
        dir: Option<tempfile::TempDir>,
    ) -> TestNode {
        Self::start_full(config, test_chat_config(), mode, dir).await
    }

    /// A node joining or bootstrapping with its own chat settings.
    pub async fn start_mode_chat(
        config: GatewayConfig,
        chat: ChatConfig,
        mode: StartMode,
    ) -> TestNode {
        Self::start_full(config, chat, mode, None).await
    }

    /// A node with its own chat settings (rate limits, history).
    pub async fn start_chat(config: GatewayConfig, chat: ChatConfig) -> TestNode {
        Self::start_full(config, chat, StartMode::Bootstrap, None).await
    }

    async fn start_full(
        config: GatewayConfig,
        chat_config: ChatConfig,
        mode: StartMode,
        dir: Option<tempfile::TempDir>,
    ) -> TestNode {
        Self::start_in(config, chat_config, mode, dir, |_| {}).await
    }

    /// A node whose cluster settings `tune` changes from [`cluster_config`]'s.
    pub async fn start_tuned(
        config: GatewayConfig,
        chat_config: ChatConfig,
        mode: StartMode,
        tune: impl FnOnce(&mut ClusterConfig),
    ) -> TestNode {
        Self::start_in(config, chat_config, mode, None, tune).await
    }

    async fn start_in(
        config: GatewayConfig,
        chat_config: ChatConfig,
        mode: StartMode,
        dir: Option<tempfile::TempDir>,
        tune: impl FnOnce(&mut ClusterConfig),
    ) -> TestNode {
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        let mut cluster = cluster_config(dir.path());
        tune(&mut cluster);
        let chat = Chat::start(cluster, mode, chat_config)
            .await
            .expect("node starts");
        let state = GatewayState::new(chat.clone(), config)
            .await
            .expect("gateway state");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = listener.local_addr().unwrap();
        let _ = state.http_addr.set(http);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(chatsdk_gateway::serve(
            listener,
            state.clone(),
            shutdown.clone(),
        ));
        TestNode {
            chat,
            state,
            http,
            shutdown,
            server,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/connection/websocket", self.http)
    }

    /// Creates an app and returns `(app id, server key)`.
    pub async fn app(&self, name: &str) -> (String, String) {
        let app = self.chat.create_app(None, name, json!({})).await.unwrap();
        let (_, key) = self
            .chat
            .create_api_key(&app.id, "test", chatsdk_actors::model::full_key_scopes())
            .await
            .unwrap();
        (app.id, key)
    }

    pub async fn stop(self) -> tempfile::TempDir {
        self.state.draining.cancel();
        self.shutdown.cancel();
        let _ = self.server.await;
        self.chat.shutdown().await;
        self.dir
    }
}

/// A thin REST client.
#[derive(Clone)]
pub struct Rest {
    pub base: String,
    pub http: reqwest::Client,
}

/// A response: status and JSON body (Null when empty or not JSON).
/// An answer, checked against the OpenAPI document (see [`schema`]).
async fn answer(method: &str, path: &str, res: reqwest::Response) -> Res {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = schema::check(method, path, status, content_type, &body) {
        panic!("{e}");
    }
    Res {
        status,
        body,
        headers,
    }
}

#[derive(Debug)]
pub struct Res {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

#[derive(Clone, Copy)]
pub enum Cred<'a> {
    None,
    Key(&'a str),
    Bearer(&'a str),
    Both(&'a str, &'a str),
}

impl Rest {
    pub fn new(node: &TestNode) -> Rest {
        Rest {
            base: format!("http://{}", node.http),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, cred: Cred<'_>, body: Option<Value>) -> Res {
        let method_name = method;
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        req = match cred {
            Cred::None => req,
            Cred::Key(k) => req.header("X-API-Key", k),
            Cred::Bearer(t) => req.bearer_auth(t),
            Cred::Both(t, k) => req.bearer_auth(t).header("X-API-Key", k),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request sent");
        answer(method_name, path, res).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Res {
        let method_name = method;
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send().await.expect("request sent");
        answer(method_name, path, res).await
    }

    /// Creates (or finds) user `id` with a server key.
    pub async fn ensure_user(&self, key: &str, id: &str) {
        let r = self
            .call(
                "POST",
                "/api/users",
                Cred::Key(key),
                Some(json!({"user_id": id})),
            )
            .await;
        assert!(r.status == 201 || r.status == 200, "{r:?}");
    }

    /// Creates a group channel named `name` as the token's user, with `members`; its id.
    pub async fn group(&self, token: &str, name: &str, members: &[&str]) -> String {
        let r = self
            .call(
                "POST",
                "/api/channels",
                Cred::Bearer(token),
                Some(json!({"type": "group", "name": name, "memberIds": members})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body["id"].as_str().unwrap_or_default().to_string()
    }

    /// Mints tokens for `user` with a server key: `(access token, ws token)`.
    pub async fn login(&self, key: &str, user: &str) -> (String, String) {
        let r = self
            .call(
                "POST",
                "/tokens",
                Cred::Key(key),
                Some(json!({"userId": user, "name": user})),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        (
            r.body["token"].as_str().unwrap().to_string(),
            r.body["wsToken"].as_str().unwrap().to_string(),
        )
    }
}

/// Asserts an error response's shape and code.
pub fn assert_error(r: &Res, status: u16, code: &str) {
    assert_eq!(r.status, status, "unexpected status, body {:?}", r.body);
    assert_eq!(r.body["error"]["code"], code, "body {:?}", r.body);
    assert!(r.body["error"]["message"].is_string(), "body {:?}", r.body);
    assert!(
        r.body["error"]["requestId"].is_string(),
        "body {:?}",
        r.body
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Centrifugo-protocol client over WebSocket.
pub struct WsClient {
    ws: Ws,
    next_id: u32,
    /// Pushes and replies received but not consumed yet.
    pub inbox: Vec<Value>,
    /// The close frame, once received.
    pub closed: Option<(u16, String)>,
}

impl WsClient {
    pub async fn open(url: &str) -> WsClient {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket opens");
        WsClient {
            ws,
            next_id: 0,
            inbox: Vec::new(),
            closed: None,
        }
    }

    /// Sends a raw text frame.
    pub async fn send_raw(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("frame sent");
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(Message::Binary(data.to_vec().into()))
            .await
            .expect("frame sent");
    }

    /// Sends `{"id": n, method: params}` and returns `n`.
    pub async fn send(&mut self, method: &str, params: Value) -> u32 {
        self.next_id += 1;
        let id = self.next_id;
        let mut cmd = json!({"id": id});
        cmd[method] = params;
        self.send_raw(&cmd.to_string()).await;
        id
    }

    /// Reads one frame into the inbox (waiting until `deadline` at most); false once the
    /// connection is closed.
    pub async fn pump(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                for line in t.as_str().split('\n').filter(|l| !l.trim().is_empty()) {
                    let v: Value = serde_json::from_str(line).expect("server sends JSON");
                    if v.as_object().is_some_and(|o| o.is_empty()) {
                        // Server ping: answer with a pong.
                        let _ = self.ws.send(Message::Text("{}".into())).await;
                        continue;
                    }
                    self.inbox.push(v);
                }
                true
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                self.closed = Some(
                    frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                );
                false
            }
            Ok(Some(Ok(_))) => true,
            Ok(Some(Err(_))) | Ok(None) => {
                if self.closed.is_none() {
                    self.closed = Some((1006, String::new()));
                }
                false
            }
            Err(_) => true,
        }
    }

    /// Waits for the first inbox item matching `pred` and removes it.
    pub async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.inbox.iter().position(&pred) {
                return self.inbox.remove(i);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; inbox {:?}, closed {:?}",
                self.inbox,
                self.closed
            );
            if !self.pump(deadline).await {
                if let Some(i) = self.inbox.iter().position(&pred) {
                    return self.inbox.remove(i);
                }
                panic!(
                    "connection closed ({:?}) while waiting for {what}; inbox {:?}",
                    self.closed, self.inbox
                );
            }
        }
    }

    /// Waits for the reply to command `id`.
    pub async fn reply(&mut self, id: u32) -> Value {
        self.wait_for(&format!("reply {id}"), |v| v["id"] == id)
            .await
    }

    /// Sends a command and waits for its reply.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params).await;
        self.reply(id).await
    }

    /// Waits until the server closes the connection; returns the close code.
    pub async fn wait_close(&mut self) -> u16 {
        let deadline = Instant::now() + WAIT;
        while self.closed.is_none() {
            assert!(
                Instant::now() < deadline,
                "connection not closed; inbox {:?}",
                self.inbox
            );
            self.pump(deadline).await;
        }
        self.closed.as_ref().map(|c| c.0).unwrap_or(0)
    }

    /// Publications on `channel` received so far (in order), removed from the inbox.
    pub fn take_pubs(&mut self, channel: &str) -> Vec<Value> {
        let (pubs, rest): (Vec<Value>, Vec<Value>) = std::mem::take(&mut self.inbox)
            .into_iter()
            .partition(|v| v["push"]["channel"] == channel && v["push"]["pub"].is_object());
        self.inbox = rest;
        pubs.into_iter().map(|v| v["push"]["pub"].clone()).collect()
    }

    /// Waits until `n` publications on `channel` have arrived (counting those already taken
    /// into `acc`).
    pub async fn collect_pubs(&mut self, channel: &str, acc: &mut Vec<Value>, n: usize) {
        let deadline = Instant::now() + WAIT;
        loop {
            acc.extend(self.take_pubs(channel));
            if acc.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "got {} of {n} publications on {channel}",
                acc.len()
            );
            if !self.pump(deadline).await {
                acc.extend(self.take_pubs(channel));
                assert!(
                    acc.len() >= n,
                    "closed ({:?}) after {} of {n} publications",
                    self.closed,
                    acc.len()
                );
                return;
            }
        }
    }

    /// Connects with `token`; returns the connect result.
    pub async fn connect(&mut self, token: &str) -> Value {
        let r = self
            .call("connect", json!({"token": token, "name": "test"}))
            .await;
        assert!(r["connect"].is_object(), "connect failed: {r:?}");
        r["connect"].clone()
    }

    pub async fn close(mut self) {
        let _ = self
            .ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    }
}

/// Polls `f` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Hit {
    /// The request's path and query.
    pub uri: String,
    /// Header names in lower case.
    pub headers: std::collections::HashMap<String, String>,
    pub raw: Vec<u8>,
    pub body: Value,
    /// What the receiver answered.
    pub status: u16,
}

/// A local HTTP receiver for webhooks (on 127.0.0.1): records every POST and answers with the
/// statuses queued in `answers` (200 once they run out).
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub hits: std::sync::Arc<std::sync::Mutex<Vec<Hit>>>,
    pub answers: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use axum::body::Bytes;
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        let rx = Receiver {
            addr: "127.0.0.1:0".parse().unwrap(),
            hits: Default::default(),
            answers: Default::default(),
        };
        async fn hook(
            State(rx): State<Receiver>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let status = rx.answers.lock().unwrap().pop_front().unwrap_or(200);
            rx.hits.lock().unwrap().push(Hit {
                uri: uri.to_string(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect(),
                raw: body.to_vec(),
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                status,
            });
            StatusCode::from_u16(status).unwrap()
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rx = Receiver { addr, ..rx };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(rx.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        rx
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.answers
            .lock()
            .unwrap()
            .extend(statuses.iter().copied());
    }

    /// Waits until a hit satisfies `pred`; returns it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Hit) -> bool) -> Hit {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(h) = self.hits().into_iter().find(|h| pred(h)) {
                return h;
            }
            assert!(
                Instant::now() < deadline,
                "no webhook delivery: {what}; got {:?}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
