//! Accounts: one `users` table for every domain, sign-up, sign-in and roles.

mod once;
mod policy;
mod resolvers;
mod store;
mod types;

pub use once::OneSignInPerDocument;
pub use resolvers::{AccountsMutation, AccountsQuery};
pub use store::{CreateUser, create_user_as_admin};
pub use types::User;
