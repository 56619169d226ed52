//! Response keys in the order of the selection set, as the GraphQL spec
//! asks ("Serialized Map Ordering") and as clients that show or snapshot a
//! response expect.
//!
//! async-graphql resolves the fields of an object concurrently and inserts
//! each result as it completes (`do_resolve_container` drives them through
//! a `FuturesUnordered`), so a field that waits longer (`myReviews` whose
//! `place` goes through a DataLoader, say) moves behind fields that finish
//! first, at any depth. The resolvers are right to run concurrently; only
//! the order of the map is wrong, so it is put back once the response is
//! complete: the document gives each object's keys (aliases included,
//! fragments expanded where they appear, a key repeated by a fragment kept
//! where it first appears), and an object already in order is left as it
//! is.
//!
//! Type conditions are not evaluated: a response key selected both by a
//! fragment that does not apply and, in another place, by one that does
//! takes the first place either would give it. Only documents that select
//! the same key through several fragments on different types, in different
//! orders, can see that.

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Value};

/// The order of the keys of every object of a response, from its document.
#[derive(Default)]
pub struct KeyOrder {
    keys: IndexMap<Name, KeyOrder>,
}

impl KeyOrder {
    /// The order for the operation `name` (or the document's only one);
    /// `None` when there is no such operation (nothing executes then).
    pub fn of(document: &ExecutableDocument, name: Option<&str>) -> Option<Self> {
        let operation = match (&document.operations, name) {
            (DocumentOperations::Single(operation), _) => operation,
            (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name)?,
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next()?,
            (DocumentOperations::Multiple(_), None) => return None,
        };
        // The guard has bounded the expanded document before this runs;
        // the depth bound here only stops a fragment cycle (which
        // validation refuses anyway) from recursing forever.
        Some(Self::from_sets(document, &[&operation.node.selection_set.node], MAX_DEPTH))
    }

    fn from_sets(document: &ExecutableDocument, sets: &[&SelectionSet], depth: usize) -> Self {
        let mut children: IndexMap<Name, Vec<&SelectionSet>> = IndexMap::new();
        for set in sets {
            collect(document, set, &mut children, depth);
        }
        let keys = children
            .into_iter()
            .map(|(key, sets)| {
                let child = if depth == 0 || sets.is_empty() {
                    Self::default()
                } else {
                    Self::from_sets(document, &sets, depth - 1)
                };
                (key, child)
            })
            .collect();
        Self { keys }
    }

    /// Puts the keys of every object in `value` (objects in lists too) in
    /// the document's order.
    pub fn apply(&self, value: &mut Value) {
        if self.keys.is_empty() {
            return;
        }
        match value {
            Value::List(items) => {
                for item in items {
                    self.apply(item);
                }
            }
            Value::Object(map) => {
                let position = |key: &Name| self.keys.get_index_of(key).unwrap_or(usize::MAX);
                if !map.keys().map(position).is_sorted() {
                    map.sort_by_cached_key(|key, _| position(key));
                }
                for (key, child) in map.iter_mut() {
                    if let Some(order) = self.keys.get(key) {
                        order.apply(child);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Deeper than any document the guard lets through (MAX_QUERY_DEPTH, and
/// its own nesting bound).
const MAX_DEPTH: usize = 128;

/// Adds the response keys of `set` (fragments expanded) in order, each with
/// the selection sets that its fields select below it.
fn collect<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    into: &mut IndexMap<Name, Vec<&'a SelectionSet>>,
    depth: usize,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let children = into.entry(field.node.response_key().node.clone()).or_default();
                if !field.node.selection_set.node.items.is_empty() {
                    children.push(&field.node.selection_set.node);
                }
            }
            Selection::FragmentSpread(spread) if depth > 0 => {
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node) {
                    collect(document, &fragment.node.selection_set.node, into, depth - 1);
                }
            }
            Selection::InlineFragment(fragment) if depth > 0 => {
                collect(document, &fragment.node.selection_set.node, into, depth - 1);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(query: &str, data: serde_json::Value) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        let mut value = Value::from_json(data).unwrap_or_else(|e| panic!("{e}"));
        KeyOrder::of(&document, None).unwrap_or_else(|| panic!("no operation")).apply(&mut value);
        value.into_json().unwrap_or_else(|e| panic!("{e}")).to_string()
    }

    #[test]
    fn keys_follow_the_selection_set_with_aliases_fragments_and_lists() {
        let query = "{ b: places { z a } ...F c { ... on X { y x } } } fragment F on Query { a b2: places { a } }";
        let data = serde_json::json!({
            "c": [{ "x": 1, "y": 2 }, { "x": 3 }],
            "a": 1,
            "b2": { "a": 1 },
            "b": { "a": 1, "z": 2 },
        });
        assert_eq!(ordered(query, data), r#"{"b":{"z":2,"a":1},"a":1,"b2":{"a":1},"c":[{"y":2,"x":1},{"x":3}]}"#);
    }
}
