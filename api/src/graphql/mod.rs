//! The GraphQL schema: each domain contributes its query and mutation
//! objects (the domains listed once in `crate::domain::each_domain!`); this
//! module merges them and holds what they share.

mod context;
pub mod cost;
pub mod documents;
pub mod guard;
pub mod ids;
pub mod node;
pub mod pagination;
pub mod payload;
pub mod scalars;
pub mod validate;

pub use context::ContextExt;

use async_graphql::{MergedObject, MergedSubscription, Schema};

use node::NodeQuery;

use crate::realtime::RealtimeQuery;

/// The roots from every domain's `Query`, `Mutation` and `Subscription`
/// (declared in its `mod.rs`), in the order of
/// [`crate::domain::each_domain!`]; `node`/`nodes` come first and the
/// change feed's own fields last.
macro_rules! roots {
    ($($domain:ident)*) => {
        #[derive(MergedObject, Default)]
        pub struct Query(NodeQuery, $(crate::$domain::Query,)* RealtimeQuery);

        #[derive(MergedObject, Default)]
        pub struct Mutation($(crate::$domain::Mutation),*);

        #[derive(MergedSubscription, Default)]
        pub struct Subscription($(crate::$domain::Subscription),*);
    };
}
crate::domain::each_domain!(roots);

/// The `Subscription` of a domain that has none. Not async-graphql's
/// `EmptySubscription`: merged, that one answers every subscription with
/// "Schema is not configured for subscription".
#[derive(MergedSubscription, Default)]
pub struct NoSubscriptions();

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits that bound the work one document can ask for, checked by
/// [`guard`] before anything runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest selection nesting (MAX_QUERY_DEPTH).
    pub max_depth: usize,
    /// Highest cost, as [`cost`] counts it (MAX_QUERY_COMPLEXITY).
    pub max_complexity: usize,
    /// Most root fields of one mutation (MAX_MUTATION_FIELDS).
    pub max_mutation_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_depth: 15, max_complexity: 5000, max_mutation_fields: 10 }
    }
}

/// The schema with the document checks of [`guard`]. The depth and cost
/// limits are not async-graphql's own (`limit_depth`, `limit_complexity`):
/// those refuse with an English sentence and no numbers, so the guard
/// compares async-graphql's computed figures itself and says which limit,
/// the figure and the limit, with a code. [`crate::error::ErrorKinds`]
/// gives async-graphql's own errors their codes by the stage that raised
/// them, inside the guard's extension (the schema's only one).
pub fn build_schema(limits: Limits) -> AppSchema {
    Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .extension(guard::Guard::new(limits))
        .finish()
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema(Limits::default()).sdl()
}
