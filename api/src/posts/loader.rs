//! Batches what the posts domain's nested fields read: author profiles
//! (one call of `public_profiles`) and pages of comments (one statement for
//! the comments of every post of a page), per response or per subscription
//! event.

use std::collections::HashMap;

use async_graphql::ID;
use async_graphql::dataloader::Loader;
use sea_orm::{DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

use super::store;
use super::types::{AuthorProfile, Comment};
use crate::auth::{AccessSession, Viewer};
use crate::db::{LoaderDb, RequestDb};
use crate::error::ApiError;
use crate::graphql::pagination::{ChildPage, PageOf};

pub struct PostsLoader {
    db: LoaderDb,
    viewer: Viewer,
}

#[derive(FromQueryResult)]
struct ProfileRow {
    id: Uuid,
    username: String,
    full_name: String,
}

impl PostsLoader {
    pub fn new(db: RequestDb, viewer: Viewer) -> Self {
        Self { db: LoaderDb::Request(db), viewer }
    }

    /// For a subscription's events: a transaction per batch, started as
    /// `viewer` in `session` (refused once the session has ended).
    pub fn from_pool(pool: crate::db::Pool, viewer: Viewer, session: AccessSession) -> Self {
        Self { db: LoaderDb::Pool(pool, session), viewer }
    }
}

impl Loader<Uuid> for PostsLoader {
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

impl Loader<ChildPage> for PostsLoader {
    type Value = PageOf<Comment>;
    type Error = ApiError;

    async fn load(&self, keys: &[ChildPage]) -> Result<HashMap<ChildPage, PageOf<Comment>>, ApiError> {
        self.db
            .run(self.viewer, async |tx| {
                let mut pages = HashMap::with_capacity(keys.len());
                for (args, page, posts) in ChildPage::by_page(keys)? {
                    for (post, rows) in store::list_comments_of(tx, &self.viewer, &posts, &page).await? {
                        pages.insert(ChildPage { parent: post, args: args.clone() }, rows.map(Comment::from));
                    }
                }
                Ok(pages)
            })
            .await
    }
}
