//! Who sees and writes places, reviews and preferences, in one place. The
//! policies of migration 000002 enforce the same rules in PostgreSQL.
//!
//! - place: everyone reads; admin and service write.
//! - review, preference: the owner reads and writes their own; reader reads
//!   all; service and admin read and write all.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::auth::{Role, Viewer};

fn nothing() -> Condition {
    Condition::all().add(Expr::cust("FALSE"))
}

pub mod place {
    use super::{Condition, Role, Viewer};

    pub fn visible_to(_viewer: &Viewer) -> Condition {
        Condition::all()
    }

    pub fn can_write(viewer: &Viewer) -> bool {
        matches!(viewer.role(), Some(Role::Admin | Role::Service))
    }

    /// Place events reach everyone, like place rows.
    pub fn event_visible_to(_viewer: &Viewer) -> bool {
        true
    }
}

/// Rows keyed by an owner: the shared rule of reviews and preferences.
fn owned_visible_to(viewer: &Viewer, owner: impl ColumnTrait) -> Condition {
    match viewer {
        Viewer::Anonymous => nothing(),
        Viewer::User { id, role: Role::User } => Condition::all().add(owner.eq(*id)),
        Viewer::User { .. } => Condition::all(),
    }
}

/// The in-memory twin of `owned_visible_to`, for change events.
fn owned_can_read(viewer: &Viewer, owner: Uuid) -> bool {
    match viewer {
        Viewer::Anonymous => false,
        Viewer::User { id, role: Role::User } => *id == owner,
        Viewer::User { .. } => true,
    }
}

fn owned_can_write(viewer: &Viewer, owner: Uuid) -> bool {
    match viewer {
        Viewer::Anonymous | Viewer::User { role: Role::Reader, .. } => false,
        Viewer::User { id, role: Role::User } => *id == owner,
        Viewer::User { .. } => true,
    }
}

pub mod review {
    use entity::review;

    use super::{Condition, Viewer};

    pub fn visible_to(viewer: &Viewer) -> Condition {
        super::owned_visible_to(viewer, review::Column::UserId)
    }

    pub fn can_write(viewer: &Viewer, row: &review::Model) -> bool {
        super::owned_can_write(viewer, row.user_id)
    }

    /// Whether a change event of a review owned by `owner` may reach `viewer`.
    pub fn event_visible_to(viewer: &Viewer, owner: Option<super::Uuid>) -> bool {
        owner.is_some_and(|owner| super::owned_can_read(viewer, owner))
    }
}

pub mod preference {
    use entity::preference;

    use super::{Condition, Viewer};

    pub fn visible_to(viewer: &Viewer) -> Condition {
        super::owned_visible_to(viewer, preference::Column::UserId)
    }

    pub fn can_write(viewer: &Viewer, row: &preference::Model) -> bool {
        super::owned_can_write(viewer, row.user_id)
    }

    /// Whether a change event of a preference owned by `owner` may reach `viewer`.
    pub fn event_visible_to(viewer: &Viewer, owner: Option<super::Uuid>) -> bool {
        owner.is_some_and(|owner| super::owned_can_read(viewer, owner))
    }
}
