//! The gathering step shared by the proposal batcher and the forwarder: wait for a free
//! in-flight slot, then for a first item, then take whatever else is already queued, up to a
//! count and a byte budget. Items that arrive while earlier batches are in flight therefore form
//! the next batch instead of going out one by one.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Limits of one batch.
pub(crate) struct Limits {
    pub(crate) max_items: usize,
    pub(crate) max_bytes: usize,
}

/// The next batch and the in-flight slot it holds, or `None` once the queue is closed. Callers
/// stop waiting on shutdown by racing it against their cancellation (one registration with the
/// token for the caller's whole loop, not two per batch).
pub(crate) async fn next_batch<T>(
    rx: &mut mpsc::Receiver<T>,
    slots: &Arc<Semaphore>,
    limits: &Limits,
    size: impl Fn(&T) -> usize,
) -> Option<(OwnedSemaphorePermit, Vec<T>)> {
    let permit = slots.clone().acquire_owned().await.ok()?;
    let first = rx.recv().await?;
    let mut bytes = size(&first);
    let mut batch = vec![first];
    while batch.len() < limits.max_items && bytes < limits.max_bytes {
        match rx.try_recv() {
            Ok(item) => {
                bytes += size(&item);
                batch.push(item);
            }
            Err(_) => break,
        }
    }
    Some((permit, batch))
}
