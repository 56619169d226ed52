//! Queries of the posts domain beyond [`crate::domain::store`]'s, scoped by
//! the row policies.

use std::collections::HashMap;

use entity::{comment, post};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::policy::{Comments, Posts};
use crate::auth::Viewer;
use crate::domain::{self, Policy};
use crate::error::ApiResult;
use crate::graphql::pagination::{Page, PageOf, SortKey};

/// Newest first; index `idx_post_newest` (`idx_post_author_id` for one author).
const POSTS: SortKey<post::Entity> = SortKey::new("post.newest", true, &[post::Column::CreatedAt, post::Column::Id]);
/// A post's comments, oldest first; index `idx_comment_post_id`.
const COMMENTS: SortKey<comment::Entity> =
    SortKey::new("comment.oldest", false, &[comment::Column::CreatedAt, comment::Column::Id]);

pub async fn list_posts(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    author: Option<Uuid>,
    page: &Page,
) -> ApiResult<PageOf<post::Model>> {
    let mut query = post::Entity::find().filter(Posts::visible_to(viewer));
    if let Some(author) = author {
        query = query.filter(post::Column::AuthorId.eq(author));
    }
    page.fetch(db, query, &POSTS).await
}

/// The post if the viewer may see it (for the check of `commentChanged`).
pub async fn find_post(db: &impl ConnectionTrait, viewer: &Viewer, id: Uuid) -> ApiResult<Option<post::Model>> {
    domain::store::find_visible::<Posts>(db, viewer, id).await
}

/// A page of comments of each of `posts`, in one statement (see
/// [`Page::fetch_each`]); a post the viewer may not see has none.
pub async fn list_comments_of(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    posts: &[Uuid],
    page: &Page,
) -> ApiResult<HashMap<Uuid, PageOf<comment::Model>>> {
    let query = comment::Entity::find().filter(Comments::visible_to(viewer));
    page.fetch_each(db, query, &COMMENTS, comment::Column::PostId, posts).await
}
