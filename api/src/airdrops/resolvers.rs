use async_graphql::{Context, ID, Object};
use entity::airdrop_project;
use sea_orm::{IntoActiveModel, Set};

use super::policy::{Participations, Projects};
use super::store;
use super::types::{
    AirdropProject, AirdropProjectConnection, CreateAirdropProjectInput, Participation, UpdateAirdropProjectInput,
};
use crate::domain::{self, Policy};
use crate::error::{ApiError, ApiResult};
use crate::graphql::ids::parse_uuid;
use crate::graphql::pagination::Page;
use crate::graphql::scalars::BigInt;
use crate::graphql::{ContextExt, validate};

#[derive(Default)]
pub struct AirdropsQuery;

#[Object]
impl AirdropsQuery {
    /// Airdrop projects, latest start first. `active`: only those running
    /// today (true) or only those not running today (false).
    #[graphql(complexity = "crate::graphql::cost::page(first, last, child_complexity)")]
    async fn airdrop_projects(
        &self,
        ctx: &Context<'_>,
        active: Option<bool>,
        #[graphql(desc = "Page size going forward, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (from an edge or `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size going backward: the items just before `before`, or the list's last.")] last: Option<
            i32,
        >,
        #[graphql(desc = "Page back from this cursor (from an edge or `startCursor`).")] before: Option<String>,
    ) -> ApiResult<AirdropProjectConnection> {
        let page = Page::from_args(first, after.as_deref(), last, before.as_deref())?;
        let today = chrono::Utc::now().date_naive();
        let tx = ctx.tx().await?;
        let rows = store::list_projects(&*tx, active.map(|a| (a, today)), &page).await?;
        let totals = store::totals(&*tx, rows.nodes().map(|r| r.id).collect()).await?;
        Ok(rows
            .map(|row| {
                let (participants, distributed) = totals.get(&row.id).copied().unwrap_or_default();
                AirdropProject::new(row, participants, distributed)
            })
            .into())
    }

    /// One project with its public totals, or null if there is none the
    /// viewer may see.
    #[graphql(complexity = "crate::graphql::cost::one(child_complexity)")]
    async fn airdrop_project(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<AirdropProject>> {
        let viewer = ctx.viewer()?;
        let id = parse_uuid("id", &id)?;
        let tx = ctx.tx().await?;
        match domain::store::find_visible::<Projects>(&*tx, &viewer, id).await? {
            Some(row) => Ok(Some(with_totals(&tx, Some(row)).await?)),
            None => Ok(None),
        }
    }

    /// The signed-in user's participations, latest first.
    #[graphql(complexity = "crate::graphql::cost::unsized_list(child_complexity)")]
    async fn my_participations(&self, ctx: &Context<'_>) -> ApiResult<Vec<Participation>> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let tx = ctx.tx().await?;
        Ok(store::list_participations(&*tx, &viewer, me).await?.into_iter().map(Participation::from).collect())
    }
}

#[derive(Default)]
pub struct AirdropsMutation;

#[Object]
impl AirdropsMutation {
    /// Creates a project (admins).
    async fn create_airdrop_project(
        &self,
        ctx: &Context<'_>,
        input: CreateAirdropProjectInput,
    ) -> ApiResult<AirdropProject> {
        let viewer = ctx.viewer()?;
        Projects::require_writer(&viewer)?;
        let row = airdrop_project::ActiveModel {
            name: Set(validate::text("name", &input.name, 200)?),
            description: Set(input.description),
            start_date: Set(input.start_date.0),
            end_date: Set(input.end_date.0),
            total_token_allocation: Set(validate::tokens("totalTokenAllocation", input.total_token_allocation.0)?),
            ..Default::default()
        };
        if input.end_date < input.start_date {
            return Err(ApiError::bad_input("endDate", "endDate must not be before startDate"));
        }
        let tx = ctx.tx().await?;
        let created = domain::store::insert(&*tx, row).await?;
        Ok(AirdropProject::new(created, 0, 0))
    }

    /// Changes a project (admins). The allocation cannot drop below what is
    /// already distributed.
    async fn update_airdrop_project(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateAirdropProjectInput,
    ) -> ApiResult<AirdropProject> {
        let viewer = ctx.viewer()?;
        Projects::require_writer(&viewer)?;
        let id = parse_uuid("id", &id)?;
        let tx = ctx.tx().await?;
        let existing = domain::store::writable::<Projects>(&*tx, &viewer, id).await?;
        let (start, end) =
            (input.start_date.map_or(existing.start_date, |d| d.0), input.end_date.map_or(existing.end_date, |d| d.0));
        if end < start {
            return Err(ApiError::bad_input("endDate", "endDate must not be before startDate"));
        }
        let totals = store::totals(&*tx, vec![id]).await?;
        let distributed = totals.get(&id).map_or(0, |t| t.1);
        let mut row = existing.into_active_model();
        if let Some(name) = input.name {
            row.name = Set(validate::text("name", &name, 200)?);
        }
        if let Some(description) = input.description {
            row.description = Set(Some(description));
        }
        row.start_date = Set(start);
        row.end_date = Set(end);
        if let Some(BigInt(allocation)) = input.total_token_allocation {
            if validate::tokens("totalTokenAllocation", allocation)? < distributed {
                return Err(ApiError::conflict(
                    "totalTokenAllocation",
                    format!("{distributed} tokens are already distributed"),
                ));
            }
            row.total_token_allocation = Set(allocation);
        }
        let updated = domain::store::update(&*tx, row).await?;
        with_totals(&tx, Some(updated)).await
    }

    /// Joins a project as the signed-in user (once per project).
    async fn join_airdrop(&self, ctx: &Context<'_>, project_id: ID) -> ApiResult<Participation> {
        let viewer = ctx.viewer()?;
        let me = Participations::require_writer(&viewer)?;
        let project_id = parse_uuid("projectId", &project_id)?;
        let tx = ctx.tx().await?;
        let project = domain::store::visible::<Projects>(&*tx, &viewer, project_id).await?;
        if project.end_date < chrono::Utc::now().date_naive() {
            return Err(ApiError::conflict("projectId", "this project has ended"));
        }
        Ok(store::join(&*tx, me, project_id).await?.into())
    }

    /// Credits tokens (1 to 10^15) to a participation (services and
    /// admins). CONFLICT when the project has fewer tokens left.
    async fn credit_airdrop_tokens(
        &self,
        ctx: &Context<'_>,
        participation_id: ID,
        tokens: BigInt,
    ) -> ApiResult<Participation> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let id = parse_uuid("participationId", &participation_id)?;
        let tokens = validate::positive_tokens("tokens", tokens.0)?;
        let tx = ctx.tx().await?;
        Ok(store::credit(&*tx, &viewer, id, tokens).await?.into())
    }
}

async fn with_totals(tx: &crate::db::Tx, project: Option<airdrop_project::Model>) -> ApiResult<AirdropProject> {
    let project = project.ok_or_else(|| ApiError::not_found("airdrop project"))?;
    let totals = store::totals(tx, vec![project.id]).await?;
    let (participants, distributed) = totals.get(&project.id).copied().unwrap_or_default();
    Ok(AirdropProject::new(project, participants, distributed))
}
