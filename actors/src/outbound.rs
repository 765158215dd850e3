//! A connection's outbound queue, bounded in bytes.
//!
//! Everything a client receives (replies, publications, pings) is queued here as pre-encoded
//! frames and written by the connection's writer. Publications are shared `Bytes`, so queuing
//! one for thousands of sessions copies nothing. When a client reads too slowly and the queue
//! would exceed its byte limit, the queue closes with 3008 ("slow"): the client reconnects and
//! recovers from its last offset, and the channel never waits for it.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Why a connection is being closed: a close code of the realtime protocol and its reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    pub const SHUTDOWN: CloseReason = CloseReason {
        code: 3001,
        reason: "shutdown",
    };
    pub const INTERNAL: CloseReason = CloseReason {
        code: 3004,
        reason: "internal server error",
    };
    pub const EXPIRED: CloseReason = CloseReason {
        code: 3005,
        reason: "connection expired",
    };
    pub const SLOW: CloseReason = CloseReason {
        code: 3008,
        reason: "slow",
    };
    pub const INSUFFICIENT_STATE: CloseReason = CloseReason {
        code: 3010,
        reason: "insufficient state",
    };
    pub const NO_PONG: CloseReason = CloseReason {
        code: 3012,
        reason: "no pong",
    };
    pub const TOO_MANY_REQUESTS: CloseReason = CloseReason {
        code: 3013,
        reason: "too many requests",
    };
    pub const INVALID_TOKEN: CloseReason = CloseReason {
        code: 3500,
        reason: "invalid token",
    };
    pub const BAD_REQUEST: CloseReason = CloseReason {
        code: 3501,
        reason: "bad request",
    };
    pub const FORCE_DISCONNECT: CloseReason = CloseReason {
        code: 3503,
        reason: "force disconnect",
    };
    /// The user is banned from the app (terminal, like every force disconnect).
    pub const BANNED: CloseReason = CloseReason {
        code: 3503,
        reason: "banned",
    };
    pub const CONNECTION_LIMIT: CloseReason = CloseReason {
        code: 3504,
        reason: "connection limit",
    };
    pub const CHANNEL_LIMIT: CloseReason = CloseReason {
        code: 3505,
        reason: "channel limit",
    };
}

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    close: Option<CloseReason>,
}

/// What the writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Write these frames (in order), ideally in one write.
    Frames(Vec<Bytes>),
    /// Send a close frame with this reason and stop.
    Close(CloseReason),
}

/// The bounded outbound queue of one connection.
pub struct Outbound {
    state: Mutex<State>,
    notify: Notify,
    limit: usize,
}

impl Outbound {
    /// A queue holding at most `limit_bytes` of unwritten frames.
    pub fn new(limit_bytes: usize) -> Self {
        Outbound {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            limit: limit_bytes,
        }
    }

    /// Queues a frame. Returns false (and closes the queue with 3008) when the frame does not
    /// fit, or false when the queue is already closed.
    pub fn push(&self, frame: Bytes) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if s.close.is_some() {
            return false;
        }
        if s.bytes + frame.len() > self.limit {
            s.close = Some(CloseReason::SLOW);
            s.frames.clear();
            s.bytes = 0;
            drop(s);
            self.notify.notify_one();
            return false;
        }
        s.bytes += frame.len();
        s.frames.push_back(frame);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Closes the connection with `reason` once (the first reason wins); unwritten frames are
    /// dropped.
    pub fn close(&self, reason: CloseReason) {
        if let Ok(mut s) = self.state.lock() {
            if s.close.is_none() {
                s.close = Some(reason);
                s.frames.clear();
                s.bytes = 0;
            }
        }
        self.notify.notify_one();
    }

    /// The byte limit of the queue: no single frame larger than this can ever be queued.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether the queue was closed, and why.
    pub fn closed(&self) -> Option<CloseReason> {
        self.state.lock().ok().and_then(|s| s.close)
    }

    /// Waits for frames (all that are queued, up to `max_bytes` but at least one) or a close.
    pub async fn next(&self, max_bytes: usize) -> Next {
        loop {
            let notified = self.notify.notified();
            {
                let Ok(mut s) = self.state.lock() else {
                    return Next::Close(CloseReason::INTERNAL);
                };
                if let Some(reason) = s.close {
                    return Next::Close(reason);
                }
                if !s.frames.is_empty() {
                    let mut out = Vec::new();
                    let mut taken = 0;
                    while let Some(f) = s.frames.front() {
                        if !out.is_empty() && taken + f.len() > max_bytes {
                            break;
                        }
                        taken += f.len();
                        if let Some(f) = s.frames.pop_front() {
                            out.push(f);
                        }
                    }
                    s.bytes -= taken;
                    if s.frames.is_empty() {
                        // An idle connection keeps no room for frames.
                        s.frames = VecDeque::new();
                    }
                    return Next::Frames(out);
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_come_out_in_order_and_batched() {
        let q = Outbound::new(100);
        assert!(q.push(Bytes::from_static(b"a")));
        assert!(q.push(Bytes::from_static(b"bb")));
        assert_eq!(
            q.next(1024).await,
            Next::Frames(vec![Bytes::from_static(b"a"), Bytes::from_static(b"bb")])
        );
    }

    #[tokio::test]
    async fn overflow_closes_with_slow() {
        let q = Outbound::new(10);
        assert!(q.push(Bytes::from_static(b"12345678")));
        assert!(!q.push(Bytes::from_static(b"123")));
        assert_eq!(q.next(1024).await, Next::Close(CloseReason::SLOW));
        assert!(!q.push(Bytes::from_static(b"1")));
    }

    #[tokio::test]
    async fn first_close_reason_wins() {
        let q = Outbound::new(10);
        q.close(CloseReason::SHUTDOWN);
        q.close(CloseReason::SLOW);
        assert_eq!(q.closed(), Some(CloseReason::SHUTDOWN));
    }
}
