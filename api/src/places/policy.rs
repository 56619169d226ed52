//! Who sees and writes places, reviews and preferences, in one place. The
//! policies of migration 000002 enforce the same rules in PostgreSQL.
//!
//! - place: everyone reads; admin and service write.
//! - review, preference: the owner reads and writes their own; reader reads
//!   all; service and admin read and write all.

use sea_orm::Condition;

use crate::auth::ownership;
use crate::auth::{Role, Viewer};

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

pub mod review {
    use entity::review;

    use super::{Condition, Viewer};

    pub fn visible_to(viewer: &Viewer) -> Condition {
        super::ownership::visible_to(viewer, review::Column::UserId)
    }

    pub fn can_write(viewer: &Viewer, row: &review::Model) -> bool {
        super::ownership::can_write(viewer, row.user_id)
    }
}

pub mod preference {
    use entity::preference;

    use super::{Condition, Viewer};

    pub fn visible_to(viewer: &Viewer) -> Condition {
        super::ownership::visible_to(viewer, preference::Column::UserId)
    }

    pub fn can_write(viewer: &Viewer, row: &preference::Model) -> bool {
        super::ownership::can_write(viewer, row.user_id)
    }
}
