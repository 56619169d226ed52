//! Who sees which `users` rows. Mirrors the policies of migration 000001:
//! a user sees only their own row; readers, services and admins see all;
//! the anonymous viewer sees none. Only admins change other accounts.

use entity::users;

use crate::auth::Role;
use crate::domain::Policy;

/// The ownership rule with the row's own id as its owner; written (role,
/// active flag) by admins only. Sign-up and password changes are not
/// writes of this policy: they go through their own paths.
pub struct Users;

impl Policy for Users {
    type Entity = users::Entity;
    const NAME: &'static str = "user";
    const TYPE: &'static str = "User";
    const OWNER: Option<users::Column> = Some(users::Column::Id);
    const WRITERS: &'static [Role] = &[Role::Admin];
    const DENIED: Option<&'static str> = Some("your role may not manage accounts");
}
