//! Input rules shared by every surface: ids and text lengths.

use crate::error::ChatError;

/// A user id: 1 to 255 characters, no control characters.
pub fn user_id(id: &str) -> Result<(), ChatError> {
    if id.is_empty() || id.chars().count() > 255 || id.chars().any(char::is_control) {
        return Err(ChatError::bad(
            "user ids are 1 to 255 characters without control characters",
        ));
    }
    Ok(())
}

/// `value` has between `min` and `max` characters.
pub fn text_len(field: &str, value: &str, min: usize, max: usize) -> Result<(), ChatError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ChatError::bad(format!(
            "{field} must be {min} to {max} characters"
        )));
    }
    Ok(())
}

/// An app id: 1 to 64 characters of `[A-Za-z0-9_-]` (no `:`, which separates the parts of
/// realtime channel names).
pub fn app_id(id: &str) -> Result<(), ChatError> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ChatError::bad(
            "app ids are 1 to 64 characters of letters, digits, - and _",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(user_id("user-1").is_ok());
        assert!(user_id("").is_err());
        assert!(user_id("a\0b").is_err());
        assert!(user_id(&"x".repeat(256)).is_err());
        assert!(app_id("00000000-0000-0000-0000-000000000001").is_ok());
        assert!(app_id("a:b").is_err());
    }
}
