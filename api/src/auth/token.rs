use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use uuid::Uuid;

use super::Role;
use crate::error::{ApiError, ApiResult};

/// The claims of our HS256 tokens.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    /// The role when the token was issued; the request re-reads the current
    /// role from the database, so a demotion takes effect at once.
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// Signing and verifying keys, and how long new tokens live.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtKeys {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a token is refused from its `exp` second on.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: Uuid, role: Role) -> ApiResult<String> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims { sub: user_id, role, iat: now, exp: now.saturating_add(ttl) };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(ApiError::internal)
    }

    pub fn verify(&self, token: &str) -> ApiResult<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|data| data.claims).map_err(|err| {
            let why = match err.kind() {
                ErrorKind::ExpiredSignature => "the token has expired; sign in again",
                ErrorKind::InvalidSignature => "the token signature is invalid",
                _ => "the token is malformed",
            };
            ApiError::Unauthenticated(why.into())
        })
    }
}
