//! Posts and comments (the Allogator seed). Other users appear only as
//! public author profiles (username and full name), never as accounts.

mod loader;
mod policy;
mod resolvers;
mod store;
mod subscriptions;
mod types;

pub use loader::{PostsLoader, ProfileLoader};
pub use resolvers::{PostsMutation, PostsQuery};
pub use subscriptions::PostsSubscription;
