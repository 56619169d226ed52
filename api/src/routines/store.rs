//! Queries of the routines domain beyond [`crate::domain::store`]'s, each
//! scoped by the row policy.

use entity::{routine, routine_run};
use sea_orm::{ColumnTrait, ConnectionTrait, DbBackend, FromQueryResult, QueryFilter, Statement};
use uuid::Uuid;

use super::policy::Runs;
use crate::auth::Viewer;
use crate::domain::store;
use crate::error::ApiResult;
use crate::graphql::pagination::{Page, PageOf, SortKey};

/// A user's routines, newest first; index `idx_routine_user_id`.
pub const ROUTINES: SortKey<routine::Entity> =
    SortKey::new("routine.newest", true, &[routine::Column::CreatedAt, routine::Column::Id]);
/// A routine's runs, latest start first; index `idx_routine_run_routine_id`.
const RUNS: SortKey<routine_run::Entity> =
    SortKey::new("run.latest", true, &[routine_run::Column::StartTime, routine_run::Column::Id]);

pub async fn list_runs(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    routine_id: Uuid,
    status: Option<&str>,
    page: &Page,
) -> ApiResult<PageOf<routine_run::Model>> {
    let mut query = store::visible_rows::<Runs>(viewer, None).filter(routine_run::Column::RoutineId.eq(routine_id));
    if let Some(status) = status {
        query = query.filter(routine_run::Column::Status.eq(status));
    }
    page.fetch(db, query, &RUNS).await
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
