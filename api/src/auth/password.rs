//! argon2id password hashes (PHC strings). Hashing is CPU-heavy by design, so
//! it runs on the blocking pool instead of stalling the async workers.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{ApiError, ApiResult};

pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default().hash_password(password.as_bytes()).map(|hash| hash.to_string()).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)?
}

/// True when `password` matches `hash`. A malformed stored hash is a
/// mismatch (logged), so a corrupt row cannot be signed into.
pub async fn verify_password(password: String, hash: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || match PasswordHash::new(&hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(err) => {
            tracing::error!(error = %err, "stored password hash is malformed");
            false
        }
    })
    .await
    .map_err(ApiError::internal)
}
