//! The accepting side: the accept loop, one task per connection, one task per stream.
//!
//! Task structure (so that shutdown ends everything): the accept loop owns a `JoinSet` of
//! connection tasks and each cluster connection task owns a `JoinSet` of stream tasks.
//! Cancelling the shared token ends the accept loop, which aborts its connection tasks,
//! whose `JoinSet`s abort their stream tasks. Per-connection concurrency is bounded by the
//! QUIC stream limits set in [`crate::tls::quic_transport_config`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, Incoming, RecvStream, SendStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};
use tracing::Instrument;

use super::frame::{self, FrameError, Response};
use super::join::{MAX_JOIN_FRAME_BYTES, MAX_JOIN_RESPONSE_BYTES};
use super::{peer_leaf, NodeId, Shared};
use crate::tls::{self, ALPN_CLUSTER, ALPN_JOIN};

/// Connections (of any kind, including ones still handshaking) served at once; further
/// attempts are refused so a flood of handshakes cannot spawn unbounded tasks.
const MAX_INCOMING_CONNECTIONS: usize = 1024;
/// Unauthenticated join connections served at once; more are closed as busy.
const MAX_JOIN_CONNECTIONS: usize = 16;
/// A join connection is closed after this long, whatever it is doing.
const JOIN_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);
/// A cluster connection must complete its hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest refusal or join error text sent back; longer texts are cut.
const MAX_REASON_BYTES: usize = 512;

/// Accepts connections until the transport is cancelled or the endpoint is closed.
pub(super) async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    let join_slots = Arc::new(Semaphore::new(MAX_JOIN_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if !incoming.remote_address_validated() && incoming.may_retry() {
                    // Stateless retry: a sender must prove it receives at its source address
                    // before it gets any state here, so spoofed Initial packets cannot fill the
                    // connection slots below.
                    if let Err(e) = incoming.retry() {
                        tracing::debug!(error = %e, "retry failed");
                    }
                    continue;
                }
                if conns.len() >= MAX_INCOMING_CONNECTIONS {
                    tracing::warn!(remote = %incoming.remote_address(), "too many connections, refusing");
                    incoming.refuse();
                    continue;
                }
                let span = tracing::debug_span!("conn", remote = %incoming.remote_address(), peer = tracing::field::Empty);
                let cancel = shared.cancel.clone();
                let serve = serve_connection(shared.clone(), incoming, join_slots.clone());
                conns.spawn(
                    async move {
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            () = serve => {}
                        }
                    }
                    .instrument(span),
                );
            }
            Some(ended) = conns.join_next(), if !conns.is_empty() => log_task_end("connection", ended),
        }
    }
    conns.shutdown().await;
}

fn log_task_end(what: &'static str, ended: Result<(), JoinError>) {
    if let Err(e) = ended {
        if e.is_panic() {
            tracing::error!(task = what, error = %e, "transport task panicked");
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, incoming: Incoming, join_slots: Arc<Semaphore>) {
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|data| data.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|data| data.protocol);
    match alpn.as_deref() {
        Some(ALPN_CLUSTER) => serve_cluster(shared, conn).await,
        Some(ALPN_JOIN) => match join_slots.try_acquire_owned() {
            Ok(_slot) => serve_join(shared, conn).await,
            Err(_) => conn.close(frame::CLOSE_BUSY, b"too many join connections"),
        },
        _ => conn.close(frame::CLOSE_PROTOCOL, b"unknown alpn"),
    }
}

/// A cluster connection: requires a verified client certificate and a hello naming the node
/// that certificate was issued to, then serves requests and messages from that node.
async fn serve_cluster(shared: Arc<Shared>, conn: Connection) {
    let Some(leaf) = peer_leaf(&conn) else {
        tracing::warn!("cluster connection without a client certificate, closing");
        conn.close(
            frame::CLOSE_UNAUTHENTICATED,
            b"cluster connections require a client certificate",
        );
        return;
    };
    let from = match tokio::time::timeout(HELLO_TIMEOUT, accept_hello(&shared, &conn, &leaf)).await
    {
        Ok(Ok(from)) => from,
        Ok(Err(reason)) => {
            tracing::warn!(%reason, "bad hello, closing");
            conn.close(frame::CLOSE_BAD_HELLO, truncate(&reason).as_bytes());
            return;
        }
        Err(_) => {
            tracing::warn!("no hello in time, closing");
            conn.close(frame::CLOSE_BAD_HELLO, b"no hello in time");
            return;
        }
    };
    tracing::Span::current().record("peer", from);
    tracing::debug!("cluster peer connected");
    let mut streams = JoinSet::new();
    let mut trust = shared.trust.subscribe();
    loop {
        tokio::select! {
            Ok(()) = trust.changed() => {
                if !trust.borrow_and_update().admits(&leaf) {
                    tracing::info!("peer certificate no longer trusted (its CA was retired), closing");
                    conn.close(frame::CLOSE_UNAUTHENTICATED, b"certificate authority retired");
                    break;
                }
            }
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    streams.spawn(serve_request(shared.clone(), from, send, recv).in_current_span());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended");
                    break;
                }
            },
            uni = conn.accept_uni() => match uni {
                Ok(recv) => {
                    streams.spawn(serve_message(shared.clone(), from, recv).in_current_span());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended");
                    break;
                }
            },
            Some(ended) = streams.join_next(), if !streams.is_empty() => log_task_end("stream", ended),
        }
    }
}

/// Reads the dialer's node id, checks its certificate was issued to that node, answers with
/// ours.
async fn accept_hello(
    shared: &Shared,
    conn: &Connection,
    leaf: &rustls::pki_types::CertificateDer<'_>,
) -> Result<NodeId, String> {
    let (mut send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let payload = frame::read_frame(&mut recv, frame::HELLO_LEN)
        .await
        .map_err(|e| format!("bad hello: {e}"))?;
    let from = frame::decode_hello(&payload).map_err(|e| e.to_string())?;
    let refused = match tls::verify_node_cert_name(leaf, from) {
        Err(e) => Some(format!("certificate is not issued to node {from}: {e}")),
        Ok(()) if !shared.handler.admits(from) => {
            Some(format!("node {from} was removed from the cluster"))
        }
        Ok(()) => None,
    };
    if let Some(reason) = refused {
        // Best effort: the connection is closed right after either way.
        if frame::write_response(&mut send, &Response::Refused(truncate(&reason)))
            .await
            .is_ok()
        {
            send.finish().ok();
        }
        return Err(reason);
    }
    frame::write_response(
        &mut send,
        &Response::Ok(frame::encode_hello(shared.node_id)),
    )
    .await
    .map_err(|e| format!("hello response not sent: {e}"))?;
    send.finish().map_err(|e| e.to_string())?;
    Ok(from)
}

/// One request stream: read the frame, run the handler, answer (subject to faults).
async fn serve_request(
    shared: Arc<Shared>,
    from: NodeId,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    // One registration with the token for the whole request, whichever step it interrupts.
    let cancelled = shared.cancel.cancelled();
    tokio::pin!(cancelled);
    let response = tokio::select! {
        () = &mut cancelled => {
            send.reset(frame::RESET_SHUTDOWN).ok();
            return;
        }
        response = handle_request(&shared, from, &mut recv) => response,
    };
    let Some(response) = response else {
        send.reset(frame::RESET_BAD_REQUEST).ok();
        return;
    };
    // Faults act on what this node sends to `from`: delay the response, or lose it.
    if let Some(delay) = shared.faults.delay_of(from) {
        tokio::select! {
            () = &mut cancelled => {
                send.reset(frame::RESET_SHUTDOWN).ok();
                return;
            }
            () = tokio::time::sleep(delay) => {}
        }
    }
    if shared.faults.is_dropped(from) {
        send.reset(frame::RESET_DROPPED).ok();
        return;
    }
    let written = tokio::select! {
        () = &mut cancelled => return,
        written = frame::write_response(&mut send, &response) => written,
    };
    match written {
        Ok(()) => {
            send.finish().ok();
        }
        Err(e) => tracing::debug!(error = %e, "response not delivered"),
    }
}

async fn handle_request(shared: &Shared, from: NodeId, recv: &mut RecvStream) -> Option<Response> {
    let max = shared.max_frame_bytes;
    match frame::read_frame(recv, max).await {
        Ok(body) => {
            let response = shared.handler.request(from, body).await;
            if response.len() > max {
                tracing::warn!(
                    len = response.len(),
                    max,
                    "handler response exceeds the frame limit"
                );
                return Some(Response::TooLarge {
                    len: response.len(),
                    max,
                });
            }
            Some(Response::Ok(Bytes::from(response)))
        }
        Err(FrameError::TooLarge { len, max }) => {
            tracing::warn!(len, max, "request frame too large, refusing");
            recv.stop(frame::STOP_TOO_LARGE).ok();
            Some(Response::TooLarge { len, max })
        }
        Err(e) => {
            tracing::debug!(error = %e, "request not read");
            None
        }
    }
}

/// One message stream: read the frame and hand it to the handler.
async fn serve_message(shared: Arc<Shared>, from: NodeId, mut recv: RecvStream) {
    match frame::read_frame(&mut recv, shared.max_frame_bytes).await {
        Ok(body) => shared.handler.message(from, body),
        Err(FrameError::TooLarge { len, max }) => {
            tracing::warn!(len, max, "message frame too large, dropping");
            recv.stop(frame::STOP_TOO_LARGE).ok();
        }
        Err(e) => tracing::debug!(error = %e, "message not read"),
    }
}

/// A join connection: every bidirectional stream is a join request, served one at a time;
/// any unidirectional stream is a protocol violation. Nothing here reaches `request` or
/// `message`.
async fn serve_join(shared: Arc<Shared>, conn: Connection) {
    let served = tokio::time::timeout(JOIN_CONNECTION_LIFETIME, async {
        loop {
            tokio::select! {
                bi = conn.accept_bi() => match bi {
                    Ok((send, recv)) => serve_join_request(&shared, send, recv).await,
                    Err(_) => return,
                },
                uni = conn.accept_uni() => {
                    if uni.is_ok() {
                        conn.close(frame::CLOSE_PROTOCOL, b"join connections carry only join requests");
                    }
                    return;
                }
            }
        }
    })
    .await;
    if served.is_err() {
        conn.close(frame::CLOSE_NORMAL, b"join connection lifetime exceeded");
    }
}

async fn serve_join_request(shared: &Shared, mut send: SendStream, mut recv: RecvStream) {
    let response = match frame::read_frame(&mut recv, MAX_JOIN_FRAME_BYTES).await {
        Ok(body) => match shared.handler.join(body).await {
            Ok(bytes) if bytes.len() > MAX_JOIN_RESPONSE_BYTES => Response::TooLarge {
                len: bytes.len(),
                max: MAX_JOIN_RESPONSE_BYTES,
            },
            Ok(bytes) => Response::Ok(Bytes::from(bytes)),
            Err(text) => Response::Error(truncate(&text)),
        },
        Err(FrameError::TooLarge { len, max }) => {
            recv.stop(frame::STOP_TOO_LARGE).ok();
            Response::TooLarge { len, max }
        }
        Err(e) => {
            tracing::debug!(error = %e, "join request not read");
            return;
        }
    };
    match frame::write_response(&mut send, &response).await {
        Ok(()) => {
            send.finish().ok();
        }
        Err(e) => tracing::debug!(error = %e, "join response not delivered"),
    }
}

/// Cuts `text` to at most [`MAX_REASON_BYTES`] on a character boundary.
fn truncate(text: &str) -> String {
    if text.len() <= MAX_REASON_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_REASON_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
