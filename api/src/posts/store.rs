//! Queries of the posts domain, scoped by the row policies.

use std::collections::HashMap;

use entity::{comment, post};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::policy;
use crate::auth::Viewer;
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
    let mut query = post::Entity::find().filter(policy::posts_visible_to(viewer));
    if let Some(author) = author {
        query = query.filter(post::Column::AuthorId.eq(author));
    }
    page.fetch(db, query, &POSTS).await
}

pub async fn find_post(db: &impl ConnectionTrait, viewer: &Viewer, id: Uuid) -> ApiResult<Option<post::Model>> {
    Ok(post::Entity::find_by_id(id).filter(policy::posts_visible_to(viewer)).one(db).await?)
}

pub async fn insert_post(db: &impl ConnectionTrait, row: post::ActiveModel) -> ApiResult<post::Model> {
    Ok(row.insert(db).await?)
}

pub async fn update_post(db: &impl ConnectionTrait, row: post::ActiveModel) -> ApiResult<post::Model> {
    Ok(row.update(db).await?)
}

pub async fn delete_post(db: &impl ConnectionTrait, id: Uuid) -> ApiResult<()> {
    post::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// A page of comments of each of `posts`, in one statement (see
/// [`Page::fetch_each`]); a post the viewer may not see has none.
pub async fn list_comments_of(
    db: &impl ConnectionTrait,
    viewer: &Viewer,
    posts: &[Uuid],
    page: &Page,
) -> ApiResult<HashMap<Uuid, PageOf<comment::Model>>> {
    let query = comment::Entity::find().filter(policy::comments_visible_to(viewer));
    page.fetch_each(db, query, &COMMENTS, comment::Column::PostId, posts).await
}

pub async fn find_comment(db: &impl ConnectionTrait, viewer: &Viewer, id: Uuid) -> ApiResult<Option<comment::Model>> {
    Ok(comment::Entity::find_by_id(id).filter(policy::comments_visible_to(viewer)).one(db).await?)
}

pub async fn insert_comment(db: &impl ConnectionTrait, row: comment::ActiveModel) -> ApiResult<comment::Model> {
    Ok(row.insert(db).await?)
}

pub async fn delete_comment(db: &impl ConnectionTrait, id: Uuid) -> ApiResult<()> {
    comment::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}
