use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, ID, SimpleObject};
use chrono::{DateTime, FixedOffset};
use uuid::Uuid;

use super::loader::PostsLoader;
use super::policy::Posts;
use crate::domain::loader::{load, raw_key};
use crate::error::{ApiError, ApiResult};
use crate::graphql::ids::{FromModel, GlobalId, RawId};
use crate::graphql::pagination::{ChildPage, PageArgs, paged};
use crate::graphql::payload::mutation_input;

/// How another user appears: their public handle and name only.
///
/// Post and comment authors are this type rather than `User` (which
/// `Review.user` and the other owner fields are): a post is read by every
/// signed-in user, and under row-level security a user sees only their own
/// account, so `author` as a `User` would be null for nearly everyone.
/// Profiles come from `public_profiles()`, which reveals these three
/// fields of any account, so `author` is never null. `authorId` beside it
/// is the raw user id, as `userId` is elsewhere.
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
#[derive(SimpleObject, FromModel, Clone)]
#[graphql(complex)]
#[from_model(entity::post::Model)]
pub struct Post {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Post.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
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

#[paged]
#[ComplexObject]
impl Post {
    /// The author's user id (raw, as `userId` is elsewhere).
    async fn author_id(&self) -> ID {
        ID(self.author_id.to_string())
    }

    /// The author's public profile (`authorId`), visible to whoever sees
    /// the post. Batched across the response.
    async fn author(&self, ctx: &Context<'_>) -> ApiResult<AuthorProfile> {
        profile(ctx, self.author_id).await
    }

    /// Comments, oldest first, a page at a time (those of every post in a
    /// response are read together, their authors too).
    async fn comments(&self, ctx: &Context<'_>, #[page] args: PageArgs) -> ApiResult<CommentConnection> {
        let post = raw_key::<Uuid>(&self.row_id)?;
        let page = loader(ctx)?.load_one(ChildPage { parent: post, args }).await?;
        Ok(page.ok_or_else(|| ApiError::internal("comment page missing from its batch"))?.into())
    }
}

/// A comment on a post; visible wherever its post is.
#[derive(SimpleObject, FromModel, Clone)]
#[graphql(complex)]
#[from_model(entity::comment::Model)]
pub struct Comment {
    /// Globally unique opaque id (`Node`): pass it to `node`, or to any
    /// argument naming a Comment.
    pub id: GlobalId,
    /// The row's key (what `id` was before this release; foreign keys such
    /// as `userId` hold it).
    pub row_id: RawId,
    /// The post commented on.
    pub post_id: RawId,
    /// Text, 1 to 10000 characters.
    pub body: String,
    /// When it was written.
    pub created_at: DateTime<FixedOffset>,
    #[graphql(skip)]
    pub author_id: Uuid,
}

#[ComplexObject]
impl Comment {
    /// The commenter's user id (raw, as `userId` is elsewhere).
    async fn author_id(&self) -> ID {
        ID(self.author_id.to_string())
    }

    /// The commenter's public profile (`authorId`), as `Post.author`.
    /// Batched across the response.
    async fn author(&self, ctx: &Context<'_>) -> ApiResult<AuthorProfile> {
        profile(ctx, self.author_id).await
    }

    /// The post commented on (`postId`). A comment is visible wherever its
    /// post is, so this is null only once the post is gone (the event of a
    /// comment deleted with its post). Batched across the response.
    async fn post(&self, ctx: &Context<'_>) -> ApiResult<Option<Post>> {
        Ok(load::<Posts>(ctx, raw_key::<Uuid>(&self.post_id)?).await?.map(Post::from))
    }
}

/// A new post (a draft unless `published`).
#[mutation_input(
    update = UpdatePostInput,
    fields = PostField,
    update_doc = "Changes to a post; omitted fields stay as they are. An empty `body` is the way to empty it."
)]
pub struct CreatePostInput {
    /// Title, 1 to 300 characters.
    pub title: String,
    /// Body text, at most 100000 characters.
    #[graphql(default)]
    pub body: String,
    /// Publish at once.
    #[graphql(default)]
    #[input(create_only)]
    pub published: bool,
}

/// A post to publish or take back to draft.
#[mutation_input]
pub struct PublishPostInput {
    /// The post.
    pub id: ID,
    /// True publishes it, false takes it back to draft.
    #[graphql(default = true)]
    pub published: bool,
}

crate::id_input!(DeletePostInput, "The post to delete (its comments go with it).");

/// A new comment.
#[mutation_input]
pub struct AddCommentInput {
    /// The post commented on; one the viewer can see.
    pub post_id: ID,
    /// Text, 1 to 10000 characters.
    pub body: String,
}

crate::id_input!(DeleteCommentInput, "The comment to delete (its author, the post's author or an admin may).");

crate::payload!(CreatePostPayload, post: Post, "The post as saved.");
crate::payload!(UpdatePostPayload, post: Post, "The post as changed.");
crate::payload!(PublishPostPayload, post: Post, "The post, published or back to draft.");
crate::payload!(DeletePostPayload, post: Post, "The post as it was before its deletion.");
crate::payload!(AddCommentPayload, comment: Comment, "The comment as saved.");
crate::payload!(DeleteCommentPayload, comment: Comment, "The comment as it was before its deletion.");

crate::connection_type!(PostConnection, PostEdge, Post, "posts");
crate::connection_type!(CommentConnection, CommentEdge, Comment, "comments");
