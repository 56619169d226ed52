//! Who sees and changes routines, runs and stats. Mirrors migration 000004:
//! owners their own; readers read all; services read routines and record
//! runs for any user; admins everything. Stats are read-only for all.

use entity::{routine, routine_run, user_stats};
use sea_orm::Condition;
use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};
use crate::domain::Policy;
use crate::error::ApiError;

pub struct Routines;

impl Policy for Routines {
    type Entity = routine::Entity;
    const NAME: &'static str = "routine";

    fn visible_to(viewer: &Viewer) -> Condition {
        ownership::visible_to(viewer, routine::Column::UserId)
    }

    /// Services record runs but do not edit routines.
    fn can_write(viewer: &Viewer, row: &routine::Model) -> bool {
        viewer.role() != Some(Role::Service) && ownership::can_write(viewer, row.user_id)
    }
}

pub struct Runs;

impl Policy for Runs {
    type Entity = routine_run::Entity;
    const NAME: &'static str = "run";

    fn visible_to(viewer: &Viewer) -> Condition {
        ownership::visible_to(viewer, routine_run::Column::UserId)
    }

    fn can_write(viewer: &Viewer, row: &routine_run::Model) -> bool {
        can_record_run(viewer, row.user_id)
    }

    fn write_denied() -> ApiError {
        ApiError::Forbidden("your role may not record runs".into())
    }
}

/// Whether `viewer` may record a run of a routine owned by `owner`.
pub fn can_record_run(viewer: &Viewer, owner: Uuid) -> bool {
    ownership::can_write(viewer, owner)
}

pub struct Stats;

impl Policy for Stats {
    type Entity = user_stats::Entity;
    const NAME: &'static str = "stats";

    fn visible_to(viewer: &Viewer) -> Condition {
        ownership::visible_to(viewer, user_stats::Column::UserId)
    }

    /// Kept by the database's triggers alone.
    fn can_write(_viewer: &Viewer, _row: &user_stats::Model) -> bool {
        false
    }
}

/// Change events of a routine, run or stats row owned by `owner`.
pub fn event_visible_to(viewer: &Viewer, owner: Option<Uuid>) -> bool {
    ownership::event_visible_to(viewer, owner)
}

/// The leaderboard ranks everyone, so only roles that read all rows see it.
pub fn can_see_leaderboard(viewer: &Viewer) -> bool {
    matches!(viewer.role(), Some(Role::Reader | Role::Admin))
}
