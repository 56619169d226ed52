//! Queries of the routines domain, each scoped by the row policy.

use entity::{routine, routine_run, user_stats};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Statement,
};
use uuid::Uuid;

use super::policy;
use crate::auth::Viewer;
use crate::error::ApiResult;
use crate::graphql::pagination::{Page, PageOf, SortKey};

/// A user's routines, newest first; index `idx_routine_user_id`.
const ROUTINES: SortKey<routine::Entity> =
    SortKey::new("routine.newest", true, &[routine::Column::CreatedAt, routine::Column::Id]);
/// A routine's runs, latest start first; index `idx_routine_run_routine_id`.
const RUNS: SortKey<routine_run::Entity> =
    SortKey::new("run.latest", true, &[routine_run::Column::StartTime, routine_run::Column::Id]);

pub async fn list_routines(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    owner: Uuid,
    page: &Page,
) -> ApiResult<PageOf<routine::Model>> {
    let query =
        routine::Entity::find().filter(policy::routines_visible_to(viewer)).filter(routine::Column::UserId.eq(owner));
    page.fetch(db, query, &ROUTINES).await
}

pub async fn find_routine(db: &impl ConnectionTrait, viewer: &Viewer, id: Uuid) -> ApiResult<Option<routine::Model>> {
    Ok(routine::Entity::find_by_id(id).filter(policy::routines_visible_to(viewer)).one(db).await?)
}

pub async fn insert_routine(db: &impl ConnectionTrait, row: routine::ActiveModel) -> ApiResult<routine::Model> {
    Ok(row.insert(db).await?)
}

pub async fn update_routine(db: &impl ConnectionTrait, row: routine::ActiveModel) -> ApiResult<routine::Model> {
    Ok(row.update(db).await?)
}

pub async fn delete_routine(db: &impl ConnectionTrait, id: Uuid) -> ApiResult<()> {
    routine::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

pub async fn list_runs(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    routine_id: Uuid,
    status: Option<&str>,
    page: &Page,
) -> ApiResult<PageOf<routine_run::Model>> {
    let mut query = routine_run::Entity::find()
        .filter(policy::runs_visible_to(viewer))
        .filter(routine_run::Column::RoutineId.eq(routine_id));
    if let Some(status) = status {
        query = query.filter(routine_run::Column::Status.eq(status));
    }
    page.fetch(db, query, &RUNS).await
}

pub async fn find_run(db: &impl ConnectionTrait, viewer: &Viewer, id: Uuid) -> ApiResult<Option<routine_run::Model>> {
    Ok(routine_run::Entity::find_by_id(id).filter(policy::runs_visible_to(viewer)).one(db).await?)
}

pub async fn insert_run(db: &impl ConnectionTrait, row: routine_run::ActiveModel) -> ApiResult<routine_run::Model> {
    Ok(row.insert(db).await?)
}

pub async fn update_run(db: &impl ConnectionTrait, row: routine_run::ActiveModel) -> ApiResult<routine_run::Model> {
    Ok(row.update(db).await?)
}

pub async fn find_stats(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    user: Uuid,
) -> ApiResult<Option<user_stats::Model>> {
    Ok(user_stats::Entity::find_by_id(user).filter(policy::stats_visible_to(viewer)).one(db).await?)
}

#[derive(FromQueryResult)]
pub struct LeaderRow {
    pub user_id: Uuid,
    pub username: String,
    pub total_tokens_earned: i64,
    pub total_routine_runs: i32,
}

/// Users by tokens earned; only roles that read every account call it.
pub async fn leaderboard(db: &impl ConnectionTrait, limit: u64) -> ApiResult<Vec<LeaderRow>> {
    Ok(LeaderRow::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT s.user_id, u.username, s.total_tokens_earned, s.total_routine_runs
         FROM user_stats s JOIN users u ON u.id = s.user_id
         ORDER BY s.total_tokens_earned DESC, s.user_id
         LIMIT $1",
        [i64::try_from(limit).unwrap_or(100).into()],
    ))
    .all(db)
    .await?)
}
