//! Who sees and writes places, reviews and preferences, in one place. The
//! policies of migration 000002 enforce the same rules in PostgreSQL.
//!
//! - place: everyone reads; admin and service write.
//! - review, preference: the owner reads and writes their own; reader reads
//!   all; service and admin read and write all.

use sea_orm::Condition;

use crate::auth::{Role, Viewer, ownership};
use crate::domain::Policy;
use crate::error::{ApiError, ApiResult};

pub struct Places;

impl Policy for Places {
    type Entity = entity::place::Entity;
    const NAME: &'static str = "place";

    fn visible_to(_viewer: &Viewer) -> Condition {
        Condition::all()
    }

    fn can_write(viewer: &Viewer, _row: &entity::place::Model) -> bool {
        matches!(viewer.role(), Some(Role::Admin | Role::Service))
    }

    fn require_writer(viewer: &Viewer) -> ApiResult<uuid::Uuid> {
        viewer.require_role(&[Role::Admin, Role::Service], "change places")
    }

    fn write_denied() -> ApiError {
        ApiError::Forbidden("only admin and service accounts change places".into())
    }
}

pub struct Reviews;

impl Policy for Reviews {
    type Entity = entity::review::Entity;
    const NAME: &'static str = "review";

    fn visible_to(viewer: &Viewer) -> Condition {
        ownership::visible_to(viewer, entity::review::Column::UserId)
    }

    fn can_write(viewer: &Viewer, row: &entity::review::Model) -> bool {
        ownership::can_write(viewer, row.user_id)
    }
}

pub struct Preferences;

impl Policy for Preferences {
    type Entity = entity::preference::Entity;
    const NAME: &'static str = "preference";

    fn visible_to(viewer: &Viewer) -> Condition {
        ownership::visible_to(viewer, entity::preference::Column::UserId)
    }

    fn can_write(viewer: &Viewer, row: &entity::preference::Model) -> bool {
        ownership::can_write(viewer, row.user_id)
    }
}

/// The in-memory twins of the policies above, for change events (used by
/// the subscriptions and the place loader).
pub mod place {
    use super::{Condition, Places, Policy, Viewer};

    pub fn visible_to(viewer: &Viewer) -> Condition {
        Places::visible_to(viewer)
    }

    /// Place events reach everyone, like place rows.
    pub fn event_visible_to(_viewer: &Viewer) -> bool {
        true
    }
}

pub mod review {
    use uuid::Uuid;

    use super::Viewer;

    /// Whether a change event of a review owned by `owner` may reach `viewer`.
    pub fn event_visible_to(viewer: &Viewer, owner: Option<Uuid>) -> bool {
        crate::auth::ownership::event_visible_to(viewer, owner)
    }
}

pub mod preference {
    use uuid::Uuid;

    use super::Viewer;

    /// Whether a change event of a preference owned by `owner` may reach `viewer`.
    pub fn event_visible_to(viewer: &Viewer, owner: Option<Uuid>) -> bool {
        crate::auth::ownership::event_visible_to(viewer, owner)
    }
}
