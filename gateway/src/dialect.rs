//! The two dialects of one API: camelCase (Client API) and snake_case (Server API).
//!
//! Handlers are written once, in camelCase. Request bodies are typed structs that accept both
//! spellings (serde aliases, `rest::requests`), queries are normalised to camelCase on the way
//! in, and responses to Server API calls
//! (an `X-API-Key` without a bearer token) are converted to snake_case on the way out. Keys
//! inside user-supplied objects (`custom`, `config`, `settings`, `metadata`, `data`) are left
//! exactly as the user wrote them.

use serde_json::{Map, Value};

/// Objects whose keys belong to the user, not to the API.
const OPAQUE: [&str; 6] = [
    "custom",
    "config",
    "settings",
    "metadata",
    "data",
    "attachments",
];

/// Which spelling a caller uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Camel,
    Snake,
}

/// `clientMsgId` → `client_msg_id`.
pub fn snake_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len() + 4);
    for c in k.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `client_msg_id` → `clientMsgId`.
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

fn convert(v: Value, key: &dyn Fn(&str) -> String) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let opaque = OPAQUE.contains(&k.as_str());
                let v = if opaque { v } else { convert(v, key) };
                out.insert(key(&k), v);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(|v| convert(v, key)).collect()),
        other => other,
    }
}

/// Converts a response to snake_case keys.
pub fn to_snake(v: Value) -> Value {
    convert(v, &snake_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_convert_both_ways_except_user_objects() {
        let v = json!({"clientMsgId": "x", "maxSeq": 3, "messages": [{"channelId": "c", "custom": {"myKey": 1}}]});
        let s = to_snake(v.clone());
        assert_eq!(
            s,
            json!({"client_msg_id": "x", "max_seq": 3, "messages": [{"channel_id": "c", "custom": {"myKey": 1}}]})
        );
        assert_eq!(s["messages"][0]["custom"], json!({"myKey": 1}));
        assert_eq!(camel_key("_private"), "_private");
        assert_eq!(camel_key("user_id"), "userId");
    }
}
