//! Accounts: one `users` table for every domain, sign-up, sign-in and roles.

use crate::domain::{Constraint, Domain};

pub(crate) mod policy;
mod resolvers;
mod rules;
mod self_service;
mod sessions;
mod store;
pub(crate) mod types;

pub use crate::graphql::NoSubscriptions as Subscription;
pub use policy::Users;
pub use resolvers::AccountsQuery as Query;
pub use sessions::{Pruned, prune as prune_sessions};
pub use store::{CreateUser, create_user_as_admin};
pub use types::User;

/// This domain's part of the schema's `Mutation`: sign-up, sign-in and
/// the admin's fields, and the signed-in user's own.
#[derive(async_graphql::MergedObject, Default)]
#[graphql(name = "AccountsMutationRoot")]
pub struct Mutation(resolvers::AccountsMutation, self_service::AccountSelfMutation);

/// Root mutation fields of which a document may hold at most one (the
/// schema's guard refuses more before anything runs): aliases would make
/// one request 40 sign-ups, or 40 password guesses and argon2 hashes for
/// the price of one request. The rate limits count attempts, but refusing
/// the document is clearer and costs nothing. The same goes for every
/// field that checks or hashes a password, and for `refreshSession`: a
/// second refresh of the same token in one request would find it used and
/// revoke its session on a second connection while the request's own
/// transaction holds the row.
pub const ONE_PER_DOCUMENT: [&str; 5] = ["signUp", "signIn", "changePassword", "deleteAccount", "refreshSession"];

/// The named constraints of this domain's tables (its migrations) and the
/// client errors their violations mean.
const CONSTRAINTS: &[Constraint] = &[
    Constraint::conflict("users_email_key", "email", "this email is already registered"),
    Constraint::conflict("users_username_key", "username", "this username is taken"),
    Constraint::bad_input("users_email_check", "email", "email is not a valid address"),
    Constraint::bad_input(
        "users_username_check",
        "username",
        "username must be 3 to 50 letters, digits, '.', '_' or '-'",
    ),
];

/// This domain for the shared machinery ([`crate::domain::DOMAINS`]): its
/// constraints, and the keys of its tables subscribers watch.
pub const DOMAIN: Domain = Domain { constraints: CONSTRAINTS, replayed: &[] };

/// This domain's types that clients refetch by global id, one line each,
/// gathered into the `Node` interface (how: [`crate::graphql::node`]).
macro_rules! nodes {
    ($($gathered:tt)*) => {
        crate::graphql::node::node_types! { $($gathered)*
            User(crate::accounts::types::User) = crate::accounts::policy::Users;
        }
    };
}
pub(crate) use nodes;
