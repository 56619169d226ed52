//! Refresh tokens: 256 random bits, given to the client once (base64url)
//! and stored only as their SHA-256 (migration 000016). Random bits this
//! many need no salt or slow hash: nobody can guess one, and a leaked hash
//! cannot be turned back into the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// Bytes of randomness in a refresh token.
const TOKEN_BYTES: usize = 32;

/// A new refresh token: what the client gets, and what the database keeps.
pub struct RefreshToken {
    pub token: String,
    pub hash: Vec<u8>,
}

impl RefreshToken {
    pub fn generate() -> ApiResult<Self> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| ApiError::internal(format!("no randomness for a refresh token: {e}")))?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        Ok(Self { hash: Sha256::digest(token.as_bytes()).to_vec(), token })
    }
}

/// The stored form of a token a client presents; `None` when it cannot be
/// one of ours (wrong length or alphabet), so no database work is done.
pub fn hash_presented(token: &str) -> Option<Vec<u8>> {
    let decoded = URL_SAFE_NO_PAD.decode(token.trim()).ok()?;
    (decoded.len() == TOKEN_BYTES).then(|| Sha256::digest(token.trim().as_bytes()).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_hashes_to_what_is_stored_and_garbage_hashes_to_nothing() {
        let issued = RefreshToken::generate().expect("randomness");
        assert_eq!(hash_presented(&issued.token), Some(issued.hash.clone()));
        assert_ne!(RefreshToken::generate().expect("randomness").token, issued.token);
        assert_eq!(hash_presented("not a token"), None);
        assert_eq!(hash_presented(""), None);
    }
}
