//! The row policy of one table: the Rust twin of its PostgreSQL policies.

use sea_orm::{Condition, EntityTrait, ModelTrait, PrimaryKeyTrait};

use uuid::Uuid;

use crate::auth::{Role, Viewer, ownership};
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
///
/// A policy is mostly data. The defaults are the rule most tables share
/// ([`ownership`]): a table that names its owner column ([`Policy::OWNER`])
/// is read by its owner, readers, services and admins, and written by its
/// owner and by services and admins, as far as its [`Policy::WRITERS`]
/// allow; a [`Policy::PUBLIC`] table is read by every viewer. A table with
/// another rule overrides [`Policy::visible_to`] and its in-memory twin
/// [`Policy::can_read`], or [`Policy::can_write`].
pub trait Policy {
    /// The table.
    type Entity: EntityTrait;
    /// What a row is called in messages ("review").
    const NAME: &'static str;
    /// The GraphQL type a row is served as ("Review"): the type half of its
    /// global id (`graphql::ids`), checked when an `ID` argument names a row.
    const TYPE: &'static str;
    /// The column holding the id of the user a row belongs to, for tables
    /// under the ownership rule.
    const OWNER: Option<<Self::Entity as EntityTrait>::Column> = None;
    /// Every viewer, the anonymous one included, reads every row (a
    /// catalogue such as places); writes are still the [`Policy::WRITERS`]'.
    const PUBLIC: bool = false;
    /// The roles that may add or change rows at all; by default all but the
    /// read-only one.
    const WRITERS: &'static [Role] = &[Role::User, Role::Service, Role::Admin];
    /// Why a role may not write, when the default ("your role may not
    /// change this `NAME`") says too little.
    const DENIED: Option<&'static str> = None;

    /// The rows `viewer` may read, as a condition on every query. By
    /// default every row of a [`Policy::PUBLIC`] table, else the owner's
    /// rows (none for a table without [`Policy::OWNER`]).
    fn visible_to(viewer: &Viewer) -> Condition {
        if Self::PUBLIC {
            return Condition::all();
        }
        Self::OWNER.map_or_else(ownership::nothing, |owner| ownership::visible_to(viewer, owner))
    }

    /// The in-memory twin of [`Policy::visible_to`], for the change feed:
    /// whether `viewer` may see `row` as the capture recorded it (JSON, so
    /// an event is not decoded once per subscriber; `owner` is its
    /// [`Policy::OWNER`] column's value). Asked of the row before and after
    /// a change, so a row that becomes visible is INSERTED and one hidden
    /// DELETED for that viewer. By default as [`Policy::visible_to`]'s
    /// default: every row of a public table, else its owner's.
    fn can_read(viewer: &Viewer, owner: Option<Uuid>, _row: &serde_json::Value) -> bool {
        Self::PUBLIC || owner.is_some_and(|owner| ownership::can_read(viewer, owner))
    }

    /// Whether `viewer` may change or delete `row` (a row it can see): a
    /// role among [`Policy::WRITERS`] and, for an owned table, the owner
    /// or a role that writes every row.
    fn can_write(viewer: &Viewer, row: &Model<Self>) -> bool {
        is_writer::<Self>(viewer)
            && (Self::OWNER.is_none() || owner_of::<Self>(row).is_some_and(|owner| ownership::can_write(viewer, owner)))
    }

    /// The viewer's id if its role is among [`Policy::WRITERS`], checked
    /// before any SQL: UNAUTHENTICATED for the anonymous viewer, FORBIDDEN
    /// for a role that may not.
    fn require_writer(viewer: &Viewer) -> ApiResult<Uuid> {
        let id = viewer.require_user()?;
        if is_writer::<Self>(viewer) { Ok(id) } else { Err(Self::write_denied()) }
    }

    /// The FORBIDDEN of a visible row `can_write` refuses.
    fn write_denied() -> ApiError {
        ApiError::Forbidden(
            Self::DENIED.map_or_else(|| format!("your role may not change this {}", Self::NAME), str::to_owned),
        )
    }
}

fn is_writer<P: Policy + ?Sized>(viewer: &Viewer) -> bool {
    viewer.role().is_some_and(|role| P::WRITERS.contains(&role))
}

/// The user a row belongs to, read from the policy's [`Policy::OWNER`] column.
pub fn owner_of<P: Policy + ?Sized>(row: &Model<P>) -> Option<Uuid> {
    match row.get(P::OWNER?) {
        sea_orm::Value::Uuid(Some(id)) => Some(id),
        _ => None,
    }
}

/// Policies of the two common shapes, for the unit tests of the shared
/// machinery.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A table that names its owner and nothing else.
    pub struct Owned;

    impl Policy for Owned {
        type Entity = entity::review::Entity;
        const NAME: &'static str = "review";
        const TYPE: &'static str = "Review";
        const OWNER: Option<entity::review::Column> = Some(entity::review::Column::UserId);
    }

    /// A catalogue: every viewer reads it, admins write it.
    pub struct Catalogue;

    impl Policy for Catalogue {
        type Entity = entity::place::Entity;
        const NAME: &'static str = "place";
        const TYPE: &'static str = "Place";
        const PUBLIC: bool = true;
        const WRITERS: &'static [Role] = &[Role::Admin];
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{Catalogue, Owned};
    use super::*;

    #[test]
    fn a_table_naming_its_owner_column_gets_the_ownership_rule() {
        let (owner, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let now = chrono::Utc::now().fixed_offset();
        let row = entity::review::Model {
            id: 1,
            user_id: owner,
            place_id: "p".into(),
            rating: 4.0,
            comment: None,
            created_at: now,
            updated_at: now,
        };
        assert_eq!(owner_of::<Owned>(&row), Some(owner));
        let as_role = |id, role| Viewer::User { id, role };
        assert!(Owned::can_write(&as_role(owner, Role::User), &row));
        assert!(!Owned::can_write(&as_role(other, Role::User), &row));
        assert!(!Owned::can_write(&as_role(other, Role::Reader), &row));
        assert!(Owned::can_write(&as_role(other, Role::Service), &row));
        assert!(!Owned::can_write(&Viewer::Anonymous, &row));
    }

    #[test]
    fn a_public_table_is_read_by_every_viewer_and_its_events_reach_them_all() {
        let sql = |condition: Condition| {
            use sea_orm::{EntityTrait, QueryFilter, QueryTrait};
            entity::place::Entity::find().filter(condition).build(sea_orm::DbBackend::Postgres).to_string()
        };
        let reader = Viewer::User { id: Uuid::from_u128(1), role: Role::Reader };
        for viewer in [Viewer::Anonymous, reader] {
            assert!(sql(Catalogue::visible_to(&viewer)).ends_with("WHERE TRUE"), "every row for {viewer:?}");
            assert!(Catalogue::can_read(&viewer, None, &serde_json::Value::Null));
        }
        // Rows of a table with neither rule are no one's.
        assert!(!Owned::can_read(&reader, None, &serde_json::Value::Null));
        assert!(Catalogue::require_writer(&reader).is_err());
    }

    #[test]
    fn an_owned_table_is_read_in_memory_by_the_owner_and_the_roles_that_read_all() {
        let (owner, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let row = serde_json::Value::Null;
        assert!(Owned::can_read(&Viewer::User { id: owner, role: Role::User }, Some(owner), &row));
        assert!(!Owned::can_read(&Viewer::User { id: other, role: Role::User }, Some(owner), &row));
        assert!(Owned::can_read(&Viewer::User { id: other, role: Role::Reader }, Some(owner), &row));
        assert!(!Owned::can_read(&Viewer::Anonymous, Some(owner), &row));
    }
}
