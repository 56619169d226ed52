use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, ID, InputObject, SimpleObject};
use chrono::{DateTime, FixedOffset};
use uuid::Uuid;

use super::loader::PostsLoader;
use crate::error::{ApiError, ApiResult};
use crate::graphql::ids;
use crate::graphql::pagination::{ChildPage, PageArgs};

/// How another user appears: their public handle and name only.
#[derive(SimpleObject, Clone)]
pub struct AuthorProfile {
    /// The user's id.
    pub id: ID,
    /// Public handle.
    pub username: String,
    /// Display name.
    pub full_name: String,
}

fn loader<'a>(ctx: &Context<'a>) -> ApiResult<&'a DataLoader<PostsLoader>> {
    ctx.data_opt::<DataLoader<PostsLoader>>().ok_or_else(|| ApiError::internal("posts loader missing from the context"))
}

async fn profile(ctx: &Context<'_>, id: Uuid) -> ApiResult<AuthorProfile> {
    loader(ctx)?.load_one(id).await?.ok_or_else(|| ApiError::not_found("author"))
}

/// A post. Drafts are visible to their author only.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Post {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Post.
    pub id: ID,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: ID,
    /// Title, 1 to 300 characters.
    pub title: String,
    /// Body text.
    pub body: String,
    /// Published posts are visible to every signed-in user.
    pub published: bool,
    /// When the post was created.
    pub created_at: DateTime<FixedOffset>,
    /// When the post last changed.
    pub updated_at: DateTime<FixedOffset>,
    #[graphql(skip)]
    pub author_id: Uuid,
}

#[ComplexObject]
impl Post {
    /// The author's public profile.
    async fn author(&self, ctx: &Context<'_>) -> ApiResult<AuthorProfile> {
        profile(ctx, self.author_id).await
    }

    /// Comments, oldest first, a page at a time (those of every post in a
    /// response are read together, their authors too).
    #[graphql(complexity = "crate::graphql::cost::page(first, last, child_complexity)")]
    async fn comments(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size going forward, at most 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Continue after this cursor (from an edge or `endCursor`).")] after: Option<String>,
        #[graphql(desc = "Page size going backward: the items just before `before`, or the list's last.")] last: Option<
            i32,
        >,
        #[graphql(desc = "Page back from this cursor (from an edge or `startCursor`).")] before: Option<String>,
    ) -> ApiResult<CommentConnection> {
        let args = PageArgs { first, after, last, before };
        // Bad arguments fail this field alone, naming the argument.
        args.page()?;
        let post = Uuid::parse_str(self.row_id.as_str()).map_err(ApiError::internal)?;
        let page = loader(ctx)?.load_one(ChildPage { parent: post, args }).await?;
        Ok(page.ok_or_else(|| ApiError::internal("comment page missing from its batch"))?.into())
    }
}

impl From<entity::post::Model> for Post {
    fn from(m: entity::post::Model) -> Self {
        Self {
            id: ids::global("Post", m.id),
            row_id: ID(m.id.to_string()),
            title: m.title,
            body: m.body,
            published: m.published,
            created_at: m.created_at,
            updated_at: m.updated_at,
            author_id: m.author_id,
        }
    }
}

/// A comment on a post; visible wherever its post is.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Comment {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Comment.
    pub id: ID,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: ID,
    /// The post commented on.
    pub post_id: ID,
    /// Text, 1 to 10000 characters.
    pub body: String,
    /// When it was written.
    pub created_at: DateTime<FixedOffset>,
    #[graphql(skip)]
    pub author_id: Uuid,
}

#[ComplexObject]
impl Comment {
    /// The commenter's public profile.
    async fn author(&self, ctx: &Context<'_>) -> ApiResult<AuthorProfile> {
        profile(ctx, self.author_id).await
    }
}

impl From<entity::comment::Model> for Comment {
    fn from(m: entity::comment::Model) -> Self {
        Self {
            id: ids::global("Comment", m.id),
            row_id: ID(m.id.to_string()),
            post_id: ID(m.post_id.to_string()),
            body: m.body,
            created_at: m.created_at,
            author_id: m.author_id,
        }
    }
}

/// A new post (a draft unless `published`).
#[derive(InputObject)]
pub struct CreatePostInput {
    /// Title, 1 to 300 characters.
    pub title: String,
    /// Body text, at most 100000 characters.
    #[graphql(default)]
    pub body: String,
    /// Publish at once.
    #[graphql(default)]
    pub published: bool,
}

/// Changes to a post; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdatePostInput {
    /// Title, 1 to 300 characters.
    pub title: Option<String>,
    /// Body text.
    pub body: Option<String>,
}

crate::connection_type!(PostConnection, PostEdge, Post, "posts");
crate::connection_type!(CommentConnection, CommentEdge, Comment, "comments");
