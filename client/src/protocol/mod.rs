//! The realtime protocol's messages as this client sends and reads them: Centrifugo client
//! protocol v2, JSON encoding, as `docs/protocol.md` describes the ChatSDK server.
//!
//! It exists so the wire shapes live in one place that tests can drive without a connection:
//! [`Command::encode`] writes a command, [`decode`] reads one server object. The result types
//! (connect, subscribe, history, ...) are the server's own, from `chatsdk-proto`, so both sides
//! agree on field names by construction. No IO and no connection state here; the realtime
//! client ([`crate::realtime`]) decides what to send when.

mod command;
mod incoming;

pub use chatsdk_proto::realtime::{
    ClientInfo, ConnectResult, HistoryResult, PresenceResult, PresenceStatsResult, Publication,
    RefreshResult, RpcResult, StreamPosition, SubscribeResult,
};
pub use command::{
    ChannelParams, Command, ConnectParams, HistoryParams, PublishParams, RefreshParams, RpcParams,
    SubscribeParams, PONG,
};
pub use incoming::{
    decode, is_ping, DecodeError, Push, PushBody, Reply, ReplyError, ServerMessage,
};
