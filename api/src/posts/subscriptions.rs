//! Live posts and comments. Visibility changes with publishing: a draft's
//! events reach only its author; once published, its events reach every
//! signed-in viewer; when unpublished or deleted, those viewers receive a
//! DELETED event and nothing after.

use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::{Context, ID, SimpleObject, Subscription};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use super::policy;
use super::store;
use super::types::{Comment, Post};
use crate::auth::Viewer;
use crate::error::ApiError;
use crate::graphql::ContextExt;
use crate::graphql::ids::parse_uuid;
use crate::realtime::{ChangeEvent, ChangeOperation, Operation, stream};

/// A change to a post, as the viewer sees it.
#[derive(SimpleObject)]
pub struct PostChangeEvent {
    /// What happened, for this viewer: a post unpublished is DELETED for
    /// those who may no longer see it.
    pub operation: ChangeOperation,
    /// The post after the change (before it, for DELETED).
    pub post: Post,
    /// Pass as `after` when resubscribing to continue right after this event.
    pub cursor: String,
}

/// A new comment.
#[derive(SimpleObject)]
pub struct CommentAddedEvent {
    /// The comment.
    pub comment: Comment,
    /// Pass as `after` when resubscribing to continue right after this event.
    pub cursor: String,
}

fn published(row: Option<&Value>) -> Option<bool> {
    row?.get("published")?.as_bool()
}

/// What a post event means for `viewer`: the operation to report, or None
/// when they may see neither the old nor the new row.
fn post_event_for(viewer: &Viewer, event: &ChangeEvent) -> Option<ChangeOperation> {
    let author = event.owner?;
    let visible = |row: Option<&Value>| published(row).is_some_and(|p| policy::post_visible(viewer, author, p));
    let (before, after) = (visible(event.old_row.as_ref()), visible(event.new_row.as_ref()));
    match (event.op, before, after) {
        (Operation::Insert, _, true) => Some(ChangeOperation::Inserted),
        (Operation::Update, true, true) => Some(ChangeOperation::Updated),
        // Published: it appears for this viewer.
        (Operation::Update, false, true) => Some(ChangeOperation::Inserted),
        // Unpublished: it disappears for this viewer.
        (Operation::Update, true, false) | (Operation::Delete, true, _) => Some(ChangeOperation::Deleted),
        _ => None,
    }
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
    ) -> Result<impl Stream<Item = Result<PostChangeEvent, ApiError>> + use<>, ApiError> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let author = author_id.map(|id| parse_uuid("authorId", &id)).transpose()?;
        let request = ctx.change_request(&["post"], after.as_deref())?;
        let visible = move |event: &ChangeEvent| {
            event.table == "post"
                && author.is_none_or(|a| event.owner == Some(a))
                && post_event_for(&viewer, event).is_some()
        };
        Ok(stream::events(ctx.realtime()?, request, visible).map(move |item| {
            let event = item?;
            let operation = post_event_for(&viewer, &event).ok_or(ApiError::Internal)?;
            let row =
                if operation == ChangeOperation::Deleted { event.old_row.as_ref() } else { event.new_row.as_ref() };
            let model: entity::post::Model =
                serde_json::from_value(row.cloned().unwrap_or_default()).map_err(ApiError::internal)?;
            Ok(PostChangeEvent { operation, post: model.into(), cursor: event.cursor.encode() })
        }))
    }

    /// Comments added to a post the viewer can see. Ends with NOT_FOUND
    /// when the post is unpublished or deleted for this viewer.
    async fn comment_added(
        &self,
        ctx: &Context<'_>,
        post_id: ID,
        after: Option<String>,
    ) -> Result<impl Stream<Item = Result<CommentAddedEvent, ApiError>> + use<>, ApiError> {
        let viewer = ctx.viewer()?;
        viewer.require_user()?;
        let post_id = parse_uuid("postId", &post_id)?;
        // Whether the viewer may see the post now: checked once here, then
        // kept current from the post's own events in the same stream.
        let post = {
            let realtime = ctx.realtime()?;
            let (tx, _) = crate::db::begin_request(realtime.pool(), viewer).await?;
            let post = store::find_post(&tx, &viewer, post_id).await?;
            realtime.pool().commit(tx).await?;
            post.ok_or_else(|| ApiError::not_found("post"))?
        };
        let author = post.author_id;
        let key = post_id.to_string();
        let can_see = AtomicBool::new(true);
        let request = ctx.change_request(&["comment", "post"], after.as_deref())?;
        let visible = move |event: &ChangeEvent| {
            if event.table == "post" && event.key == key {
                let now = event.op != Operation::Delete
                    && published(event.new_row.as_ref()).is_some_and(|p| policy::post_visible(&viewer, author, p));
                let was = can_see.swap(now, Ordering::SeqCst);
                // Reported once, as the end of the stream (below).
                return was && !now;
            }
            event.table == "comment"
                && event.op == Operation::Insert
                && can_see.load(Ordering::SeqCst)
                && event.new_row.as_ref().and_then(|r| r.get("post_id")).and_then(Value::as_str) == Some(key.as_str())
        };
        Ok(stream::events(ctx.realtime()?, request, visible).map(|item| {
            let event = item?;
            if event.table == "post" {
                return Err(ApiError::not_found("post"));
            }
            Ok(CommentAddedEvent {
                comment: event.decode_row::<entity::comment::Model>()?.into(),
                cursor: event.cursor.encode(),
            })
        }))
    }
}
