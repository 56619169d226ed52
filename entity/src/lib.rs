//! SeaORM entities, one file per table, shaped exactly like the database.
//! They are storage types only: the GraphQL types live in `api`, one domain
//! folder each, and convert from these models.

pub mod airdrop_project;
pub mod comment;
pub mod place;
pub mod post;
pub mod preference;
pub mod review;
pub mod routine;
pub mod routine_run;
pub mod user_airdrop_participation;
pub mod user_stats;
pub mod users;
