//! At most one `signUp` or `signIn` per document, refused before anything
//! runs.
//!
//! Aliases let one request repeat a field: one document with 40 aliased
//! `signUp`s created 40 accounts, and 40 `signIn`s would be 40 password
//! guesses (and 40 argon2 hashes) for the price of one request. The rate
//! limits count attempts, not requests, but refusing the document is
//! clearer and costs nothing: no field runs, nothing is created.

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{Positioned, ServerResult, Variables};

use crate::error::ApiError;

/// The root mutation fields that sign up or sign in.
const AUTH_FIELDS: [&str; 2] = ["signUp", "signIn"];

/// Fragments nested deeper than this at the root are not followed further
/// (validation rejects the cycles this guards against).
const MAX_FRAGMENT_DEPTH: usize = 16;

/// The extension: add it to the schema with `.extension(OneSignInPerDocument)`.
pub struct OneSignInPerDocument;

impl ExtensionFactory for OneSignInPerDocument {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OneSignInPerDocument)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for OneSignInPerDocument {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        for (_, operation) in document.operations.iter() {
            if operation.node.ty != OperationType::Mutation {
                continue;
            }
            let mut seen = HashSet::new();
            if auth_fields(&document, &operation.node.selection_set, &mut seen, 0) > 1 {
                let err = ApiError::bad_input(
                    "signIn",
                    "a request may have at most one signUp or signIn field: send each in a request of its own",
                );
                let err: async_graphql::Error = err.into();
                return Err(err.into_server_error(operation.pos));
            }
        }
        Ok(document)
    }
}

/// How many auth fields a root selection set selects, through fragments
/// and inline fragments, whatever their directives (counted, not evaluated).
fn auth_fields<'a>(
    document: &'a ExecutableDocument,
    set: &'a Positioned<SelectionSet>,
    seen: &mut HashSet<&'a str>,
    depth: usize,
) -> usize {
    if depth > MAX_FRAGMENT_DEPTH {
        return 0;
    }
    set.node
        .items
        .iter()
        .map(|selection| match &selection.node {
            Selection::Field(field) => usize::from(AUTH_FIELDS.contains(&field.node.name.node.as_str())),
            Selection::InlineFragment(inline) => auth_fields(document, &inline.node.selection_set, seen, depth + 1),
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match document.fragments.get(&spread.node.fragment_name.node) {
                    Some(fragment) if seen.insert(name) => {
                        auth_fields(document, &fragment.node.selection_set, seen, depth + 1)
                    }
                    _ => 0,
                }
            }
        })
        .sum()
}
