//! One DataLoader for every table: the rows a response's foreign keys name
//! (`Review.user`, `Review.place`, `RoutineRun.routine`, `Comment.post`,
//! ...), read by primary key in one statement per table and response
//! rather than one per parent row.
//!
//! Generic over [`Policy`], so a new foreign-key field is a resolver line
//! ([`load`]) and never a loader of its own. It reads as the viewer: in the
//! request transaction (RLS applies, as do [`Policy::visible_to`]'s
//! conditions, which mirror it), or for a subscription event in a short
//! read-only transaction of its own as the same viewer ([`LoaderDb`]). A row
//! the viewer may not see is absent from the batch, so its field is null,
//! exactly as for a row that does not exist.
//!
//! A domain that batches something other than rows by key (public totals,
//! say) implements `Loader<ItsKey>` for [`RowLoader`] beside its store, so
//! the request still registers one loader.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use async_graphql::Context;
use async_graphql::dataloader::{DataLoader, Loader};
use sea_orm::sea_query::FromValueTuple;
use sea_orm::{ColumnTrait, EntityTrait, Iterable, ModelTrait, PrimaryKeyToColumn, QueryFilter};

use super::policy::{Model, Policy, PrimaryKey};
use crate::auth::{AccessSession, Viewer};
use crate::db::{LoaderDb, Pool, RequestDb};
use crate::error::{ApiError, ApiResult};
use crate::graphql::ids::{FromKey, RawId};

/// Reads rows by primary key for one viewer, batched per table.
pub struct RowLoader {
    db: LoaderDb,
    viewer: Viewer,
}

impl RowLoader {
    /// For an HTTP request: reads in its transaction.
    pub fn new(db: RequestDb, viewer: Viewer) -> Self {
        Self { db: LoaderDb::Request(db), viewer }
    }

    /// For a subscription, whose events have no request transaction.
    pub fn from_pool(pool: Pool, viewer: Viewer, session: AccessSession) -> Self {
        Self { db: LoaderDb::Pool(pool, session), viewer }
    }

    /// The database and the viewer, for a domain's own `Loader` impls.
    pub fn parts(&self) -> (&LoaderDb, Viewer) {
        (&self.db, self.viewer)
    }
}

/// The primary key of a row of `P`'s table, as a DataLoader key: one batch
/// per table, since the key type differs per policy.
pub struct Key<P: Policy>(pub PrimaryKey<P>, PhantomData<fn() -> P>);

impl<P: Policy> Key<P> {
    pub fn new(key: impl Into<PrimaryKey<P>>) -> Self {
        Self(key.into(), PhantomData)
    }
}

// By hand: derives would ask `P` (a unit struct) for the traits too.
impl<P: Policy> Clone for Key<P>
where
    PrimaryKey<P>: Clone,
{
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<P: Policy> PartialEq for Key<P> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<P: Policy> Eq for Key<P> where PrimaryKey<P>: Eq {}

impl<P: Policy> Hash for Key<P>
where
    PrimaryKey<P>: Hash,
{
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl<P> Loader<Key<P>> for RowLoader
where
    P: Policy + 'static,
    // Single-column keys (every table's here): one `IN` list of values.
    PrimaryKey<P>: Clone + Eq + Hash + Sync + Into<sea_orm::Value> + 'static,
    Model<P>: Clone + Sync,
{
    type Value = Model<P>;
    type Error = ApiError;

    async fn load(&self, keys: &[Key<P>]) -> Result<HashMap<Key<P>, Model<P>>, ApiError> {
        let Some(column) = <P::Entity as EntityTrait>::PrimaryKey::iter().next().map(PrimaryKeyToColumn::into_column)
        else {
            return Err(ApiError::internal(format!("the {} table has no primary key", P::NAME)));
        };
        let rows = self
            .db
            .run(self.viewer, async |tx| {
                Ok(P::Entity::find()
                    .filter(column.is_in(keys.iter().map(|key| key.0.clone())))
                    .filter(P::visible_to(&self.viewer))
                    .all(tx)
                    .await?)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| (Key(PrimaryKey::<P>::from_value_tuple(row.get_primary_key_value()), PhantomData), row))
            .collect())
    }
}

/// The request's (or subscription's) row loader.
pub fn loader<'a>(ctx: &Context<'a>) -> ApiResult<&'a DataLoader<RowLoader>> {
    ctx.data_opt::<DataLoader<RowLoader>>().ok_or_else(|| ApiError::internal("row loader missing from the context"))
}

/// The row of `P`'s table with this key, if the viewer may see it: batched
/// with every other `load` of the same table in the response.
pub async fn load<P>(ctx: &Context<'_>, key: impl Into<PrimaryKey<P>>) -> ApiResult<Option<Model<P>>>
where
    P: Policy + 'static,
    PrimaryKey<P>: Clone + Eq + Hash + Sync + Into<sea_orm::Value> + 'static,
    Model<P>: Clone + Sync,
{
    loader(ctx)?.load_one(Key::<P>::new(key)).await
}

/// A raw key kept in a [`RawId`] field (`Review.userId`), back in its
/// column's type. The field was filled from the column, so failing is a
/// bug of ours, not bad input.
pub fn raw_key<T: FromKey>(id: &RawId) -> ApiResult<T> {
    T::from_key(&id.0).ok_or_else(|| ApiError::internal(format!("{:?} is not a key of the type asked for", id.0)))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_raw_key_reads_back_in_its_columns_type_and_any_other_is_an_internal_error() {
        let uuid = Uuid::new_v4();
        assert_eq!(raw_key::<Uuid>(&RawId::from(uuid)).ok(), Some(uuid));
        assert_eq!(raw_key::<String>(&RawId::from("p1".to_owned())).ok().as_deref(), Some("p1"));
        let wrong = raw_key::<i64>(&RawId::from(uuid)).err().map(|e| e.code());
        assert_eq!(wrong, Some("INTERNAL_SERVER_ERROR"), "a bug of ours, not bad input");
    }
}
