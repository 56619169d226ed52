use async_graphql::{Context, ID, Object};

use super::policy::Users;
use super::types::{
    AuthPayload, SetUserActiveInput, SetUserActivePayload, SetUserRoleInput, SetUserRolePayload, SignInInput,
    SignUpInput, User, UserConnection,
};
use super::{rules, self_service, store};
use crate::auth::{Attempt, AuthGuard, ClientIp, Role};
use crate::domain::{self, Policy};
use crate::error::{ApiError, ApiResult, FoundExt};
use crate::graphql::ContextExt;
use crate::graphql::ids::parse_uuid;
use crate::graphql::pagination::{Page, paged};

#[derive(Default)]
pub struct AccountsQuery;

#[paged]
#[Object]
impl AccountsQuery {
    /// The signed-in user, or null for an anonymous request.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        let viewer = ctx.viewer()?;
        let Some(id) = viewer.user_id() else { return Ok(None) };
        let tx = ctx.tx().await?;
        Ok(domain::store::find_visible::<Users>(&*tx, &viewer, id).await?.map(User::from))
    }

    /// One account, or null if there is none the viewer may see (users see
    /// only themselves).
    async fn user(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<User>> {
        ctx.viewer()?.require_user()?;
        Ok(domain::resolve::one::<Users>(ctx, &id).await.found()?.map(User::from))
    }

    /// Accounts the viewer may see, oldest first (all of them for readers,
    /// services and admins).
    async fn users(&self, ctx: &Context<'_>, #[page] page: Page) -> ApiResult<UserConnection> {
        Ok(domain::resolve::page::<Users>(ctx, None, &page, &store::USERS).await?.into())
    }
}

#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    /// Creates an account with role USER and signs it in. Limited per
    /// client address and per email (RATE_LIMITED past either), and to one
    /// signUp or signIn per request.
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> ApiResult<AuthPayload> {
        let email = input.email.trim().to_owned();
        let username = input.username.trim().to_owned();
        let full_name = input.full_name.trim().to_owned();
        let guard = auth_guard(ctx)?;
        guard.limits.check(Attempt::SignUp, client_ip(ctx), &email)?;
        validate_sign_up(&email, &username, &input.password, &full_name)?;
        let hash = guard.hashing.hash(input.password).await?;
        let viewer = ctx.viewer()?;
        let user = {
            let tx = ctx.tx().await?;
            store::sign_up(&*tx, &viewer, &email, &username, &hash, &full_name).await?
        }
        .ok_or_else(|| ApiError::internal("auth_sign_up returned no row"))?;
        Ok(self_service::start_session(ctx, &viewer, user).await?.echo(input.client_mutation_id))
    }

    /// Signs in with an email or username and a password. Limited per
    /// client address and per login (RATE_LIMITED past either), and to one
    /// signUp or signIn per request.
    async fn sign_in(&self, ctx: &Context<'_>, input: SignInInput) -> ApiResult<AuthPayload> {
        let wrong = || ApiError::Unauthenticated("wrong login or password".into());
        let login = input.login.trim();
        // No account has a longer one (sign-up's limits): refuse before any work.
        if login.len() > MAX_LOGIN_BYTES {
            return Err(ApiError::bad_input("login", "login must have at most 254 bytes"));
        }
        if input.password.len() > MAX_PASSWORD_BYTES {
            return Err(ApiError::bad_input("password", "password must have at most 1024 bytes"));
        }
        let guard = auth_guard(ctx)?;
        guard.limits.check(Attempt::SignIn, client_ip(ctx), login)?;
        let viewer = ctx.viewer()?;
        let account = {
            let tx = ctx.tx().await?;
            store::find_login(&*tx, &viewer, login).await?
        };
        let Some(account) = account else {
            // Hash anyway, so response time does not reveal which logins exist.
            guard.hashing.hash(input.password).await?;
            return Err(wrong());
        };
        if !guard.hashing.verify(input.password, account.password_hash).await? {
            return Err(wrong());
        }
        if !account.is_active {
            return Err(ApiError::Unauthenticated("this account is deactivated".into()));
        }
        let user = {
            let tx = ctx.tx().await?;
            store::signed_in(&*tx, &viewer, account.id).await?
        };
        // Deleted between the two statements: as if it never existed.
        Ok(self_service::start_session(ctx, &viewer, user.ok_or_else(wrong)?).await?.echo(input.client_mutation_id))
    }

    /// Changes an account's role (admins only). Takes effect on the
    /// account's next request, even with a token issued before.
    async fn set_user_role(&self, ctx: &Context<'_>, input: SetUserRoleInput) -> ApiResult<SetUserRolePayload> {
        Ok((administer(ctx, &input.user_id, Some(input.role), None).await?, input.client_mutation_id).into())
    }

    /// Activates or deactivates an account (admins only). A deactivated
    /// account cannot sign in and its tokens stop working at once.
    async fn set_user_active(&self, ctx: &Context<'_>, input: SetUserActiveInput) -> ApiResult<SetUserActivePayload> {
        Ok((administer(ctx, &input.user_id, None, Some(input.is_active)).await?, input.client_mutation_id).into())
    }
}

/// The longest email (and so login) an account can have.
const MAX_LOGIN_BYTES: usize = 254;
use super::rules::MAX_PASSWORD_BYTES;

pub(super) fn auth_guard<'a>(ctx: &Context<'a>) -> ApiResult<&'a AuthGuard> {
    ctx.data_opt::<AuthGuard>().ok_or_else(|| ApiError::internal("auth guard missing from the request context"))
}

/// Where the request came from; unknown (one shared bucket) if the transport did not say.
pub(super) fn client_ip(ctx: &Context<'_>) -> ClientIp {
    ctx.data_opt::<ClientIp>().copied().unwrap_or(ClientIp(None))
}

async fn administer(ctx: &Context<'_>, user_id: &ID, role: Option<Role>, is_active: Option<bool>) -> ApiResult<User> {
    let viewer = ctx.viewer()?;
    Users::require_writer(&viewer)?;
    let id = parse_uuid("userId", user_id)?;
    let tx = ctx.tx().await?;
    domain::store::writable::<Users>(&*tx, &viewer, id).await?;
    Ok(store::update_admin_fields(&*tx, id, role, is_active).await?.into())
}

fn validate_sign_up(email: &str, username: &str, password: &str, full_name: &str) -> ApiResult<()> {
    let valid_email = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if !valid_email {
        return Err(ApiError::bad_input("email", "email is not a valid address"));
    }
    rules::username(username)?;
    rules::password("password", password)?;
    rules::full_name(full_name)?;
    Ok(())
}
