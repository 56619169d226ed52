//! Who sees which `users` rows. Mirrors the policies of migration 000001:
//! a user sees only their own row; readers, services and admins see all;
//! the anonymous viewer sees none. Only admins change other accounts.

use entity::users;
use sea_orm::{ColumnTrait, Condition};

use crate::auth::{Role, Viewer, ownership};

pub fn visible_to(viewer: &Viewer) -> Condition {
    match viewer {
        Viewer::Anonymous => ownership::nothing(),
        Viewer::User { id, role: Role::User } => Condition::all().add(users::Column::Id.eq(*id)),
        Viewer::User { .. } => Condition::all(),
    }
}

/// Whether `viewer` may change `row`'s role or active flag.
pub fn can_administer(viewer: &Viewer, _row: &users::Model) -> bool {
    viewer.role() == Some(Role::Admin)
}
