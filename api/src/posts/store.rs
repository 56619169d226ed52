//! Queries of the posts domain beyond [`crate::domain::store`]'s, scoped by
//! the row policies.

use std::collections::HashMap;

use entity::{comment, post};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use super::policy::Comments;
use crate::auth::Viewer;
use crate::domain;
use crate::error::ApiResult;
use crate::graphql::pagination::{Page, PageOf, SortKey};

/// Newest first; index `idx_post_newest` (`idx_post_author_id` for one author).
pub const POSTS: SortKey<post::Entity> =
    SortKey::new("post.newest", true, &[post::Column::CreatedAt, post::Column::Id]);
/// A post's comments, oldest first; index `idx_comment_post_id`.
const COMMENTS: SortKey<comment::Entity> =
    SortKey::new("comment.oldest", false, &[comment::Column::CreatedAt, comment::Column::Id]);

/// A page of comments of each of `posts`, in one statement (see
/// [`Page::fetch_each`]); a post the viewer may not see has none.
pub async fn list_comments_of(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    posts: &[Uuid],
    page: &Page,
) -> ApiResult<HashMap<Uuid, PageOf<comment::Model>>> {
    let query = domain::store::visible_rows::<Comments>(viewer, None);
    page.fetch_each(db, query, &COMMENTS, comment::Column::PostId, posts).await
}
