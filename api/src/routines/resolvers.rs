use async_graphql::{Context, ID, Object};
use entity::{routine, routine_run};
use sea_orm::{IntoActiveModel, Set};

use super::policy::{self, Routines, Runs, Stats};
use super::store;
use super::types::{
    CreateRoutineInput, CreateRoutinePayload, DeleteRoutineInput, DeleteRoutinePayload, FinishRunInput,
    FinishRunPayload, LeaderboardEntry, Routine, RoutineConnection, RoutineField, RoutineRunConnection, RunStatus,
    StartRunInput, StartRunPayload, UpdateRoutineInput, UpdateRoutinePayload, UserStats, validate_steps,
};
use crate::domain::resolve::InputField;
use crate::domain::{self, Policy};
use crate::error::{ApiError, ApiResult, FoundExt};
use crate::graphql::ids::{RawId, parse_uuid};
use crate::graphql::pagination::{MAX_PAGE_SIZE, Page, paged};
use crate::graphql::{ContextExt, validate};

#[derive(Default)]
pub struct RoutinesQuery;

#[paged]
#[Object]
impl RoutinesQuery {
    /// The signed-in user's routines, newest first.
    async fn my_routines(&self, ctx: &Context<'_>, #[page] page: Page) -> ApiResult<RoutineConnection> {
        Ok(domain::resolve::my_page::<Routines>(ctx, &page, &store::ROUTINES).await?.into())
    }

    /// One routine, or null if there is none the viewer may see.
    #[graphql(complexity = "crate::graphql::cost::one(child_complexity)")]
    async fn routine(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Routine>> {
        ctx.viewer()?.require_user()?;
        Ok(domain::resolve::one::<Routines>(ctx, &id).await.found()?.map(Routine::from))
    }

    /// Runs of a routine, latest first, optionally of one status.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        routine_id: ID,
        status: Option<RunStatus>,
        #[page] page: Page,
    ) -> ApiResult<RoutineRunConnection> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let routine_id = parse_uuid("routineId", &routine_id)?;
        let tx = ctx.tx().await?;
        domain::store::visible::<Routines>(&*tx, &viewer, routine_id).await?;
        let rows = store::list_runs(&*tx, &viewer, routine_id, status.map(RunStatus::as_str), &page).await?;
        Ok(rows.into())
    }

    /// The signed-in user's totals (zeros before the first run).
    #[graphql(complexity = "crate::graphql::cost::one(child_complexity)")]
    async fn my_stats(&self, ctx: &Context<'_>) -> ApiResult<UserStats> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let tx = ctx.tx().await?;
        Ok(domain::store::find_visible::<Stats>(&*tx, &viewer, me).await?.map_or(
            UserStats {
                user_id: RawId::from(me),
                total_routine_runs: 0,
                total_tokens_earned: 0.into(),
                last_run_date: None,
            },
            UserStats::from,
        ))
    }

    /// Users by tokens earned (readers and admins).
    #[graphql(complexity = "crate::graphql::cost::list(first, child_complexity)")]
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
    ) -> ApiResult<Vec<LeaderboardEntry>> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        if !policy::can_see_leaderboard(&viewer) {
            return Err(ApiError::Forbidden("only readers and admins see the leaderboard".into()));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&first) {
            return Err(ApiError::bad_input("first", format!("first must be between 1 and {MAX_PAGE_SIZE}")));
        }
        let tx = ctx.tx().await?;
        let rows = store::leaderboard(&*tx, u64::try_from(first).unwrap_or(10)).await?;
        Ok(rows
            .into_iter()
            .zip(1..)
            .map(|(row, rank)| LeaderboardEntry {
                rank,
                user_id: RawId::from(row.user_id),
                username: row.username,
                total_tokens_earned: row.total_tokens_earned.into(),
                total_routine_runs: row.total_routine_runs,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct RoutinesMutation;

#[Object]
impl RoutinesMutation {
    /// Creates a routine for the signed-in user.
    async fn create_routine(&self, ctx: &Context<'_>, input: CreateRoutineInput) -> ApiResult<CreateRoutinePayload> {
        domain::resolve::create::<Routines, _>(ctx, input.into_fields()).await.map(Into::into)
    }

    /// Changes a routine (its owner or an admin).
    async fn update_routine(&self, ctx: &Context<'_>, input: UpdateRoutineInput) -> ApiResult<UpdateRoutinePayload> {
        domain::resolve::update::<Routines, _>(ctx, input).await.map(Into::into)
    }

    /// Deletes a routine and its runs (the owner's stats follow), returning it.
    async fn delete_routine(&self, ctx: &Context<'_>, input: DeleteRoutineInput) -> ApiResult<DeleteRoutinePayload> {
        domain::resolve::delete::<Routines, _>(ctx, input).await.map(Into::into)
    }

    /// Starts a run of a routine (its owner, or a service for any user).
    async fn start_run(&self, ctx: &Context<'_>, input: StartRunInput) -> ApiResult<StartRunPayload> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let routine_id = parse_uuid("routineId", &input.routine_id)?;
        let tx = ctx.tx().await?;
        let routine = domain::store::visible::<Routines>(&*tx, &viewer, routine_id).await?;
        if !policy::can_record_run(&viewer, routine.user_id) {
            return Err(Runs::write_denied());
        }
        let row = routine_run::ActiveModel {
            routine_id: Set(routine_id),
            user_id: Set(routine.user_id),
            ..Default::default()
        };
        Ok((domain::store::insert(&*tx, row).await?, input.client_mutation_id).into())
    }

    /// Finishes a running run with its outcome and the tokens it earned.
    /// `endTime` defaults to now and may not be before the start.
    async fn finish_run(&self, ctx: &Context<'_>, input: FinishRunInput) -> ApiResult<FinishRunPayload> {
        let viewer = ctx.viewer()?;
        let id = domain::resolve::key::<Runs>("id", &input.id)?;
        if input.status == RunStatus::Running {
            return Err(ApiError::bad_input("status", "a finished run cannot be RUNNING"));
        }
        let tokens = validate::count("tokensEarned", input.tokens_earned)?;
        let tx = ctx.tx().await?;
        let run = domain::store::writable::<Runs>(&*tx, &viewer, id).await?;
        if run.status != RunStatus::Running.as_str() {
            return Err(ApiError::conflict("id", "this run has already finished"));
        }
        let end = input.end_time.unwrap_or_else(|| chrono::Utc::now().fixed_offset());
        if end < run.start_time {
            return Err(ApiError::bad_input("endTime", "endTime must not be before the run's start"));
        }
        let mut row = run.into_active_model();
        row.status = Set(input.status.as_str().to_owned());
        row.tokens_earned = Set(tokens);
        row.end_time = Set(Some(end));
        Ok((domain::store::update(&*tx, row).await?, input.client_mutation_id).into())
    }
}

impl InputField for RoutineField {
    type Row = routine::ActiveModel;

    fn set(self, row: &mut routine::ActiveModel) -> ApiResult<()> {
        match self {
            Self::Name(name) => row.name = Set(validate::text("name", &name, 200)?),
            Self::Steps(steps) => {
                validate_steps(&steps)?;
                row.steps = Set(steps.0);
            }
            Self::TokensPerRun(tokens) => row.tokens_per_run = Set(validate::count("tokensPerRun", tokens)?),
        }
        Ok(())
    }
}
