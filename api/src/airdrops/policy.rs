//! Who sees and changes airdrop data. Mirrors migration 000005: projects are
//! public and written by admins; a user joins and sees their own
//! participations; services credit tokens; readers read all.

use entity::{airdrop_project, user_airdrop_participation as participation};
use sea_orm::Condition;
use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};
use crate::domain::Policy;
use crate::error::{ApiError, ApiResult};

pub struct Projects;

impl Policy for Projects {
    type Entity = airdrop_project::Entity;
    const NAME: &'static str = "airdrop project";

    fn visible_to(_viewer: &Viewer) -> Condition {
        Condition::all()
    }

    fn can_write(viewer: &Viewer, _row: &airdrop_project::Model) -> bool {
        viewer.role() == Some(Role::Admin)
    }

    fn require_writer(viewer: &Viewer) -> ApiResult<Uuid> {
        viewer.require_role(&[Role::Admin], "manage airdrop projects")
    }

    fn write_denied() -> ApiError {
        ApiError::Forbidden("only admins manage airdrop projects".into())
    }
}

pub struct Participations;

impl Policy for Participations {
    type Entity = participation::Entity;
    const NAME: &'static str = "participation";

    fn visible_to(viewer: &Viewer) -> Condition {
        ownership::visible_to(viewer, participation::Column::UserId)
    }

    /// Tokens are credited by services and admins, never by the participant.
    fn can_write(viewer: &Viewer, _row: &participation::Model) -> bool {
        matches!(viewer.role(), Some(Role::Service | Role::Admin))
    }

    fn write_denied() -> ApiError {
        ApiError::Forbidden("only services and admins credit tokens".into())
    }
}
