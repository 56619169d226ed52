//! Queries on `users`. Sign-up and sign-in go through the database's
//! SECURITY DEFINER functions, which only `app_signin` may execute: the
//! request switches to it for one statement (see [`one_as_signin`]).

use entity::users;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, Set, Statement};
use uuid::Uuid;

use crate::auth::{Role, Viewer};
use crate::error::ApiResult;
use crate::graphql::pagination::SortKey;

/// Oldest accounts first; index `idx_users_oldest`.
pub const USERS: SortKey<users::Entity> =
    SortKey::new("user.oldest", false, &[users::Column::CreatedAt, users::Column::Id]);

/// Creates an account with role `user` (as `app_signin`: no viewer role
/// may call `auth_sign_up`).
pub async fn sign_up(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    email: &str,
    username: &str,
    password_hash: &str,
    full_name: &str,
) -> ApiResult<Option<users::Model>> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id, email, username, full_name, role, is_active, created_at, last_login
         FROM auth_sign_up($1, $2, $3, $4)",
        [email.into(), username.into(), password_hash.into(), full_name.into()],
    );
    let row = one_as_signin(db, viewer, statement).await?;
    Ok(row.map(|row| users::Model::from_query_result(&row, "")).transpose()?)
}

/// What checking a password needs about the account with this email or
/// username: nothing more (no email, no name).
pub struct LoginCheck {
    pub id: Uuid,
    pub password_hash: String,
    pub is_active: bool,
}

/// The account to check a password against; the only read of a hash, as
/// `app_signin` (migration 000009).
pub async fn find_login(db: &impl ConnectionTrait, viewer: &Viewer, login: &str) -> ApiResult<Option<LoginCheck>> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id, password_hash, is_active FROM auth_sign_in_lookup($1)",
        [login.into()],
    );
    let Some(row) = one_as_signin(db, viewer, statement).await? else { return Ok(None) };
    Ok(Some(LoginCheck {
        id: row.try_get("", "id")?,
        password_hash: row.try_get("", "password_hash")?,
        is_active: row.try_get("", "is_active")?,
    }))
}

/// Records a sign-in whose password matched and returns the account.
pub async fn signed_in(db: &impl ConnectionTrait, viewer: &Viewer, id: Uuid) -> ApiResult<Option<users::Model>> {
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT id, email, username, full_name, role, is_active, created_at, last_login FROM auth_signed_in($1)",
        [id.into()],
    );
    let row = one_as_signin(db, viewer, statement).await?;
    Ok(row.map(|row| users::Model::from_query_result(&row, "")).transpose()?)
}

/// Runs one statement as `app_signin`, then switches back to the viewer's
/// role, within the request transaction (both switches are transaction-local,
/// like the viewer's own). The request login may switch to any role it is a
/// member of, whatever role it has switched to; viewer roles are not members.
pub(super) async fn one_as_signin(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    statement: Statement,
) -> ApiResult<Option<sea_orm::QueryResult>> {
    db.execute_unprepared(&set_role_sql(migration::SIGNIN_ROLE)).await?;
    // On an error the request fails and its transaction is rolled back, so
    // the role switch goes with it.
    let row = db.query_one_raw(statement).await?;
    db.execute_unprepared(&set_role_sql(viewer.db_role())).await?;
    Ok(row)
}

/// Role names are fixed strings from the migrations, never user input.
fn set_role_sql(role: &str) -> String {
    format!("SELECT set_config('role', '{role}', true)")
}

pub async fn update_admin_fields(
    db: &impl ConnectionTrait,
    id: Uuid,
    role: Option<Role>,
    is_active: Option<bool>,
) -> ApiResult<users::Model> {
    let mut row = users::ActiveModel { id: Set(id), ..Default::default() };
    if let Some(role) = role {
        row.role = Set(role.as_str().to_owned());
    }
    if let Some(active) = is_active {
        row.is_active = Set(active);
    }
    Ok(row.update(db).await?)
}

/// Renames the viewer's own account (`None`: unchanged); runs as the
/// viewer, under `users`' row policies and column grants.
pub async fn update_profile(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    full_name: Option<&str>,
    username: Option<&str>,
) -> ApiResult<Option<entity::users::Model>> {
    use entity::users;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let mut update = users::Entity::update_many().filter(users::Column::Id.eq(user_id));
    if let Some(name) = full_name {
        update = update.col_expr(users::Column::FullName, Expr::value(name));
    }
    if let Some(name) = username {
        update = update.col_expr(users::Column::Username, Expr::value(name));
    }
    Ok(update.exec_with_returning(db).await?.into_iter().next())
}

/// An account made by an operator (CLI) or the demo seed, over an
/// administrative connection.
pub struct CreateUser<'a> {
    pub email: &'a str,
    pub username: &'a str,
    pub password_hash: &'a str,
    pub full_name: &'a str,
    pub role: Role,
}

pub async fn create_user_as_admin(db: &impl ConnectionTrait, user: CreateUser<'_>) -> ApiResult<users::Model> {
    users::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO users (email, username, password_hash, full_name, role) VALUES ($1, $2, $3, $4, $5)
             RETURNING id, email, username, full_name, role, is_active, created_at, last_login",
            [
                user.email.into(),
                user.username.into(),
                user.password_hash.into(),
                user.full_name.into(),
                user.role.as_str().into(),
            ],
        ))
        .one(db)
        .await?
        .ok_or_else(|| crate::error::ApiError::internal("INSERT .. RETURNING returned no row"))
}
