//! Live runs and stats.

use async_graphql::{Context, ID, SimpleObject, Subscription};
use futures_util::{Stream, StreamExt};

use super::policy;
use super::types::{RoutineRun, UserStats};
use crate::error::ApiError;
use crate::graphql::ContextExt;
use crate::graphql::ids::parse_uuid;
use crate::realtime::{ChangeEvent, ChangeOperation, stream};

/// A change to a run.
#[derive(SimpleObject)]
pub struct RunChangeEvent {
    /// What happened.
    pub operation: ChangeOperation,
    /// The run after the change (before it, for a deletion).
    pub run: RoutineRun,
    /// Pass as `after` when resubscribing to continue right after this event.
    pub cursor: String,
}

/// A change to your stats.
#[derive(SimpleObject)]
pub struct StatsChangeEvent {
    /// What happened.
    pub operation: ChangeOperation,
    /// Your totals after the change.
    pub stats: UserStats,
    /// Pass as `after` when resubscribing to continue right after this event.
    pub cursor: String,
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
    ) -> Result<impl Stream<Item = Result<RunChangeEvent, ApiError>> + use<>, ApiError> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let routine_id = routine_id.map(|id| parse_uuid("routineId", &id)).transpose()?.map(|id| id.to_string());
        let request = ctx.change_request(&["routine_run"], after.as_deref())?;
        let filter = move |event: &ChangeEvent| {
            (policy::event_visible_to(&viewer, event.owner)
                && routine_id.as_deref().is_none_or(|want| {
                    event.row().and_then(|row| row.get("routine_id")).and_then(serde_json::Value::as_str) == Some(want)
                }))
            .then(|| event.op.into())
        };
        Ok(stream::events(ctx.realtime()?, request, filter).map(|item| {
            let delivery = item?;
            Ok(RunChangeEvent {
                operation: delivery.operation,
                run: delivery.event.decode_row::<entity::routine_run::Model>()?.into(),
                cursor: delivery.cursor,
            })
        }))
    }

    /// Your stats as your runs change them.
    async fn my_stats_changed(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<StatsChangeEvent, ApiError>> + use<>, ApiError> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let request = ctx.change_request(&["user_stats"], after.as_deref())?;
        let filter = move |event: &ChangeEvent| (event.owner == Some(me)).then(|| event.op.into());
        Ok(stream::events(ctx.realtime()?, request, filter).map(|item| {
            let delivery = item?;
            Ok(StatsChangeEvent {
                operation: delivery.operation,
                stats: delivery.event.decode_row::<entity::user_stats::Model>()?.into(),
                cursor: delivery.cursor,
            })
        }))
    }
}
