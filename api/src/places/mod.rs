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

pub use loader::PlaceLoader;
pub use resolvers::{PlacesMutation, PlacesQuery};
pub use subscriptions::PlacesSubscription;
