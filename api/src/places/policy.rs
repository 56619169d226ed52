//! Who sees and writes places, reviews and preferences, in one place. The
//! policies of migration 000002 enforce the same rules in PostgreSQL.
//!
//! - place: everyone reads; admin and service write.
//! - review, preference: the owner reads and writes their own; reader reads
//!   all; service and admin read and write all.

use entity::{preference as preferences, review as reviews};

use crate::auth::Role;
use crate::domain::Policy;

pub struct Places;

impl Policy for Places {
    type Entity = entity::place::Entity;
    const NAME: &'static str = "place";
    const TYPE: &'static str = "Place";
    const PUBLIC: bool = true;
    const WRITERS: &'static [Role] = &[Role::Admin, Role::Service];
    const DENIED: Option<&'static str> = Some("only admin and service accounts change places");
}

pub struct Reviews;

impl Policy for Reviews {
    type Entity = reviews::Entity;
    const NAME: &'static str = "review";
    const TYPE: &'static str = "Review";
    const OWNER: Option<reviews::Column> = Some(reviews::Column::UserId);
}

pub struct Preferences;

impl Policy for Preferences {
    type Entity = preferences::Entity;
    const NAME: &'static str = "preference";
    const TYPE: &'static str = "Preference";
    const OWNER: Option<preferences::Column> = Some(preferences::Column::UserId);
}
