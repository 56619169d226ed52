//! Posts and comments (the Allogator seed). Other users appear only as
//! public author profiles (username and full name), never as accounts.

use crate::domain::{Constraint, Domain, ReplayKey};

mod loader;
pub(crate) mod policy;
mod resolvers;
mod store;
mod subscriptions;
pub(crate) mod types;

pub use loader::PostsLoader;
pub use resolvers::{PostsMutation as Mutation, PostsQuery as Query};
pub use subscriptions::PostsSubscription as Subscription;

/// The named constraints of this domain's tables (its migrations) and the
/// client errors their violations mean.
const CONSTRAINTS: &[Constraint] = &[
    Constraint::bad_input("post_title_check", "title", "title must not be empty"),
    Constraint::bad_input("post_body_check", "body", "body is too long"),
    Constraint::bad_input("comment_body_check", "body", "body must have 1 to 10000 characters"),
    Constraint::not_found("comment_post_id_fkey", "post"),
];

/// This domain for the shared machinery ([`crate::domain::DOMAINS`]): its
/// constraints, and the keys of its tables subscribers watch.
pub const DOMAIN: Domain = Domain {
    constraints: CONSTRAINTS,
    replayed: &[ReplayKey::new("post", "id", "uuid"), ReplayKey::new("comment", "id", "uuid")],
};

/// This domain's types that clients refetch by global id, one line each,
/// gathered into the `Node` interface (how: [`crate::graphql::node`]).
macro_rules! nodes {
    ($($gathered:tt)*) => {
        crate::graphql::node::node_types! { $($gathered)*
            Post(crate::posts::types::Post) = crate::posts::policy::Posts;
            Comment(crate::posts::types::Comment) = crate::posts::policy::Comments;
        }
    };
}
pub(crate) use nodes;
