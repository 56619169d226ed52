//! Posts and comments (the Allogator seed). Other users appear only as
//! public author profiles (username and full name), never as accounts.

use crate::domain::Constraint;

mod loader;
mod policy;
mod resolvers;
mod store;
mod subscriptions;
mod types;

pub use loader::PostsLoader;
pub use resolvers::{PostsMutation, PostsQuery};
pub use subscriptions::PostsSubscription;

/// The named constraints of this domain's tables (its migrations) and the
/// client errors their violations mean; registered in [`crate::domain::DOMAINS`].
pub const CONSTRAINTS: &[Constraint] = &[
    Constraint::bad_input("post_title_check", "title", "title must not be empty"),
    Constraint::bad_input("post_body_check", "body", "body is too long"),
    Constraint::bad_input("comment_body_check", "body", "body must have 1 to 10000 characters"),
    Constraint::not_found("comment_post_id_fkey", "post"),
];
