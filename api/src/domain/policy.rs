//! The row policy of one table: the Rust twin of its PostgreSQL policies.

use sea_orm::{Condition, EntityTrait, PrimaryKeyTrait};

use crate::auth::Viewer;
use crate::error::{ApiError, ApiResult};

/// A table's row, for a policy.
pub type Model<P> = <<P as Policy>::Entity as EntityTrait>::Model;
/// A table's primary key value, for a policy.
pub type PrimaryKey<P> = <<<P as Policy>::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType;

/// Who reads and who changes the rows of one table. Implemented by a unit
/// struct in the domain's `policy.rs`; the generic [`super::store`]
/// functions and the resolvers ask it, so a role check has one home.
/// PostgreSQL's RLS enforces the same rules underneath: the policy turns a
/// refusal into a clear code before any write is attempted.
pub trait Policy {
    /// The table.
    type Entity: EntityTrait;
    /// What a row is called in messages ("review").
    const NAME: &'static str;

    /// The rows `viewer` may read, as a condition on every query.
    fn visible_to(viewer: &Viewer) -> Condition;

    /// Whether `viewer` may change or delete `row` (a row it can see).
    fn can_write(viewer: &Viewer, row: &Model<Self>) -> bool;

    /// The viewer's id if its role may add or change rows of this table at
    /// all, checked before any SQL: UNAUTHENTICATED for the anonymous
    /// viewer, FORBIDDEN for a role that may not. By default every role
    /// but the read-only one.
    fn require_writer(viewer: &Viewer) -> ApiResult<uuid::Uuid> {
        viewer.require_writer()
    }

    /// The FORBIDDEN of a visible row `can_write` refuses.
    fn write_denied() -> ApiError {
        ApiError::Forbidden(format!("your role may not change this {}", Self::NAME))
    }
}
