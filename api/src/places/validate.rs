//! The rules of place values no other domain has; the shared ones (text,
//! ratings, coordinates, counts) are [`crate::graphql::validate`]'s, and are
//! re-exported so this domain names one module.

use crate::error::{ApiError, ApiResult};
pub use crate::graphql::validate::{count, lat, lng, optional_text, rating, text};

pub fn comment(value: Option<&str>) -> ApiResult<Option<String>> {
    optional_text("comment", value, 5000)
}

/// Google place types, stored joined by commas in a VARCHAR(500).
pub fn types(value: &[String]) -> ApiResult<Option<String>> {
    let joined = value.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(",");
    if joined.len() > 500 {
        return Err(ApiError::bad_input("types", "types must have at most 500 characters in all"));
    }
    Ok((!joined.is_empty()).then_some(joined))
}
