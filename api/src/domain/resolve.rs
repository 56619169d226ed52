//! The resolvers every table has, over its policy: by id, the `ID`
//! argument parsed as the table's key, global or raw (a malformed one, or
//! the global id of another type, is BAD_USER_INPUT on `id`), then the read
//! or the delete in the request transaction; and the lists of rows the
//! viewer sees (`users`, `posts`) or the signed-in user's own (`myX`).

use async_graphql::{Context, ID};
use sea_orm::{ActiveModelBehavior, EntityTrait, IntoActiveModel};
use uuid::Uuid;

use super::policy::{Model, Policy, PrimaryKey};
use super::store;
use crate::error::ApiResult;
use crate::graphql::ContextExt;
use crate::graphql::ids;
use crate::graphql::pagination::{Page, PageOf, SortKey};

/// A table key from its raw form (what `rowId` holds).
pub trait KeyFromId: Sized {
    fn from_raw(field: &'static str, raw: &str) -> ApiResult<Self>;
}

impl KeyFromId for Uuid {
    fn from_raw(field: &'static str, raw: &str) -> ApiResult<Self> {
        ids::uuid_key(field, raw)
    }
}

impl KeyFromId for i64 {
    fn from_raw(field: &'static str, raw: &str) -> ApiResult<Self> {
        ids::int_key(field, raw)
    }
}

/// Text keys (a place's Google id) are looked up as given: an unknown one
/// is NOT_FOUND.
impl KeyFromId for String {
    fn from_raw(_field: &'static str, raw: &str) -> ApiResult<Self> {
        Ok(raw.to_owned())
    }
}

/// The key of a `P` row an `ID` argument names: its global id or its raw
/// key. A global id of another type is BAD_USER_INPUT ("id is the id of a
/// Post, not a Review"), as is a malformed key.
pub fn key<P: Policy>(field: &'static str, id: &ID) -> ApiResult<PrimaryKey<P>>
where
    PrimaryKey<P>: KeyFromId,
{
    PrimaryKey::<P>::from_raw(field, &ids::raw_key(field, id, Some(P::TYPE))?)
}

/// The row with this `id` if the viewer may see it, else NOT_FOUND.
pub async fn one<P: Policy>(ctx: &Context<'_>, id: &ID) -> ApiResult<Model<P>>
where
    PrimaryKey<P>: KeyFromId,
{
    let viewer = ctx.viewer()?;
    let key = key::<P>("id", id)?;
    let tx = ctx.tx().await?;
    store::visible::<P>(&*tx, &viewer, key).await
}

/// Deletes the row with this `id` if the viewer may change it (see
/// [`store::writable`]) and returns it as it was.
pub async fn delete<P: Policy>(ctx: &Context<'_>, id: &ID) -> ApiResult<Model<P>>
where
    PrimaryKey<P>: KeyFromId,
    Model<P>: Clone + IntoActiveModel<<P::Entity as EntityTrait>::ActiveModel>,
    <P::Entity as EntityTrait>::ActiveModel: ActiveModelBehavior + Send,
{
    let viewer = ctx.viewer()?;
    let key = key::<P>("id", id)?;
    let tx = ctx.tx().await?;
    store::delete::<P>(&*tx, &viewer, key).await
}

/// A page of the `P` rows the viewer sees, only `owner`'s when given, in
/// `key`'s order ([`store::visible_page`]). Sign-in required: no list of
/// owned rows shows anything to the anonymous viewer, and UNAUTHENTICATED
/// says why. (Public lists, places and projects, are their domain's own.)
pub async fn page<P: Policy>(
    ctx: &Context<'_>,
    owner: Option<Uuid>,
    page: &Page,
    key: &SortKey<P::Entity>,
) -> ApiResult<PageOf<Model<P>>>
where
    Model<P>: Sync,
{
    let viewer = ctx.viewer()?;
    viewer.require_user()?;
    let tx = ctx.tx().await?;
    store::visible_page::<P>(&*tx, &viewer, owner, page, key).await
}

/// A page of the signed-in user's `P` rows in `key`'s order: a `myX`
/// connection's body. UNAUTHENTICATED for the anonymous viewer.
pub async fn my_page<P: Policy>(ctx: &Context<'_>, page: &Page, key: &SortKey<P::Entity>) -> ApiResult<PageOf<Model<P>>>
where
    Model<P>: Sync,
{
    let me = ctx.viewer()?.require_user()?;
    self::page::<P>(ctx, Some(me), page, key).await
}

/// All the signed-in user's `P` rows in `key`'s order: a short `myX`
/// list's body ([`store::visible_list`]). UNAUTHENTICATED for the
/// anonymous viewer.
pub async fn my_list<P: Policy>(ctx: &Context<'_>, key: &SortKey<P::Entity>) -> ApiResult<Vec<Model<P>>> {
    let viewer = ctx.viewer()?;
    let me = viewer.require_user()?;
    let tx = ctx.tx().await?;
    store::visible_list::<P>(&*tx, &viewer, Some(me), key).await
}
