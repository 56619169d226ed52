//! The by-id resolvers every table has, over its policy: the `ID` argument
//! parsed as the table's key (a malformed one is BAD_USER_INPUT on `id`),
//! then the read or the delete in the request transaction.

use async_graphql::{Context, ID};
use sea_orm::{ActiveModelBehavior, EntityTrait, IntoActiveModel};
use uuid::Uuid;

use super::policy::{Model, Policy, PrimaryKey};
use super::store;
use crate::error::ApiResult;
use crate::graphql::ContextExt;
use crate::graphql::ids::{parse_int_id, parse_uuid};

/// A table key as the API spells it in an `ID`.
pub trait KeyFromId: Sized {
    fn from_id(field: &'static str, id: &ID) -> ApiResult<Self>;
}

impl KeyFromId for Uuid {
    fn from_id(field: &'static str, id: &ID) -> ApiResult<Self> {
        parse_uuid(field, id)
    }
}

impl KeyFromId for i64 {
    fn from_id(field: &'static str, id: &ID) -> ApiResult<Self> {
        parse_int_id(field, id)
    }
}

/// Text keys (a place's Google id) are looked up as given: an unknown one
/// is NOT_FOUND.
impl KeyFromId for String {
    fn from_id(_field: &'static str, id: &ID) -> ApiResult<Self> {
        Ok(id.to_string())
    }
}

/// The row with this `id` if the viewer may see it, else NOT_FOUND.
pub async fn one<P: Policy>(ctx: &Context<'_>, id: &ID) -> ApiResult<Model<P>>
where
    PrimaryKey<P>: KeyFromId,
{
    let viewer = ctx.viewer()?;
    let key = PrimaryKey::<P>::from_id("id", id)?;
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
    let key = PrimaryKey::<P>::from_id("id", id)?;
    let tx = ctx.tx().await?;
    store::delete::<P>(&*tx, &viewer, key).await
}
