//! Queries on `users`. Sign-up and sign-in go through the database's
//! SECURITY DEFINER functions, the only access the anonymous role has.

use entity::users;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, Set, Statement,
};
use uuid::Uuid;

use super::policy;
use crate::auth::{Role, Viewer};
use crate::error::ApiResult;
use crate::graphql::pagination::Page;

pub async fn sign_up(
    db: &impl ConnectionTrait,
    email: &str,
    username: &str,
    password_hash: &str,
    full_name: &str,
) -> ApiResult<Option<users::Model>> {
    Ok(users::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, email, username, full_name, role, is_active, created_at, last_login
             FROM auth_sign_up($1, $2, $3, $4)",
            [email.into(), username.into(), password_hash.into(), full_name.into()],
        ))
        .one(db)
        .await?)
}

/// The account with this email or username, with its password hash (the
/// only read of it, through the sign-in function).
pub async fn find_login(db: &impl ConnectionTrait, login: &str) -> ApiResult<Option<(users::Model, String)>> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT * FROM auth_find_login($1)",
            [login.into()],
        ))
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((users::Model::from_query_result(&row, "")?, row.try_get("", "password_hash")?)))
}

pub async fn touch_login(db: &impl ConnectionTrait, id: Uuid) -> ApiResult<()> {
    db.execute_raw(Statement::from_sql_and_values(DbBackend::Postgres, "SELECT auth_touch_login($1)", [id.into()]))
        .await?;
    Ok(())
}

pub async fn find_visible(db: &impl ConnectionTrait, viewer: &Viewer, id: Uuid) -> ApiResult<Option<users::Model>> {
    Ok(users::Entity::find_by_id(id).filter(policy::visible_to(viewer)).one(db).await?)
}

pub async fn list_visible(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    page: Page,
) -> ApiResult<(u64, Vec<users::Model>)> {
    let query = users::Entity::find().filter(policy::visible_to(viewer));
    page.fetch(db, query, |q| q.order_by_asc(users::Column::CreatedAt).order_by_asc(users::Column::Id)).await
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
