//! Airdrop projects and participation (the Dropfarm seed). The allocation
//! cap is enforced by the database under concurrent credits (migration
//! 000005); public totals come from a function that reveals no one's share.

mod policy;
mod resolvers;
mod store;
mod types;

pub use resolvers::{AirdropsMutation, AirdropsQuery};
