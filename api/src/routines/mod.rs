//! Routines, their runs and per-user stats (the Dropfarm seed). Stats are
//! kept by the database (migration 000004); this domain only reads them.

use crate::domain::{Constraint, Domain, ReplayKey};

pub(crate) mod policy;
mod resolvers;
mod store;
mod subscriptions;
pub(crate) mod types;

pub use resolvers::{RoutinesMutation as Mutation, RoutinesQuery as Query};
pub use subscriptions::RoutinesSubscription as Subscription;

/// The named constraints of this domain's tables (its migrations) and the
/// client errors their violations mean.
const CONSTRAINTS: &[Constraint] = &[
    Constraint::bad_input("routine_name_check", "name", "name must not be empty"),
    Constraint::bad_input("routine_steps_check", "steps", "steps must be a JSON array"),
    Constraint::bad_input("routine_tokens_per_run_check", "tokensPerRun", "tokensPerRun must be 0 or more"),
    Constraint::bad_input("routine_run_tokens_earned_check", "tokensEarned", "tokensEarned must be 0 or more"),
    Constraint::bad_input("routine_run_end_after_start", "endTime", "endTime must not be before the run's start"),
    Constraint::not_found("routine_run_routine_id_fkey", "routine"),
];

/// This domain for the shared machinery ([`crate::domain::DOMAINS`]): its
/// constraints, and the keys of its tables subscribers watch.
pub const DOMAIN: Domain = Domain {
    constraints: CONSTRAINTS,
    replayed: &[
        ReplayKey::new("routine", "id", "uuid"),
        ReplayKey::new("routine_run", "id", "uuid"),
        ReplayKey::new("user_stats", "user_id", "uuid"),
    ],
};

/// This domain's types that clients refetch by global id, one line each,
/// gathered into the `Node` interface (how: [`crate::graphql::node`]).
macro_rules! nodes {
    ($($gathered:tt)*) => {
        crate::graphql::node::node_types! { $($gathered)*
            Routine(crate::routines::types::Routine) = crate::routines::policy::Routines;
            RoutineRun(crate::routines::types::RoutineRun) = crate::routines::policy::Runs;
        }
    };
}
pub(crate) use nodes;
