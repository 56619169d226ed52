//! Who sees which `users` rows. Mirrors the policies of migration 000001:
//! a user sees only their own row; readers, services and admins see all;
//! the anonymous viewer sees none. Only admins change other accounts.

use entity::users;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};
use crate::domain::Policy;
use crate::error::{ApiError, ApiResult};

pub struct Users;

impl Policy for Users {
    type Entity = users::Entity;
    const NAME: &'static str = "user";

    fn visible_to(viewer: &Viewer) -> Condition {
        match viewer {
            Viewer::Anonymous => ownership::nothing(),
            Viewer::User { id, role: Role::User } => Condition::all().add(users::Column::Id.eq(*id)),
            Viewer::User { .. } => Condition::all(),
        }
    }

    /// Only admins change an account's role or active flag (sign-up and
    /// password changes go through their own paths).
    fn can_write(viewer: &Viewer, _row: &users::Model) -> bool {
        viewer.role() == Some(Role::Admin)
    }

    fn require_writer(viewer: &Viewer) -> ApiResult<Uuid> {
        viewer.require_role(&[Role::Admin], "manage accounts")
    }

    fn write_denied() -> ApiError {
        ApiError::Forbidden("your role may not manage accounts".into())
    }
}
