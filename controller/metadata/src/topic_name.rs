//! Kafka's topic name rules, shared by the controller (CreateTopics) and the broker
//! (auto-creation, Metadata for unknown names).

use crate::error_code::{ApiError, ErrorCode};

/// Kafka's longest topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Kafka's topic name rules: `[a-zA-Z0-9._-]`, 1..=249 chars, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: String| Err(ApiError::new(ErrorCode::InvalidTopicException, why));
    if name.is_empty() {
        return bad("topic name is empty".to_string());
    }
    if name == "." || name == ".." {
        return bad(format!("topic name cannot be '{name}'"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad(format!(
            "topic name is {} characters long; the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return bad(format!("topic name '{name}' contains '{c}'; only ASCII letters, digits, '.', '_' and '-' are allowed"));
    }
    Ok(())
}
