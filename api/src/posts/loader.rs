//! Batches author profiles: one call of `public_profiles` per response.

use std::collections::HashMap;

use async_graphql::ID;
use async_graphql::dataloader::Loader;
use sea_orm::{DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::types::AuthorProfile;
use crate::auth::Viewer;
use crate::db::{LoaderDb, RequestDb};
use crate::error::ApiError;

pub struct ProfileLoader {
    db: LoaderDb,
    viewer: Viewer,
}

#[derive(FromQueryResult)]
struct ProfileRow {
    id: Uuid,
    username: String,
    full_name: String,
}

impl ProfileLoader {
    pub fn new(db: RequestDb, viewer: Viewer) -> Self {
        Self { db: LoaderDb::Request(db), viewer }
    }

    pub fn from_pool(pool: crate::db::Pool, viewer: Viewer) -> Self {
        Self { db: LoaderDb::Pool(pool), viewer }
    }
}

impl Loader<Uuid> for ProfileLoader {
    type Value = AuthorProfile;
    type Error = ApiError;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, AuthorProfile>, ApiError> {
        let rows = self
            .db
            .run(self.viewer, async |tx| {
                Ok(ProfileRow::find_by_statement(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT id, username::text AS username, full_name::text AS full_name FROM public_profiles($1::uuid[])",
                    [keys.to_vec().into()],
                ))
                .all(tx)
                .await?)
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.id, AuthorProfile { id: ID(r.id.to_string()), username: r.username, full_name: r.full_name }))
            .collect())
    }
}
