//! The realtime wire protocol: Centrifugo client protocol v2, JSON encoding.
//!
//! ChatSDK's WebSocket and QUIC connections speak the protocol of the public `centrifuge`
//! client libraries (see `realtime-protocol.md`), so those clients connect unchanged. This
//! module owns the two directions of that protocol and nothing else:
//!
//! * **client → server**: [`parse_frame`] splits a text frame into its `\n`-separated JSON
//!   objects and decodes each ([`parse_command`]) into a [`Command`] or a [`CommandError`] that
//!   says how the connection must react (reply with an error to that id, or close with 3501);
//! * **server → client**: [`reply`], [`error_reply`] and the `push_*` builders produce one JSON
//!   object each; [`join_frame`] batches several into one frame, and [`ping`] is the server
//!   ping. [`push_publication_raw`] splices an already-serialised payload in without parsing
//!   it again, because one publication is encoded once and the bytes go to every subscriber.
//!
//! It is pure: no IO, no clocks, no connection state. Which commands are allowed when
//! (connect first, pong only after a ping), authorisation and timeouts belong to the gateway.
//! Decoding never panics on client input; a client controls every byte of a frame.
//!
//! Field names and the omission of empty fields follow `client.proto` and the JSON encoder of
//! `centrifugal/protocol`: zero, `false`, empty strings, empty lists and absent payloads are
//! left out, except where that encoder always writes a field (`user`/`client` of
//! [`ClientInfo`], the three fields of [`HistoryResult`], [`PresenceResult::presence`],
//! both counts of [`PresenceStatsResult`]). A payload (`data`) is raw JSON, not base64;
//! [`serde_json::Value::Null`] stands for "absent".

mod command;
mod reply;
mod request;
mod result;

pub use command::{parse_command, parse_frame, Command, CommandError, Method};
pub use reply::{
    error_reply, join_frame, ping, push_disconnect, push_join, push_leave, push_publication,
    push_publication_raw, push_unsubscribe, reply, rpc_reply_raw,
};
pub use request::{
    ConnectRequest, ConnectSubscription, HistoryRequest, PresenceRequest, PresenceStatsRequest,
    PublishRequest, RefreshRequest, RpcRequest, SendRequest, StreamPosition, SubRefreshRequest,
    SubscribeRequest, UnsubscribeRequest,
};
pub use result::{
    ClientInfo, ConnectResult, HistoryResult, PresenceResult, PresenceStatsResult, Publication,
    PublishResult, RefreshResult, RpcResult, SubRefreshResult, SubscribeResult, UnsubscribeResult,
};
