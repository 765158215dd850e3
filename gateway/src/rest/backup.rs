//! `GET /admin/backup`: an online, consistent backup of the node that answers, streamed as it is
//! taken (see `chatsdk_cluster::backup` for what it holds). `chatsdk backup <file>` calls it.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::auth::extract::Admin;
use crate::error::{ApiResult, AppError};
use crate::state::GatewayState;

/// Frames buffered between the backup and the client (each up to a file chunk, 1 MiB, or one
/// group's snapshot): a slow client slows the backup rather than filling memory.
const QUEUE: usize = 2;

/// One backup at a time per node: each holds a group's snapshot in memory while it is sent.
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// `GET /admin/backup`.
pub async fn backup(State(state): State<GatewayState>, _a: Admin) -> ApiResult<Response> {
    let permit = RUNNING.try_acquire().map_err(|_| {
        AppError::new(
            chatsdk_proto::ErrorCode::Conflict,
            "a backup of this node is already being taken",
        )
    })?;
    let cluster = state.chat.cluster().clone();
    let name = format!(
        "chatsdk-node-{}-{}.backup",
        cluster.id(),
        chatsdk_actors::time::now_ms() / 1000
    );
    let (tx, rx) = mpsc::channel::<Vec<u8>>(QUEUE);
    let task = tokio::spawn(async move {
        let _permit = permit;
        let media = [chatsdk_actors::MEDIA_DIR];
        cluster.backup(&media, tx).await
    });
    // The stream ends with the backup; a failure midway aborts the body, so the client holds a
    // file without its closing item, which a restore refuses.
    let body = futures::stream::unfold((rx, Some(task)), |(mut rx, task)| async move {
        if let Some(bytes) = rx.recv().await {
            return Some((Ok(Bytes::from(bytes)), (rx, task)));
        }
        let outcome = match task?.await {
            Ok(Ok(totals)) => {
                tracing::info!(
                    groups = totals.groups,
                    files = totals.files,
                    file_bytes = totals.file_bytes,
                    "backup taken"
                );
                return None;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::warn!(error = %outcome, "backup failed");
        Some((Err(std::io::Error::other(outcome)), (rx, None)))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from_stream(body))
        .map_err(|e| AppError::new(chatsdk_proto::ErrorCode::Internal, e.to_string()))
}
