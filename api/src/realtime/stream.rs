//! One subscription's events: replay from the log, then live, filtered in
//! memory by the subscription's row policy.

use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::log::{self, Operation};
use super::{ChangeEvent, Cursor, Realtime};
use crate::auth::Viewer;
use crate::error::ApiError;

/// Events read per query while replaying.
const REPLAY_BATCH: u64 = 500;

/// What a subscription asks for.
pub struct Request {
    /// Tables whose events the filter looks at.
    pub tables: &'static [&'static str],
    /// Replay what happened after this cursor first.
    pub after: Option<Cursor>,
    pub viewer: Viewer,
    /// When the viewer's token expires (unix seconds).
    pub expires_at: Option<i64>,
    /// Account changes after this position end the stream; earlier ones
    /// were already accounted for when the session was checked.
    pub checked_at: Cursor,
}

enum Next {
    Event(Arc<ChangeEvent>),
    Lagged,
    Closed,
    Expired,
}

/// The events of `request` that pass `visible`, in log order, each once.
///
/// Ends with UNAUTHENTICATED when the viewer's token expires or their
/// account is deactivated or deleted; with an error telling the client to
/// refetch when its cursor is older than the log's retention.
pub fn events(
    rt: Realtime,
    request: Request,
    visible: impl Fn(&ChangeEvent) -> bool + Send + 'static,
) -> impl Stream<Item = Result<Arc<ChangeEvent>, ApiError>> + Send {
    async_stream::stream! {
        // Subscribe before reading the head, so nothing falls in between.
        let mut live = rt.subscribe();
        let mut last = request.after.unwrap_or_else(|| rt.head());
        let mut replay = request.after.is_some();
        let mut tables = request.tables.to_vec();
        tables.push("users");
        let expiry = expiry_sleep(request.expires_at);
        tokio::pin!(expiry);
        loop {
            if replay {
                replay = false;
                match log::horizon(rt.pool()).await {
                    Ok(horizon) if last < horizon => {
                        yield Err(cursor_expired());
                        return;
                    }
                    Ok(_) => {}
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                }
                loop {
                    let batch = match log::read_after(rt.pool(), last, &tables, REPLAY_BATCH).await {
                        Ok(batch) => batch,
                        Err(err) => {
                            yield Err(err);
                            return;
                        }
                    };
                    let full = batch.len() as u64 == REPLAY_BATCH;
                    for event in batch {
                        last = event.cursor;
                        // Account changes from before the session check are
                        // history (it may have been reactivated since).
                        if event.cursor > request.checked_at && ends_session(&request.viewer, &event) {
                            yield Err(session_ended());
                            return;
                        }
                        if visible(&event) {
                            yield Ok(Arc::new(event));
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
            let next = tokio::select! {
                () = &mut expiry => Next::Expired,
                received = live.recv() => match received {
                    Ok(event) => Next::Event(event),
                    Err(RecvError::Lagged(_)) => Next::Lagged,
                    Err(RecvError::Closed) => Next::Closed,
                },
            };
            match next {
                Next::Event(event) => {
                    // Already delivered by the replay: the seam has no duplicates.
                    if event.cursor <= last {
                        continue;
                    }
                    last = event.cursor;
                    if ends_session(&request.viewer, &event) {
                        yield Err(session_ended());
                        return;
                    }
                    if visible(&event) {
                        yield Ok(event);
                    }
                }
                // Fell behind the shared buffer: catch up from the log
                // rather than slow down every other subscriber.
                Next::Lagged => {
                    rt.record_lag();
                    replay = true;
                }
                Next::Closed => {
                    yield Err(ApiError::Unavailable("the server is shutting down; resubscribe with your last cursor".into()));
                    return;
                }
                Next::Expired => {
                    yield Err(ApiError::Unauthenticated("the token has expired; sign in again and resubscribe with your last cursor".into()));
                    return;
                }
            }
        }
    }
}

async fn expiry_sleep(expires_at: Option<i64>) {
    match expires_at {
        Some(at) => {
            let left = at.saturating_sub(chrono::Utc::now().timestamp());
            tokio::time::sleep(std::time::Duration::from_secs(u64::try_from(left).unwrap_or(0))).await;
        }
        None => std::future::pending().await,
    }
}

/// The viewer's own account was deactivated or deleted.
fn ends_session(viewer: &Viewer, event: &ChangeEvent) -> bool {
    let Some(me) = viewer.user_id() else { return false };
    event.table == "users"
        && event.owner == Some(me)
        && (event.op == Operation::Delete
            || event.new_row.as_ref().and_then(|row| row.get("is_active")) == Some(&serde_json::Value::Bool(false)))
}

fn session_ended() -> ApiError {
    ApiError::Unauthenticated("this account is no longer active".into())
}

fn cursor_expired() -> ApiError {
    ApiError::CursorExpired(
        "the cursor is older than the change log's retention; refetch, then subscribe without it".into(),
    )
}
