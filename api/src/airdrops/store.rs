//! Queries of the airdrops domain beyond [`crate::domain::store`]'s.

use std::collections::HashMap;

use entity::{airdrop_project, user_airdrop_participation as participation};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, Statement};
use uuid::Uuid;

use super::policy::Participations;
use crate::auth::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::graphql::pagination::{Page, PageOf, SortKey};

/// Latest start first; index `idx_airdrop_project_latest`.
const PROJECTS: SortKey<airdrop_project::Entity> =
    SortKey::new("airdrop.latest", true, &[airdrop_project::Column::StartDate, airdrop_project::Column::Id]);
/// A user's participations, latest first.
pub const PARTICIPATIONS: SortKey<participation::Entity> =
    SortKey::new("participation.latest", true, &[participation::Column::ParticipationDate, participation::Column::Id]);

pub async fn list_projects(
    db: &impl ConnectionTrait,
    active_on: Option<(bool, chrono::NaiveDate)>,
    page: &Page,
) -> ApiResult<PageOf<airdrop_project::Model>> {
    let mut query = airdrop_project::Entity::find();
    if let Some((active, today)) = active_on {
        let running = Expr::col(airdrop_project::Column::StartDate)
            .lte(today)
            .and(Expr::col(airdrop_project::Column::EndDate).gte(today));
        query = query.filter(if active { running } else { running.not() });
    }
    page.fetch(db, query, &PROJECTS).await
}

#[derive(FromQueryResult)]
struct TotalsRow {
    project_id: Uuid,
    participants: i64,
    tokens_distributed: i64,
}

/// Participants and tokens distributed per project, for many projects in
/// one query (the public totals function).
pub async fn totals(db: &impl ConnectionTrait, ids: Vec<Uuid>) -> ApiResult<HashMap<Uuid, (i64, i64)>> {
    let rows = TotalsRow::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT project_id, participants, tokens_distributed FROM airdrop_project_totals($1::uuid[])",
        [ids.into()],
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(|r| (r.project_id, (r.participants, r.tokens_distributed))).collect())
}

pub async fn join(db: &impl ConnectionTrait, user: Uuid, project: Uuid) -> ApiResult<participation::Model> {
    let row = participation::ActiveModel {
        user_id: sea_orm::Set(user),
        project_id: sea_orm::Set(project),
        ..Default::default()
    };
    Ok(row.insert(db).await?)
}

/// Adds tokens in one statement, so concurrent credits never overwrite each
/// other; the database refuses what would exceed the allocation. NOT_FOUND
/// for a participation the viewer cannot see, FORBIDDEN for a role that
/// may not credit.
pub async fn credit(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    id: Uuid,
    tokens: i64,
) -> ApiResult<participation::Model> {
    crate::domain::store::writable::<Participations>(db, viewer, id).await?;
    participation::Model::find_by_statement(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE user_airdrop_participation SET tokens_earned = tokens_earned + $1 WHERE id = $2 RETURNING *",
        [tokens.into(), id.into()],
    ))
    .one(db)
    .await?
    .ok_or_else(|| ApiError::not_found("participation"))
}
