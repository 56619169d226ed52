//! Batches `Review.place` lookups: one query per response for all places,
//! instead of one per review.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use entity::place;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::policy;
use super::types::Place;
use crate::auth::Viewer;
use crate::db::RequestDb;
use crate::error::ApiError;

pub struct PlaceLoader {
    db: RequestDb,
    viewer: Viewer,
}

impl PlaceLoader {
    pub fn new(db: RequestDb, viewer: Viewer) -> Self {
        Self { db, viewer }
    }
}

impl Loader<String> for PlaceLoader {
    type Value = Place;
    type Error = ApiError;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Place>, ApiError> {
        let tx = self.db.lock().await?;
        let rows = place::Entity::find()
            .filter(place::Column::Id.is_in(keys.iter().cloned()))
            .filter(policy::place::visible_to(&self.viewer))
            .all(&*tx)
            .await?;
        Ok(rows.into_iter().map(|row| (row.id.clone(), Place::from(row))).collect())
    }
}
