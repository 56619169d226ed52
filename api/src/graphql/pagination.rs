//! Relay-style pagination with opaque cursors and a capped page size.
//!
//! A cursor encodes the position of an edge in the ordered result; `after`
//! continues from the edge after it. Cursors are opaque to clients (base64)
//! so the encoding can change without breaking them.

use async_graphql::connection::PageInfo;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, QuerySelect, Select};

use crate::error::{ApiError, ApiResult};

/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;
/// The page size when `first` is not given.
pub const DEFAULT_PAGE_SIZE: i32 = 20;
/// The largest offset a cursor may point at (offsets bind as signed 64-bit).
const MAX_OFFSET: u64 = i64::MAX as u64 / 2;

/// One page of rows with their cursors, before it becomes a domain's
/// connection type (see [`connection_type!`](crate::connection_type)).
pub struct PageOf<N> {
    pub edges: Vec<(String, N)>,
    pub page_info: PageInfo,
    pub total_count: u64,
}

/// Declares a documented Relay connection and edge type for one node type,
/// e.g. `connection_type!(PlaceConnection, PlaceEdge, Place, "places");`.
/// (async-graphql's generic `Connection` has no type descriptions.)
#[macro_export]
macro_rules! connection_type {
    ($connection:ident, $edge:ident, $node:ty, $what:literal) => {
        #[doc = concat!("A page of ", $what, " (a Relay connection).")]
        #[derive(async_graphql::SimpleObject)]
        pub struct $connection {
            /// The items of this page, each with its cursor.
            pub edges: Vec<$edge>,
            /// The items of this page, without cursors.
            pub nodes: Vec<$node>,
            /// Where this page sits in the whole list.
            pub page_info: async_graphql::connection::PageInfo,
            /// How many items match, across all pages.
            pub total_count: u64,
        }

        #[doc = concat!("One of ", $what, " and its cursor.")]
        #[derive(async_graphql::SimpleObject)]
        pub struct $edge {
            /// Pass as `after` to continue after this item.
            pub cursor: String,
            /// The item.
            pub node: $node,
        }

        impl From<$crate::graphql::pagination::PageOf<$node>> for $connection {
            fn from(page: $crate::graphql::pagination::PageOf<$node>) -> Self {
                let nodes = page.edges.iter().map(|(_, node)| node.clone()).collect();
                Self {
                    edges: page.edges.into_iter().map(|(cursor, node)| $edge { cursor, node }).collect(),
                    nodes,
                    page_info: page.page_info,
                    total_count: page.total_count,
                }
            }
        }
    };
}

/// Which rows one page covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: u64,
    pub limit: u64,
}

impl Page {
    /// Validates `first` and `after`: BAD_USER_INPUT on a negative or
    /// oversized `first` and on a cursor this server did not issue.
    pub fn from_args(first: Option<i32>, after: Option<&str>) -> ApiResult<Self> {
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(ApiError::bad_input("first", format!("first must be between 0 and {MAX_PAGE_SIZE}")));
        }
        let offset = match after {
            None => 0,
            Some(cursor) => decode_cursor(cursor)? + 1,
        };
        // Offsets are bound as signed 64-bit integers; a forged cursor past
        // that must be bad input, not a panic in the driver.
        if offset > MAX_OFFSET {
            return Err(ApiError::bad_input("after", "after is not a cursor from this API"));
        }
        Ok(Self { offset, limit: u64::try_from(first).unwrap_or(0) })
    }

    /// The total count of `query`, then this page of it in `order`. Counting
    /// happens before ordering, so the count query does not sort.
    pub async fn fetch<C, E>(
        self,
        db: &C,
        query: Select<E>,
        order: impl FnOnce(Select<E>) -> Select<E>,
    ) -> ApiResult<(u64, Vec<E::Model>)>
    where
        C: ConnectionTrait,
        E: EntityTrait,
        E::Model: Send + Sync,
    {
        let total = query.clone().count(db).await?;
        let rows = order(query).offset(self.offset).limit(self.limit).all(db).await?;
        Ok((total, rows))
    }

    /// The rows of this page with their cursors; convert it into the
    /// domain's connection type with `.into()`.
    pub fn of<N>(self, total_count: u64, nodes: Vec<N>) -> PageOf<N> {
        let end = self.offset + nodes.len() as u64;
        let edges: Vec<(String, N)> =
            nodes.into_iter().zip(self.offset..).map(|(node, position)| (encode_cursor(position), node)).collect();
        let page_info = PageInfo {
            has_previous_page: self.offset > 0,
            has_next_page: end < total_count,
            start_cursor: edges.first().map(|(cursor, _)| cursor.clone()),
            end_cursor: edges.last().map(|(cursor, _)| cursor.clone()),
        };
        PageOf { edges, page_info, total_count }
    }
}

fn encode_cursor(position: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{position}"))
}

fn decode_cursor(cursor: &str) -> ApiResult<u64> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("o:")?.parse::<u64>().ok())
        .filter(|position| *position < MAX_OFFSET)
        .ok_or_else(|| ApiError::bad_input("after", "after is not a cursor from this API"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_continues_after_its_own_position() {
        let page = Page::from_args(Some(2), Some(&encode_cursor(4))).unwrap_or_else(|e| panic!("{}", e.message()));
        assert_eq!(page, Page { offset: 5, limit: 2 });
    }

    #[test]
    fn a_foreign_cursor_is_bad_input() {
        assert!(matches!(Page::from_args(None, Some("bm9wZQ")), Err(ApiError::BadUserInput { field: "after", .. })));
    }

    #[test]
    fn a_forged_huge_cursor_is_bad_input_not_a_panic() {
        for position in [u64::MAX, i64::MAX as u64] {
            let cursor = URL_SAFE_NO_PAD.encode(format!("o:{position}"));
            assert!(matches!(Page::from_args(None, Some(&cursor)), Err(ApiError::BadUserInput { field: "after", .. })));
        }
    }

    #[test]
    fn a_page_over_the_cap_is_bad_input() {
        assert!(matches!(
            Page::from_args(Some(MAX_PAGE_SIZE + 1), None),
            Err(ApiError::BadUserInput { field: "first", .. })
        ));
    }
}
