//! Live runs and stats.

use async_graphql::{Context, ID, Subscription};
use serde_json::Value;
use uuid::Uuid;

use super::policy;
use super::types::{RoutineRun, UserStats};
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::graphql::ContextExt;
use crate::graphql::ids::parse_uuid;
use crate::realtime::{Changes, EventSchema, Published, WHAT_HAPPENED, changes};

impl Published for RoutineRun {
    const TABLE: &str = "routine_run";
    const EVENT: EventSchema = EventSchema {
        name: "RunChangeEvent",
        description: "A change to a run.",
        field: "run",
        field_description: "The run after the change (before it, for a deletion).",
        operation: Some(WHAT_HAPPENED),
    };
    type Model = entity::routine_run::Model;

    fn visible(viewer: &Viewer, owner: Option<Uuid>, _: &Value) -> bool {
        policy::event_visible_to(viewer, owner)
    }
}

impl Published for UserStats {
    const TABLE: &str = "user_stats";
    const EVENT: EventSchema = EventSchema {
        name: "StatsChangeEvent",
        description: "A change to your stats.",
        field: "stats",
        field_description: "Your totals after the change.",
        operation: Some(WHAT_HAPPENED),
    };
    type Model = entity::user_stats::Model;

    fn visible(viewer: &Viewer, owner: Option<Uuid>, _: &Value) -> bool {
        policy::event_visible_to(viewer, owner)
    }
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
