use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use secrecy::{ExposeSecret, SecretString};
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
    /// The session the token belongs to (`sessions.id`): each request checks
    /// that it has not ended (signed out, refresh token reused, password
    /// changed). Tokens issued before sessions existed have none; they only
    /// expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<Uuid>,
}

/// Signing and verifying keys, and how long new tokens live.
///
/// Rotation: new tokens are signed with the current key only; a token
/// signed with the previous key (JWT_PREVIOUS_SECRET) is still accepted, so
/// deploying a new key signs nobody out. Once the previous key's last
/// tokens have expired (JWT_TTL_SECONDS), the operator removes it.
///
/// The secrets come in as [`SecretString`]s and are exposed only to derive
/// the keys; `Debug` shows neither keys nor secrets.
///
/// Cloning is a reference count: every request's context gets the keys,
/// and a deep copy (the keys, the validation's hash sets) was a dozen
/// allocations per request (issue 11).
#[derive(Clone)]
pub struct JwtKeys {
    keys: std::sync::Arc<Keys>,
    ttl: Duration,
}

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    previous: Option<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("keys", &"[REDACTED]")
            .field("previous", &self.keys.previous.as_ref().map(|_| "[REDACTED]"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl JwtKeys {
    pub fn new(secret: &SecretString, previous: Option<&SecretString>, ttl: Duration) -> Self {
        let (secret, previous) = (secret.expose_secret().as_bytes(), previous.map(|p| p.expose_secret().as_bytes()));
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is exact: a token is refused from its `exp` second on.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let keys = Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            previous: previous.map(DecodingKey::from_secret),
            validation,
        };
        Self { keys: std::sync::Arc::new(keys), ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: Uuid, role: Role) -> ApiResult<String> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims { sub: user_id, role, iat: now, exp: now.saturating_add(ttl), sid: None };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.keys.encoding).map_err(ApiError::internal)
    }

    /// An access token of session `session` (its `sid` claim).
    pub fn issue_for_session(&self, user_id: Uuid, role: Role, session: Uuid) -> ApiResult<String> {
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims { sub: user_id, role, iat: now, exp: now.saturating_add(ttl), sid: Some(session) };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.keys.encoding).map_err(ApiError::internal)
    }

    pub fn verify(&self, token: &str) -> ApiResult<Claims> {
        let decode = |key| jsonwebtoken::decode::<Claims>(token, key, &self.keys.validation).map(|data| data.claims);
        let verified = match (decode(&self.keys.decoding), &self.keys.previous) {
            (Err(err), Some(previous)) if *err.kind() == ErrorKind::InvalidSignature => decode(previous),
            (result, _) => result,
        };
        verified.map_err(|err| {
            let why = match err.kind() {
                ErrorKind::ExpiredSignature => "the token has expired; sign in again",
                ErrorKind::InvalidSignature => "the token signature is invalid",
                _ => "the token is malformed",
            };
            ApiError::Unauthenticated(why.into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old-key-old-key-old-key-old-key-0001";
    const NEW: &str = "new-key-new-key-new-key-new-key-0002";

    /// Keys from plain strings, as the configuration's secrets give them.
    fn keys(secret: &str, previous: Option<&str>) -> JwtKeys {
        JwtKeys::new(&secret.into(), previous.map(SecretString::from).as_ref(), HOUR)
    }
    const HOUR: Duration = Duration::from_secs(3600);

    fn token_signed_with(key: &str) -> String {
        keys(key, None).issue(Uuid::new_v4(), Role::User).unwrap_or_default()
    }

    #[test]
    fn tokens_of_the_previous_key_stay_valid_during_a_rotation_and_new_ones_use_the_new_key() {
        let rotating = keys(NEW, Some(OLD));
        assert!(rotating.verify(&token_signed_with(OLD)).is_ok(), "issued before the rotation");
        assert!(rotating.verify(&token_signed_with(NEW)).is_ok());

        // What the rotating server issues verifies with the new key alone.
        let issued = rotating.issue(Uuid::new_v4(), Role::User).unwrap_or_default();
        assert!(keys(NEW, None).verify(&issued).is_ok());
        assert!(keys(OLD, None).verify(&issued).is_err());
    }

    #[test]
    fn once_the_previous_key_is_removed_its_tokens_are_refused() {
        let rotated = keys(NEW, None);
        let refused = rotated.verify(&token_signed_with(OLD)).err().map(|e| (e.code(), e.message()));
        assert_eq!(refused, Some(("UNAUTHENTICATED", "the token signature is invalid".to_owned())));
        let stranger = keys(NEW, Some(OLD)).verify(&token_signed_with("another-key-another-key-another-key"));
        assert!(stranger.is_err(), "only the current and the previous key are trusted");
    }

    #[test]
    fn an_expired_token_of_the_previous_key_says_it_expired() {
        let old = keys(OLD, None);
        let now = chrono::Utc::now().timestamp();
        let claims = Claims { sub: Uuid::new_v4(), role: Role::User, iat: now - 7200, exp: now - 3600, sid: None };
        let expired =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &old.keys.encoding).unwrap_or_default();
        let error = keys(NEW, Some(OLD)).verify(&expired).err().map(|e| e.message());
        assert_eq!(error.as_deref(), Some("the token has expired; sign in again"));
    }

    #[test]
    fn debug_output_of_the_keys_shows_no_secret() {
        let shown = format!("{:?}", keys(NEW, Some(OLD)));
        assert!(!shown.contains("new-key") && !shown.contains("old-key"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
