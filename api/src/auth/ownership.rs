//! The rule most tables share: rows belong to one user. The owner sees and
//! changes them; readers read all; services and admins read and write all.
//! Domain policies build on these and say where a table differs.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use super::{Role, Viewer};

/// A condition that matches no row.
pub fn nothing() -> Condition {
    Condition::all().add(Expr::cust("FALSE"))
}

/// Rows of `owner` the viewer may read, as a query condition.
pub fn visible_to(viewer: &Viewer, owner: impl ColumnTrait) -> Condition {
    match viewer {
        Viewer::Anonymous => nothing(),
        Viewer::User { id, role: Role::User } => Condition::all().add(owner.eq(*id)),
        Viewer::User { .. } => Condition::all(),
    }
}

/// The in-memory twin of [`visible_to`], for change events.
pub fn can_read(viewer: &Viewer, owner: Uuid) -> bool {
    match viewer {
        Viewer::Anonymous => false,
        Viewer::User { id, role: Role::User } => *id == owner,
        Viewer::User { .. } => true,
    }
}

/// Whether the viewer may change a row of `owner`.
pub fn can_write(viewer: &Viewer, owner: Uuid) -> bool {
    match viewer {
        Viewer::Anonymous | Viewer::User { role: Role::Reader, .. } => false,
        Viewer::User { id, role: Role::User } => *id == owner,
        Viewer::User { .. } => true,
    }
}

/// [`can_read`] for a change event, whose owner may be unknown: such an
/// event reaches no one.
pub fn event_visible_to(viewer: &Viewer, owner: Option<Uuid>) -> bool {
    owner.is_some_and(|owner| can_read(viewer, owner))
}
