//! The GraphQL schema: each domain contributes its query and mutation
//! objects; this module merges them and holds what they share.

mod context;
pub mod ids;
pub mod pagination;

pub use context::ContextExt;

use async_graphql::{MergedObject, MergedSubscription, Schema};

use crate::accounts::{AccountsMutation, AccountsQuery};
use crate::airdrops::{AirdropsMutation, AirdropsQuery};
use crate::places::{PlacesMutation, PlacesQuery, PlacesSubscription};
use crate::posts::{PostsMutation, PostsQuery, PostsSubscription};
use crate::realtime::RealtimeQuery;
use crate::routines::{RoutinesMutation, RoutinesQuery, RoutinesSubscription};

#[derive(MergedObject, Default)]
pub struct Query(AccountsQuery, PlacesQuery, RoutinesQuery, AirdropsQuery, PostsQuery, RealtimeQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(AccountsMutation, PlacesMutation, RoutinesMutation, AirdropsMutation, PostsMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(PlacesSubscription, RoutinesSubscription, PostsSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits that bound the work one document can ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_complexity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_depth: 15, max_complexity: 5000 }
    }
}

pub fn build_schema(limits: Limits) -> AppSchema {
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .extension(crate::accounts::OneSignInPerDocument)
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema(Limits::default()).sdl()
}
