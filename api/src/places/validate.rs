//! Input checks that give a precise BAD_USER_INPUT before any SQL runs. The
//! database checks the same ranges (CHECK constraints) as the backstop.

pub use crate::graphql::validate::{optional_text, text};

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
    crate::graphql::validate::at_most("userRatingsTotal", value, i32::MAX)
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
}
