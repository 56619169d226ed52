use async_graphql::{ID, SimpleObject};
use chrono::{DateTime, FixedOffset};

use crate::auth::Role;
use crate::graphql::ids::{FromModel, GlobalId, RawId};
use crate::graphql::payload::mutation_input;

/// An account. Only its owner, readers, services and admins see it; other
/// users never see someone else's email.
#[derive(SimpleObject, FromModel, Clone)]
#[from_model(entity::users::Model)]
pub struct User {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a User.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
    /// Sign-in email, unique regardless of case.
    pub email: String,
    /// Public handle, unique regardless of case.
    pub username: String,
    /// Display name.
    pub full_name: String,
    /// What the account may do.
    #[from_model(with = role)]
    pub role: Role,
    /// Deactivated accounts cannot sign in and their tokens stop working.
    pub is_active: bool,
    /// When the account was created.
    pub created_at: DateTime<FixedOffset>,
    /// When the account last signed in.
    pub last_login: Option<DateTime<FixedOffset>>,
}

/// The `role` column. The database's CHECK admits only the four roles;
/// anything else would be a migration bug, and reading as the least
/// privileged role is the safe failure.
fn role(column: String) -> Role {
    Role::parse(&column).unwrap_or(Role::User)
}

crate::connection_type!(UserConnection, UserEdge, User, "accounts");

/// A signed-in session: a short-lived access token and the refresh token
/// that renews it (`refreshSession`).
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// A bearer token: send it as `Authorization: Bearer <token>`. Short-lived
    /// (JWT_TTL_SECONDS, 15 minutes by default); it stops working at once
    /// when its session ends (signOut, signOutEverywhere, a password change
    /// elsewhere, a reused refresh token, the account deleted or deactivated).
    pub token: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// Exchange it for a new token with `refreshSession` before the token
    /// expires or after. Single use: each refresh returns the next one, and
    /// presenting one already used ends the session (a copy was stolen, or
    /// this is the copy). Keep it out of reach of scripts where you can.
    pub refresh_token: String,
    /// Seconds the session lasts without a refresh (SESSION_TTL_SECONDS);
    /// each refresh starts this again.
    pub refresh_expires_in: u64,
    /// The signed-in account.
    pub user: User,
    /// The input's `clientMutationId`, echoed so a client can match the
    /// answer to its call.
    pub client_mutation_id: Option<String>,
}

impl AuthPayload {
    /// The payload answering an input with this `clientMutationId`.
    pub fn echo(self, client_mutation_id: Option<String>) -> Self {
        Self { client_mutation_id, ..self }
    }
}

/// A new account. Its role is always `USER`; admins grant other roles.
#[mutation_input]
pub struct SignUpInput {
    /// A valid email address, at most 254 characters.
    pub email: String,
    /// 3 to 50 letters, digits, '.', '_' or '-'.
    pub username: String,
    /// At least 8 characters and at most 1024 bytes; nothing else is
    /// required (no character classes) and it is not checked against
    /// breached-password lists.
    pub password: String,
    /// Display name, 1 to 100 characters.
    pub full_name: String,
}

/// Credentials for signing in.
#[mutation_input]
pub struct SignInInput {
    /// Email or username.
    pub login: String,
    /// The account's password.
    pub password: String,
}

/// An account's new role.
#[mutation_input]
pub struct SetUserRoleInput {
    /// The account to change.
    pub user_id: ID,
    /// The role it gets.
    pub role: Role,
}

/// An account to activate or deactivate.
#[mutation_input]
pub struct SetUserActiveInput {
    /// The account to change.
    pub user_id: ID,
    /// False deactivates it: it cannot sign in and its tokens stop working.
    pub is_active: bool,
}

crate::payload!(SetUserRolePayload, user: User, "The account with its new role.");
crate::payload!(SetUserActivePayload, user: User, "The account as it is now.");
