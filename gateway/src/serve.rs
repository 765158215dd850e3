//! Serving the router on a TCP listener, with what a public port needs.
//!
//! `axum::serve` sets no header-read timeout (hyper's needs a timer), so connections are served
//! here through hyper directly: a slow client gets `header_read_timeout` to send its headers.
//! Accepted connections are capped (a permit is taken before a connection is served). On
//! shutdown the listener stops, readiness turns 503 and realtime sessions close with 3001;
//! requests in flight get the drain timeout to finish. With a TLS config ([`serve_tls`]) each
//! connection is a TLS one (HTTPS and WSS), its handshake bounded by the header-read timeout.

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::GatewayState;

/// Binds the public port with an accept queue of `backlog` connections (the kernel caps it at
/// `net.core.somaxconn`). A burst of connects larger than the queue loses SYNs, and each lost
/// one costs its client a retransmission a second later: the default 1,024 of
/// `TcpListener::bind` overflowed in the bench's connect bursts (`TcpExtListenOverflows`).
pub fn bind(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart need not wait out the old sockets' TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Serves `app(state)` on `listener` until `shutdown` is cancelled, then drains.
pub async fn serve(
    listener: TcpListener,
    state: GatewayState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_tls(listener, state, shutdown, None).await
}

/// [`serve`], over TLS when `tls` is given.
pub async fn serve_tls(
    listener: TcpListener,
    state: GatewayState,
    shutdown: CancellationToken,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let router = crate::app(state.clone());
    // Room above the realtime cap for REST calls; beyond it, connections are refused at once.
    let permits = Arc::new(Semaphore::new(state.config.max_connections + 1024));
    let tracker = TaskTracker::new();
    let header_timeout = state.config.header_read_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stop = shutdown.clone();
        let acceptor = acceptor.clone();
        tracker.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => connection(stream, service, header_timeout, stop, peer).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(header_timeout, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(tls)) => connection(tls, service, header_timeout, stop, peer).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    state.draining.cancel();
    tracker.close();
    if tokio::time::timeout(state.config.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout passed with connections still open");
    }
    Ok(())
}

/// Serves one HTTP/1.1 connection (with upgrades) until it ends or `stop` asks it to finish.
async fn connection<I>(
    io: I,
    service: TowerToHyperService<axum::Router>,
    header_timeout: std::time::Duration,
    stop: CancellationToken,
    peer: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
