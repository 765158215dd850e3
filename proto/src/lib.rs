//! Wire types that ChatSDK's gateway, actors and client SDK share.
//!
//! This crate is deliberately small and dependency-light (serde only) so the client SDK can use
//! it without pulling in any server crate. Today it holds the one error vocabulary
//! ([`ErrorCode`]) that every transport maps from; protocol frames and event payloads join it as
//! the gateway is built.
//!
//! - [`error`]: [`ErrorCode`] and the REST error body.
//! - [`realtime`]: the realtime wire protocol (Centrifugo client protocol v2, JSON): decoding
//!   client commands from frames, encoding replies, pushes and pings. Pure, no IO.

pub mod error;
pub mod framing;
pub mod fuzzing;
pub mod realtime;

pub use error::{ApiError, ErrorCode};
