//! Who sees and changes routines, runs and stats. Mirrors migration 000004:
//! owners their own; readers read all; services read routines and record
//! runs for any user; admins everything. Stats are read-only for all.

use entity::{routine, routine_run, user_stats};
use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};
use crate::domain::Policy;

pub struct Routines;

/// Services record runs but do not edit routines.
impl Policy for Routines {
    type Entity = routine::Entity;
    const NAME: &'static str = "routine";
    const TYPE: &'static str = "Routine";
    const OWNER: Option<routine::Column> = Some(routine::Column::UserId);
    const WRITERS: &'static [Role] = &[Role::User, Role::Admin];
}

pub struct Runs;

impl Policy for Runs {
    type Entity = routine_run::Entity;
    const NAME: &'static str = "run";
    const TYPE: &'static str = "RoutineRun";
    const OWNER: Option<routine_run::Column> = Some(routine_run::Column::UserId);
    const DENIED: Option<&'static str> = Some("your role may not record runs");
}

/// Whether `viewer` may record a run of a routine owned by `owner`.
pub fn can_record_run(viewer: &Viewer, owner: Uuid) -> bool {
    ownership::can_write(viewer, owner)
}

/// Kept by the database's triggers alone: no role writes stats.
pub struct Stats;

impl Policy for Stats {
    type Entity = user_stats::Entity;
    const NAME: &'static str = "stats";
    const TYPE: &'static str = "UserStats";
    const OWNER: Option<user_stats::Column> = Some(user_stats::Column::UserId);
    const WRITERS: &'static [Role] = &[];
}

/// The leaderboard ranks everyone, so only roles that read all rows see it.
pub fn can_see_leaderboard(viewer: &Viewer) -> bool {
    matches!(viewer.role(), Some(Role::Reader | Role::Admin))
}
