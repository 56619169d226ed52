//! What every domain shares, so a domain folder holds only what is its own.
//!
//! - [`Policy`]: who reads and who changes the rows of one table, once per
//!   table, in the domain's `policy.rs`.
//! - [`store`]: the reads and writes that are the same for every table,
//!   generic over the policy: find a visible row, a row the viewer may
//!   change, the rows the viewer sees (all, or one owner's) as a page or a
//!   list, insert, update, delete. A domain's `store.rs` keeps its lists'
//!   orderings and only the queries that are its own (filters, joins,
//!   upserts).
//! - [`resolve`]: the same from a resolver's context: a row by its `ID`
//!   argument, a delete, a page of rows, the signed-in user's rows.
//! - [`columns`]: reading only the columns a selection asks for, for
//!   entities that say how their model is made from some of its columns.
//! - [`Constraint`]: a named database constraint and the client error it
//!   means, declared by each domain in its `mod.rs` (`CONSTRAINTS`) and
//!   registered once in [`DOMAINS`].
//! - [`loader`]: the one DataLoader of every table's rows by primary key,
//!   which foreign-key fields (`Review.user`, `Comment.post`, ...) load
//!   through, batched per table and response.
//! - [`ReplayKey`]: the key of each table subscribers watch, declared by its
//!   domain beside its constraints, so a replay can ask which rows a viewer
//!   may see now (`realtime::now`) without a list of tables of its own.
//!
//! "Visible but not writable" answers FORBIDDEN everywhere: the client can
//! see the row, so saying it is missing would be a lie it cannot act on. A
//! row the viewer cannot see answers NOT_FOUND, exactly like a row that does
//! not exist, so ids cannot be probed.

pub mod columns;
mod constraint;
pub mod loader;
mod policy;
pub mod resolve;
pub mod store;

pub use constraint::Constraint;
pub use loader::RowLoader;
pub use policy::{Model, Policy, PrimaryKey};

/// What a domain declares for the shared machinery, as `DOMAIN` in its
/// `mod.rs`: a new table of an existing domain extends these lists there.
pub struct Domain {
    /// Its tables' named constraints and the client errors they mean,
    /// looked up by [`crate::error`] when the database names a violation.
    pub constraints: &'static [Constraint],
    /// Its tables that subscribers watch (the capture triggers publish them).
    pub replayed: &'static [ReplayKey],
}

/// A published table's key column and its SQL type, as the capture
/// triggers name the key. Fixed strings: `realtime::now` builds its
/// statement from these, never from the change log's text.
pub struct ReplayKey {
    pub table: &'static str,
    pub column: &'static str,
    pub sql_type: &'static str,
}

impl ReplayKey {
    pub const fn new(table: &'static str, column: &'static str, sql_type: &'static str) -> Self {
        Self { table, column, sql_type }
    }
}

/// Every domain, by its module's name, in the order the schema lists their
/// fields: a new domain adds its name here (and `pub mod x;` in lib.rs).
/// `each_domain!(then)` calls `then! { accounts places ... }`, and each
/// list of what every domain declares is built from it: [`DOMAINS`] here,
/// the roots' merges in [`crate::graphql`], the `Node` interface in
/// [`crate::graphql::node`].
macro_rules! each_domain {
    ($then:ident) => {
        $then! { accounts places routines airdrops posts }
    };
}
pub(crate) use each_domain;

macro_rules! domains {
    ($($domain:ident)*) => {
        /// Every domain's `DOMAIN` (see `each_domain!`).
        pub const DOMAINS: &[Domain] = &[$(crate::$domain::DOMAIN),*];
    };
}
each_domain!(domains);

/// The client error a violated constraint means, if a domain declared it.
pub fn constraint_error(name: &str) -> Option<crate::error::ApiError> {
    DOMAINS.iter().flat_map(|d| d.constraints.iter()).find(|c| c.name == name).map(Constraint::error)
}

/// The key of a published table, if a domain declared it.
pub fn replay_key(table: &str) -> Option<&'static ReplayKey> {
    DOMAINS.iter().flat_map(|d| d.replayed.iter()).find(|k| k.table == table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_constraint_is_declared_twice() {
        let mut names: Vec<&str> = DOMAINS.iter().flat_map(|d| d.constraints.iter()).map(|c| c.name).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a constraint name appears in two domains' tables");
    }

    #[test]
    fn every_table_the_capture_publishes_has_its_replay_key_declared_once() {
        // Migrations 000002 to 000006 publish these tables.
        let published = [
            "place",
            "review",
            "preference",
            "routine",
            "routine_run",
            "user_stats",
            "airdrop_project",
            "user_airdrop_participation",
            "post",
            "comment",
        ];
        for table in published {
            let declared = DOMAINS.iter().flat_map(|d| d.replayed.iter()).filter(|k| k.table == table).count();
            assert_eq!(declared, 1, "{table}");
        }
        assert_eq!(replay_key("review").map(|k| (k.column, k.sql_type)), Some(("id", "bigint")));
        assert!(replay_key("users").is_none());
    }

    #[test]
    fn every_folder_that_declares_a_domain_is_listed_in_each_domain() {
        // A folder left out would compile and serve nothing of its own: no
        // fields, no constraint errors, no `Node` types.
        macro_rules! names {
            ($($domain:ident)*) => { [$(stringify!($domain)),*] };
        }
        let mut listed = each_domain!(names).to_vec();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut declared = Vec::new();
        for entry in std::fs::read_dir(&src).expect("api/src is readable") {
            let folder = entry.expect("a directory entry").path();
            let module = std::fs::read_to_string(folder.join("mod.rs")).unwrap_or_default();
            if module.lines().any(|line| line.starts_with("pub const DOMAIN: Domain")) {
                declared.push(folder.file_name().and_then(|n| n.to_str()).map(str::to_owned).unwrap_or_default());
            }
        }
        listed.sort_unstable();
        declared.sort_unstable();
        assert_eq!(declared, listed);
    }

    #[test]
    fn a_declared_constraint_maps_to_its_error_and_others_to_none() {
        let error = constraint_error("review_user_id_place_id_key");
        assert!(matches!(error, Some(crate::error::ApiError::Conflict { field: Some("placeId"), .. })));
        assert!(constraint_error("no_such_constraint").is_none());
    }
}
