//! Who sees and changes airdrop data. Mirrors migration 000005: projects are
//! public and written by admins; a user joins and sees their own
//! participations; services credit tokens; readers read all.

use entity::{airdrop_project, user_airdrop_participation as participation};

use crate::auth::{Role, Viewer};
use crate::domain::Policy;

pub struct Projects;

impl Policy for Projects {
    type Entity = airdrop_project::Entity;
    const NAME: &'static str = "airdrop project";
    const TYPE: &'static str = "AirdropProject";
    const PUBLIC: bool = true;
    const WRITERS: &'static [Role] = &[Role::Admin];
    const DENIED: Option<&'static str> = Some("only admins manage airdrop projects");
}

/// A user joins (creates) their own participations; the tokens on one are
/// credited (written) by services and admins, never by the participant.
pub struct Participations;

impl Policy for Participations {
    type Entity = participation::Entity;
    const NAME: &'static str = "participation";
    const TYPE: &'static str = "Participation";
    const OWNER: Option<participation::Column> = Some(participation::Column::UserId);
    const DENIED: Option<&'static str> = Some("only services and admins credit tokens");

    fn can_write(viewer: &Viewer, _row: &participation::Model) -> bool {
        matches!(viewer.role(), Some(Role::Service | Role::Admin))
    }
}
