use async_graphql::{Context, ID, Object};
use entity::airdrop_project;
use sea_orm::{ActiveValue, Set};

use super::policy::{Participations, Projects};
use super::store;
use super::types::{
    AirdropProject, AirdropProjectConnection, AirdropProjectField, CreateAirdropProjectInput,
    CreateAirdropProjectPayload, CreditAirdropTokensInput, CreditAirdropTokensPayload, JoinAirdropInput,
    JoinAirdropPayload, Participation, UpdateAirdropProjectInput, UpdateAirdropProjectPayload,
};
use crate::domain::resolve::{InputField, Update};
use crate::domain::{self, Policy};
use crate::error::{ApiError, ApiResult};
use crate::graphql::ids::parse_uuid;
use crate::graphql::pagination::{Page, paged};
use crate::graphql::scalars::BigInt;
use crate::graphql::{ContextExt, validate};

#[derive(Default)]
pub struct AirdropsQuery;

#[paged]
#[Object]
impl AirdropsQuery {
    /// Airdrop projects, latest start first. `active`: only those running
    /// today (true) or only those not running today (false).
    async fn airdrop_projects(
        &self,
        ctx: &Context<'_>,
        active: Option<bool>,
        #[page] page: Page,
    ) -> ApiResult<AirdropProjectConnection> {
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
        let id = domain::resolve::key::<Projects>("id", &id)?;
        let tx = ctx.tx().await?;
        match domain::store::find_visible::<Projects>(&*tx, &viewer, id).await? {
            Some(row) => Ok(Some(with_totals(&tx, Some(row)).await?)),
            None => Ok(None),
        }
    }

    /// The signed-in user's participations, latest first.
    #[graphql(complexity = "crate::graphql::cost::unsized_list(child_complexity)")]
    async fn my_participations(&self, ctx: &Context<'_>) -> ApiResult<Vec<Participation>> {
        let rows = domain::resolve::my_list::<Participations>(ctx, &store::PARTICIPATIONS).await?;
        Ok(rows.into_iter().map(Participation::from).collect())
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
    ) -> ApiResult<CreateAirdropProjectPayload> {
        let (created, client_mutation_id) =
            domain::resolve::create_with::<Projects, _>(ctx, input.into_fields(), dates).await?;
        // A new project has no participants yet: no totals to read.
        Ok((AirdropProject::new(created, 0, 0), client_mutation_id).into())
    }

    /// Changes a project (admins). The allocation cannot drop below what is
    /// already distributed.
    async fn update_airdrop_project(
        &self,
        ctx: &Context<'_>,
        input: UpdateAirdropProjectInput,
    ) -> ApiResult<UpdateAirdropProjectPayload> {
        let viewer = ctx.viewer()?;
        Projects::require_writer(&viewer)?;
        let update = Update::<Projects>::check(input)?;
        let tx = ctx.tx().await?;
        let row = update.writable(&*tx, &viewer).await?;
        dates(&row)?;
        if let ActiveValue::Set(allocation) = row.total_token_allocation {
            let distributed = store::totals(&*tx, vec![update.key]).await?.get(&update.key).map_or(0, |t| t.1);
            if allocation < distributed {
                let message = format!("{distributed} tokens are already distributed");
                return Err(ApiError::conflict("totalTokenAllocation", message));
            }
        }
        let updated = domain::store::update(&*tx, row).await?;
        Ok((with_totals(&tx, Some(updated)).await?, update.client_mutation_id).into())
    }

    /// Joins a project as the signed-in user (once per project).
    async fn join_airdrop(&self, ctx: &Context<'_>, input: JoinAirdropInput) -> ApiResult<JoinAirdropPayload> {
        let viewer = ctx.viewer()?;
        let me = Participations::require_writer(&viewer)?;
        let project_id = parse_uuid("projectId", &input.project_id)?;
        let tx = ctx.tx().await?;
        let project = domain::store::visible::<Projects>(&*tx, &viewer, project_id).await?;
        if project.end_date < chrono::Utc::now().date_naive() {
            return Err(ApiError::conflict("projectId", "this project has ended"));
        }
        Ok((store::join(&*tx, me, project_id).await?, input.client_mutation_id).into())
    }

    /// Credits tokens (1 to 10^15) to a participation (services and
    /// admins). CONFLICT when the project has fewer tokens left.
    async fn credit_airdrop_tokens(
        &self,
        ctx: &Context<'_>,
        input: CreditAirdropTokensInput,
    ) -> ApiResult<CreditAirdropTokensPayload> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let id = parse_uuid("participationId", &input.participation_id)?;
        let tokens = validate::positive_tokens("tokens", input.tokens.0)?;
        let tx = ctx.tx().await?;
        Ok((store::credit(&*tx, &viewer, id, tokens).await?, input.client_mutation_id).into())
    }
}

impl InputField for AirdropProjectField {
    type Row = airdrop_project::ActiveModel;

    fn set(self, row: &mut airdrop_project::ActiveModel) -> ApiResult<()> {
        match self {
            Self::Name(name) => row.name = Set(validate::text("name", &name, 200)?),
            Self::Description(description) => row.description = Set(description),
            Self::StartDate(start) => row.start_date = Set(start.0),
            Self::EndDate(end) => row.end_date = Set(end.0),
            Self::TotalTokenAllocation(BigInt(tokens)) => {
                row.total_token_allocation = Set(validate::tokens("totalTokenAllocation", tokens)?);
            }
        }
        Ok(())
    }
}

/// A project's last day is not before its first, on the row as it will be
/// written (a new one, or a stored one with an update's changes on it).
fn dates(row: &airdrop_project::ActiveModel) -> ApiResult<()> {
    if let (Some(start), Some(end)) = (row.start_date.try_as_ref(), row.end_date.try_as_ref())
        && end < start
    {
        return Err(ApiError::bad_input("endDate", "endDate must not be before startDate"));
    }
    Ok(())
}

async fn with_totals(tx: &crate::db::Tx, project: Option<airdrop_project::Model>) -> ApiResult<AirdropProject> {
    let project = project.ok_or_else(|| ApiError::not_found("airdrop project"))?;
    let totals = store::totals(tx, vec![project.id]).await?;
    let (participants, distributed) = totals.get(&project.id).copied().unwrap_or_default();
    Ok(AirdropProject::new(project, participants, distributed))
}

/// Projects with their public totals, read for all of them in one statement
/// (`node`/`nodes`).
pub(crate) async fn with_totals_all(
    db: &impl sea_orm::ConnectionTrait,
    projects: Vec<airdrop_project::Model>,
) -> ApiResult<Vec<AirdropProject>> {
    let totals = store::totals(db, projects.iter().map(|p| p.id).collect()).await?;
    Ok(projects
        .into_iter()
        .map(|project| {
            let (participants, distributed) = totals.get(&project.id).copied().unwrap_or_default();
            AirdropProject::new(project, participants, distributed)
        })
        .collect())
}
