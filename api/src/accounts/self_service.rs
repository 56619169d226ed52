//! What a signed-in user does to their own account: sessions (refresh,
//! sign out here or everywhere), profile, password, deletion.
//!
//! A session is a row of `sessions` (migration 000016) named by the access
//! token's `sid` claim and renewed by a single-use refresh token. Ending a
//! session deletes its row: its access tokens fail at their next request
//! (the request start checks the row) and its websockets close as soon as
//! the change feed reports the deletion.

use async_graphql::{Context, ID, Object, SimpleObject};

use super::policy::Users;
use super::resolvers::{auth_guard, client_ip};
use super::types::{AuthPayload, User};
use super::{rules, sessions, store};
use crate::auth::refresh::{RefreshToken, hash_presented};
use crate::auth::{AccessSession, Attempt, Role, Viewer};
use crate::domain;
use crate::error::{ApiError, ApiResult};
use crate::graphql::ContextExt;
use crate::graphql::payload::mutation_input;

/// Starts a session for `user` (signed up or in just now): its row and
/// refresh token, and an access token naming it.
pub(super) async fn start_session(
    ctx: &Context<'_>,
    viewer: &Viewer,
    user: entity::users::Model,
) -> ApiResult<AuthPayload> {
    let guard = auth_guard(ctx)?;
    let refresh = RefreshToken::generate()?;
    let session = {
        let tx = ctx.tx().await?;
        sessions::start(&*tx, viewer, user.id, refresh.hash, guard.session_ttl).await?
    };
    payload(ctx, user, session, refresh.token)
}

fn payload(
    ctx: &Context<'_>,
    user: entity::users::Model,
    session: uuid::Uuid,
    refresh: String,
) -> ApiResult<AuthPayload> {
    let keys = ctx.jwt()?;
    let guard = auth_guard(ctx)?;
    let role = Role::parse(&user.role).ok_or_else(|| ApiError::internal(format!("unknown role {}", user.role)))?;
    Ok(AuthPayload {
        token: keys.issue_for_session(user.id, role, session)?,
        expires_in: keys.ttl().as_secs(),
        refresh_token: refresh,
        refresh_expires_in: guard.session_ttl.as_secs(),
        user: user.into(),
        client_mutation_id: None,
    })
}

/// The session of the request's access token.
fn access_session(ctx: &Context<'_>) -> Option<uuid::Uuid> {
    ctx.data_opt::<AccessSession>().and_then(|s| s.0)
}

fn wrong_password() -> ApiError {
    // The code and message sign-in gives for a wrong password.
    ApiError::Unauthenticated("wrong login or password".into())
}

/// Checks the signed-in user's password, rate limited as sign-in is (per
/// client address and per account), on the password-hashing pool.
async fn check_password(ctx: &Context<'_>, viewer: &Viewer, user_id: uuid::Uuid, password: String) -> ApiResult<()> {
    if password.len() > rules::MAX_PASSWORD_BYTES {
        return Err(ApiError::bad_input("password", "password must have at most 1024 bytes"));
    }
    let guard = auth_guard(ctx)?;
    guard.limits.check(Attempt::SignIn, client_ip(ctx), &user_id.to_string())?;
    let hash = {
        let tx = ctx.tx().await?;
        sessions::password_of(&*tx, viewer).await?
    };
    let hash = hash.ok_or_else(|| ApiError::Unauthenticated("this account no longer exists".into()))?;
    if !guard.hashing.verify(password, hash).await? {
        return Err(wrong_password());
    }
    Ok(())
}

#[derive(Default)]
pub struct AccountSelfMutation;

#[Object]
impl AccountSelfMutation {
    /// Exchanges a refresh token for a new access token and the next refresh
    /// token (the one sent is used up). Send it without an `Authorization`
    /// header (the old access token may have expired, and an expired one is
    /// refused before anything runs). UNAUTHENTICATED when the token is
    /// unknown, its session has ended or expired, or the account is
    /// deactivated; presenting a refresh token that was already used ends
    /// its whole session, for whoever holds its newer tokens too.
    async fn refresh_session(&self, ctx: &Context<'_>, input: RefreshSessionInput) -> ApiResult<AuthPayload> {
        let ended = || ApiError::Unauthenticated("this session has ended; sign in again".into());
        let presented = hash_presented(&input.refresh_token).ok_or_else(ended)?;
        let guard = auth_guard(ctx)?;
        let viewer = ctx.viewer()?;
        let next = RefreshToken::generate()?;
        let refreshed = {
            let tx = ctx.tx().await?;
            sessions::refresh(&*tx, &viewer, presented, next.hash, guard.session_ttl).await?
        };
        match refreshed {
            sessions::Refreshed::Rotated { session, user } if user.is_active => {
                Ok(payload(ctx, user, session, next.token)?.echo(input.client_mutation_id))
            }
            sessions::Refreshed::Rotated { .. } => Err(ApiError::Unauthenticated("this account is deactivated".into())),
            sessions::Refreshed::Reused { session } => {
                // Committed on its own: this request's error rolls it back.
                sessions::revoke_now(ctx.realtime()?.pool(), session).await?;
                tracing::warn!(%session, "a used refresh token was presented again: session ended");
                Err(ended())
            }
            sessions::Refreshed::Expired => {
                Err(ApiError::Unauthenticated("this session has expired; sign in again".into()))
            }
            sessions::Refreshed::Unknown => Err(ended()),
        }
    }

    /// Ends this session: its access tokens stop working, its refresh token
    /// is refused and its websockets close. Other sessions (other devices)
    /// go on.
    async fn sign_out(&self, ctx: &Context<'_>, input: Option<SignOutInput>) -> ApiResult<SignOutPayload> {
        ctx.viewer()?.require_user()?;
        let session = access_session(ctx)
            .ok_or_else(|| ApiError::bad_input("token", "this access token has no session to end; it only expires"))?;
        let tx = ctx.tx().await?;
        let ended = sessions::sign_out(&*tx, Some(session)).await?;
        Ok(SignOutPayload { ended_sessions: ended, client_mutation_id: input.and_then(|i| i.client_mutation_id) })
    }

    /// Ends every session of the signed-in account, this one included.
    async fn sign_out_everywhere(&self, ctx: &Context<'_>, input: Option<SignOutInput>) -> ApiResult<SignOutPayload> {
        ctx.viewer()?.require_user()?;
        let tx = ctx.tx().await?;
        let ended = sessions::sign_out(&*tx, None).await?;
        Ok(SignOutPayload { ended_sessions: ended, client_mutation_id: input.and_then(|i| i.client_mutation_id) })
    }

    /// Changes the signed-in user's password, given the current one (a wrong
    /// one is UNAUTHENTICATED, as at sign-in, and rate limited like
    /// sign-in). Every other session of the account ends; this one goes on.
    async fn change_password(&self, ctx: &Context<'_>, input: ChangePasswordInput) -> ApiResult<ChangePasswordPayload> {
        let viewer = ctx.viewer()?;
        let user_id = viewer.require_user()?;
        rules::password("newPassword", &input.new_password)?;
        check_password(ctx, &viewer, user_id, input.current_password).await?;
        let hash = auth_guard(ctx)?.hashing.hash(input.new_password).await?;
        let tx = ctx.tx().await?;
        sessions::set_password(&*tx, &viewer, &hash, access_session(ctx)).await?;
        let user = domain::store::visible::<Users>(&*tx, &viewer, user_id).await?;
        Ok(ChangePasswordPayload { user: user.into(), client_mutation_id: input.client_mutation_id })
    }

    /// Changes the signed-in user's display name and/or username (a field
    /// left out or null stays as it is). A username someone else has
    /// (regardless of case) is CONFLICT on `username`.
    async fn update_profile(&self, ctx: &Context<'_>, input: UpdateProfileInput) -> ApiResult<UpdateProfilePayload> {
        let viewer = ctx.viewer()?;
        let user_id = viewer.require_user()?;
        let full_name = input.full_name.as_deref().map(str::trim);
        let username = input.username.as_deref().map(str::trim);
        if let Some(name) = full_name {
            rules::full_name(name)?;
        }
        if let Some(name) = username {
            rules::username(name)?;
        }
        let tx = ctx.tx().await?;
        let user = if full_name.is_none() && username.is_none() {
            domain::store::find_visible::<Users>(&*tx, &viewer, user_id).await?
        } else {
            store::update_profile(&*tx, user_id, full_name, username).await?
        };
        let user = user.ok_or_else(|| ApiError::not_found("user"))?;
        Ok(UpdateProfilePayload { user: user.into(), client_mutation_id: input.client_mutation_id })
    }

    /// Deletes the signed-in account for good, given its password (checked
    /// and rate limited as at sign-in), with everything it owns: reviews,
    /// preferences, routines and runs, airdrop participations, posts and
    /// comments (the foreign keys cascade). Its sessions end and its
    /// websockets close.
    async fn delete_account(&self, ctx: &Context<'_>, input: DeleteAccountInput) -> ApiResult<DeleteAccountPayload> {
        let viewer = ctx.viewer()?;
        let user_id = viewer.require_user()?;
        check_password(ctx, &viewer, user_id, input.password).await?;
        let tx = ctx.tx().await?;
        if !sessions::delete_account(&*tx, &viewer).await? {
            return Err(ApiError::not_found("user"));
        }
        Ok(DeleteAccountPayload {
            deleted_user_id: ID(user_id.to_string()),
            client_mutation_id: input.client_mutation_id,
        })
    }
}

/// A refresh token to exchange.
#[mutation_input]
pub struct RefreshSessionInput {
    /// The `refreshToken` of the latest `AuthPayload` of the session.
    pub refresh_token: String,
}

/// Signing out.
#[mutation_input]
pub struct SignOutInput;

/// Sessions ended by `signOut` or `signOutEverywhere`.
#[derive(SimpleObject)]
pub struct SignOutPayload {
    /// How many sessions ended (0 when this one had ended already).
    pub ended_sessions: i32,
    /// The input's `clientMutationId`.
    pub client_mutation_id: Option<String>,
}

/// A new password.
#[mutation_input]
pub struct ChangePasswordInput {
    /// The password the account has now.
    pub current_password: String,
    /// At least 8 characters and at most 1024 bytes; nothing else is
    /// required (no character classes) and it is not checked against
    /// breached-password lists.
    pub new_password: String,
}

crate::payload!(ChangePasswordPayload, user: User, "The signed-in account.");

/// Profile fields to change; a field left out or null stays as it is.
#[mutation_input]
pub struct UpdateProfileInput {
    /// Display name, 1 to 100 characters.
    pub full_name: Option<String>,
    /// 3 to 50 letters, digits, '.', '_' or '-'; unique regardless of case.
    pub username: Option<String>,
}

crate::payload!(UpdateProfilePayload, user: User, "The signed-in account as it is now.");

/// Confirmation for deleting an account.
#[mutation_input]
pub struct DeleteAccountInput {
    /// The account's password.
    pub password: String,
}

/// An account that no longer exists.
#[derive(SimpleObject)]
pub struct DeleteAccountPayload {
    /// The id the account had.
    pub deleted_user_id: ID,
    /// The input's `clientMutationId`.
    pub client_mutation_id: Option<String>,
}
