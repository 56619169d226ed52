//! Airdrop projects and participation (the Dropfarm seed). The allocation
//! cap is enforced by the database under concurrent credits (migration
//! 000005); public totals come from a function that reveals no one's share.

use crate::domain::{Constraint, Domain, ReplayKey};

mod loader;
pub(crate) mod policy;
pub(crate) mod resolvers;
mod store;
pub(crate) mod types;

pub use crate::graphql::NoSubscriptions as Subscription;
pub use resolvers::{AirdropsMutation as Mutation, AirdropsQuery as Query};

/// The named constraints of this domain's tables (its migrations) and the
/// client errors their violations mean.
const CONSTRAINTS: &[Constraint] = &[
    Constraint::bad_input("airdrop_project_name_check", "name", "name must not be empty"),
    Constraint::bad_input("airdrop_project_dates_check", "endDate", "endDate must not be before startDate"),
    Constraint::bad_input(
        "airdrop_project_allocation_check",
        "totalTokenAllocation",
        "totalTokenAllocation must be 0 or more",
    ),
    Constraint::bad_input("user_airdrop_participation_tokens_check", "tokens", "tokens must be 0 or more"),
    Constraint::conflict(
        "user_airdrop_participation_user_project_key",
        "projectId",
        "you already take part in this project",
    ),
    Constraint::not_found("user_airdrop_participation_project_id_fkey", "airdrop project"),
    // Raised by the credit trigger under concurrent credits, not a CHECK.
    Constraint::conflict("airdrop_allocation_exceeded", "tokens", "the project does not have that many tokens left"),
];

/// This domain for the shared machinery ([`crate::domain::DOMAINS`]): its
/// constraints, and the keys of its tables subscribers watch.
pub const DOMAIN: Domain = Domain {
    constraints: CONSTRAINTS,
    replayed: &[
        ReplayKey::new("airdrop_project", "id", "uuid"),
        ReplayKey::new("user_airdrop_participation", "id", "uuid"),
    ],
};

/// This domain's types that clients refetch by global id, one line each,
/// gathered into the `Node` interface (how: [`crate::graphql::node`]).
macro_rules! nodes {
    ($($gathered:tt)*) => {
        crate::graphql::node::node_types! { $($gathered)*
            AirdropProject(crate::airdrops::types::AirdropProject) = crate::airdrops::policy::Projects
                => crate::airdrops::resolvers::with_totals_all;
            Participation(crate::airdrops::types::Participation) = crate::airdrops::policy::Participations;
        }
    };
}
pub(crate) use nodes;
