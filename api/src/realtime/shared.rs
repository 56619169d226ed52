//! One execution and one serialised payload per event and audience.
//!
//! Executing a subscription's selection set and serialising the result for
//! every subscriber of every event was most of the CPU of a delivery. Yet
//! subscribers with the same document, the same variables and the same
//! visibility ([`Audience`]) receive the same payload for an event; only two
//! things differ per subscriber: the protocol's operation `id`, and the
//! event's `cursor`, which is signed for each viewer.
//!
//! So each live event carries an [`EventShare`]: slots keyed by the
//! subscription's [`AudienceKey`] and the operation the event means for the
//! subscriber. The first subscriber of an audience to reach the event claims
//! the slot and executes the document as before, with a [`marker`] in place
//! of its cursor; the websocket layer serialises the response once into a
//! [`Template`], fills the slot, and splices the `id` and the real cursor
//! into it. Every other subscriber of the audience waits for the slot (a
//! few microseconds to a query's time) and splices its own `id` and cursor
//! into the same bytes. If the first execution fails or carries errors, the
//! slot says so and each subscriber executes its own, as before.
//!
//! Everything else stays per subscriber and unchanged: its stream, its
//! filter (the row policy, in memory), its order, the seam between replay
//! and live, lagging catch-up (replayed events are executed per subscriber).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::ChangeOperation;
use super::drivers::{Company, Stop, Stoppable};
use crate::auth::Viewer;

/// Who sees the same payload of a subscription field for the same event
/// (having passed its filter).
///
/// Declared here, per root subscription field, in one table
/// ([`audience_of`]); a field not listed is [`Audience::Viewer`], the safe
/// choice. A field whose payload (or any field beneath it) runs a query as
/// the viewer (a DataLoader, `ctx.tx()`), or reads the viewer in a resolver,
/// must not be `Public` or `Role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every subscriber the filter lets through sees the same payload: the
    /// row's columns, nothing that depends on who asks.
    Public,
    /// The payload depends on the viewer's role only.
    Role,
    /// The payload may depend on anything about the viewer (owner rows are
    /// here: each owner is their own audience).
    Viewer,
}

/// The audience of a root subscription field (its GraphQL name).
pub fn audience_of(field: &str) -> Audience {
    match field {
        // Place: columns only, no resolver reads the viewer.
        "placeChanged" => Audience::Public,
        // Owner rows (reviews, preferences, runs, stats) and posts and
        // comments, whose `author` is loaded as the viewer.
        _ => Audience::Viewer,
    }
}

/// Everything that can change a subscription's payload for one event, but
/// the cursor and the operation: the document, the operation name, the
/// variables, the root field and the viewer as far as its audience needs.
/// A SHA-256 digest, so a client cannot make two audiences collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudienceKey([u8; 32]);

impl AudienceKey {
    pub fn new(query: &str, operation_name: Option<&str>, variables: &str, field: &str, viewer: &Viewer) -> Self {
        let mut hash = Sha256::new();
        // Length-prefixed: no two different tuples hash the same bytes.
        let mut part = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        part(query.as_bytes());
        part(operation_name.unwrap_or("\0none").as_bytes());
        part(variables.as_bytes());
        part(field.as_bytes());
        let who = match (audience_of(field), viewer) {
            (Audience::Public, _) => "public".to_owned(),
            (Audience::Role, Viewer::Anonymous) | (Audience::Viewer, Viewer::Anonymous) => "anonymous".to_owned(),
            (Audience::Role, Viewer::User { role, .. }) => format!("role:{}", role.as_str()),
            (Audience::Viewer, Viewer::User { id, role }) => format!("user:{id}:{}", role.as_str()),
        };
        part(who.as_bytes());
        Self(hash.finalize().into())
    }
}

/// Stands in for the cursor in the shared execution. Random per process, so
/// no row's content can contain it (and be mistaken for a cursor).
pub fn marker() -> &'static str {
    static MARKER: OnceLock<String> = OnceLock::new();
    MARKER.get_or_init(|| format!("cursor-{}", uuid::Uuid::new_v4().simple()))
}

/// A serialised GraphQL response with the cursor cut out: the parts between
/// the [`marker`]s.
pub struct Template {
    parts: Vec<Box<str>>,
    /// Bytes of the parts together.
    fixed: usize,
    /// The first message made for a cursor every subscriber of its kind
    /// shares (the anonymous viewer's), kept: the next subscriber with the
    /// same operation id (clients that number theirs from 1 share ids; a
    /// client's UUIDs do not, and get a message made per delivery) gets the same bytes by reference count, with no allocation and
    /// no copy per delivery.
    common: OnceLock<Common>,
}

struct Common {
    kind: Box<str>,
    id_json: Box<str>,
    cursor: Arc<str>,
    text: Utf8Bytes,
}

const TYPE: &str = "{\"type\":\"";
const ID: &str = "\",\"id\":";
const PAYLOAD: &str = ",\"payload\":";

impl Template {
    /// `payload`: a response serialised with the [`marker`] as its cursor.
    pub fn new(payload: &str) -> Self {
        let parts: Vec<Box<str>> = payload.split(marker()).map(Box::from).collect();
        let fixed = parts.iter().map(|part| part.len()).sum();
        Self { parts, fixed, common: OnceLock::new() }
    }

    /// The protocol message `{"type":kind,"id":id,"payload":…}` with
    /// `cursor` in place of every marker. `id_json`: the id, as a JSON string.
    pub fn message(&self, kind: &str, id_json: &str, cursor: &str) -> String {
        // Exactly the message's length: a `String` whose length is its
        // capacity becomes the websocket message's bytes without another
        // allocation (`bytes::Bytes` from a `Vec`).
        let len = TYPE.len()
            + kind.len()
            + ID.len()
            + id_json.len()
            + PAYLOAD.len()
            + self.fixed
            + cursor.len() * self.parts.len().saturating_sub(1)
            + 1;
        let mut out = String::with_capacity(len);
        out.push_str(TYPE);
        out.push_str(kind);
        out.push_str(ID);
        out.push_str(id_json);
        out.push_str(PAYLOAD);
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                // A cursor is base64url: nothing to escape in JSON.
                out.push_str(cursor);
            }
            out.push_str(part);
        }
        out.push('}');
        out
    }

    /// [`Template::message`] as a websocket text. `common`: the cursor is
    /// one every subscriber of its kind shares (the anonymous viewer's,
    /// signed once per event), so the message may be too: the first one
    /// made is kept and handed to every later call with the same kind, id
    /// and cursor.
    pub fn text(&self, kind: &str, id_json: &str, cursor: &Arc<str>, common: bool) -> Utf8Bytes {
        if !common {
            return Utf8Bytes::from(self.message(kind, id_json, cursor));
        }
        if let Some(kept) = self.common.get()
            && *kept.kind == *kind
            && *kept.id_json == *id_json
            // The same `Arc` (the event's anonymous cursor) nearly always:
            // no need to compare its bytes.
            && (Arc::ptr_eq(&kept.cursor, cursor) || *kept.cursor == **cursor)
        {
            return kept.text.clone();
        }
        let text = Utf8Bytes::from(self.message(kind, id_json, cursor));
        // The first caller's message is kept; another id (a client that
        // numbers its operations differently) is made per delivery.
        let _ = self.common.set(Common {
            kind: kind.into(),
            id_json: id_json.into(),
            cursor: cursor.clone(),
            text: text.clone(),
        });
        text
    }
}

#[derive(Clone)]
enum State {
    Pending,
    Ready(Arc<Template>),
    /// The first execution failed or had errors: everyone executes their own.
    Failed,
}

/// One audience's payload of one event, as it is being computed.
type Slot = Arc<watch::Sender<State>>;

/// The shared payloads of one live event, by audience and operation.
#[derive(Default)]
pub struct EventShare {
    slots: Mutex<HashMap<(AudienceKey, ChangeOperation), Slot>>,
    /// The first payload filled, read without the lock: where all an
    /// event's subscribers are one audience (a public feed), every claim
    /// but the first ends here instead of taking the mutex the two cores
    /// would otherwise pass back and forth for each delivery.
    first_ready: OnceLock<(AudienceKey, ChangeOperation, Arc<Template>)>,
    /// The event's cursor signed for the anonymous viewer: the same for
    /// every anonymous subscriber, so signed once (an HMAC is a good part of
    /// a delivery's CPU). Signed-in viewers' cursors are signed per
    /// subscriber.
    anonymous_cursor: OnceLock<Arc<str>>,
}

/// What a subscriber gets from [`EventShare::claim`].
pub enum Claim {
    /// The payload is there.
    Ready(Arc<Template>),
    /// Another subscriber is executing it: [`wait`].
    Wait(Waiting),
    /// This subscriber executes it, and must fill the slot.
    First(Fill),
}

impl EventShare {
    /// The event's cursor for `viewer`, signed by `sign` (once per event for
    /// the anonymous viewer, then shared by reference count).
    pub fn cursor(&self, viewer: &Viewer, sign: impl FnOnce() -> String) -> Arc<str> {
        match viewer {
            Viewer::Anonymous => self.anonymous_cursor.get_or_init(|| sign().into()).clone(),
            Viewer::User { .. } => sign().into(),
        }
    }

    pub fn claim(self: &Arc<Self>, key: AudienceKey, operation: ChangeOperation) -> Claim {
        if let Some((first_key, first_operation, template)) = self.first_ready.get()
            && *first_key == key
            && *first_operation == operation
        {
            return Claim::Ready(template.clone());
        }
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(&(key, operation)) {
            return match &*slot.borrow() {
                State::Ready(template) => Claim::Ready(template.clone()),
                _ => Claim::Wait(Waiting(slot.subscribe())),
            };
        }
        let (slot, _) = watch::channel(State::Pending);
        let slot = Arc::new(slot);
        slots.insert((key, operation), slot.clone());
        Claim::First(Fill { slot, filled: false, share: self.clone(), key, operation })
    }
}

/// A slot another subscriber is filling.
pub struct Waiting(watch::Receiver<State>);

/// How long a subscriber waits for another's execution before running its
/// own (the other's task may be starved; correctness does not depend on it).
const WAIT: Duration = Duration::from_secs(2);

/// The shared payload once the first subscriber has it; `None`: execute
/// your own (it failed, or took too long).
pub async fn wait(Waiting(mut slot): Waiting) -> Option<Arc<Template>> {
    let ready = tokio::time::timeout(WAIT, slot.wait_for(|state| !matches!(state, State::Pending))).await;
    match ready {
        Ok(Ok(state)) => match &*state {
            State::Ready(template) => Some(template.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// The duty to fill a slot; dropped unfilled (an error, a closed
/// subscription), it tells the waiters to execute their own.
pub struct Fill {
    slot: Slot,
    filled: bool,
    share: Arc<EventShare>,
    key: AudienceKey,
    operation: ChangeOperation,
}

impl Fill {
    pub fn fill(mut self, template: Arc<Template>) {
        self.filled = true;
        // Only the first audience to fill gets the lock-free path; the
        // others are found in the map as before.
        let _ = self.share.first_ready.set((self.key, self.operation, template.clone()));
        self.slot.send_replace(State::Ready(template));
    }
}

impl Drop for Fill {
    fn drop(&mut self) {
        if !self.filled {
            self.slot.send_replace(State::Failed);
        }
    }
}

/// A delivery whose payload was shared: the template and this viewer's cursor.
pub struct Shared {
    pub template: Arc<Template>,
    pub cursor: Arc<str>,
    /// The cursor is the one every anonymous subscriber gets (see [`Template::text`]).
    pub common: bool,
}

/// The execution this subscriber owes its audience: the slot, and its own
/// cursor to splice into its own copy.
pub struct Pending {
    pub fill: Fill,
    pub cursor: Arc<str>,
    pub common: bool,
}

/// One subscription's link between its stream (in the resolver, under
/// async-graphql) and the websocket operation that sends its messages.
/// Put into the request's data; `ctx.change_request` hands it to
/// [`super::stream::events`].
#[derive(Clone)]
pub struct Sharing {
    pub key: AudienceKey,
    pub tap: Arc<Tap>,
}

/// Where a subscription's shared deliveries go: straight to its socket, from
/// the stream's own task (no channel, no hop). The stream runs only when the
/// operation polls it for its next executed response, after it has sent the
/// previous one, so shared and executed deliveries keep the log's order.
pub trait Deliver: Send + Sync {
    /// Sends one shared delivery. `more`: the stream has further events at
    /// hand, so the socket may hold this one back for one write with them
    /// (until [`Deliver::flush`]). False when the subscriber is gone.
    fn deliver(&self, shared: Shared, more: bool) -> futures_util::future::BoxFuture<'_, bool>;
    /// Writes whatever [`Deliver::deliver`] held back.
    fn flush(&self) -> futures_util::future::BoxFuture<'_, ()>;
}

/// `D`: the operation's socket (a `dyn Deliver` once shared), in the same
/// allocation as the rest: a delivery reaches it without one more pointer,
/// a cache miss per delivery at 10,000 subscriptions (`Tap::send` was 4 %
/// of the server's CPU in `bench fanout --per-socket 5`, nearly all of it
/// that load).
pub struct Tap<D: ?Sized = dyn Deliver> {
    /// Where the connection runs its subscriptions' event sources once it
    /// has several, so that one event's deliveries to it leave in one
    /// write (see [`super::drivers`]).
    company: Arc<Company>,
    /// Set just before the stream yields the delivery it executes for its
    /// audience; taken by the operation with that delivery's response.
    pending: Mutex<Option<Pending>>,
    /// Stops the subscription's event source (see [`super::drivers::Stop`]):
    /// here, beside what its deliveries read.
    stop: Stop,
    /// The operation's socket, for shared deliveries.
    deliver: D,
}

impl<D: Deliver + 'static> Tap<D> {
    pub fn new(deliver: D, company: Arc<Company>) -> Arc<Self> {
        Arc::new(Self { company, pending: Mutex::new(None), stop: Stop::default(), deliver })
    }
}

impl<D: ?Sized> Tap<D> {
    /// The operation's socket, as its maker knows it.
    pub fn socket(&self) -> &D {
        &self.deliver
    }
}

impl Stoppable for Tap {
    fn stop_flag(&self) -> &Stop {
        &self.stop
    }
}

impl Tap {
    /// Where the subscription's event source runs (see [`Tap::new`]).
    pub fn company(&self) -> &Arc<Company> {
        &self.company
    }

    /// Sends a shared delivery (see [`Deliver::deliver`]); false when the operation is gone.
    pub async fn send(&self, shared: Shared, more: bool) -> bool {
        self.deliver.deliver(shared, more).await
    }

    /// Writes what [`Tap::send`] held back.
    pub async fn flush(&self) {
        self.deliver.flush().await;
    }

    pub fn set_pending(&self, pending: Pending) {
        *self.pending.lock().unwrap_or_else(PoisonError::into_inner) = Some(pending);
    }

    pub fn take_pending(&self) -> Option<Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_splices_the_id_and_every_cursor() {
        let payload = format!(r#"{{"data":{{"a":{{"cursor":"{m}"}},"b":"{m}"}}}}"#, m = marker());
        let template = Template::new(&payload);
        assert_eq!(
            template.message("next", "\"7\"", "CUR"),
            r#"{"type":"next","id":"7","payload":{"data":{"a":{"cursor":"CUR"},"b":"CUR"}}}"#
        );
    }

    #[test]
    fn a_message_is_exactly_as_long_as_its_capacity() {
        let payload = format!(r#"{{"data":{{"a":{{"cursor":"{m}"}},"b":"{m}"}}}}"#, m = marker());
        let template = Template::new(&payload);
        let message = template.message("next", "\"17\"", "CURSOR");
        assert_eq!(message.len(), message.capacity());
        let plain = Template::new(r#"{"data":null}"#);
        let message = plain.message("data", "\"1\"", "CURSOR");
        assert_eq!(message, r#"{"type":"data","id":"1","payload":{"data":null}}"#);
        assert_eq!(message.len(), message.capacity());
    }

    #[test]
    fn a_common_cursor_reuses_the_first_message_and_nothing_else_does() {
        let payload = format!(r#"{{"data":{{"cursor":"{m}"}}}}"#, m = marker());
        let template = Template::new(&payload);
        let (anonymous, other): (Arc<str>, Arc<str>) = ("ANON".into(), "SIGNED".into());
        let first = template.text("next", "\"1\"", &anonymous, true);
        let again = template.text("next", "\"1\"", &anonymous, true);
        // The same bytes, not a copy.
        assert_eq!(first.as_str().as_ptr(), again.as_str().as_ptr());
        assert_eq!(again.as_str(), template.message("next", "\"1\"", "ANON"));
        // Another id, kind or cursor gets its own message, spliced right.
        assert_eq!(
            template.text("next", "\"2\"", &anonymous, true).as_str(),
            template.message("next", "\"2\"", "ANON")
        );
        assert_eq!(
            template.text("data", "\"1\"", &anonymous, true).as_str(),
            template.message("data", "\"1\"", "ANON")
        );
        assert_eq!(template.text("next", "\"1\"", &other, true).as_str(), template.message("next", "\"1\"", "SIGNED"));
        assert_eq!(template.text("next", "\"1\"", &other, false).as_str(), template.message("next", "\"1\"", "SIGNED"));
    }

    #[test]
    fn a_filled_slot_is_found_by_its_own_audience_and_operation_only() {
        let share = Arc::new(EventShare::default());
        let key = AudienceKey::new("q", None, "{}", "placeChanged", &Viewer::Anonymous);
        let other = AudienceKey::new("q2", None, "{}", "placeChanged", &Viewer::Anonymous);
        let Claim::First(fill) = share.claim(key, ChangeOperation::Inserted) else { panic!("first claim") };
        let template = Arc::new(Template::new(r#"{"data":1}"#));
        fill.fill(template.clone());
        assert!(matches!(share.claim(key, ChangeOperation::Inserted), Claim::Ready(t) if Arc::ptr_eq(&t, &template)));
        assert!(matches!(share.claim(other, ChangeOperation::Inserted), Claim::First(_)));
        assert!(matches!(share.claim(key, ChangeOperation::Updated), Claim::First(_)));
    }

    #[test]
    fn public_audiences_ignore_the_viewer_and_others_do_not() {
        let a = Viewer::User { id: uuid::Uuid::new_v4(), role: crate::auth::Role::User };
        let b = Viewer::User { id: uuid::Uuid::new_v4(), role: crate::auth::Role::User };
        let key = |field: &str, viewer: &Viewer| AudienceKey::new("q", None, "{}", field, viewer);
        assert_eq!(key("placeChanged", &a), key("placeChanged", &b));
        assert_ne!(key("postChanged", &a), key("postChanged", &b));
        assert_ne!(key("unknownField", &a), key("unknownField", &b));
    }

    #[test]
    fn an_unfilled_slot_fails_its_waiters() {
        let share = Arc::new(EventShare::default());
        let key = AudienceKey::new("q", None, "{}", "placeChanged", &Viewer::Anonymous);
        let Claim::First(fill) = share.claim(key, ChangeOperation::Inserted) else { panic!("first claim") };
        let Claim::Wait(Waiting(slot)) = share.claim(key, ChangeOperation::Inserted) else {
            panic!("second claim waits")
        };
        drop(fill);
        assert!(matches!(&*slot.borrow(), State::Failed));
        assert!(matches!(share.claim(key, ChangeOperation::Updated), Claim::First(_)));
    }
}
