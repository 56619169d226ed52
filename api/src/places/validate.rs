//! Input checks that give a precise BAD_USER_INPUT before any SQL runs. The
//! database checks the same ranges (CHECK constraints) as the backstop.

use crate::error::{ApiError, ApiResult};

pub fn rating(field: &'static str, value: f64) -> ApiResult<f64> {
    if value.is_finite() && (0.0..=5.0).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_input(field, format!("{field} must be between 0 and 5")))
    }
}

pub fn lat(field: &'static str, value: f64) -> ApiResult<f64> {
    if value.is_finite() && (-90.0..=90.0).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_input(field, format!("{field} must be between -90 and 90")))
    }
}

pub fn lng(field: &'static str, value: f64) -> ApiResult<f64> {
    if value.is_finite() && (-180.0..=180.0).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_input(field, format!("{field} must be between -180 and 180")))
    }
}

/// Trimmed, non-empty, at most `max` characters.
pub fn text(field: &'static str, value: &str, max: usize) -> ApiResult<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(ApiError::bad_input(field, format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_input(field, format!("{field} must have at most {max} characters")));
    }
    Ok(value.to_owned())
}

pub fn optional_text(field: &'static str, value: Option<&str>, max: usize) -> ApiResult<Option<String>> {
    value.map(str::trim).filter(|v| !v.is_empty()).map(|v| text(field, v, max)).transpose()
}

pub fn comment(value: Option<&str>) -> ApiResult<Option<String>> {
    optional_text("comment", value, 5000)
}

pub fn types(value: &[String]) -> ApiResult<Option<String>> {
    let joined = value.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(",");
    if joined.len() > 500 {
        return Err(ApiError::bad_input("types", "types must have at most 500 characters in all"));
    }
    Ok((!joined.is_empty()).then_some(joined))
}

pub fn ratings_total(value: i32) -> ApiResult<i32> {
    if value >= 0 {
        Ok(value)
    } else {
        Err(ApiError::bad_input("userRatingsTotal", "userRatingsTotal must be 0 or more"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_outside_zero_to_five_are_rejected() {
        assert!(rating("rating", 7.0).is_err());
        assert!(rating("rating", -0.1).is_err());
        assert!(rating("rating", f64::NAN).is_err());
        assert!(rating("rating", 5.0).is_ok());
    }

    #[test]
    fn blank_text_is_rejected_and_text_is_trimmed() {
        assert!(text("name", "   ", 10).is_err());
        assert_eq!(text("name", " Café ", 10).ok().as_deref(), Some("Café"));
        assert!(text("name", "abcdefghijk", 10).is_err());
    }
}
