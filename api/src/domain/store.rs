//! The reads and writes every table has, written once over its [`Policy`]:
//! a row by key, the rows a viewer sees (all, or one owner's) as a page or
//! a list, and the writes.

use sea_orm::sea_query::NullOrdering;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, Order,
    QueryFilter, QueryOrder, Select,
};
use uuid::Uuid;

use super::policy::{Model, Policy, PrimaryKey};
use crate::auth::{Viewer, ownership};
use crate::error::{ApiError, ApiResult};
use crate::graphql::pagination::{Page, PageOf, SortKey};

/// The row with this key if `viewer` may see it.
pub async fn find_visible<P: Policy>(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    id: impl Into<PrimaryKey<P>>,
) -> ApiResult<Option<Model<P>>> {
    Ok(P::Entity::find_by_id(id).filter(P::visible_to(viewer)).one(db).await?)
}

/// [`find_visible`], NOT_FOUND when there is no such row for this viewer.
pub async fn visible<P: Policy>(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    id: impl Into<PrimaryKey<P>>,
) -> ApiResult<Model<P>> {
    find_visible::<P>(db, viewer, id).await?.ok_or_else(|| ApiError::not_found(P::NAME))
}

/// The rows `viewer` may see, only `owner`'s when given (by the policy's
/// [`Policy::OWNER`] column; a table without one has no rows of any owner):
/// where every list of a table starts, before its own filters.
pub fn visible_rows<P: Policy>(viewer: &Viewer, owner: Option<Uuid>) -> Select<P::Entity> {
    only_visible::<P>(P::Entity::find(), viewer, owner)
}

/// `rows` narrowed as [`visible_rows`] narrows all of them (e.g. a query
/// that reads only some columns).
pub fn only_visible<P: Policy>(rows: Select<P::Entity>, viewer: &Viewer, owner: Option<Uuid>) -> Select<P::Entity> {
    let rows = rows.filter(P::visible_to(viewer));
    match (owner, P::OWNER) {
        (None, _) => rows,
        (Some(owner), Some(column)) => rows.filter(column.eq(owner)),
        (Some(_), None) => rows.filter(ownership::nothing()),
    }
}

/// A page of [`visible_rows`] in `key`'s order.
pub async fn visible_page<P: Policy>(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    owner: Option<Uuid>,
    page: &Page,
    key: &SortKey<P::Entity>,
) -> ApiResult<PageOf<Model<P>>>
where
    Model<P>: Sync,
{
    page.fetch(db, visible_rows::<P>(viewer, owner), key).await
}

/// All of [`visible_rows`] in `key`'s order, for lists short enough to
/// need no pages (a user's preferences, one per category). The key's name
/// goes into no cursor here; it is a key so a list can become a connection
/// without a new way to say its order.
pub async fn visible_list<P: Policy>(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    owner: Option<Uuid>,
    key: &SortKey<P::Entity>,
) -> ApiResult<Vec<Model<P>>> {
    let order = if key.descending { Order::Desc } else { Order::Asc };
    let mut rows = visible_rows::<P>(viewer, owner);
    for (i, column) in key.columns.iter().enumerate() {
        rows = if i == 0 && key.nullable_lead {
            rows.order_by_with_nulls(*column, order.clone(), NullOrdering::Last)
        } else {
            rows.order_by(*column, order.clone())
        };
    }
    Ok(rows.all(db).await?)
}

/// The row if `viewer` may change it: UNAUTHENTICATED for the anonymous
/// viewer, NOT_FOUND for a row it cannot see, FORBIDDEN for one it can
/// see but not change.
pub async fn writable<P: Policy>(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    id: impl Into<PrimaryKey<P>>,
) -> ApiResult<Model<P>> {
    viewer.require_user()?;
    let row = visible::<P>(db, viewer, id).await?;
    if P::can_write(viewer, &row) { Ok(row) } else { Err(P::write_denied()) }
}

/// Inserts a row and returns it as stored (defaults and triggers applied).
pub async fn insert<A>(db: &impl ConnectionTrait, row: A) -> ApiResult<<A::Entity as EntityTrait>::Model>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    Ok(row.insert(db).await?)
}

/// Writes a row's changed columns and returns it as stored.
pub async fn update<A>(db: &impl ConnectionTrait, row: A) -> ApiResult<<A::Entity as EntityTrait>::Model>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    Ok(row.update(db).await?)
}

/// Deletes the row with this key if `viewer` may change it (as
/// [`writable`]) and returns it as it was.
pub async fn delete<P: Policy>(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    id: impl Into<PrimaryKey<P>>,
) -> ApiResult<Model<P>>
where
    Model<P>: Clone + IntoActiveModel<<P::Entity as EntityTrait>::ActiveModel>,
    <P::Entity as EntityTrait>::ActiveModel: ActiveModelBehavior + Send,
{
    let row = writable::<P>(db, viewer, id).await?;
    remove(db, row).await
}

/// Deletes a row the caller has already checked against its policy (a rule
/// that needs more than the row, such as a comment's post), returning it.
pub async fn remove<M, A>(db: &impl ConnectionTrait, row: M) -> ApiResult<M>
where
    M: Clone + IntoActiveModel<A>,
    A: ActiveModelTrait + ActiveModelBehavior + Send,
{
    row.clone().into_active_model().delete(db).await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use sea_orm::{DbBackend, QueryTrait};

    use super::*;
    use crate::auth::Role;

    use crate::domain::policy::fixtures::{Catalogue as Places, Owned as Reviews};

    fn sql<P: Policy>(viewer: &Viewer, owner: Option<Uuid>) -> String {
        visible_rows::<P>(viewer, owner).build(DbBackend::Postgres).to_string()
    }

    #[test]
    fn the_rows_of_an_owner_are_those_the_viewer_sees_with_that_owner() {
        let (me, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let reader = Viewer::User { id: me, role: Role::Reader };
        let as_user = Viewer::User { id: me, role: Role::User };
        assert!(sql::<Reviews>(&reader, Some(other)).ends_with(&format!(r#"WHERE "review"."user_id" = '{other}'"#)));
        let own = format!(r#"WHERE "review"."user_id" = '{me}' AND "review"."user_id" = '{other}'"#);
        assert!(sql::<Reviews>(&as_user, Some(other)).ends_with(&own), "the policy's condition stays");
        assert!(sql::<Reviews>(&reader, None).ends_with("WHERE TRUE"), "a reader sees every review");
    }

    #[test]
    fn a_table_without_an_owner_column_has_no_rows_of_any_owner() {
        let viewer = Viewer::User { id: Uuid::from_u128(1), role: Role::Admin };
        assert!(sql::<Places>(&viewer, Some(Uuid::from_u128(1))).ends_with("WHERE FALSE"));
        assert!(sql::<Places>(&viewer, None).ends_with("WHERE TRUE"));
    }
}
