use async_graphql::{Context, ID, Object};
use entity::{comment, post};
use sea_orm::{IntoActiveModel, Set};

use super::policy::{self, Comments, Posts};
use super::store;
use super::types::{
    AddCommentInput, AddCommentPayload, CreatePostInput, CreatePostPayload, DeleteCommentInput, DeleteCommentPayload,
    DeletePostInput, DeletePostPayload, Post, PostConnection, PostField, PublishPostInput, PublishPostPayload,
    UpdatePostInput, UpdatePostPayload,
};
use crate::domain::resolve::InputField;
use crate::domain::{self, Policy};
use crate::error::{ApiError, ApiResult, FoundExt};
use crate::graphql::ids::parse_uuid;
use crate::graphql::pagination::{Page, paged};
use crate::graphql::{ContextExt, validate};

#[derive(Default)]
pub struct PostsQuery;

#[paged]
#[Object]
impl PostsQuery {
    /// Posts the viewer can see (published ones, and their own drafts),
    /// newest first, optionally by one author. Sign-in required.
    async fn posts(&self, ctx: &Context<'_>, author_id: Option<ID>, #[page] page: Page) -> ApiResult<PostConnection> {
        ctx.viewer()?.require_user()?;
        let author = author_id.map(|id| parse_uuid("authorId", &id)).transpose()?;
        Ok(domain::resolve::page::<Posts>(ctx, author, &page, &store::POSTS).await?.into())
    }

    /// One post, or null if there is none the viewer may see (drafts of
    /// others look the same as missing posts).
    #[graphql(complexity = "crate::graphql::cost::one(child_complexity)")]
    async fn post(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Post>> {
        ctx.viewer()?.require_user()?;
        Ok(domain::resolve::one::<Posts>(ctx, &id).await.found()?.map(Post::from))
    }

    /// The signed-in user's posts, drafts included, newest first.
    async fn my_posts(&self, ctx: &Context<'_>, #[page] page: Page) -> ApiResult<PostConnection> {
        Ok(domain::resolve::my_page::<Posts>(ctx, &page, &store::POSTS).await?.into())
    }
}

#[derive(Default)]
pub struct PostsMutation;

#[Object]
impl PostsMutation {
    /// Writes a post as the signed-in user (a draft unless `published`).
    async fn create_post(&self, ctx: &Context<'_>, input: CreatePostInput) -> ApiResult<CreatePostPayload> {
        domain::resolve::create::<Posts, _>(ctx, input.into_fields()).await.map(Into::into)
    }

    /// Changes a post's title or body (its author or an admin).
    async fn update_post(&self, ctx: &Context<'_>, input: UpdatePostInput) -> ApiResult<UpdatePostPayload> {
        domain::resolve::update::<Posts, _>(ctx, input).await.map(Into::into)
    }

    /// Publishes a post, or with `published: false` takes it back to draft.
    async fn publish_post(&self, ctx: &Context<'_>, input: PublishPostInput) -> ApiResult<PublishPostPayload> {
        let viewer = ctx.viewer()?;
        let id = domain::resolve::key::<Posts>("id", &input.id)?;
        let tx = ctx.tx().await?;
        let mut row = domain::store::writable::<Posts>(&*tx, &viewer, id).await?.into_active_model();
        row.published = Set(input.published);
        Ok((domain::store::update(&*tx, row).await?, input.client_mutation_id).into())
    }

    /// Deletes a post and its comments, returning it.
    async fn delete_post(&self, ctx: &Context<'_>, input: DeletePostInput) -> ApiResult<DeletePostPayload> {
        domain::resolve::delete::<Posts, _>(ctx, input).await.map(Into::into)
    }

    /// Comments on a post the viewer can see.
    async fn add_comment(&self, ctx: &Context<'_>, input: AddCommentInput) -> ApiResult<AddCommentPayload> {
        let viewer = ctx.viewer()?;
        let me = Comments::require_writer(&viewer)?;
        let post_id = parse_uuid("postId", &input.post_id)?;
        let text = validate::text("body", &input.body, 10_000)?;
        let tx = ctx.tx().await?;
        domain::store::visible::<Posts>(&*tx, &viewer, post_id).await?;
        let row =
            comment::ActiveModel { post_id: Set(post_id), author_id: Set(me), body: Set(text), ..Default::default() };
        Ok((domain::store::insert(&*tx, row).await?, input.client_mutation_id).into())
    }

    /// Deletes a comment (its author, the post's author, or an admin).
    async fn delete_comment(&self, ctx: &Context<'_>, input: DeleteCommentInput) -> ApiResult<DeleteCommentPayload> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let id = domain::resolve::key::<Comments>("id", &input.id)?;
        let tx = ctx.tx().await?;
        let existing = domain::store::visible::<Comments>(&*tx, &viewer, id).await?;
        // A visible comment's post is visible (the comment policy says so).
        let on = domain::store::visible::<Posts>(&*tx, &viewer, existing.post_id).await?;
        if !policy::can_delete_comment(&viewer, &existing, &on) {
            return Err(Comments::write_denied());
        }
        Ok((domain::store::remove(&*tx, existing).await?, input.client_mutation_id).into())
    }
}

impl InputField for PostField {
    type Row = post::ActiveModel;

    fn set(self, row: &mut post::ActiveModel) -> ApiResult<()> {
        match self {
            Self::Title(title) => row.title = Set(validate::text("title", &title, 300)?),
            Self::Body(body) => {
                // May be empty (a title-only post), unlike every other text.
                if body.chars().count() > 100_000 {
                    return Err(ApiError::bad_input("body", "body must have at most 100000 characters"));
                }
                row.body = Set(body);
            }
            Self::Published(published) => row.published = Set(published),
        }
        Ok(())
    }
}
