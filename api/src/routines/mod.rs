//! Routines, their runs and per-user stats (the Dropfarm seed). Stats are
//! kept by the database (migration 000004); this domain only reads them.

mod policy;
mod resolvers;
mod store;
mod subscriptions;
mod types;

pub use resolvers::{RoutinesMutation, RoutinesQuery};
pub use subscriptions::RoutinesSubscription;
