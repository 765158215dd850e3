//! Authentication: API keys, user tokens and the super-admin key.

pub mod extract;
pub mod jwt;
pub mod tokens;
