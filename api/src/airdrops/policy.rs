//! Who sees and changes airdrop data. Mirrors migration 000005: projects are
//! public and written by admins; a user joins and sees their own
//! participations; services credit tokens; readers read all.

use entity::user_airdrop_participation as participation;
use sea_orm::Condition;

use crate::auth::{Role, Viewer, ownership};

pub fn can_write_projects(viewer: &Viewer) -> bool {
    viewer.role() == Some(Role::Admin)
}

pub fn participations_visible_to(viewer: &Viewer) -> Condition {
    ownership::visible_to(viewer, participation::Column::UserId)
}

pub fn can_credit(viewer: &Viewer) -> bool {
    matches!(viewer.role(), Some(Role::Service | Role::Admin))
}
