//! Input checks shared by every domain, so each kind of value is bounded the
//! same way everywhere and gets a precise BAD_USER_INPUT naming the field
//! before any SQL runs. The database's CHECK constraints and the SQLSTATE
//! mapping in [`crate::error`] stay the backstop.
//!
//! Every domain's text and number rules live here, one function per kind of
//! value (text, a count, a token amount, a 0-5 rating, a coordinate), so a
//! domain names the rule instead of restating it. A NUL byte in any text is refused for every argument at once by
//! [`super::guard`], so the checks here need not repeat it.

use async_graphql::MaybeUndefined;

use crate::error::{ApiError, ApiResult};

/// The largest token amount one input may carry (10^15). Amounts are stored
/// as 64-bit integers and added up (a credit adds to a participation, runs
/// add to a user's total): keeping each input far below `i64::MAX` means
/// sums stay in range, so an overflow is bad input here rather than a
/// `numeric_value_out_of_range` from PostgreSQL.
pub const MAX_TOKENS: i64 = 1_000_000_000_000_000;

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

/// [`text`] when given and not blank; `None` for a missing or blank value.
pub fn optional_text(field: &'static str, value: Option<&str>, max: usize) -> ApiResult<Option<String>> {
    value.map(str::trim).filter(|v| !v.is_empty()).map(|v| text(field, v, max)).transpose()
}

/// A number in `min..=max`, finite (NaN and infinities are no number a
/// client means).
pub fn within(field: &'static str, value: f64, min: f64, max: f64) -> ApiResult<f64> {
    if value.is_finite() && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_input(field, format!("{field} must be between {min} and {max}")))
    }
}

/// A rating of stars, `0..=5` (reviews, preferences, places).
pub fn rating(field: &'static str, value: f64) -> ApiResult<f64> {
    within(field, value, 0.0, 5.0)
}

/// A latitude in degrees.
pub fn lat(field: &'static str, value: f64) -> ApiResult<f64> {
    within(field, value, -90.0, 90.0)
}

/// A longitude in degrees.
pub fn lng(field: &'static str, value: f64) -> ApiResult<f64> {
    within(field, value, -180.0, 180.0)
}

/// A count stored as a 32-bit integer, `0..=i32::MAX`.
pub fn count(field: &'static str, value: i32) -> ApiResult<i32> {
    at_most(field, value, i32::MAX)
}

/// A count or amount that may be zero: `0..=max`.
pub fn at_most<T>(field: &'static str, value: T, max: T) -> ApiResult<T>
where
    T: PartialOrd + Default + std::fmt::Display + Copy,
{
    if value >= T::default() && value <= max {
        Ok(value)
    } else {
        Err(ApiError::bad_input(field, format!("{field} must be between 0 and {max}")))
    }
}

/// A token amount that may be zero: `0..=MAX_TOKENS`.
pub fn tokens(field: &'static str, value: i64) -> ApiResult<i64> {
    at_most(field, value, MAX_TOKENS)
}

/// A token amount that must move something: `1..=MAX_TOKENS`.
pub fn positive_tokens(field: &'static str, value: i64) -> ApiResult<i64> {
    if (1..=MAX_TOKENS).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_input(field, format!("{field} must be between 1 and {MAX_TOKENS}")))
    }
}

/// An update input's field for a column that cannot be empty: omitted is
/// no change (`None`), explicit null is BAD_USER_INPUT naming the field
/// (rather than silently no change, which a client clearing it would not
/// notice).
pub fn not_null<T>(field: &'static str, value: MaybeUndefined<T>) -> ApiResult<Option<T>> {
    match value {
        MaybeUndefined::Undefined => Ok(None),
        MaybeUndefined::Null => Err(ApiError::bad_input(field, format!("{field} cannot be null (omit it to keep it)"))),
        MaybeUndefined::Value(value) => Ok(Some(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_omitted_update_field_is_no_change_and_null_on_a_required_one_is_bad_input_naming_it() {
        assert_eq!(not_null("name", MaybeUndefined::<i32>::Undefined).ok(), Some(None));
        assert_eq!(not_null("name", MaybeUndefined::Value(3)).ok(), Some(Some(3)));
        let err = not_null("name", MaybeUndefined::<i32>::Null).err();
        assert!(matches!(err, Some(ApiError::BadUserInput { field: "name", .. })));
    }

    #[test]
    fn blank_text_is_rejected_and_text_is_trimmed() {
        assert!(text("name", "   ", 10).is_err());
        assert_eq!(text("name", " Café ", 10).ok().as_deref(), Some("Café"));
        assert!(text("name", "abcdefghijk", 10).is_err());
    }

    #[test]
    fn ratings_outside_zero_to_five_and_non_numbers_are_rejected() {
        assert!(rating("rating", 7.0).is_err());
        assert!(rating("rating", -0.1).is_err());
        assert!(rating("rating", f64::NAN).is_err());
        assert!(lat("lat", f64::INFINITY).is_err());
        assert_eq!(rating("rating", 5.0).ok(), Some(5.0));
        assert!(matches!(count("n", -1), Err(ApiError::BadUserInput { field: "n", .. })));
    }

    #[test]
    fn amounts_outside_their_range_are_bad_input_naming_the_field() {
        for value in [-1, MAX_TOKENS + 1, i64::MAX, i64::MIN] {
            assert!(matches!(tokens("tokens", value), Err(ApiError::BadUserInput { field: "tokens", .. })));
        }
        assert!(matches!(positive_tokens("tokens", 0), Err(ApiError::BadUserInput { field: "tokens", .. })));
        assert_eq!(tokens("tokens", 0).ok(), Some(0));
        assert_eq!(positive_tokens("tokens", MAX_TOKENS).ok(), Some(MAX_TOKENS));
        assert!(at_most("n", i32::MIN, i32::MAX).is_err());
    }
}
