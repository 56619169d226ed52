use async_graphql::{ComplexObject, Context, Enum, ID, Json, SimpleObject};
use chrono::{DateTime, FixedOffset};

use super::policy::Routines;
use crate::accounts::{User, Users};
use crate::domain::loader::{load, raw_key};
use crate::error::{ApiError, ApiResult};
use crate::graphql::ids::{FromModel, GlobalId, RawId};
use crate::graphql::payload::mutation_input;
use crate::graphql::scalars::BigInt;

/// A repeatable sequence of steps that earns tokens when it runs.
#[derive(SimpleObject, FromModel, Clone)]
#[graphql(complex)]
#[from_model(entity::routine::Model)]
pub struct Routine {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Routine.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
    /// The owner's user id.
    pub user_id: RawId,
    /// Display name.
    pub name: String,
    /// The steps, a JSON array of objects, each with at least an `action`.
    pub steps: Json<serde_json::Value>,
    /// Tokens one successful run is expected to earn.
    pub tokens_per_run: i32,
    /// When the routine was created.
    pub created_at: DateTime<FixedOffset>,
    /// When the routine last changed.
    pub updated_at: DateTime<FixedOffset>,
}

/// The account a raw `userId` names, if the viewer may see it.
async fn user(ctx: &Context<'_>, id: &RawId) -> ApiResult<Option<User>> {
    Ok(load::<Users>(ctx, raw_key::<uuid::Uuid>(id)?).await?.map(User::from))
}

#[ComplexObject]
impl Routine {
    /// The owner (`userId`): null unless the viewer may see that account
    /// (their own, or any as a reader, service or admin). Batched across
    /// the response.
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        user(ctx, &self.user_id).await
    }
}

/// Where a run is.
#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum RunStatus {
    /// Started, not finished.
    Running,
    /// Every step succeeded.
    Success,
    /// The run failed.
    Failure,
    /// Some steps succeeded.
    Partial,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Partial => "partial",
        }
    }

    /// The `status` column (its CHECK admits these four).
    fn parse(column: String) -> Self {
        match column.as_str() {
            "success" => Self::Success,
            "failure" => Self::Failure,
            "partial" => Self::Partial,
            _ => Self::Running,
        }
    }
}

/// One execution of a routine.
#[derive(SimpleObject, FromModel, Clone)]
#[graphql(complex)]
#[from_model(entity::routine_run::Model)]
pub struct RoutineRun {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a RoutineRun.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
    /// The routine that ran.
    pub routine_id: RawId,
    /// The routine owner's user id.
    pub user_id: RawId,
    /// When the run started.
    pub start_time: DateTime<FixedOffset>,
    /// When it finished; null while running.
    pub end_time: Option<DateTime<FixedOffset>>,
    /// Where the run is.
    #[from_model(with = RunStatus::parse)]
    pub status: RunStatus,
    /// Tokens earned, 0 or more.
    pub tokens_earned: i32,
}

#[ComplexObject]
impl RoutineRun {
    /// The routine that ran (`routineId`): null if the viewer may not see
    /// it (a service recording runs sees them; owners see their own) or
    /// it is gone (the event of a run deleted with its routine). Batched
    /// across the response.
    async fn routine(&self, ctx: &Context<'_>) -> ApiResult<Option<Routine>> {
        Ok(load::<Routines>(ctx, raw_key::<uuid::Uuid>(&self.routine_id)?).await?.map(Routine::from))
    }

    /// The routine owner's account (`userId`): null unless the viewer may
    /// see it. Batched across the response.
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        user(ctx, &self.user_id).await
    }
}

/// A user's totals over all their runs, kept by the database.
#[derive(SimpleObject, FromModel, Clone)]
#[graphql(complex)]
#[from_model(entity::user_stats::Model)]
pub struct UserStats {
    /// The user these totals are of.
    pub user_id: RawId,
    /// Runs recorded, whatever their status.
    pub total_routine_runs: i32,
    /// Tokens earned over all runs.
    pub total_tokens_earned: BigInt,
    /// When the latest run started.
    pub last_run_date: Option<DateTime<FixedOffset>>,
}

#[ComplexObject]
impl UserStats {
    /// The account these totals are of (`userId`): null unless the viewer
    /// may see it. Batched across the response.
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        user(ctx, &self.user_id).await
    }
}

/// One row of the leaderboard.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct LeaderboardEntry {
    /// 1 for the top earner.
    pub rank: i32,
    /// The user's id.
    pub user_id: RawId,
    /// The user's public handle.
    pub username: String,
    /// Tokens earned over all runs.
    pub total_tokens_earned: BigInt,
    /// Runs recorded.
    pub total_routine_runs: i32,
}

#[ComplexObject]
impl LeaderboardEntry {
    /// The ranked account (`userId`): null unless the viewer may see it
    /// (the leaderboard's readers and admins see every account). Batched
    /// across the response.
    async fn user(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        user(ctx, &self.user_id).await
    }
}

/// A new routine.
#[mutation_input(update = UpdateRoutineInput, fields = RoutineField)]
pub struct CreateRoutineInput {
    /// Display name, 1 to 200 characters.
    pub name: String,
    /// A JSON array of 0 to 100 step objects, each with a non-empty string `action`.
    pub steps: Json<serde_json::Value>,
    /// Tokens a run is expected to earn, 0 or more.
    #[graphql(default)]
    pub tokens_per_run: i32,
}

crate::id_input!(DeleteRoutineInput, "The routine to delete (its runs go with it).");

/// The routine to start a run of.
#[mutation_input]
pub struct StartRunInput {
    /// The routine to run.
    pub routine_id: ID,
}

/// How a running run ended.
#[mutation_input]
pub struct FinishRunInput {
    /// The run to finish (it must be RUNNING).
    pub id: ID,
    /// The outcome: SUCCESS, FAILURE or PARTIAL.
    pub status: RunStatus,
    /// Tokens the run earned, 0 or more.
    pub tokens_earned: i32,
    /// When it ended; now when omitted. Not before the run's start.
    pub end_time: Option<DateTime<FixedOffset>>,
}

crate::payload!(CreateRoutinePayload, routine: Routine, "The routine as saved.");
crate::payload!(UpdateRoutinePayload, routine: Routine, "The routine as changed.");
crate::payload!(DeleteRoutinePayload, routine: Routine, "The routine as it was before its deletion.");
crate::payload!(StartRunPayload, run: RoutineRun, "The run, RUNNING.");
crate::payload!(FinishRunPayload, run: RoutineRun, "The run as finished.");

/// Checks steps: an array of at most 100 objects, each with an `action`.
pub fn validate_steps(steps: &serde_json::Value) -> ApiResult<()> {
    let Some(items) = steps.as_array() else {
        return Err(ApiError::bad_input("steps", "steps must be a JSON array"));
    };
    if items.len() > 100 {
        return Err(ApiError::bad_input("steps", "at most 100 steps"));
    }
    for (i, step) in items.iter().enumerate() {
        let action = step.as_object().and_then(|o| o.get("action")).and_then(serde_json::Value::as_str);
        if action.is_none_or(|a| a.trim().is_empty()) {
            return Err(ApiError::bad_input(
                "steps",
                format!("step {i} must be an object with a non-empty \"action\""),
            ));
        }
    }
    Ok(())
}

crate::connection_type!(RoutineConnection, RoutineEdge, Routine, "routines");
crate::connection_type!(RoutineRunConnection, RoutineRunEdge, RoutineRun, "routine runs");

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn steps_must_be_an_array_of_actions() {
        assert!(validate_steps(&json!([{ "action": "swap" }, { "action": "bridge", "amount": 3 }])).is_ok());
        assert!(validate_steps(&json!({ "action": "swap" })).is_err());
        assert!(validate_steps(&json!([{ "amount": 3 }])).is_err());
        assert!(validate_steps(&json!(["swap"])).is_err());
    }
}
