//! Wire types that ChatSDK's gateway, actors and client SDK share.
//!
//! This crate is deliberately small and dependency-light (serde only) so the client SDK can use
//! it without pulling in any server crate. Today it holds the one error vocabulary
//! ([`ErrorCode`]) that every transport maps from; protocol frames and event payloads join it as
//! the gateway is built.

pub mod error;

pub use error::{ApiError, ErrorCode};
