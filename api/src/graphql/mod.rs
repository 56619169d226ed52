//! The GraphQL schema: each domain contributes its query and mutation
//! objects (the domains listed once in `crate::domain::each_domain!`); this
//! module merges them and holds what they share.

mod context;
pub mod cost;
pub mod documents;
pub mod guard;
pub mod ids;
pub mod inline;
pub mod json;
pub mod node;
pub mod pagination;
pub mod payload;
pub mod scalars;
pub mod validate;

pub use context::ContextExt;

use async_graphql::{MergedObject, MergedSubscription, Schema, ValidationMode};
use futures_util::stream::BoxStream;

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

type Roots = Schema<Query, Mutation, Subscription>;

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

/// The schema, built twice over the same types.
///
/// `checked` has the document checks of [`guard`] as its one extension.
/// The depth and cost limits are not async-graphql's own (`limit_depth`,
/// `limit_complexity`): those refuse with an English sentence and no
/// numbers, so the guard compares async-graphql's computed figures itself
/// and says which limit, the figure and the limit, with a code.
/// [`crate::error::ErrorKinds`] gives async-graphql's own errors their
/// codes by the stage that raised them, inside the guard's extension.
///
/// `fast` has no extension and only async-graphql's `Fast` validation
/// (one walk of the document for cost, depth, cache control, fragment
/// cycles and uploads): it runs the requests whose document
/// the guard has seen pass everything before ([`guard::Guard::validated_before`]),
/// which is nearly every request of an application. The reason is the
/// extension itself: with any extension in a schema, async-graphql resolves
/// every field and every list item through the extensions' `resolve` chain
/// (a boxed future, a `ResolveInfo` with two lookups in the registry),
/// whether or not an extension hooks `resolve`; the guard needs the
/// request's start only. Subscriptions stay on `checked`.
#[derive(Clone)]
pub struct AppSchema {
    checked: Roots,
    fast: Roots,
    guard: guard::Guard,
}

impl AppSchema {
    /// Runs a query or mutation; see the type's doc for which schema.
    pub async fn execute(&self, request: impl Into<async_graphql::Request>) -> async_graphql::Response {
        let mut request = request.into();
        if !self.guard.validated_before(&mut request) {
            return self.checked.execute(request).await;
        }
        let named_operation = request.operation_name.is_some();
        let mut response = self.fast.execute(request).await;
        crate::error::classify_after_validation(&mut response, named_operation);
        response
    }

    /// Runs a subscription (or anything sent over a websocket as one).
    pub fn execute_stream(&self, request: async_graphql::Request) -> BoxStream<'static, async_graphql::Response> {
        self.checked.execute_stream(request)
    }

    /// The schema in SDL.
    pub fn sdl(&self) -> String {
        self.checked.sdl()
    }
}

/// The schema; see [`AppSchema`].
pub fn build_schema(limits: Limits) -> AppSchema {
    let guard = guard::Guard::new(limits);
    let roots = || Schema::build(Query::default(), Mutation::default(), Subscription::default());
    // No extension here may hook `resolve`: objects resolved inline
    // (`inline::Inline`, every page's edges and nodes) do not call it.
    AppSchema {
        checked: roots().extension(guard.clone()).finish(),
        fast: roots().validation_mode(ValidationMode::Fast).finish(),
        guard,
    }
}

/// The SDL of the schema, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema(Limits::default()).sdl()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str, operation: Option<&str>) -> async_graphql::Request {
        let request = async_graphql::Request::new(query);
        match operation {
            Some(name) => request.operation_name(name),
            None => request,
        }
    }

    #[tokio::test]
    async fn a_document_that_passed_validation_runs_on_the_fast_schema_next_time_with_the_same_answer() {
        let schema = build_schema(Limits::default());
        let query = "query Q { __typename __schema { queryType { name } } }";
        assert!(!schema.guard.validated_before(&mut request(query, None)), "not before it was validated");

        let first = schema.execute(request(query, None)).await;
        assert!(schema.guard.validated_before(&mut request(query, None)), "kept once it passed");
        assert!(!schema.guard.validated_before(&mut request(query, Some("Q"))), "another operation name");
        let second = schema.execute(request(query, None)).await;

        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(serde_json::to_value(&second).ok(), serde_json::to_value(&first).ok());
    }

    #[tokio::test]
    async fn a_document_over_a_limit_never_takes_the_fast_schema() {
        let strict = Limits { max_depth: 2, ..Limits::default() };
        let schema = build_schema(strict);
        let deep = "{ __schema { queryType { fields { name } } } }";
        for _ in 0..2 {
            let response = schema.execute(request(deep, None)).await;
            let code = response.errors.first().and_then(|e| e.extensions.as_ref()).and_then(|x| x.get("code")).cloned();
            assert_eq!(code, Some(async_graphql::Value::from("QUERY_TOO_COMPLEX")), "{:?}", response.errors);
            assert!(!schema.guard.validated_before(&mut request(deep, None)));
        }
    }
}
