//! Batches `Review.place` lookups: one query per response for all places,
//! instead of one per review.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use entity::place;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::policy;
use super::types::Place;
use crate::auth::Viewer;
use crate::db::{RequestDb, begin_request};
use crate::error::ApiError;

pub struct PlaceLoader {
    source: Source,
    viewer: Viewer,
}

/// Where the loader reads: the request transaction of an HTTP request, or,
/// for subscription events (which have no request transaction), a short
/// transaction of its own per batch, as the same viewer.
enum Source {
    Request(RequestDb),
    Pool(DatabaseConnection),
}

impl PlaceLoader {
    pub fn new(db: RequestDb, viewer: Viewer) -> Self {
        Self { source: Source::Request(db), viewer }
    }

    pub fn from_pool(pool: DatabaseConnection, viewer: Viewer) -> Self {
        Self { source: Source::Pool(pool), viewer }
    }

    async fn query(&self, db: &impl ConnectionTrait, keys: &[String]) -> Result<Vec<place::Model>, ApiError> {
        Ok(place::Entity::find()
            .filter(place::Column::Id.is_in(keys.iter().cloned()))
            .filter(policy::place::visible_to(&self.viewer))
            .all(db)
            .await?)
    }
}

impl Loader<String> for PlaceLoader {
    type Value = Place;
    type Error = ApiError;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Place>, ApiError> {
        let rows = match &self.source {
            Source::Request(db) => self.query(&*db.lock().await?, keys).await?,
            Source::Pool(pool) => {
                let (tx, _) = begin_request(pool, self.viewer).await?;
                let rows = self.query(&tx, keys).await?;
                tx.commit().await?;
                rows
            }
        };
        Ok(rows.into_iter().map(|row| (row.id.clone(), Place::from(row))).collect())
    }
}
