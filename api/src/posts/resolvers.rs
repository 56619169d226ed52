use async_graphql::{Context, ID, Object};
use entity::{comment, post};
use sea_orm::{IntoActiveModel, Set};

use super::types::{Comment, CreatePostInput, Post, PostConnection, UpdatePostInput};
use super::{policy, store};
use crate::auth::Viewer;
use crate::error::{ApiError, ApiResult};
use crate::graphql::ContextExt;
use crate::graphql::ids::parse_uuid;
use crate::graphql::pagination::Page;

#[derive(Default)]
pub struct PostsQuery;

#[Object]
impl PostsQuery {
    /// Posts the viewer can see (published ones, and their own drafts),
    /// newest first, optionally by one author. Sign-in required.
    #[graphql(complexity = "crate::graphql::cost::page(first, last, child_complexity)")]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        author_id: Option<ID>,
        #[graphql(desc = "Page size going forward, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (from an edge or `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size going backward: the items just before `before`, or the list's last.")] last: Option<
            i32,
        >,
        #[graphql(desc = "Page back from this cursor (from an edge or `startCursor`).")] before: Option<String>,
    ) -> ApiResult<PostConnection> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let author = author_id.map(|id| parse_uuid("authorId", &id)).transpose()?;
        let page = Page::from_args(first, after.as_deref(), last, before.as_deref())?;
        let tx = ctx.tx().await?;
        let rows = store::list_posts(&*tx, &viewer, author, &page).await?;
        Ok(rows.map(Post::from).into())
    }

    /// One post; NOT_FOUND for drafts of others.
    #[graphql(complexity = "crate::graphql::cost::one(child_complexity)")]
    async fn post(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Post> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let id = parse_uuid("id", &id)?;
        let tx = ctx.tx().await?;
        store::find_post(&*tx, &viewer, id).await?.map(Post::from).ok_or_else(|| ApiError::not_found("post"))
    }

    /// The signed-in user's posts, drafts included, newest first.
    #[graphql(complexity = "crate::graphql::cost::page(first, last, child_complexity)")]
    async fn my_posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size going forward, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (from an edge or `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size going backward: the items just before `before`, or the list's last.")] last: Option<
            i32,
        >,
        #[graphql(desc = "Page back from this cursor (from an edge or `startCursor`).")] before: Option<String>,
    ) -> ApiResult<PostConnection> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let page = Page::from_args(first, after.as_deref(), last, before.as_deref())?;
        let tx = ctx.tx().await?;
        let rows = store::list_posts(&*tx, &viewer, Some(me), &page).await?;
        Ok(rows.map(Post::from).into())
    }
}

#[derive(Default)]
pub struct PostsMutation;

#[Object]
impl PostsMutation {
    /// Writes a post as the signed-in user (a draft unless `published`).
    async fn create_post(&self, ctx: &Context<'_>, input: CreatePostInput) -> ApiResult<Post> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_role(&[crate::auth::Role::User, crate::auth::Role::Admin], "write posts")?;
        let row = post::ActiveModel {
            author_id: Set(me),
            title: Set(crate::graphql::validate::text("title", &input.title, 300)?),
            body: Set(body(&input.body)?),
            published: Set(input.published),
            ..Default::default()
        };
        let tx = ctx.tx().await?;
        Ok(store::insert_post(&*tx, row).await?.into())
    }

    /// Changes a post's title or body (its author or an admin).
    async fn update_post(&self, ctx: &Context<'_>, id: ID, input: UpdatePostInput) -> ApiResult<Post> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let id = parse_uuid("id", &id)?;
        let title = input.title.as_deref().map(|t| crate::graphql::validate::text("title", t, 300)).transpose()?;
        let text = input.body.as_deref().map(body).transpose()?;
        let tx = ctx.tx().await?;
        let mut row = writable_post(&tx, &viewer, id).await?.into_active_model();
        if let Some(title) = title {
            row.title = Set(title);
        }
        if let Some(text) = text {
            row.body = Set(text);
        }
        Ok(store::update_post(&*tx, row).await?.into())
    }

    /// Publishes a post, or with `published: false` takes it back to draft.
    async fn publish_post(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = true)] published: bool,
    ) -> ApiResult<Post> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let id = parse_uuid("id", &id)?;
        let tx = ctx.tx().await?;
        let mut row = writable_post(&tx, &viewer, id).await?.into_active_model();
        row.published = Set(published);
        Ok(store::update_post(&*tx, row).await?.into())
    }

    /// Deletes a post and its comments, returning it.
    async fn delete_post(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Post> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let id = parse_uuid("id", &id)?;
        let tx = ctx.tx().await?;
        let existing = writable_post(&tx, &viewer, id).await?;
        store::delete_post(&*tx, id).await?;
        Ok(existing.into())
    }

    /// Comments on a post the viewer can see.
    async fn add_comment(&self, ctx: &Context<'_>, post_id: ID, body: String) -> ApiResult<Comment> {
        let viewer = ctx.viewer()?;
        let me = viewer.require_user()?;
        let post_id = parse_uuid("postId", &post_id)?;
        let text = crate::graphql::validate::text("body", &body, 10_000)?;
        if !policy::can_comment(&viewer) {
            return Err(ApiError::Forbidden("your role may not comment".into()));
        }
        let tx = ctx.tx().await?;
        store::find_post(&*tx, &viewer, post_id).await?.ok_or_else(|| ApiError::not_found("post"))?;
        let row =
            comment::ActiveModel { post_id: Set(post_id), author_id: Set(me), body: Set(text), ..Default::default() };
        Ok(store::insert_comment(&*tx, row).await?.into())
    }

    /// Deletes a comment (its author, the post's author, or an admin).
    async fn delete_comment(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Comment> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let id = parse_uuid("id", &id)?;
        let tx = ctx.tx().await?;
        let existing = store::find_comment(&*tx, &viewer, id).await?.ok_or_else(|| ApiError::not_found("comment"))?;
        let on =
            store::find_post(&*tx, &viewer, existing.post_id).await?.ok_or_else(|| ApiError::not_found("comment"))?;
        if !policy::can_delete_comment(&viewer, &existing, &on) {
            return Err(ApiError::Forbidden("only the comment's or the post's author may delete it".into()));
        }
        store::delete_comment(&*tx, id).await?;
        Ok(existing.into())
    }
}

/// The post if the viewer may change it; others' drafts are NOT_FOUND.
async fn writable_post(db: &sea_orm::DatabaseTransaction, viewer: &Viewer, id: uuid::Uuid) -> ApiResult<post::Model> {
    let existing = store::find_post(db, viewer, id).await?.ok_or_else(|| ApiError::not_found("post"))?;
    if !policy::can_write_post(viewer, &existing) {
        return Err(ApiError::Forbidden("only the author may change this post".into()));
    }
    Ok(existing)
}

fn body(text: &str) -> ApiResult<String> {
    if text.chars().count() > 100_000 {
        return Err(ApiError::bad_input("body", "body must have at most 100000 characters"));
    }
    Ok(text.to_owned())
}
