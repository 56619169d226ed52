//! Places, reviews and preferences (the Planwise seed), and the seed's
//! recommendation query.

mod loader;
mod policy;
mod recommend;
mod resolvers;
mod store;
mod subscriptions;
mod types;
mod validate;

/// The shared text check, under the name other domains used before it moved
/// to [`crate::graphql::validate::text`] (which new code should call).
pub use crate::graphql::validate::text as validate_text;
pub use loader::PlaceLoader;
pub use resolvers::{PlacesMutation, PlacesQuery};
pub use subscriptions::PlacesSubscription;
