use std::hash::BuildHasher;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use lru::LruCache;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::Role;
use crate::error::{ApiError, ApiResult};

/// The claims of our HS256 tokens.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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

const EXPIRED: &str = "the token has expired; sign in again";

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
    verified: Verified,
}

/// How many verified tokens [`Verified`] keeps (~0.5 KB each).
const VERIFIED_TOKENS: usize = 10_000;

/// Tokens that passed verification, so that a client's every request does
/// not pay for the HMAC, the key's set-up and the claims' JSON again: 7 %
/// of a read request's instructions (issue 11; BENCHMARKS queries stage
/// 16).
///
/// Only a token that `jsonwebtoken` verified in full gets in, and a hit
/// is the very same token: entries are found by a keyed hash of the whole
/// token (std's SipHash, its key random per process) and the token is then
/// compared byte for byte in constant time, so how long a lookup takes
/// tells a client nothing about how much of a guessed signature is right.
/// What a verification checks that can change with time, expiry, is
/// checked on every hit as `jsonwebtoken` checks it. A session that has
/// ended is refused by the request's start, which asks the database each
/// time, as before. Keys do not change while the process runs.
struct Verified {
    tokens: Mutex<LruCache<u64, Kept>>,
    hasher: std::hash::RandomState,
}

/// A verified token, whole, and its claims.
type Kept = (Box<[u8]>, Claims);

impl Verified {
    fn new() -> Self {
        let capacity = NonZeroUsize::new(VERIFIED_TOKENS).unwrap_or(NonZeroUsize::MIN);
        Self { tokens: Mutex::new(LruCache::new(capacity)), hasher: std::hash::RandomState::new() }
    }

    /// The claims of `token` if it was verified before (expired or not).
    fn get(&self, key: u64, token: &str) -> Option<Claims> {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let (kept, claims) = tokens.get(&key)?;
        let same = kept.len() == token.len() && bool::from(kept.as_ref().ct_eq(token.as_bytes()));
        same.then(|| claims.clone())
    }

    fn put(&self, key: u64, token: &str, claims: Claims) {
        let entry = (Box::from(token.as_bytes()), claims);
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner).put(key, entry);
    }
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
            verified: Verified::new(),
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
        self.verify_at(token, jsonwebtoken::get_current_timestamp())
    }

    /// [`JwtKeys::verify`] at `now` (seconds since the epoch) for a token
    /// verified before; one seen first is verified by `jsonwebtoken`
    /// against its own clock.
    fn verify_at(&self, token: &str, now: u64) -> ApiResult<Claims> {
        let verified = &self.keys.verified;
        let key = verified.hasher.hash_one(token);
        if let Some(claims) = verified.get(key, token) {
            // As `jsonwebtoken` decides it (leeway 0): expired once `exp`
            // is in the past.
            if u64::try_from(claims.exp).is_ok_and(|exp| exp >= now) {
                return Ok(claims);
            }
            return Err(ApiError::Unauthenticated(EXPIRED.into()));
        }
        let claims = self.verify_in_full(token)?;
        verified.put(key, token, claims.clone());
        Ok(claims)
    }

    fn verify_in_full(&self, token: &str) -> ApiResult<Claims> {
        let decode = |key| jsonwebtoken::decode::<Claims>(token, key, &self.keys.validation).map(|data| data.claims);
        let verified = match (decode(&self.keys.decoding), &self.keys.previous) {
            (Err(err), Some(previous)) if *err.kind() == ErrorKind::InvalidSignature => decode(previous),
            (result, _) => result,
        };
        verified.map_err(|err| {
            let why = match err.kind() {
                ErrorKind::ExpiredSignature => EXPIRED,
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
    fn a_token_verified_before_is_taken_from_the_kept_ones_with_the_same_claims() {
        let keys = keys(NEW, None);
        let token = keys.issue(Uuid::new_v4(), Role::User).unwrap_or_default();
        let first = keys.verify(&token).ok();
        assert!(first.is_some());
        let key = keys.keys.verified.hasher.hash_one(token.as_str());
        assert_eq!(keys.keys.verified.get(key, &token), first, "kept after its first verification");
        assert_eq!(keys.verify(&token).ok(), first);
    }

    #[test]
    fn a_forged_signature_is_refused_though_the_genuine_token_is_kept() {
        let keys = keys(NEW, None);
        let token = keys.issue(Uuid::new_v4(), Role::User).unwrap_or_default();
        assert!(keys.verify(&token).is_ok());
        // The same header and claims, one character of the signature
        // changed (not the last, whose low bits encode nothing).
        let at = token.len() - 5;
        let changed = if token.as_bytes()[at] == b'A' { "B" } else { "A" };
        let forged = format!("{}{changed}{}", &token[..at], &token[at + 1..]);
        let refused = keys.verify(&forged).err().map(|e| e.message());
        assert_eq!(refused.as_deref(), Some("the token signature is invalid"));
        assert!(keys.verify(&format!("{token}A")).is_err(), "a longer token is another token");
    }

    #[test]
    fn a_kept_token_is_refused_once_it_has_expired() {
        let keys = keys(NEW, None);
        let token = keys.issue(Uuid::new_v4(), Role::User).unwrap_or_default();
        let claims = keys.verify(&token).ok();
        let exp = claims.as_ref().and_then(|c| u64::try_from(c.exp).ok()).unwrap_or_default();
        assert_eq!(keys.verify_at(&token, exp).ok(), claims, "valid through its exp second");
        let expired = keys.verify_at(&token, exp + 1).err().map(|e| (e.code(), e.message()));
        assert_eq!(expired, Some(("UNAUTHENTICATED", EXPIRED.to_owned())));
    }

    #[test]
    fn debug_output_of_the_keys_shows_no_secret() {
        let shown = format!("{:?}", keys(NEW, Some(OLD)));
        assert!(!shown.contains("new-key") && !shown.contains("old-key"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
