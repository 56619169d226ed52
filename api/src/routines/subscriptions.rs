//! Live runs and stats.

use async_graphql::{Context, ID, Subscription};
use serde_json::Value;

use super::types::{RoutineRun, UserStats};
use crate::error::ApiError;
use crate::graphql::ContextExt;
use crate::graphql::ids::parse_uuid;
use crate::realtime::{Changes, EventSchema, Published, changes};

/// Visible by ownership, the default (as `policy::runs_visible_to`).
impl Published for RoutineRun {
    const TABLE: &str = "routine_run";
    const EVENT: EventSchema = EventSchema::new("RunChangeEvent", "A change to a run.", "run");
    type Model = entity::routine_run::Model;
}

/// Visible by ownership, the default (as `policy::stats_visible_to`).
impl Published for UserStats {
    const TABLE: &str = "user_stats";
    const EVENT: EventSchema = EventSchema::new("StatsChangeEvent", "A change to your stats.", "stats")
        .field_doc("Your totals after the change.");
    type Model = entity::user_stats::Model;
}

#[derive(Default)]
pub struct RoutinesSubscription;

#[Subscription]
impl RoutinesSubscription {
    /// Runs as they start, finish and are deleted: yours (all, for readers,
    /// services and admins), optionally of one routine.
    async fn run_changed(
        &self,
        ctx: &Context<'_>,
        routine_id: Option<ID>,
        after: Option<String>,
    ) -> Result<Changes<RoutineRun>, ApiError> {
        ctx.viewer()?.require_user()?;
        let routine_id = routine_id.map(|id| parse_uuid("routineId", &id)).transpose()?.map(|id| id.to_string());
        changes(ctx, after.as_deref(), move |event| {
            routine_id.as_deref().is_none_or(|want| {
                event.row().and_then(|row| row.get("routine_id")).and_then(Value::as_str) == Some(want)
            })
        })
    }

    /// Your stats as your runs change them.
    async fn my_stats_changed(&self, ctx: &Context<'_>, after: Option<String>) -> Result<Changes<UserStats>, ApiError> {
        let me = ctx.viewer()?.require_user()?;
        changes(ctx, after.as_deref(), move |event| event.owner == Some(me))
    }
}
