//! What every domain shares, so a domain folder holds only what is its own.
//!
//! - [`Policy`]: who reads and who changes the rows of one table, once per
//!   table, in the domain's `policy.rs`.
//! - [`store`]: the reads and writes that are the same for every table,
//!   generic over the policy: find a visible row, a row the viewer may
//!   change, insert, update, delete. A domain's `store.rs` keeps only the
//!   queries that are its own (filters, orderings, joins, upserts).
//! - [`Constraint`]: a named database constraint and the client error it
//!   means, declared by each domain in its `mod.rs` (`CONSTRAINTS`) and
//!   registered once in [`DOMAINS`].
//!
//! "Visible but not writable" answers FORBIDDEN everywhere: the client can
//! see the row, so saying it is missing would be a lie it cannot act on. A
//! row the viewer cannot see answers NOT_FOUND, exactly like a row that does
//! not exist, so ids cannot be probed.

mod constraint;
mod policy;
pub mod resolve;
pub mod store;

pub use constraint::Constraint;
pub use policy::{Model, Policy, PrimaryKey};

/// Each domain's constraint table, looked up by [`crate::error`] when the
/// database names a violated constraint. A new domain adds its line here
/// (a new table of an existing domain only extends its own `CONSTRAINTS`).
pub const DOMAINS: &[&[Constraint]] = &[
    crate::accounts::CONSTRAINTS,
    crate::places::CONSTRAINTS,
    crate::routines::CONSTRAINTS,
    crate::airdrops::CONSTRAINTS,
    crate::posts::CONSTRAINTS,
];

/// The client error a violated constraint means, if a domain declared it.
pub fn constraint_error(name: &str) -> Option<crate::error::ApiError> {
    DOMAINS.iter().flat_map(|table| table.iter()).find(|c| c.name == name).map(Constraint::error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_constraint_is_declared_twice() {
        let mut names: Vec<&str> = DOMAINS.iter().flat_map(|t| t.iter()).map(|c| c.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a constraint name appears in two domains' tables");
    }

    #[test]
    fn a_declared_constraint_maps_to_its_error_and_others_to_none() {
        let error = constraint_error("review_user_id_place_id_key");
        assert!(matches!(error, Some(crate::error::ApiError::Conflict { field: Some("placeId"), .. })));
        assert!(constraint_error("no_such_constraint").is_none());
    }
}
