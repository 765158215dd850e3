//! The two spellings of one API: the Client API's camelCase and the Server API's snake_case.
//!
//! A response shape is declared once, as a Rust struct, inside [`dialect_views!`], which derives
//! it twice: in a `camel` module with `#[serde(rename_all = "camelCase")]` and in a `snake`
//! module with `#[serde(rename_all = "snake_case")]`. Both serialize straight from the records
//! they borrow, so no response is ever re-parsed to change its keys, and the OpenAPI document's
//! response schemas are derived from the same structs. User-owned objects (`custom`, `config`,
//! `settings`, attachments) are carried as [`crate::codec::Json`] and keep their keys as the
//! user wrote them in both dialects.

/// Which spelling a caller uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// The Client API (a bearer token): `clientMsgId`.
    Camel,
    /// The Server API (an `X-API-Key` without a bearer token): `client_msg_id`.
    Snake,
}

/// Declares response views in both dialects.
///
/// ```text
/// dialect_views! {
///     scope: messages;                      // the schemas' names: `messages.camel.Page`
///     records: chatsdk_actors::render;      // optional: views these ones embed
///     types { pub struct Page<'a> { messages: Vec<MessageView<'a>>, has_more: bool } }
///     impls { impl<'a> Page<'a> { ... } }   // optional: written once, compiled per dialect
/// }
/// ```
///
/// expands to `pub mod camel { ... }` and `pub mod snake { ... }`, each with the types (derived
/// `Serialize`, renamed for its dialect, and `utoipa::ToSchema` named `scope.dialect.Type`, so
/// the twins and equal names of other modules never collide in the OpenAPI document), the impls, `use super::*`, and, with `records`, the
/// same dialect's views of that module (re-exported), so a nested view is always in its
/// parent's spelling.
#[macro_export]
macro_rules! dialect_views {
    (
        scope: $scope:ident;
        $(records: $($records:ident)::+;)?
        types { $(
            $(#[$meta:meta])*
            $vis:vis $kind:ident $name:ident $(<$($lt:lifetime),+>)? { $($body:tt)* }
        )* }
        $(impls { $($im:item)* })?
    ) => {
        /// These views in the Client API's camelCase.
        pub mod camel {
            #![allow(unused_imports)]
            use super::*;
            $(pub use $($records)::+::camel::*;)?
            $(
                #[derive(::serde::Serialize, ::utoipa::ToSchema)]
                #[serde(rename_all = "camelCase")]
                #[schema(as = $scope::camel::$name)]
                $(#[$meta])*
                $vis $kind $name $(<$($lt),+>)? { $($body)* }
            )*
            $($($im)*)?
        }
        /// These views in the Server API's snake_case.
        pub mod snake {
            #![allow(unused_imports)]
            use super::*;
            $(pub use $($records)::+::snake::*;)?
            $(
                #[derive(::serde::Serialize, ::utoipa::ToSchema)]
                #[serde(rename_all = "snake_case")]
                #[schema(as = $scope::snake::$name)]
                $(#[$meta])*
                $vis $kind $name $(<$($lt),+>)? { $($body)* }
            )*
            $($($im)*)?
        }
    };
}

/// `client_msg_id` → `clientMsgId` (queries are normalised to camelCase on the way in).
pub fn camel_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for (i, c) in k.chars().enumerate() {
        if c == '_' && i > 0 {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_become_camel_case() {
        assert_eq!(camel_key("client_msg_id"), "clientMsgId");
        assert_eq!(camel_key("_private"), "_private");
        assert_eq!(camel_key("user_id"), "userId");
    }
}
