//! Batches author profiles: one call of `public_profiles` per response.

use std::collections::HashMap;

use async_graphql::ID;
use async_graphql::dataloader::Loader;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::types::AuthorProfile;
use crate::auth::Viewer;
use crate::db::{RequestDb, begin_request};
use crate::error::ApiError;

pub struct ProfileLoader {
    source: Source,
    viewer: Viewer,
}

/// Like `PlaceLoader`: the request transaction, or a short one per batch
/// for subscription events.
enum Source {
    Request(RequestDb),
    Pool(DatabaseConnection),
}

#[derive(FromQueryResult)]
struct ProfileRow {
    id: Uuid,
    username: String,
    full_name: String,
}

impl ProfileLoader {
    pub fn new(db: RequestDb, viewer: Viewer) -> Self {
        Self { source: Source::Request(db), viewer }
    }

    pub fn from_pool(pool: DatabaseConnection, viewer: Viewer) -> Self {
        Self { source: Source::Pool(pool), viewer }
    }

    async fn query(db: &impl ConnectionTrait, keys: &[Uuid]) -> Result<Vec<ProfileRow>, ApiError> {
        Ok(ProfileRow::find_by_statement(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, username::text AS username, full_name::text AS full_name FROM public_profiles($1::uuid[])",
            [keys.to_vec().into()],
        ))
        .all(db)
        .await?)
    }
}

impl Loader<Uuid> for ProfileLoader {
    type Value = AuthorProfile;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, AuthorProfile>, ApiError> {
        let rows = match &self.source {
            Source::Request(db) => Self::query(&*db.lock().await?, keys).await?,
            Source::Pool(pool) => {
                let (tx, _) = begin_request(pool, self.viewer).await?;
                let rows = Self::query(&tx, keys).await?;
                tx.commit().await?;
                rows
            }
        };
        Ok(rows
            .into_iter()
            .map(|r| (r.id, AuthorProfile { id: ID(r.id.to_string()), username: r.username, full_name: r.full_name }))
            .collect())
    }
}
