//! Live runs and stats.

use async_graphql::{Context, ID, Subscription};
use serde_json::Value;

use super::policy::{Runs, Stats};
use super::types::{RoutineRun, UserStats};
use crate::error::ApiError;
use crate::graphql::ContextExt;
use crate::graphql::ids::parse_uuid;
use crate::realtime::{Changes, EventSchema, Published, changes, my_changes};

impl Published for RoutineRun {
    type Policy = Runs;
    const EVENT: EventSchema = EventSchema::new("RunChangeEvent", "A change to a run.", "run");
}

impl Published for UserStats {
    type Policy = Stats;
    const EVENT: EventSchema = EventSchema::new("StatsChangeEvent", "A change to your stats.", "stats")
        .field_doc("Your totals after the change.");
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
        my_changes(ctx, after.as_deref())
    }
}
