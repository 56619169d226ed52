//! What an account's fields must be: one place for sign-up, updateProfile
//! and changePassword, so the same input gets the same BAD_USER_INPUT
//! everywhere (the field named in `extensions.field`).
//!
//! Password policy: at least 8 characters and at most 1024 bytes (argon2
//! hashes any length, but a megabyte of password is a denial of service,
//! not a password). No composition rules (NIST SP 800-63B advises against
//! them) and no breached-password check (it would send a hash prefix of
//! every new password to a third party; not done).

use crate::error::{ApiError, ApiResult};

/// The shortest password an account may have, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// The longest password an account may have, in bytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn password(field: &'static str, password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::bad_input(field, format!("{field} must have at least 8 characters")));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_input(field, format!("{field} must have at most 1024 bytes")));
    }
    Ok(())
}

pub fn username(username: &str) -> ApiResult<()> {
    let valid = (3..=50).contains(&username.len())
        && username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !valid {
        return Err(ApiError::bad_input("username", "username must be 3 to 50 letters, digits, '.', '_' or '-'"));
    }
    Ok(())
}

pub fn full_name(full_name: &str) -> ApiResult<()> {
    if full_name.is_empty() || full_name.chars().count() > 100 {
        return Err(ApiError::bad_input("fullName", "fullName must have 1 to 100 characters"));
    }
    Ok(())
}
