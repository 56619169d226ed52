//! Who sees and changes routines, runs and stats. Mirrors migration 000004:
//! owners their own; readers read all; services read routines and record
//! runs for any user; admins everything. Stats are read-only for all.

use entity::{routine, routine_run, user_stats};
use sea_orm::Condition;
use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};

pub fn routines_visible_to(viewer: &Viewer) -> Condition {
    ownership::visible_to(viewer, routine::Column::UserId)
}

/// Services record runs but do not edit routines.
pub fn can_write_routine(viewer: &Viewer, row: &routine::Model) -> bool {
    viewer.role() != Some(Role::Service) && ownership::can_write(viewer, row.user_id)
}

pub fn runs_visible_to(viewer: &Viewer) -> Condition {
    ownership::visible_to(viewer, routine_run::Column::UserId)
}

pub fn can_write_run(viewer: &Viewer, owner: Uuid) -> bool {
    ownership::can_write(viewer, owner)
}

pub fn stats_visible_to(viewer: &Viewer) -> Condition {
    ownership::visible_to(viewer, user_stats::Column::UserId)
}

/// The leaderboard ranks everyone, so only roles that read all rows see it.
pub fn can_see_leaderboard(viewer: &Viewer) -> bool {
    matches!(viewer.role(), Some(Role::Reader | Role::Admin))
}
