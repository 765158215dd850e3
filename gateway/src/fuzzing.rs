//! Entry points for fuzzing what the gateway decodes from clients, shared by the `fuzz_`
//! property tests and the coverage-guided fuzzer (`fuzz/`, run by `scripts/fuzz`): REST bodies
//! and access tokens. The verdict is ignored; a panic, a hang or an outsized allocation is the
//! finding.

use crate::auth::{jwt, tokens::Claims};
use crate::rest::requests::{AddMembers, CreateChannel, MintUser, UserFields, UserList};
use crate::rest::{annotations, messages};

/// The signing key of [`access_token`]'s tokens.
const KEY: &[u8] = b"fuzzing-key";

/// A JSON body as every request type that takes one reads it.
pub fn rest_body(data: &[u8]) {
    let _ = serde_json::from_slice::<CreateChannel>(data);
    let _ = serde_json::from_slice::<UserFields>(data);
    let _ = serde_json::from_slice::<UserList>(data);
    let _ = serde_json::from_slice::<AddMembers>(data);
    let _ = serde_json::from_slice::<MintUser>(data);
    let _ = serde_json::from_slice::<messages::SendBody>(data);
    let _ = serde_json::from_slice::<messages::ServerSendBody>(data);
    let _ = serde_json::from_slice::<annotations::PollBody>(data);
    let _ = serde_json::from_slice::<annotations::ReactBody>(data);
}

/// The input as a token a client presents, and as the claims of a correctly signed one (so
/// the claims decoder behind the signature check is reached too).
pub fn access_token(data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = jwt::verify::<Claims>(token, KEY, 1_000);
    }
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
        let token = jwt::sign(&claims, KEY);
        let _ = jwt::verify::<Claims>(&token, KEY, 1_000);
    }
}
