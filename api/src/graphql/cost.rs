//! What a field costs, for the query cost limit (`MAX_QUERY_COMPLEXITY`).
//!
//! async-graphql adds up a cost per field before anything runs: by default
//! one point per field plus its selection. That counts a `recommendations`
//! call like a `name`, so 2,400 aliased recommendation searches were "2,400
//! points" and ran for 81 s on one pooled connection. The fields below carry
//! their weight instead (`#[graphql(complexity = "...")]` calls these):
//! - a field that runs SQL of its own costs [`STATEMENT`] per statement;
//! - a list costs its page size times the cost of one item's selection, with
//!   the page size the client asks for (`first`, `limit`), clamped to what
//!   the resolver accepts, or its default;
//! - the spatial recommendation query and a text search cost more
//!   ([`RECOMMEND`], [`SEARCH`]), measured against a plain statement.
//!
//! Costs are rough on purpose: they exist to refuse documents that would run
//! for seconds, and keep every realistic document (the README's, GraphiQL's
//! introspection, the test suite's) well below the default limit.

use crate::graphql::pagination::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// One SQL statement (a round trip and an indexed lookup).
pub const STATEMENT: usize = 10;
/// A connection: the page itself and a `count(*)` for `totalCount` (run only
/// when selected, priced anyway: this is an upper bound), or a second page
/// statement when a page crosses from a nullable sort key's values to its
/// NULLs.
pub const CONNECTION: usize = 2 * STATEMENT;
/// A text search (`ILIKE '%…%'`): a scan of the table, not an index lookup.
pub const SEARCH: usize = 5 * STATEMENT;
/// The recommendation query: a spatial scan of the radius, joined with the
/// viewer's preferences and scored (about 30 ms at 100 km on the demo data,
/// some 20 plain statements).
pub const RECOMMEND: usize = 20 * STATEMENT;
/// Items assumed for a list the client cannot size (a user's preferences or
/// participations).
pub const UNSIZED_LIST: usize = DEFAULT_PAGE_SIZE.unsigned_abs() as usize;
/// The most one field may cost. The cost of a document is a sum of field
/// costs in `usize` (async-graphql adds them unchecked): capping each field
/// keeps any document a request body can hold far from an overflow.
const FIELD_CAP: usize = 1 << 32;

/// The rows a page-size argument may ask for: the resolver refuses anything
/// outside `0..=MAX_PAGE_SIZE`, so no more than that can run.
fn rows(asked: Option<i32>, default: i32) -> usize {
    usize::try_from(asked.unwrap_or(default).clamp(0, MAX_PAGE_SIZE)).unwrap_or(0)
}

/// `base` plus `items` times the cost of one item's selection, capped.
fn list_of(base: usize, items: usize, item: usize) -> usize {
    base.saturating_add(items.saturating_mul(item)).min(FIELD_CAP)
}

/// A Relay connection with `first` or `last` (default
/// [`DEFAULT_PAGE_SIZE`]); the larger when a client gives both (the resolver
/// refuses that, but the cost is computed before it runs).
pub fn page(first: Option<i32>, last: Option<i32>, child: usize) -> usize {
    let size = match (first, last) {
        (Some(f), Some(l)) => Some(f.max(l)),
        (f, l) => f.or(l),
    };
    list_of(CONNECTION, rows(size, DEFAULT_PAGE_SIZE), child)
}

/// A connection that also filters by a text search when `search` is given.
pub fn searched_page(first: Option<i32>, last: Option<i32>, search: Option<&str>, child: usize) -> usize {
    let extra = if search.is_some_and(|s| !s.trim().is_empty()) { SEARCH } else { 0 };
    page(first, last, child).saturating_add(extra).min(FIELD_CAP)
}

/// A plain list of at most `first` rows, from one statement.
pub fn list(first: i32, child: usize) -> usize {
    list_of(STATEMENT, rows(Some(first), DEFAULT_PAGE_SIZE), child)
}

/// A list whose length the client cannot choose.
pub fn unsized_list(child: usize) -> usize {
    list_of(STATEMENT, UNSIZED_LIST, child)
}

/// One row from one statement.
pub fn one(child: usize) -> usize {
    list_of(STATEMENT, 1, child)
}

/// `nodes(ids:)`: a statement per type asked (at most one per refetchable
/// type) and the selection of each object, the count clamped to what the
/// resolver accepts.
pub fn nodes(asked: usize, child: usize) -> usize {
    let asked = asked.min(super::node::MAX_NODES);
    list_of(STATEMENT.saturating_mul(asked.min(super::node::TYPES.len())), asked, child)
}

/// `recommendations(limit:)` (default `default`).
pub fn recommendations(limit: Option<i32>, default: i32, child: usize) -> usize {
    list_of(RECOMMEND, rows(limit, default), child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_costs_its_size_times_its_items() {
        assert_eq!(page(Some(10), None, 3), CONNECTION + 30);
        assert_eq!(page(None, None, 3), CONNECTION + 60, "the default page size");
        assert_eq!(page(Some(-5), None, 3), CONNECTION, "a negative first is refused, never run");
        assert_eq!(page(Some(i32::MAX), None, 3), CONNECTION + 300, "clamped to what can run");
        assert_eq!(page(None, Some(10), 3), CONNECTION + 30, "last counts like first");
        assert_eq!(page(Some(1), Some(100), 3), CONNECTION + 300, "both: the larger");
    }

    #[test]
    fn no_field_costs_more_than_the_cap() {
        assert_eq!(page(Some(100), None, usize::MAX), FIELD_CAP);
        assert_eq!(searched_page(Some(100), None, Some("x"), usize::MAX), FIELD_CAP);
    }
}
