//! One subscription's events: replay from the log, then live, filtered in
//! memory by the subscription's row policy.
//!
//! A replay from a client's cursor delivers only what the viewer may see
//! now. Of the events committed before the replay started (history), a
//! row's creations and changes are replayed only if the viewer may still see
//! the row (asked of PostgreSQL per batch, see `realtime::now`): a post
//! published and unpublished since, or a row since deleted, shows nothing of
//! its history. Its removal (a deletion, a post unpublished: a DELETED event)
//! is replayed when the viewer could see the row just before it, because a
//! client that fetched data after taking its cursor may hold the row and
//! must drop it. If the viewer may not see the row now, that removal is a
//! tombstone ([`Delivery::tombstone`]): it identifies the row and nothing
//! more, as its content is no longer theirs to read. Events committed after
//! the replay started are delivered as live ones are, by the in-memory
//! policy.
//!
//! A subscription without a cursor starts where its account was checked
//! (`Request::checked_at`), not where the broadcast is when the stream is
//! first polled: an account change committed in between (a demotion racing
//! the subscribe) must end the stream, so the events of that window are read
//! from the log. They are not history: they committed after the
//! subscription was accepted, so they are delivered as live ones would be.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::drivers;
use super::log::{self, Operation};
use super::shared::{self, Claim};
use super::{ChangeEvent, ChangeOperation, Cursor, Live, Realtime, cursor, now};
use crate::auth::{AccessSession, Role, Viewer};
use crate::error::ApiError;

/// Events read per query while replaying.
const REPLAY_BATCH: u64 = 500;

/// What a subscription asks for.
pub struct Request {
    /// Tables whose events the filter looks at.
    pub tables: &'static [&'static str],
    /// Replay what happened after this cursor first.
    pub after: Option<Cursor>,
    /// The viewer as the database knew them when the subscription started.
    pub viewer: Viewer,
    /// The access token's session: the stream ends at its deletion (signed
    /// out, refresh token reused, password changed) in log order, so no
    /// event after it is delivered, and every transaction the stream starts
    /// checks it as a request's start does.
    pub session: AccessSession,
    /// When the viewer's token expires (unix seconds).
    pub expires_at: Option<i64>,
    /// Account changes after this position end the stream; earlier ones
    /// were already accounted for when the session was checked.
    pub checked_at: Cursor,
    /// Set by the websocket operation when its subscribers' payloads may be
    /// shared (see [`super::shared`]): live deliveries then go through the
    /// event's shared slots.
    pub share: Option<shared::Sharing>,
}

/// One event for the subscriber, and what it means for them.
pub struct Delivery {
    pub event: Arc<ChangeEvent>,
    /// The operation as this viewer sees it (a post unpublished is DELETED
    /// for those who may no longer see it).
    pub operation: ChangeOperation,
    /// The event's cursor, signed for this viewer.
    pub cursor: String,
    /// A replayed removal of a row the viewer may not see now (unpublished
    /// or deleted since): show only what identifies the row, none of its
    /// content. Only ever set on a DELETED operation. `postChanged` blanks
    /// the post; the other feeds' rows are the viewer's own, public, or
    /// shown by role, so their last visible state is still theirs to read.
    pub tombstone: bool,
}

enum Next {
    Event(Arc<Live>),
    Lagged,
    Closed,
    Expired,
}

/// The events of `request` that `filter` lets through (it returns what the
/// event means for the viewer, or `None`), in log order, each once. The
/// filter sees every event of the request's tables, in order, exactly once.
///
/// Ends with UNAUTHENTICATED when the viewer's token expires or their
/// account is deactivated or deleted; with FORBIDDEN when their role
/// changes (resubscribe to continue as the new role); with CURSOR_EXPIRED
/// when the cursor is older than the log's retention and CURSOR_INVALID when
/// it is ahead of the log.
///
/// A subscription whose payloads are shared ([`Request::share`]) runs in a
/// task of its own (see [`driven`]); the others run in the caller's.
pub fn events(
    rt: Realtime,
    request: Request,
    filter: impl FnMut(&ChangeEvent) -> Option<ChangeOperation> + Send + 'static,
) -> BoxStream<'static, Result<Delivery, ApiError>> {
    // Both boxed: the source's state is large, and an `Either` of the two
    // would be as large as it even where the source lives in the task.
    if let Some(sharing) = &request.share {
        let tap = sharing.tap.clone();
        driven(source(rt, request, filter), tap).boxed()
    } else {
        source(rt, request, filter).boxed()
    }
}

/// What [`driven`]'s task hands the subscription: an item, and where to
/// send, once the item's response is out, the way to hand over the next.
/// One-shot channels only: a channel's buffer would be allocated per
/// subscription and held for as long as it waits (memory per idle
/// subscriber).
struct Handed {
    item: Result<Delivery, ApiError>,
    next: oneshot::Sender<oneshot::Sender<Handed>>,
}

/// `source` polled apart from the operation's task (with the connection's
/// other sources, [`super::drivers`], or in a task of its own), its items
/// handed over one at a time.
///
/// A shared delivery, nearly all of a busy feed's, is written to the socket
/// by the source itself ([`shared::Tap`]); only the others (a payload this
/// subscriber executes, a replayed event, the end) come out as items. Run
/// under async-graphql, every live event woke the operation's task and went
/// through its response stream's layers (a `FuturesUnordered`, two
/// generated streams, a map and a flatten) just to reach the source, about
/// a seventh of a delivery's CPU in `bench fanout`'s profile. Here the
/// event wakes the source's task, which polls it directly.
///
/// Order is kept as before: the task hands over an item and waits until the
/// subscription is polled again, which the operation does only after it
/// sent the item's response, before it delivers anything else. The source
/// starts when the subscription is first polled (not before the operation
/// runs it) and is stopped when the subscription is dropped (a `complete`,
/// the connection's end), so it never writes for an operation that is gone.
fn driven(
    source: impl Stream<Item = Result<Delivery, ApiError>> + Send + 'static,
    tap: Arc<shared::Tap>,
) -> impl Stream<Item = Result<Delivery, ApiError>> + Send {
    let (hand, mut handed) = oneshot::channel::<Handed>();
    // Made now, started at the first poll: the source's state is in the
    // one allocation the drivers poll, not behind a pointer of its own; its
    // stop is in the tap its deliveries go through.
    let task = drivers::prepare_in(HandOver { source, hand: Some(hand), sent: None }.in_current_span(), tap.clone());
    async_stream::stream! {
        // With the connection's other sources, once it has others.
        let mut driver = task.run(tap.company());
        while let Ok(Handed { item, next }) = handed.await {
            yield item;
            // Polled again: the operation has sent the item's response.
            let (hand, more) = oneshot::channel();
            if next.send(hand).is_err() {
                break;
            }
            handed = more;
        }
        // The source is done (it dropped its end). A panic must not look like
        // the feed's normal end: a client takes `complete` as final, and an
        // error as a reason to resubscribe from its last cursor.
        if driver.panicked().await {
            tracing::error!("a subscription's event source panicked");
            yield Err(ApiError::Internal);
        }
    }
}

pin_project_lite::pin_project! {
    /// [`driven`]'s task: polls the source and hands its items over one at
    /// a time. Written out rather than an `async` block, so the source is
    /// inline (a block moving it into a pinned local would keep a second,
    /// unused copy of its space for the subscription's life).
    struct HandOver<S> {
        #[pin]
        source: S,
        // Where the next item goes; `None` while the last one is out.
        hand: Option<oneshot::Sender<Handed>>,
        // Where the subscription, polled again, sends the next `hand`.
        sent: Option<oneshot::Receiver<oneshot::Sender<Handed>>>,
    }
}

impl<S: Stream<Item = Result<Delivery, ApiError>>> Future for HandOver<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            if let Some(sent) = this.sent.as_mut() {
                match ready!(Pin::new(sent).poll(cx)) {
                    Ok(next) => {
                        *this.hand = Some(next);
                        *this.sent = None;
                    }
                    // The subscription is gone: so is the reason to go on.
                    Err(_) => return Poll::Ready(()),
                }
            }
            let Some(item) = ready!(this.source.as_mut().poll_next(cx)) else { return Poll::Ready(()) };
            let (next, sent) = oneshot::channel();
            let Some(hand) = this.hand.take() else { return Poll::Ready(()) };
            if hand.send(Handed { item, next }).is_err() {
                return Poll::Ready(());
            }
            *this.sent = Some(sent);
        }
    }
}

/// The events of `request` that `filter` lets through, as [`events`] says.
fn source(
    rt: Realtime,
    request: Request,
    mut filter: impl FnMut(&ChangeEvent) -> Option<ChangeOperation> + Send + 'static,
) -> impl Stream<Item = Result<Delivery, ApiError>> + Send {
    async_stream::stream! {
        // Subscribe before reading the head, so nothing falls in between.
        let mut live = rt.subscribe();
        // Without a cursor, start where the account was checked: what was
        // broadcast since (an account change racing the subscribe) is read
        // from the log, as a lagging subscriber catches up.
        let mut last = request.after.unwrap_or(request.checked_at);
        let mut replay = request.after.is_some() || rt.head() > last;
        // Only a replay from the client's cursor has history to filter; a
        // subscriber catching up after lagging behind is live.
        let mut from_cursor = request.after.is_some();
        // The last position that is history (only while replaying from the
        // client's cursor).
        let mut history: Option<Cursor> = None;
        let mut tables = request.tables.to_vec();
        tables.push("users");
        if request.session.0.is_some() {
            tables.push("sessions");
        }
        // Shared deliveries queued on the socket but not written yet.
        let mut held_back = false;
        let expiry = expiry_sleep(request.expires_at);
        tokio::pin!(expiry);
        loop {
            // Shared deliveries held back for one write with the next ones
            // go out before the stream waits for more (or reads the log).
            if held_back && (replay || live.is_empty()) {
                held_back = false;
                if let Some(sharing) = &request.share {
                    sharing.tap.flush().await;
                }
            }
            if replay {
                replay = false;
                // The replay's queries are boxed: their futures are kilobytes,
                // and inline this stream would hold that space for as long
                // as it waits for live events (memory per idle subscriber).
                match Box::pin(log::bounds(rt.pool())).await {
                    Ok(bounds) if last < bounds.horizon => {
                        yield Err(cursor_expired());
                        return;
                    }
                    Ok(bounds) if last > bounds.head => {
                        yield Err(cursor::cursor_invalid("it is ahead of the change log"));
                        return;
                    }
                    // Restored under this running server: its keys and its
                    // listener's position belong to the old log.
                    Ok(bounds) if from_cursor && bounds.epoch != rt.cursors().identity().epoch => {
                        tracing::error!("the change feed's epoch changed (api restore?) since this server started: restart it");
                        yield Err(cursor::cursor_invalid("the database was restored since this server started"));
                        return;
                    }
                    // History ends at the log's head as the replay starts:
                    // everything committed by then is filtered by what the
                    // viewer may see now; what commits later is delivered as
                    // it would be live.
                    Ok(bounds) if from_cursor => history = Some(bounds.head),
                    Ok(_) => {}
                    Err(err) => {
                        yield Err(err);
                        return;
                    }
                }
                loop {
                    let batch = match Box::pin(log::read_after(rt.pool(), last, &tables, REPLAY_BATCH)).await {
                        Ok(batch) => batch,
                        Err(err) => {
                            yield Err(err);
                            return;
                        }
                    };
                    let full = batch.len() as u64 == REPLAY_BATCH;
                    if let Some(newest) = batch.last() {
                        last = newest.cursor;
                    }
                    for item in Box::pin(replayed(&rt, &request, history, batch, &mut filter)).await {
                        let end = item.is_err();
                        yield item;
                        if end {
                            return;
                        }
                    }
                    if !full {
                        break;
                    }
                }
                history = None;
                from_cursor = false;
            }
            let next = tokio::select! {
                // In this order, without drawing a random number per event:
                // an expired token ends the stream before anything more.
                biased;
                () = &mut expiry => Next::Expired,
                received = live.recv() => match received {
                    Ok(event) => Next::Event(event),
                    Err(RecvError::Lagged(_)) => Next::Lagged,
                    Err(RecvError::Closed) => Next::Closed,
                },
            };
            match next {
                Next::Event(live_event) => {
                    let Live { event, share } = &*live_event;
                    // Already delivered by the replay: the seam has no duplicates.
                    if event.cursor <= last {
                        continue;
                    }
                    last = event.cursor;
                    if let Some(err) = account_change(&request.viewer, event).or_else(|| session_end(&request, event)) {
                        yield Err(err);
                        return;
                    }
                    if !request.tables.contains(&event.table.as_str()) {
                        continue;
                    }
                    if let Some(operation) = filter(event) {
                        let cursor = share.cursor(&request.viewer, || rt.cursors().sign(&request.viewer, event.cursor));
                        let Some(sharing) = &request.share else {
                            yield Ok(Delivery { event: event.clone(), operation, cursor: cursor.to_string(), tombstone: false });
                            continue;
                        };
                        // The anonymous viewer's cursor is one per event:
                        // so may the message be (`shared::Template::text`).
                        let common = request.viewer == Viewer::Anonymous;
                        let ready = match share.claim(sharing.key, operation) {
                            Claim::Ready(template) => Some(template),
                            Claim::Wait(slot) => shared::wait(slot).await,
                            Claim::First(fill) => {
                                // Executed once for the audience: the
                                // operation serialises the response with the
                                // marker, fills the slot, and splices this
                                // subscriber's own cursor into its copy.
                                sharing.tap.set_pending(shared::Pending { fill, cursor, common });
                                let cursor = shared::marker().to_owned();
                                yield Ok(Delivery { event: event.clone(), operation, cursor, tombstone: false });
                                continue;
                            }
                        };
                        match ready {
                            Some(template) => {
                                // More events at hand: one socket write for them all.
                                let more = !live.is_empty();
                                if !sharing.tap.send(shared::Shared { template, cursor, common }, more).await {
                                    return;
                                }
                                held_back |= more;
                            }
                            // The shared execution failed: this subscriber's own.
                            None => yield Ok(Delivery { event: event.clone(), operation, cursor: cursor.to_string(), tombstone: false }),
                        }
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

/// What one replayed batch delivers, in order; an error, if any, is last
/// and ends the stream. `history`: the last position filtered by what the
/// viewer may see now (None: a subscriber catching up after lagging).
async fn replayed(
    rt: &Realtime,
    request: &Request,
    history: Option<Cursor>,
    batch: Vec<ChangeEvent>,
    filter: &mut (impl FnMut(&ChangeEvent) -> Option<ChangeOperation> + Send),
) -> Vec<Result<Delivery, ApiError>> {
    let mut decided = Vec::with_capacity(batch.len());
    let mut end = None;
    for event in batch {
        // Account changes from before the session check are history (it
        // may have been reactivated since).
        if event.cursor > request.checked_at
            && let Some(err) = account_change(&request.viewer, &event).or_else(|| session_end(request, &event))
        {
            end = Some(err);
            break;
        }
        if !request.tables.contains(&event.table.as_str()) {
            continue;
        }
        if let Some(operation) = filter(&event) {
            decided.push((event, operation));
        }
    }
    let past = |event: &ChangeEvent| history.is_some_and(|until| event.cursor <= until);
    // Removals too: one of a row visible now may carry its content, one of
    // a row hidden since is a tombstone.
    let shown: Vec<(&str, &str)> = decided
        .iter()
        .filter(|(event, _)| past(event))
        .map(|(event, _)| (event.table.as_str(), event.key.as_str()))
        .collect();
    let visible_now = if shown.is_empty() {
        Default::default()
    } else {
        match now::visible(rt.pool(), request.viewer, request.session, &shown).await {
            Ok(found) if found.viewer != request.viewer => return vec![Err(role_changed())],
            Ok(found) => found.rows,
            Err(err) => return vec![Err(err)],
        }
    };
    let mut out: Vec<Result<Delivery, ApiError>> = decided
        .into_iter()
        .filter_map(|(event, operation)| {
            let hidden_now = past(&event) && !visible_now.contains(&(event.table.clone(), event.key.clone()));
            let tombstone = hidden_now && operation == ChangeOperation::Deleted;
            if hidden_now && !tombstone {
                return None;
            }
            let cursor = rt.cursors().sign(&request.viewer, event.cursor);
            Some(Ok(Delivery { event: Arc::new(event), operation, cursor, tombstone }))
        })
        .collect();
    out.extend(end.map(Err));
    out
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

/// A change to the viewer's own account that ends their subscriptions:
/// deactivated or deleted (UNAUTHENTICATED), or a new role (FORBIDDEN: the
/// filter was made for the old one).
fn account_change(viewer: &Viewer, event: &ChangeEvent) -> Option<ApiError> {
    let me = viewer.user_id()?;
    if event.table != "users" || event.owner != Some(me) {
        return None;
    }
    let Some(row) = event.new_row.as_ref().filter(|_| event.op != Operation::Delete) else {
        return Some(session_ended());
    };
    if row.get("is_active") == Some(&Value::Bool(false)) {
        return Some(session_ended());
    }
    let role = row.get("role").and_then(Value::as_str).and_then(Role::parse);
    (role != viewer.role()).then(role_changed)
}

/// The deletion of the subscription's own session (its `sessions` row, as
/// the change log publishes it): the stream ends there, UNAUTHENTICATED.
/// The websocket closes on the same deletion (4403); this makes the end
/// exact in log order, whichever task wakes first.
fn session_end(request: &Request, event: &ChangeEvent) -> Option<ApiError> {
    let session = request.session.0?;
    (event.table == "sessions"
        && event.op == Operation::Delete
        && event.key.parse::<uuid::Uuid>().is_ok_and(|key| key == session))
    .then(|| ApiError::Unauthenticated("this session has ended (signed out); sign in again".into()))
}

fn session_ended() -> ApiError {
    ApiError::Unauthenticated("this account is no longer active".into())
}

fn role_changed() -> ApiError {
    ApiError::Forbidden("your role changed; resubscribe (with your last cursor) to continue under your new role".into())
}

fn cursor_expired() -> ApiError {
    ApiError::CursorExpired(
        "the cursor is older than the change log's retention; refetch, then subscribe without it".into(),
    )
}
