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

/// An id used in keys and channel names: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
pub fn resource_id(field: &str, id: &str) -> Result<(), ChatError> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(ChatError::bad(format!("{field} is not a valid id")));
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
    }
}
