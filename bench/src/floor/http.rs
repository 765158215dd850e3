//! The transports' floor: a server on one thread (a current-thread runtime) that answers each
//! request, or each WebSocket text frame, with a JSON body of a sent message's size and does
//! nothing else, driven closed-loop over loopback. Its thread's CPU per answer is what the
//! transport alone costs a send (parsing, framing, the socket calls), before any chat work.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// Connections, and answers measured per transport.
const CONNECTIONS: usize = 32;
const ANSWERS: usize = 40_000;

/// A send's body, as the harness sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Send {
    #[allow(dead_code)] // parsed, as a real handler parses it
    text: String,
    #[allow(dead_code)]
    client_msg_id: Option<String>,
}

/// An answer of a sent message's size (~700 bytes of JSON).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    id: &'a str,
    channel_id: &'a str,
    text: &'a str,
    seq: u64,
    padding: &'a str,
}

fn answer() -> Vec<u8> {
    let padding = "p".repeat(560);
    serde_json::to_vec(&Answer {
        id: "0190aaaa-bbbb-7000-8000-000000000001",
        channel_id: "0190aaaa-bbbb-7000-8000-000000000002",
        text: "hello",
        seq: 1,
        padding: &padding,
    })
    .unwrap_or_default()
}

async fn rest_send(axum::Json(_body): axum::Json<Send>) -> impl IntoResponse {
    (
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer(),
    )
}

async fn ws_upgrade(ws: WebSocketUpgrade) -> impl IntoResponse {
    ws.on_upgrade(ws_session)
}

async fn ws_session(mut socket: WebSocket) {
    while let Some(Ok(msg)) = socket.recv().await {
        if let Message::Text(t) = msg {
            if serde_json::from_str::<Send>(t.as_str()).is_err() {
                return;
            }
            let reply = String::from_utf8(answer()).unwrap_or_default();
            if socket.send(Message::Text(reply.into())).await.is_err() {
                return;
            }
        }
    }
}

/// Runs the server on its own thread until told to stop; returns its CPU µs and its address.
fn serve() -> anyhow::Result<(
    std::net::SocketAddr,
    oneshot::Sender<()>,
    std::thread::JoinHandle<anyhow::Result<u64>>,
)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> anyhow::Result<u64> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let app = axum::Router::new()
                .route("/api/channels/{id}/messages", post(rest_send))
                .route("/ws", get(ws_upgrade));
            let before = super::thread_cpu_us();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await?;
            Ok(super::thread_cpu_us().saturating_sub(before))
        })
    });
    Ok((addr, stop, server))
}

fn body() -> String {
    format!(
        "{{\"text\":\"{}\",\"clientMsgId\":\"b3000-1\"}}",
        "x".repeat(100)
    )
}

/// Server CPU µs per REST send answered.
pub async fn rest_us() -> anyhow::Result<f64> {
    let (addr, stop, server) = serve()?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS)
        .build()?;
    let url = format!("http://{addr}/api/channels/c1/messages");
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ANSWERS / CONNECTIONS {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body())
                    .send()
                    .await?;
                anyhow::ensure!(r.status() == 201, "status {}", r.status());
                r.bytes().await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    drop(client);
    let _ = stop.send(());
    let cpu = server
        .join()
        .map_err(|_| anyhow::anyhow!("floor server panicked"))??;
    Ok(cpu as f64 / (ANSWERS / CONNECTIONS * CONNECTIONS) as f64)
}

/// Server CPU µs per WebSocket send answered.
pub async fn ws_us() -> anyhow::Result<f64> {
    let (addr, stop, server) = serve()?;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let url = format!("ws://{addr}/ws");
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
            for _ in 0..ANSWERS / CONNECTIONS {
                ws.send(tokio_tungstenite::tungstenite::Message::Text(body().into()))
                    .await?;
                match ws.next().await {
                    Some(Ok(tokio_tungstenite::tungstenite::Message::Text(_))) => {}
                    other => anyhow::bail!("unexpected answer {other:?}"),
                }
            }
            let _ = ws.close(None).await;
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let _ = stop.send(());
    let cpu = server
        .join()
        .map_err(|_| anyhow::anyhow!("floor server panicked"))??;
    Ok(cpu as f64 / (ANSWERS / CONNECTIONS * CONNECTIONS) as f64)
}
