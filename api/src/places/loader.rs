//! Batches `Review.place` lookups: one query per response for all places,
//! instead of one per review.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use entity::place;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::policy;
use super::types::Place;
use crate::auth::{AccessSession, Viewer};
use crate::db::{LoaderDb, RequestDb};
use crate::error::ApiError;

pub struct PlaceLoader {
    db: LoaderDb,
    viewer: Viewer,
}

impl PlaceLoader {
    pub fn new(db: RequestDb, viewer: Viewer) -> Self {
        Self { db: LoaderDb::Request(db), viewer }
    }

    /// For a subscription's events: a transaction per batch, started as
    /// `viewer` in `session` (refused once the session has ended).
    pub fn from_pool(pool: crate::db::Pool, viewer: Viewer, session: AccessSession) -> Self {
        Self { db: LoaderDb::Pool(pool, session), viewer }
    }
}

impl Loader<String> for PlaceLoader {
    type Value = Place;
    type Error = ApiError;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Place>, ApiError> {
        let rows = self
            .db
            .run(self.viewer, async |tx| {
                Ok(place::Entity::find()
                    .filter(place::Column::Id.is_in(keys.iter().cloned()))
                    .filter(policy::place::visible_to(&self.viewer))
                    .all(tx)
                    .await?)
            })
            .await?;
        Ok(rows.into_iter().map(|row| (row.id.clone(), Place::from(row))).collect())
    }
}
