//! SeaORM entities, one file per table, shaped exactly like the database.
//! They are storage types only: the GraphQL types live in `api`, one domain
//! folder each, and convert from these models.

pub mod place;
pub mod preference;
pub mod review;
pub mod users;
