//! The reads and writes every table has, written once over its [`Policy`].

use sea_orm::{ActiveModelBehavior, ActiveModelTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter};

use super::policy::{Model, Policy, PrimaryKey};
use crate::auth::Viewer;
use crate::error::{ApiError, ApiResult};

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
