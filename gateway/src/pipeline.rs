//! A connection's commands in flight: several at once, so that one slow command does not hold
//! up the client's others, its pongs, or its reads.
//!
//! The connection's task feeds it the client's frames and polls it beside the socket. Each
//! command goes through [`Session::dispatch`]: most are answered at once; those that change the
//! session (`subscribe`) run alone with the session, and nothing after them is dispatched
//! until they are done (so a command sent after a subscribe sees it); the others run
//! alongside, up to a bound per connection: writes (RPCs, typing) one at a time in the order
//! sent, so one client's messages are never reordered, reads (history, presence) as they come.
//! Replies carry the command's id, which is how the protocol's clients match them, so a read
//! may be answered before an earlier slow write. Commands beyond the bound wait here, and
//! the connection stops reading until there is room: the socket is the backlog.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use chatsdk_actors::session::{Call, Session, Step};
use chatsdk_proto::realtime::{Command, CommandError};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

/// A command that changes the session, in flight: it owns the session and hands it back.
type Exclusive = Pin<Box<dyn Future<Output = Session> + Send>>;

pub(crate) struct Pipeline {
    /// The session, when no exclusive command holds it.
    session: Option<Session>,
    exclusive: Option<Exclusive>,
    /// Commands read and not dispatched yet.
    waiting: VecDeque<Result<Command, CommandError>>,
    /// Writes in flight, run one at a time from the front.
    ordered: VecDeque<Call>,
    /// Reads in flight (made on the first: an empty one still holds an allocation).
    unordered: Option<FuturesUnordered<Call>>,
    /// Most commands in flight (exclusive, ordered and unordered together).
    limit: usize,
    /// The session refused to take more (the connection is closing).
    stopped: bool,
}

impl Pipeline {
    pub(crate) fn new(session: Session, limit: usize) -> Pipeline {
        Pipeline {
            session: Some(session),
            exclusive: None,
            waiting: VecDeque::new(),
            ordered: VecDeque::new(),
            unordered: None,
            limit: limit.max(1),
            stopped: false,
        }
    }

    /// Takes one frame's commands and dispatches what there is room for.
    pub(crate) fn push(&mut self, commands: Vec<Result<Command, CommandError>>) {
        if !self.stopped {
            self.waiting.extend(commands);
            self.dispatch();
        }
    }

    /// Whether the connection may read its next frame: nothing is waiting for room.
    pub(crate) fn ready_for_more(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Whether nothing is in flight or waiting.
    pub(crate) fn idle(&self) -> bool {
        self.in_flight() == 0 && self.waiting.is_empty()
    }

    /// Whether a command is in flight ([`Pipeline::progress`] has something to drive).
    pub(crate) fn busy(&self) -> bool {
        self.in_flight() > 0
    }

    fn in_flight(&self) -> usize {
        usize::from(self.exclusive.is_some())
            + self.ordered.len()
            + self.unordered.as_ref().map_or(0, FuturesUnordered::len)
    }

    fn dispatch(&mut self) {
        while self.in_flight() < self.limit {
            let Some(session) = self.session.as_mut() else {
                return;
            };
            let Some(command) = self.waiting.pop_front() else {
                // Read commands come in bursts: an idle connection keeps no room for them.
                self.waiting = VecDeque::new();
                return;
            };
            match session.dispatch(command) {
                Step::Done => {}
                Step::Stop => {
                    self.stopped = true;
                    self.waiting.clear();
                    return;
                }
                Step::Exclusive(command) => {
                    let Some(mut session) = self.session.take() else {
                        return;
                    };
                    self.exclusive = Some(Box::pin(async move {
                        session.exclusive(command).await;
                        session
                    }));
                }
                Step::Call {
                    ordered: true,
                    call,
                } => self.ordered.push_back(call),
                Step::Call {
                    ordered: false,
                    call,
                } => self
                    .unordered
                    .get_or_insert_with(FuturesUnordered::new)
                    .push(call),
            }
        }
    }

    /// Drives the commands in flight; ready when at least one ended (then more are
    /// dispatched). Pending forever while none is in flight, so it can sit in a `select!`.
    pub(crate) fn progress(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| self.poll_progress(cx))
    }

    fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut ended = false;
        if let Some(exclusive) = self.exclusive.as_mut() {
            if let Poll::Ready(session) = exclusive.as_mut().poll(cx) {
                self.exclusive = None;
                self.session = Some(session);
                ended = true;
            }
        }
        while let Some(front) = self.ordered.front_mut() {
            match front.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.ordered.pop_front();
                    ended = true;
                }
                Poll::Pending => break,
            }
        }
        if self.ordered.is_empty() && self.ordered.capacity() > 0 {
            self.ordered = VecDeque::new();
        }
        if let Some(unordered) = self.unordered.as_mut() {
            while let Poll::Ready(Some(())) = unordered.poll_next_unpin(cx) {
                ended = true;
            }
            if unordered.is_empty() {
                self.unordered = None;
            }
        }
        if ended {
            self.dispatch();
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
