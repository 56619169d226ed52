//! Who is asking: the viewer of a request, read from its bearer token.
//!
//! No token means the anonymous viewer. A token that is present but invalid,
//! expired or tampered with is an error (UNAUTHENTICATED), never a silent
//! downgrade to anonymous: a client with a stale token should learn it.

mod limits;
pub mod ownership;
mod password;
pub mod refresh;
mod token;

pub use limits::{Attempt, ClientIp, PeerAddr, RateLimitConfig, RateLimits};
pub use password::{HashPool, hash_password};
pub use token::{Claims, JwtKeys};

use async_graphql::Enum;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// What guards sign-up and sign-in: bounded password hashing and rate
/// limits. Shared by every request (cheap to clone).
#[derive(Clone)]
pub struct AuthGuard {
    pub hashing: HashPool,
    pub limits: std::sync::Arc<RateLimits>,
    /// How long a session lasts without a refresh (SESSION_TTL_SECONDS).
    pub session_ttl: std::time::Duration,
}

/// The session of the request's access token (its `sid` claim): `None`
/// for anonymous requests and tokens issued without one. In every request's
/// context, for `signOut` and `changePassword`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessSession(pub Option<Uuid>);

/// What an account may do. Stored in `users.role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, on every row.
    Admin,
    /// A back-office integration acting across users (the seeds' app_service).
    Service,
    /// Read-only over all rows, for reporting (the seeds' app_read).
    Reader,
    /// An end user: their own rows, and public ones.
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Service => "service",
            Self::Reader => "reader",
            Self::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Self::Admin,
            "service" => Self::Service,
            "reader" => Self::Reader,
            "user" => Self::User,
            _ => return None,
        })
    }
}

/// The viewer a request runs for. Every row policy is a function of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    User { id: Uuid, role: Role },
}

impl Viewer {
    /// The database role the request transaction switches to. The names are
    /// fixed strings from the migrations, never user input.
    pub fn db_role(&self) -> &'static str {
        match self {
            Self::Anonymous => "app_anon",
            Self::User { role: Role::User, .. } => "app_user",
            Self::User { role: Role::Reader, .. } => "app_read",
            Self::User { role: Role::Service, .. } => "app_service",
            Self::User { role: Role::Admin, .. } => "app_admin",
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Self::Anonymous => None,
            Self::User { id, .. } => Some(*id),
        }
    }

    pub fn role(&self) -> Option<Role> {
        match self {
            Self::Anonymous => None,
            Self::User { role, .. } => Some(*role),
        }
    }

    /// The signed-in user's id, or UNAUTHENTICATED.
    pub fn require_user(&self) -> ApiResult<Uuid> {
        self.user_id().ok_or_else(ApiError::sign_in_required)
    }

    /// UNAUTHENTICATED for the anonymous viewer, FORBIDDEN for a role not in `allowed`.
    pub fn require_role(&self, allowed: &[Role], action: &str) -> ApiResult<Uuid> {
        let id = self.require_user()?;
        match self.role() {
            Some(role) if allowed.contains(&role) => Ok(id),
            _ => Err(ApiError::Forbidden(format!("your role may not {action}"))),
        }
    }

    /// Reading is all a reader may do.
    pub fn require_writer(&self) -> ApiResult<Uuid> {
        self.require_role(&[Role::User, Role::Service, Role::Admin], "change data")
    }
}

/// The viewer for an `Authorization` header value (`None`: no header).
pub fn viewer_from_authorization(header: Option<&str>, keys: &JwtKeys) -> ApiResult<Viewer> {
    Ok(claims_from_authorization(header, keys)?.map_or(Viewer::Anonymous, |c| Viewer::User { id: c.sub, role: c.role }))
}

/// The verified claims of an `Authorization` value; `None` without one.
pub fn claims_from_authorization(header: Option<&str>, keys: &JwtKeys) -> ApiResult<Option<Claims>> {
    let Some(value) = header.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthenticated("the Authorization header must be `Bearer <token>`".into()))?;
    keys.verify(token).map(Some)
}
