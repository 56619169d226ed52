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
    /// Response keys in the plan, at every depth (what it holds in memory).
    pub fn keys(&self) -> usize {
        self.keys.len() + self.keys.values().map(Self::keys).sum::<usize>()
    }

    /// The order for the operation `name` (or the document's only one);
    /// `None` when there is no such operation (nothing executes then), or
    /// when the document expands to more than [`MAX_VISITS`] fields.
    ///
    /// This runs before the document guard (which refuses what expands too
    /// far), so it bounds its own work: a "fragment bomb" costs it at most
    /// that many steps, and a fragment spread twice in one selection set is
    /// expanded once (the second adds no key).
    pub fn of(document: &ExecutableDocument, name: Option<&str>) -> Option<Self> {
        let operation = match (&document.operations, name) {
            (DocumentOperations::Single(operation), _) => operation,
            (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name)?,
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations.values().next()?,
            (DocumentOperations::Multiple(_), None) => return None,
        };
        let mut budget = MAX_VISITS;
        Self::from_sets(document, &[&operation.node.selection_set.node], &mut budget, 0)
    }

    fn from_sets(
        document: &ExecutableDocument,
        sets: &[&SelectionSet],
        budget: &mut usize,
        depth: usize,
    ) -> Option<Self> {
        // Each level is a stack frame: a fragment that spreads itself below
        // one of its fields would otherwise nest as deep as the budget lets
        // it (thousands of frames, past a worker's stack) before the guard,
        // which refuses such a document, has run.
        if depth > MAX_DEPTH {
            return None;
        }
        let mut children: IndexMap<Name, Vec<&SelectionSet>> = IndexMap::new();
        let mut expanded = Vec::new();
        for set in sets {
            collect(document, set, &mut children, &mut expanded, budget)?;
        }
        let mut keys = IndexMap::with_capacity(children.len());
        for (key, sets) in children {
            let child =
                if sets.is_empty() { Self::default() } else { Self::from_sets(document, &sets, budget, depth + 1)? };
            keys.insert(key, child);
        }
        Some(Self { keys })
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
                // Most objects are in order already: one merge of the two
                // key lists confirms it by comparing names, without hashing
                // each key (twice) as the lookups below do, and orders the
                // children on the way.
                let mut next = 0;
                let in_order = map.iter_mut().all(|(key, child)| {
                    while let Some((name, order)) = self.keys.get_index(next) {
                        next += 1;
                        if same_name(name, key) {
                            order.apply(child);
                            return true;
                        }
                    }
                    false
                });
                if in_order {
                    return;
                }
                let position = |key: &Name| self.keys.get_index_of(key).unwrap_or(usize::MAX);
                if !map.keys().map(position).is_sorted() {
                    map.sort_by_cached_key(|key, _| position(key));
                }
                // (Children ordered by the merge above are in order now:
                // ordering them again only confirms it.)
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

/// `a == b`, first by address: a response's keys are the names of the
/// document it executed, shared with the order worked out from that
/// document (or a copy of it), so most comparisons need not read a byte.
fn same_name(a: &Name, b: &Name) -> bool {
    let (a, b) = (a.as_str(), b.as_str());
    std::ptr::eq(a, b) || a == b
}

/// The deepest response a document's order is worked out for: deeper than
/// the guard lets any document run (`MAX_QUERY_DEPTH`, 64 at most).
const MAX_DEPTH: usize = 128;

/// The most fields (fragments expanded) a document's order is worked out
/// for: far beyond the guard's default cost limit (every field costs at
/// least 1), and about a millisecond of work. A larger document is answered
/// in the order its fields complete.
const MAX_VISITS: usize = 20_000;

/// Adds the response keys of `set` (fragments expanded) in order, each with
/// the selection sets that its fields select below it; `None` once the
/// budget is spent.
fn collect<'a>(
    document: &'a ExecutableDocument,
    set: &'a SelectionSet,
    into: &mut IndexMap<Name, Vec<&'a SelectionSet>>,
    expanded: &mut Vec<&'a Name>,
    budget: &mut usize,
) -> Option<()> {
    for selection in &set.items {
        *budget = budget.checked_sub(1)?;
        match &selection.node {
            Selection::Field(field) => {
                let children = into.entry(field.node.response_key().node.clone()).or_default();
                let below = &field.node.selection_set.node;
                if !below.items.is_empty() && !children.iter().any(|set| std::ptr::eq(*set, below)) {
                    children.push(below);
                }
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                if expanded.contains(&name) {
                    continue;
                }
                expanded.push(name);
                if let Some(fragment) = document.fragments.get(name) {
                    collect(document, &fragment.node.selection_set.node, into, expanded, budget)?;
                }
            }
            Selection::InlineFragment(fragment) => {
                collect(document, &fragment.node.selection_set.node, into, expanded, budget)?;
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_that_spreads_itself_below_a_field_gives_up_instead_of_recursing_without_end() {
        let text = "{ ...F } fragment F on Query { a { ...F } }";
        let document = async_graphql::parser::parse_query(text).expect("parses");
        // A worker's stack is 2 MiB; run where a runaway recursion would
        // overflow the same way instead of passing on a larger main stack.
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || KeyOrder::of(&document, None).is_none())
            .expect("spawning a thread");
        assert!(handle.join().expect("no stack overflow"), "gives up past MAX_DEPTH");
    }

    /// `data` is JSON text, so its keys keep their order (serde_json's own
    /// map would sort them).
    fn ordered(query: &str, data: &str) -> String {
        let document = async_graphql::parser::parse_query(query).unwrap_or_else(|e| panic!("{e}"));
        let mut value: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}"));
        KeyOrder::of(&document, None).unwrap_or_else(|| panic!("no operation")).apply(&mut value);
        serde_json::to_string(&value).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_fragment_bomb_costs_the_order_a_bounded_number_of_steps() {
        let mut bomb = String::from("{ ...F0 }");
        for i in 0..40 {
            bomb.push_str(&format!(
                " fragment F{i} on Query {{ ...F{n} ...F{n} a{i}: x {{ ...F{n} }} b{i}: x {{ ...F{n} }} }}",
                n = i + 1
            ));
        }
        bomb.push_str(" fragment F40 on Query { x }");
        let document = async_graphql::parser::parse_query(&bomb).unwrap_or_else(|e| panic!("{e}"));
        let started = std::time::Instant::now();
        assert!(KeyOrder::of(&document, None).is_none(), "gave up");
        assert!(started.elapsed() < std::time::Duration::from_millis(200), "{:?}", started.elapsed());
    }

    #[test]
    fn keys_follow_the_selection_set_with_aliases_fragments_and_lists() {
        let query = "{ b: places { z a } ...F c { ... on X { y x } } } fragment F on Query { a b2: places { a } }";
        let data = r#"{"c":[{"x":1,"y":2},{"x":3}],"a":1,"b2":{"a":1},"b":{"a":1,"z":2}}"#;
        assert_eq!(ordered(query, data), r#"{"b":{"z":2,"a":1},"a":1,"b2":{"a":1},"c":[{"y":2,"x":1},{"x":3}]}"#);
    }
}
