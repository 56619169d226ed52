//! Live posts and comments. Visibility changes with publishing: a draft's
//! events reach only its author; once published, its events reach every
//! signed-in viewer; when unpublished or deleted, those viewers receive a
//! DELETED event and nothing after.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, ID, OutputType, Positioned, ServerResult, Subscription, Value as GqlValue,
};
use serde_json::Value;
use uuid::Uuid;

use super::policy::{Comments, Posts};
use super::types::{Comment, Post};
use crate::auth::Viewer;
use crate::domain::{self, Policy};
use crate::error::ApiError;
use crate::graphql::ContextExt;
use crate::graphql::ids::parse_uuid;
use crate::realtime::{
    ChangeEvent, ChangeOperation, Changes, Cursor, EventSchema, Operation, Published, change, owned_changes,
};

impl Published for Post {
    type Policy = Posts;
    const EVENT: EventSchema =
        EventSchema::new("PostChangeEvent", "A change to a post, as the viewer sees it.", "post")
            .operation_doc(concat!(
                "What happened, for this viewer: a post unpublished is DELETED for\n",
                "those who may no longer see it."
            ))
            .field_doc(concat!(
                "The post after the change (before it, for DELETED). A DELETED event\n",
                "replayed from `after` for a post the viewer may no longer see\n",
                "(unpublished or deleted since) is a tombstone: only `id`, the author\n",
                "and `createdAt` are the post's; `title` and `body` are empty,\n",
                "`published` is false and `updatedAt` is `createdAt`. Drop the post\n",
                "by its `id`."
            ));

    /// What identifies the post (to drop it from a cache), none of its
    /// content, nor when it was last edited.
    fn tombstone(post: entity::post::Model) -> entity::post::Model {
        let (title, body, updated_at) = (String::new(), String::new(), post.created_at);
        entity::post::Model { title, body, published: false, updated_at, ..post }
    }
}

/// Visible only through [`CommentWatch`], which follows the post.
impl Published for Comment {
    type Policy = Comments;
    const EVENT: EventSchema = EventSchema::new("CommentChangeEvent", "A change to a comment on a post.", "comment");
}

/// A comment as the deprecated `commentAdded` delivers it: the same
/// `Comment` in the additions-only `CommentAddedEvent` (no `operation`) its
/// clients were generated against.
pub struct AddedComment(Comment);

impl From<entity::comment::Model> for AddedComment {
    fn from(model: entity::comment::Model) -> Self {
        Self(model.into())
    }
}

impl OutputType for AddedComment {
    fn type_name() -> Cow<'static, str> {
        Comment::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Comment::create_type_info(registry)
    }

    async fn resolve(&self, ctx: &ContextSelectionSet<'_>, field: &Positioned<Field>) -> ServerResult<GqlValue> {
        self.0.resolve(ctx, field).await
    }
}

impl Published for AddedComment {
    type Policy = Comments;
    const EVENT: EventSchema =
        EventSchema::new("CommentAddedEvent", "A new comment.", "comment").field_doc("The comment.").additions_only();
}

#[derive(Default)]
pub struct PostsSubscription;

#[Subscription]
impl PostsSubscription {
    /// Posts as they are written, published, unpublished and deleted,
    /// optionally by one author, filtered by what the viewer may see.
    async fn post_changed(
        &self,
        ctx: &Context<'_>,
        author_id: Option<ID>,
        after: Option<String>,
    ) -> Result<Changes<Post>, ApiError> {
        ctx.viewer()?.require_user()?;
        let author = author_id.map(|id| parse_uuid("authorId", &id)).transpose()?;
        owned_changes(ctx, author, after.as_deref())
    }

    /// Comments added to a post the viewer can see. Ends with NOT_FOUND
    /// when the post is unpublished or deleted for this viewer after the
    /// subscription started. With `after`, first replays the comments added
    /// since that cursor that the viewer may see now (whatever the post's
    /// state was in between).
    #[graphql(deprecation = "Use commentChanged")]
    async fn comment_added(
        &self,
        ctx: &Context<'_>,
        post_id: ID,
        after: Option<String>,
    ) -> Result<Changes<AddedComment>, ApiError> {
        watch_comments(ctx, post_id, after, Watched::Additions).await
    }

    /// Comments of a post the viewer can see as they are added, changed and
    /// deleted. Ends with NOT_FOUND when the post is unpublished or deleted
    /// for this viewer after the subscription started. With `after`, first
    /// replays what happened to the post's comments since that cursor that
    /// the viewer may see now: a comment added and deleted since arrives as
    /// its deletion alone (whatever the post's state was in between).
    async fn comment_changed(
        &self,
        ctx: &Context<'_>,
        post_id: ID,
        after: Option<String>,
    ) -> Result<Changes<Comment>, ApiError> {
        watch_comments(ctx, post_id, after, Watched::Changes).await
    }
}

/// The stream of `commentAdded` and `commentChanged`: the post checked once
/// as the viewer, then its comments' events while it stays visible.
async fn watch_comments<E: Published<Policy = Comments>>(
    ctx: &Context<'_>,
    post_id: ID,
    after: Option<String>,
    watched: Watched,
) -> Result<Changes<E>, ApiError> {
    let viewer = ctx.viewer()?;
    viewer.require_user()?;
    let post_id = parse_uuid("postId", &post_id)?;
    let request = ctx.change_request(&["comment", "post"], after.as_deref())?;
    // Whether the viewer may see the post now: checked once here, then
    // kept current from the post's own events in the same stream. The
    // log's head is read first: the check sees every event up to it.
    let realtime = ctx.realtime()?;
    let checked_at = realtime.committed_head().await?;
    let db = ctx.reader()?;
    let post = db.run(viewer, async |tx| domain::store::find_visible::<Posts>(tx, &viewer, post_id).await).await?;
    let post = post.ok_or_else(|| ApiError::not_found("post"))?;
    let mut watch = CommentWatch::new(viewer, post_id, post.author_id, checked_at, watched);
    // The post's event that hides it passes the filter, and so ends the
    // stream with NOT_FOUND (see `realtime::change::stream`).
    Ok(change::stream(realtime, request, move |event| watch.on(event)))
}

/// Which of a post's comment events a subscription wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watched {
    /// New comments only (`commentAdded`).
    Additions,
    /// Every change (`commentChanged`).
    Changes,
}

/// Whether a `commentAdded` or `commentChanged` subscriber may see its post, as a small state
/// machine over the post's events.
///
/// It starts `Visible` (the resolver just checked). Post events up to the
/// log's head before that check are history: the check saw their outcome,
/// so a replay from an old cursor never ends the stream on a past state (a
/// post that was a draft then and is published now). A later event that
/// hides the post moves it to `Gone`, reported once as the stream's end;
/// comments are passed only while `Visible` (a replay's comments are further
/// filtered by what the viewer may see now, see `realtime::stream`).
struct CommentWatch {
    viewer: Viewer,
    post: String,
    author: Uuid,
    checked_at: Cursor,
    state: PostState,
    watched: Watched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PostState {
    Visible,
    Gone,
}

impl CommentWatch {
    fn new(viewer: Viewer, post: Uuid, author: Uuid, checked_at: Cursor, watched: Watched) -> Self {
        Self { viewer, post: post.to_string(), author, checked_at, state: PostState::Visible, watched }
    }

    /// What `event` means for the subscriber: a comment (INSERTED), the end
    /// of the stream (a post event reported as DELETED), or nothing.
    fn on(&mut self, event: &ChangeEvent) -> Option<ChangeOperation> {
        if event.table == "post" {
            if event.key != self.post || event.cursor <= self.checked_at {
                return None;
            }
            let visible = event.op != Operation::Delete
                && event.new_row.as_ref().is_some_and(|row| Posts::can_read(&self.viewer, Some(self.author), row));
            let was = self.state;
            self.state = if visible { PostState::Visible } else { PostState::Gone };
            return (was == PostState::Visible && self.state == PostState::Gone).then_some(ChangeOperation::Deleted);
        }
        // A deletion's row is the comment as it was, with its post.
        let on_this_post =
            event.row().and_then(|r| r.get("post_id")).and_then(Value::as_str) == Some(self.post.as_str());
        if event.table != "comment" || self.state != PostState::Visible || !on_this_post {
            return None;
        }
        match (event.op, self.watched) {
            (Operation::Insert, _) => Some(ChangeOperation::Inserted),
            (Operation::Update, Watched::Changes) => Some(ChangeOperation::Updated),
            (Operation::Delete, Watched::Changes) => Some(ChangeOperation::Deleted),
            (_, Watched::Additions) => None,
        }
    }
}
